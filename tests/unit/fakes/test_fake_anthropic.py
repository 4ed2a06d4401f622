"""Tests for the fake Anthropic upstream (fakes.anthropic).

No Django needed: run with `python -m pytest -p no:django tests/unit/fakes/test_fake_anthropic.py`.
The fake runs in-process on a free port, on its own event loop in a background thread, and is driven
through the official `anthropic` SDK plus raw HTTP for byte-level checks.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest

from fakes.anthropic import THINKING_SIGNATURE, THINKING_TEXT, start
from tests.support.anthropic_events import parse_sse
from tests.support.claude_code import CLAUDE_CODE_BODY
from tests.support.env import ROOT

API_KEY = "test-key"
SONNET = "claude-sonnet-4-6"
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
        },
        "required": ["city", "unit"],
    },
}
TIME_TOOL = {
    "name": "get_time",
    "input_schema": {
        "type": "object",
        "properties": {"precise": {"type": "boolean"}, "offset": {"type": "number"}, "tags": {"type": "array"}},
    },
}
PING_TOOL = {"name": "ping", "input_schema": {"type": "object"}}


@dataclass
class Fake:
    url: str
    loop: asyncio.AbstractEventLoop

    def log(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_fake/requests").json()

    def entry_with(self, marker: str) -> dict[str, Any]:
        """The newest log entry whose body mentions `marker`."""
        for entry in reversed(self.log()):
            if marker in json.dumps(entry["body"]):
                return entry
        raise AssertionError(f"no logged request mentions {marker!r}")


@pytest.fixture(scope="module")
def fake():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, port = asyncio.run_coroutine_threadsafe(start("127.0.0.1", 0, api_key=API_KEY), loop).result(10)
    yield Fake(f"http://127.0.0.1:{port}", loop)
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture(scope="module")
def client(fake):
    with anthropic.Anthropic(api_key=API_KEY, base_url=fake.url, max_retries=0) as sdk:
        yield sdk


def body(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": SONNET, "max_tokens": 256, "messages": [{"role": "user", "content": text}], **extra}


def post(fake: Fake, payload: Any, path: str = "/v1/messages", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{fake.url}{path}", json=payload, headers=HEADERS if headers is None else headers)


def check_grammar(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Assert Anthropic's stream grammar; returns the content blocks rebuilt from the deltas."""
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 1
    blocks: list[dict[str, Any]] = []
    open_index = None
    for name, data in events[2:-2]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == len(blocks)
            open_index = data["index"]
            blocks.append({**data["content_block"], "_json": ""})
        elif name == "content_block_delta":
            assert data["index"] == open_index
            block, delta = blocks[open_index], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            else:
                assert delta["type"] == "input_json_delta" and len(delta["partial_json"]) <= 8
                block["_json"] += delta["partial_json"]
        else:
            assert name == "content_block_stop" and data["index"] == open_index
            open_index = None
    assert open_index is None
    for block in blocks:
        partial = block.pop("_json")
        if block["type"] == "tool_use":
            assert block["input"] == {}
            block["input"] = json.loads(partial) if partial else {}
    return blocks


# --------------------------------------------------------------------------------------------------
# Plain replies
# --------------------------------------------------------------------------------------------------


def test_non_stream_reply_and_usage(client):
    raw = client.messages.with_raw_response.create(**body("Hi there, fake!"))
    assert raw.headers["request-id"].startswith("req_")
    message = raw.parse()
    assert message.id.startswith("msg_") and message.model == SONNET and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hello from the fake upstream. You said: Hi there, fake!"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == math.ceil(len("Hi there, fake!") / 4) + 3
    assert message.usage.output_tokens == len(message.content[0].text.split())
    assert message.usage.cache_creation_input_tokens == 0 and message.usage.cache_read_input_tokens == 0
    again = client.messages.create(**body("Hi there, fake!"))
    assert again.content == message.content and again.usage == message.usage


def test_stream_grammar_on_raw_bytes(fake):
    payload = body(
        "Weather? [[fake:tools=2, text_then_tool]]",
        max_tokens=4096,
        stream=True,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[WEATHER_TOOL, PING_TOOL],
    )
    response = post(fake, payload)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    assert b"[DONE]" not in response.content
    events = parse_sse(response.content)
    blocks = check_grammar(events)
    assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use", "tool_use"]
    assert blocks[0] == {"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE}
    signature_deltas = [e for _, e in events if e.get("delta", {}).get("type") == "signature_delta"]
    assert len(signature_deltas) == 1
    assert blocks[2]["input"] == {"city": "example", "unit": "celsius"}
    assert blocks[3]["input"] == {}  # ping has no properties: one "" fragment
    assert [e["delta"] for n, e in events if e.get("index") == 3 and n == "content_block_delta"] == [
        {"type": "input_json_delta", "partial_json": ""}
    ]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}

    plain = post(fake, {**payload, "stream": False}).json()
    assert plain["content"] == blocks
    assert delta["usage"] == plain["usage"]
    assert events[0][1]["message"]["usage"]["input_tokens"] == plain["usage"]["input_tokens"]


def test_default_text_streams_in_several_deltas(fake):
    events = parse_sse(post(fake, body("Tell me something nice", stream=True)).content)
    deltas = [e["delta"]["text"] for n, e in events if n == "content_block_delta"]
    assert len(deltas) >= 3
    assert "".join(deltas) == "Hello from the fake upstream. You said: Tell me something nice"


def test_sdk_stream_final_message_matches_create(client):
    request = body("Stream me [[fake:words=40]]")
    with client.messages.stream(**request) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    plain = client.messages.create(**request)
    assert text == final.content[0].text == plain.content[0].text
    assert len(text.split()) == 40
    assert final.stop_reason == plain.stop_reason == "end_turn"
    assert final.usage.output_tokens == plain.usage.output_tokens == 40
    assert final.usage.input_tokens == plain.usage.input_tokens


async def test_async_sdk(fake):
    async with anthropic.AsyncAnthropic(api_key=API_KEY, base_url=fake.url, max_retries=0) as sdk:
        message = await sdk.messages.create(**body("async hello"))
        assert message.content[0].text.endswith("You said: async hello")
        async with sdk.messages.stream(**body("async stream")) as stream:
            final = await stream.get_final_message()
        assert final.content[0].text.endswith("You said: async stream")
        with pytest.raises(anthropic.RateLimitError):
            await sdk.messages.create(**body("[[fake:error=429]]"))


def test_words_cut_at_max_tokens(client):
    message = client.messages.create(**body("[[fake:words=500]]", max_tokens=50))
    assert message.stop_reason == "max_tokens"
    assert len(message.content[0].text.split()) == 50 == message.usage.output_tokens


def test_structured_output_answers_json_built_from_the_schema(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
              "required": ["city", "days"], "additionalProperties": False}
    message = client.messages.create(**body("weather?", output_config={"format": {"type": "json_schema",
                                                                                  "schema": schema}}))
    assert json.loads(message.content[0].text) == {"city": "example", "days": 1}
    assert message.stop_reason == "end_turn"


def test_stop_sequence_refusal_and_cache(client):
    message = client.messages.create(**body("[[fake:stop_sequence]]", stop_sequences=["END", "STOP"]))
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "END"
    assert client.messages.create(**body("[[fake:stop_sequence]]")).stop_reason == "end_turn"
    assert client.messages.create(**body("[[fake:refusal]]")).stop_reason == "refusal"
    cached = client.messages.create(**body("long prompt [[fake:cache]]"))
    assert cached.usage.cache_creation_input_tokens == 100 and cached.usage.cache_read_input_tokens == 200
    assert cached.usage.input_tokens == client.messages.count_tokens(
        model=SONNET, messages=[{"role": "user", "content": "long prompt [[fake:cache]]"}]
    ).input_tokens
    custom = client.messages.create(**body("[[fake:cache_read=7 cache_write=3]]"))
    assert (custom.usage.cache_read_input_tokens, custom.usage.cache_creation_input_tokens) == (7, 3)


def test_delay(client):
    started = time.perf_counter()
    client.messages.create(**body("[[fake:delay_ms=150]]"))
    assert time.perf_counter() - started >= 0.15


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

OVERLOADED = getattr(anthropic, "OverloadedError", anthropic.APIStatusError)
TOO_LARGE = getattr(anthropic, "ContentTooLargeError", None) or getattr(anthropic, "RequestTooLargeError")


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (413, TOO_LARGE, "request_too_large"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, OVERLOADED, "overloaded_error"),
    ],
)
def test_error_directives(client, status, exception, error_type):
    with pytest.raises(exception) as caught:
        client.messages.create(**body(f"[[fake:error={status}]]"))
    error = caught.value
    assert error.status_code == status
    assert error.body["type"] == "error" and error.body["error"]["type"] == error_type
    assert error.body["request_id"] == error.response.headers["request-id"]
    if status == 429:
        headers = error.response.headers
        assert headers["retry-after"] == "1"
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert int(headers["anthropic-ratelimit-requests-limit"]) > 0
        assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_rate_limit_retry_after_and_streaming_error(client, fake):
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**body("[[fake:error=429, retry_after=7]]"))
    assert caught.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.InternalServerError):  # errors before the stream starts are plain JSON
        with client.messages.stream(**body("[[fake:error=500]]")) as stream:
            stream.until_done()
    marker = uuid.uuid4().hex
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**body(f"{marker} [[fake:error=500]]"))
    entry = fake.entry_with(marker)
    assert (entry["outcome"], entry["status"]) == ("error", 500)


def test_midstream_error(client, fake):
    response = post(fake, body("[[fake:midstream_error]]", stream=True))
    assert response.status_code == 200
    events = parse_sse(response.content)
    assert [n for n, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta", "error"
    ]  # fmt: skip
    assert events[-1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(**body("[[fake:midstream_error]]")) as stream:
            stream.until_done()
    assert caught.value.type == "overloaded_error"
    with pytest.raises(OVERLOADED):
        client.messages.create(**body("[[fake:midstream_error]]"))


def test_auth_and_version_headers(fake):
    missing = post(fake, body(), headers={"anthropic-version": "2023-06-01"})
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    wrong = post(fake, body(), headers={**HEADERS, "x-api-key": "nope"})
    assert wrong.status_code == 401
    no_version = post(fake, body(), headers={"x-api-key": API_KEY})
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    bearer = post(fake, body(), headers={"authorization": f"Bearer {API_KEY}", "anthropic-version": "2023-06-01"})
    assert bearer.status_code == 200
    assert post(fake, "not json").status_code == 400


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
TOOL_RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
THINKING = {"type": "thinking", "thinking": "hmm", "signature": "c2ln"}
ENABLED = {"type": "enabled", "budget_tokens": 1024}
BMP_SOURCE = {"type": "base64", "media_type": "image/bmp", "data": "Qk0="}


def conversation(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": SONNET, "max_tokens": 2048, "messages": list(messages), "tools": [WEATHER_TOOL], **extra}


JSON_FORMAT = {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}

REJECTIONS = {
    "unknown field": (body(n=1), "n: Extra inputs are not permitted"),
    "cache ttl": (body(system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]),
                  "system.0.text.cache_control.ttl"),
    "cache_control extra key": (body(cache_control={"type": "ephemeral", "max": 1}), "cache_control.max"),
    "effort": (body(output_config={"effort": "extreme"}), "output_config.effort"),
    "output_config extra key": (body(output_config={"verbosity": "low"}), "output_config.verbosity"),
    "output format type": (body(output_config={"format": {"type": "json_object"}}), "output_config.format.type"),
    "output format schema": (body(output_format={"type": "json_schema"}), "output_format.schema"),
    "context_management edit": (body(context_management={"edits": [{"type": "clear_all"}]}),
                                "context_management.edits.0"),
    "tool extra key": (body(tools=[{**PING_TOOL, "parameters": {}}]), "tools.0.custom.parameters"),
    "tool strict type": (body(tools=[{**PING_TOOL, "strict": "yes"}]), "tools.0.custom.strict"),
    "speed": (body(speed="warp"), "speed"),
    "missing max_tokens": ({"model": SONNET, "messages": [user("hi")]}, "max_tokens: Field required"),
    "max_tokens zero": (body(max_tokens=0), "max_tokens"),
    "max_tokens string": (body(max_tokens="5"), "max_tokens"),
    "max_tokens over model limit": (body(max_tokens=10**6), "max_tokens"),
    "no messages": (body(messages=[]), "messages"),
    "system role": (body(messages=[{"role": "system", "content": "x"}]), "messages.0.role"),
    "message extra key": (body(messages=[{"role": "user", "content": "hi", "name": "bob"}]), "messages.0.name"),
    "bad system": (body(system=[{"type": "image"}]), "system.0"),
    "empty text": (body(messages=[user([{"type": "text", "text": ""}])]), "text content blocks must be non-empty"),
    "blank text": (body(messages=[user([{"type": "text", "text": "  "}])]), "non-whitespace"),
    "empty content": (body(messages=[user("")]), "messages.0: all messages must have non-empty content"),
    "empty content list": (body(messages=[user([])]), "messages.0: all messages must have non-empty content"),
    "unknown block": (body(messages=[user([{"type": "video", "url": "x"}])]), "messages.0.content.0"),
    "image url source": (
        body(messages=[user([{"type": "image", "source": {"type": "file", "file_id": "f"}}])]),
        "image.source",
    ),
    "image media type": (
        body(messages=[user([{"type": "image", "source": BMP_SOURCE}])]),
        "media_type",
    ),
    "temperature": (body(temperature=1.5), "temperature"),
    "top_p": (body(top_p=-0.1), "top_p"),
    "stop_sequences type": (body(stop_sequences="END"), "stop_sequences"),
    "stop_sequences blank": (body(stop_sequences=[" \n"]), "stop_sequences"),
    "metadata extra": (body(metadata={"user_id": "u", "session": "s"}), "metadata.session"),
    "tool name": (body(tools=[{"name": "get weather", "input_schema": {"type": "object"}}]), "tools.0.custom.name"),
    "tool schema": (body(tools=[{"name": "t", "input_schema": {"type": "string"}}]), "input_schema"),
    "openai-style tool": (body(tools=[{"type": "function", "function": {"name": "t"}}]), "tools.0"),
    "duplicate tools": (body(tools=[PING_TOOL, PING_TOOL]), "unique"),
    "tool_choice type": (body(tools=[PING_TOOL], tool_choice={"type": "required"}), "tool_choice"),
    "tool_choice unknown tool": (body(tools=[PING_TOOL], tool_choice={"type": "tool", "name": "x"}), "tool_choice"),
    "tool_choice any without tools": (body(tool_choice={"type": "any"}), "tool_choice"),
    "tool_result not first": (
        conversation(user("hi"), assistant([TOOL_USE]), user([{"type": "text", "text": "here"}, TOOL_RESULT])),
        "messages.2.content.1: tool_result blocks must come first",
    ),
    "tool_result without tool_use": (
        conversation(user("hi"), assistant("ok"), user([TOOL_RESULT])),
        "messages.2.content.0: tool_result block(s) provided when previous message does not contain tool_use",
    ),
    "tool_result wrong id": (
        conversation(user("hi"), assistant([TOOL_USE]), user([{**TOOL_RESULT, "tool_use_id": "toolu_2"}])),
        "unexpected `tool_use_id`",
    ),
    "tool_use unanswered": (
        conversation(user("hi"), assistant([TOOL_USE]), user("never mind")),
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
    ),
    "tool_use bad id": (
        conversation(user("hi"), assistant([{**TOOL_USE, "id": "call 1"}]), user([TOOL_RESULT])),
        "messages.1.content.0.tool_use.id",
    ),
    "tool_use in user message": (conversation(user([TOOL_USE])), "can only be in `assistant` messages"),
    "prefill trailing whitespace": (
        body(messages=[user("hi"), assistant("Sure, ")]),
        "final assistant content cannot end with trailing whitespace",
    ),
    "opus prefill": (
        body(model="claude-opus-4-6", messages=[user("hi"), assistant("Sure")]),
        "This model does not support assistant message prefill. The conversation must end with a user message.",
    ),
    "thinking budget too small": (body(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1000}), "1024"),
    "thinking budget over max_tokens": (
        body(max_tokens=1500, thinking={"type": "enabled", "budget_tokens": 1500}),
        "must be greater than",
    ),
    "thinking temperature": (body(max_tokens=2048, thinking=ENABLED, temperature=0.5), "temperature"),
    "thinking top_k": (body(max_tokens=2048, thinking=ENABLED, top_k=5), "top_k"),
    "thinking forced tool": (
        body(max_tokens=2048, thinking=ENABLED, tools=[PING_TOOL], tool_choice={"type": "any"}),
        "tool_choice forces tool use",
    ),
    "thinking tool_use without thinking block": (
        conversation(user("hi"), assistant([TOOL_USE]), user([TOOL_RESULT]), thinking=ENABLED),
        "messages.1.content.0.type: Expected thinking or redacted_thinking, but found tool_use",
    ),
    "unknown directive": (body("[[fake:explode]]"), "fake directive"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_validation_rejections(fake, case):
    payload, message = REJECTIONS[case]
    response = post(fake, payload)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]
    assert error["request_id"] == response.headers["request-id"]


def test_rejections_through_sdk_and_log(client, fake):
    marker = uuid.uuid4().hex
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        client.messages.create(**body(marker), extra_body={"temperature": 1.5})
    entry = fake.entry_with(marker)
    assert (entry["outcome"], entry["status"]) == ("rejected", 400)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(**{**body(), "model": "claude-2"})
    assert caught.value.body["error"] == {"type": "not_found_error", "message": "model: claude-2"}


ACCEPTED = {
    "claude code request": CLAUDE_CODE_BODY,
    "structured output (output_config.format) with strict tools": body(
        output_config={"format": JSON_FORMAT}, tools=[{**PING_TOOL, "strict": True}]),
    "structured output (deprecated output_format)": body(output_format=JSON_FORMAT),
    "top-level cache_control, speed, inference_geo": body(cache_control={"type": "ephemeral", "ttl": "5m"},
                                                          speed="fast", inference_geo="us"),
    "prefill continues": body(messages=[user("hi"), assistant("Sure")]),
    "tool_result then text": conversation(
        user("hi"), assistant([TOOL_USE]), user([TOOL_RESULT, {"type": "text", "text": "thanks"}])
    ),
    "tool_choice auto without tools": body(tool_choice={"type": "auto"}),
    "tool_choice none without tools": body(tool_choice={"type": "none"}),
    "thinking tool loop": conversation(
        user("hi"), assistant([THINKING, TOOL_USE]), user([TOOL_RESULT]), thinking=ENABLED, temperature=1
    ),
    "thinking disabled": body(thinking={"type": "disabled"}, temperature=0.2, top_k=3),
    "system blocks and images": body(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            user(
                [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    {"type": "text", "text": "What is this?"},
                ]
            )
        ],
        metadata={"user_id": "u-1"},
        stop_sequences=["END"],
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_valid_requests_accepted(fake, case):
    response = post(fake, ACCEPTED[case])
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------------------------------
# Tools and thinking
# --------------------------------------------------------------------------------------------------


def test_parallel_tool_calls_cycle_through_tools(client):
    message = client.messages.create(**body("go [[fake:tools=3]]", tools=[WEATHER_TOOL, TIME_TOOL]))
    assert message.stop_reason == "tool_use"
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [c.name for c in calls] == ["get_weather", "get_time", "get_weather"]
    assert calls[0].input == {"city": "example", "unit": "celsius"}
    assert calls[1].input == {"precise": True, "offset": 1.5, "tags": []}
    assert len({c.id for c in calls}) == 3 and all(c.id.startswith("toolu_") for c in calls)
    again = client.messages.create(**body("go [[fake:tools=3]]", tools=[WEATHER_TOOL, TIME_TOOL]))
    assert [c.id for c in again.content] == [c.id for c in calls]


def test_tool_choice_drives_calls(client):
    tools = [WEATHER_TOOL, TIME_TOOL]
    forced = client.messages.create(**body("hi", tools=tools, tool_choice={"type": "tool", "name": "get_time"}))
    assert [(b.type, b.name) for b in forced.content] == [("tool_use", "get_time")]
    any_choice = client.messages.create(**body("hi", tools=tools, tool_choice={"type": "any"}))
    assert any_choice.stop_reason == "tool_use"
    single = client.messages.create(
        **body("[[fake:tools=3]]", tools=tools, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    )
    assert [b.type for b in single.content] == ["tool_use"]
    suppressed = client.messages.create(**body("[[fake:tool]]", tools=tools, tool_choice={"type": "none"}))
    assert suppressed.stop_reason == "end_turn"
    plain = client.messages.create(**body("hi", tools=tools))
    assert plain.stop_reason == "end_turn"


def test_tool_round_trip(client):
    tools = [WEATHER_TOOL]
    first = client.messages.create(**body("Weather in Paris? [[fake:tool text_then_tool]]", tools=tools))
    assert [b.type for b in first.content] == ["text", "tool_use"]
    call = first.content[1]
    messages = [
        user("Weather in Paris? [[fake:tool text_then_tool]]"),
        assistant([b.model_dump(exclude_none=True) for b in first.content]),
        user([{"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "18C, sunny"}]}]),
    ]
    second = client.messages.create(model=SONNET, max_tokens=256, tools=tools, messages=messages)
    assert second.content[0].text == "Tool results received: 18C, sunny"
    assert second.stop_reason == "end_turn"


def test_stream_tool_input_fragments_reassemble(client, fake):
    tool = {
        "name": "search",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}, "exact": {"type": "boolean"}},
        },
    }
    response = post(fake, body("[[fake:tool]]", tools=[tool], stream=True))
    events = parse_sse(response.content)
    fragments = [e["delta"]["partial_json"] for n, e in events if e.get("delta", {}).get("type") == "input_json_delta"]
    assert len(fragments) > 1
    assert json.loads("".join(fragments)) == {"query": "example", "limit": 1, "exact": True}
    with client.messages.stream(**body("[[fake:tool]]", tools=[tool])) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"query": "example", "limit": 1, "exact": True}


WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}


def test_web_search_directive_answers_with_a_search_its_results_and_a_cited_text(client, fake):
    message = client.messages.create(**body("paris weather [[fake:web_search]]", tools=[WEB_SEARCH, WEATHER_TOOL]))
    call, results, plain, cited = message.content
    assert (call.type, call.name, call.input) == ("server_tool_use", "web_search", {"query": "paris weather"})
    assert call.id.startswith("srvtoolu_01")
    assert results.type == "web_search_tool_result" and results.tool_use_id == call.id
    assert [r.url for r in results.content] == ["https://example.com/fake-search/1",
                                                "https://example.com/fake-search/2"]
    assert all(r.encrypted_content and r.title for r in results.content)
    assert plain.citations is None
    [citation] = cited.citations
    assert citation.type == "web_search_result_location" and citation.url == results.content[0].url
    assert citation.encrypted_index and citation.cited_text
    assert message.stop_reason == "end_turn" and message.usage.server_tool_use.web_search_requests == 1

    events = [e for _, e in parse_sse(post(fake, body("paris weather [[fake:web_search]]", tools=[WEB_SEARCH],
                                                      stream=True)).content)]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts[0] == {"type": "server_tool_use", "id": call.id, "name": "web_search", "input": {}}
    assert starts[3] == {"type": "text", "text": "", "citations": []}
    deltas = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta" and e["index"] == 3]
    assert deltas[0] == "citations_delta" and set(deltas[1:]) == {"text_delta"}
    assert "server_tool_use" not in events[0]["message"]["usage"]
    assert [e for e in events if e["type"] == "message_delta"][0]["usage"]["server_tool_use"] == {
        "web_search_requests": 1}
    with client.messages.stream(**body("paris weather [[fake:web_search]]", tools=[WEB_SEARCH])) as stream:
        final = stream.get_final_message()
    streamed = [{k: v for k, v in b.model_dump().items() if k != "parsed_output"} for b in final.content]
    assert streamed == [b.model_dump() for b in message.content]


def test_web_search_happens_only_when_declared_and_asked_for(client):
    allowed = {**WEB_SEARCH, "allowed_domains": ["docs.example.org"]}
    forced = client.messages.create(**body("x", tools=[allowed], tool_choice={"type": "tool", "name": "web_search"}))
    assert forced.content[0].type == "server_tool_use" and forced.content[1].content[0].url.startswith(
        "https://docs.example.org/")
    assert client.messages.create(**body("hi", tools=[WEB_SEARCH])).content[0].type == "text"
    assert client.messages.create(**body("[[fake:web_search]]")).content[0].type == "text"
    tool_only = client.messages.create(**body("[[fake:tool]]", tools=[WEB_SEARCH, WEATHER_TOOL]))
    assert [b.name for b in tool_only.content] == ["get_weather"]


def test_thinking_block_and_signature(client):
    message = client.messages.create(**body("think [[fake:words=5]]", max_tokens=2048, thinking=ENABLED))
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking.startswith("Let me think about this.")
    assert thinking.signature == THINKING_SIGNATURE
    assert message.usage.output_tokens == len(thinking.thinking.split()) + 5
    with client.messages.stream(**body("think", max_tokens=2048, thinking=ENABLED)) as stream:
        final = stream.get_final_message()
    assert final.content[0].signature == THINKING_SIGNATURE
    assert final.content[0].thinking == THINKING_TEXT


# --------------------------------------------------------------------------------------------------
# count_tokens and models
# --------------------------------------------------------------------------------------------------


def test_count_tokens_matches_usage(client, fake):
    messages = [
        user("What's the weather?"),
        assistant([TOOL_USE]),
        user([TOOL_RESULT, {"type": "text", "text": "Summarize it."}]),
    ]
    system = "You are a weather bot."
    counted = client.messages.count_tokens(model=SONNET, system=system, tools=[WEATHER_TOOL], messages=messages)
    used = client.messages.create(model=SONNET, max_tokens=100, system=system, tools=[WEATHER_TOOL], messages=messages)
    assert counted.input_tokens == used.usage.input_tokens > 9
    assert post(fake, body(), path="/v1/messages/count_tokens").status_code == 400  # max_tokens not allowed


def test_models(client, fake):
    listed = httpx.get(f"{fake.url}/v1/models", headers=HEADERS).json()
    ids = [m["id"] for m in listed["data"]]
    assert set(ids) == {"claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5"}
    assert listed["has_more"] is False and listed["first_id"] == ids[0] and listed["last_id"] == ids[-1]
    assert all(m["type"] == "model" and m["created_at"].endswith("Z") for m in listed["data"])
    assert [m.id for m in client.models.list()] == ids
    assert client.models.retrieve("claude-haiku-4-5").display_name == "Claude Haiku 4.5"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("gpt-4")
    assert httpx.get(f"{fake.url}/v1/models").status_code == 401


# --------------------------------------------------------------------------------------------------
# Request log
# --------------------------------------------------------------------------------------------------


def test_request_log_records_requests(client, fake):
    marker = uuid.uuid4().hex
    client.messages.create(**body(marker), extra_headers={"anthropic-beta": "tools-2024-04-04"})
    entry = fake.entry_with(marker)
    assert entry["path"] == "/v1/messages"
    assert entry["body"] == body(marker)
    assert entry["headers"]["anthropic-beta"] == "tools-2024-04-04"
    assert entry["headers"]["anthropic-version"]
    assert entry["headers"]["x-api-key"] or entry["headers"]["authorization"]
    assert (entry["stream"], entry["outcome"], entry["status"]) == (False, "completed", 200)

    with client.messages.stream(**body(marker + " streamed")) as stream:
        stream.until_done()
    streamed = fake.entry_with(marker + " streamed")
    assert (streamed["stream"], streamed["outcome"], streamed["status"]) == (True, "completed", 200)
    assert streamed["seq"] > entry["seq"]
    newer = httpx.get(f"{fake.url}/_fake/requests", params={"since": entry["seq"]}).json()
    assert newer and all(e["seq"] > entry["seq"] for e in newer)

    assert httpx.delete(f"{fake.url}/_fake/requests").status_code == 200
    assert fake.log() == []
    assert httpx.get(f"{fake.url}/_fake/health").json() == {"ok": True}


def test_aborted_stream_is_marked(fake):
    marker = uuid.uuid4().hex
    payload = json.dumps(body(f"{marker} [[fake:words=300, chunk_delay_ms=10]]", stream=True)).encode()
    host, port = fake.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"x-api-key: {API_KEY}\r\nanthropic-version: 2023-06-01\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)
        received = b""
        while received.count(b"event: content_block_delta") < 2:
            received += sock.recv(4096)
        assert received.startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 3
    while (entry := fake.entry_with(marker))["outcome"] == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert entry["outcome"] == "aborted"


def test_no_log_mode(fake):
    runner, port = asyncio.run_coroutine_threadsafe(
        start("127.0.0.1", 0, api_key=API_KEY, log_requests=False), fake.loop
    ).result(5)
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{url}/v1/messages", json=body(), headers=HEADERS).status_code == 200
        assert httpx.get(f"{url}/_fake/requests").json() == []
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), fake.loop).result(5)


def test_command_line_prints_listening_line():
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.anthropic", "--host", "127.0.0.1", "--port", "0", "--no-log"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("fake-anthropic listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        assert httpx.get(f"http://127.0.0.1:{port}/_fake/health").json() == {"ok": True}
    finally:
        process.terminate()
        assert process.wait(5) == 0


def test_count_tokens_takes_the_fields_claude_code_counts_with(fake):
    counted = {k: v for k, v in CLAUDE_CODE_BODY.items() if k in ("model", "messages", "system", "tools", "thinking",
                                                                    "output_config", "context_management")}
    response = post(fake, counted, path="/v1/messages/count_tokens")
    assert response.status_code == 200, response.text
    assert post(fake, {**counted, "max_tokens": 5}, path="/v1/messages/count_tokens").status_code == 400


def test_structured_output_answers_json_of_the_schema(client):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    for fmt in ({"output_config": {"format": {"type": "json_schema", "schema": schema}}},
                {"output_format": {"type": "json_schema", "schema": schema}}):
        message = client.messages.create(**body(), extra_body=fmt)
        assert json.loads(message.content[0].text) == {"name": "example", "age": 1}
