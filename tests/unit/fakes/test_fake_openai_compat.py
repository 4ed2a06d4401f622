"""Tests for the fake OpenAI-compatible upstream (fakes.openai_compat).

The fake runs in-process on a free port, on its own event loop in a background thread, and is driven
through the official `openai` SDK (sync and async) plus raw HTTP for byte-level checks and for Jina's
rerank, which the SDK does not cover. Responses are checked against the official OpenAPI schemas when
the spec file is present.
"""

from __future__ import annotations

import array
import asyncio
import base64
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

import httpx
import openai
import pytest

from fakes.openai_compat import start
from tests.support.env import ROOT
from tests.support.openapi import spec_available, validate

API_KEY = "test-key"
MODEL = "gpt-4o-mini"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"precise": {"type": "boolean"}, "offset": {"type": "number"}, "tags": {"type": "array"}},
        },
    },
}
PING_TOOL = {"type": "function", "function": {"name": "ping"}}
CALL = {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


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

    def serve(self, **kwargs: Any) -> tuple[Any, str]:
        """Another instance of the fake on this loop; returns (runner, base URL)."""
        runner, port = asyncio.run_coroutine_threadsafe(start("127.0.0.1", 0, **kwargs), self.loop).result(5)
        return runner, f"http://127.0.0.1:{port}"

    def stop(self, runner: Any) -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), self.loop).result(5)


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
    with openai.OpenAI(api_key=API_KEY, base_url=f"{fake.url}/v1", max_retries=0) as sdk:
        yield sdk


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any = None, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def tool_message(call_id: str, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def body(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [user(text)], **extra}


def post(fake: Fake, payload: Any, path: str = "/v1/chat/completions", headers: dict[str, str] | None = None):
    return httpx.post(f"{fake.url}{path}", json=payload, headers=HEADERS if headers is None else headers)


def check_schema(schema: str, instance: Any) -> None:
    if spec_available():
        validate(schema, instance)


def parse_sse(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
    """Parse an SSE body strictly: every event is one `data: JSON` line. Returns (chunks, ended with [DONE])."""
    text = raw.decode()
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    done = events[-1] == "data: [DONE]"
    if done:
        events.pop()
    chunks = []
    for event in events:
        assert event.startswith("data: ") and "\n" not in event, event
        chunks.append(json.loads(event[len("data: ") :]))
    return chunks, done


def check_grammar(chunks: list[dict[str, Any]], *, include_usage: bool) -> dict[str, Any]:
    """Assert OpenAI's chunk grammar; returns the message rebuilt from the deltas, its finish_reason and usage."""
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        check_schema("CreateChatCompletionStreamResponse", chunk)
    usage = None
    if include_usage:
        *chunks, last = chunks
        assert last["choices"] == []
        usage = last["usage"]
        assert all(c["usage"] is None for c in chunks)
    else:
        assert all("usage" not in c for c in chunks)
    assert all(len(c["choices"]) == 1 and c["choices"][0]["index"] == 0 for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert deltas[0]["role"] == "assistant" and all("role" not in d for d in deltas[1:])
    assert all(f is None for f in finishes[:-1]) and finishes[-1] is not None and deltas[-1] == {}

    content = None
    calls: list[dict[str, Any]] = []
    for delta in deltas[1:-1]:
        if "content" in delta:
            content = (content or "") + delta["content"]
        for call in delta.get("tool_calls", []):
            if "id" in call:
                assert call["index"] == len(calls) and call["type"] == "function"
                assert call["function"]["arguments"] == ""
                calls.append({"id": call["id"], "type": "function", "function": dict(call["function"])})
            else:
                assert call["index"] == len(calls) - 1 and set(call) == {"index", "function"}
                assert set(call["function"]) == {"arguments"} and len(call["function"]["arguments"]) <= 8
                calls[-1]["function"]["arguments"] += call["function"]["arguments"]
    return {"content": content, "tool_calls": calls, "finish_reason": finishes[-1], "usage": usage}


# --------------------------------------------------------------------------------------------------
# Plain replies
# --------------------------------------------------------------------------------------------------


def test_non_stream_reply_and_usage(client):
    raw = client.chat.completions.with_raw_response.create(**body("Hi there, fake!"))
    assert raw.headers["x-request-id"].startswith("req_")
    completion = raw.parse()
    check_schema("CreateChatCompletionResponse", json.loads(raw.content))
    assert completion.id.startswith("chatcmpl-") and completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert choice.message.content == "Hello from the fake OpenAI upstream. You said: Hi there, fake!"
    usage = completion.usage
    assert usage.prompt_tokens == math.ceil(len("Hi there, fake!") / 4) + 3
    assert usage.completion_tokens == len(choice.message.content.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    again = client.chat.completions.create(**body("Hi there, fake!"))
    assert again.choices == completion.choices and again.usage == completion.usage


def test_prompt_tokens_count_every_message_tool_call_and_tool(client):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        user([{"type": "text", "text": "Weather?"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]),
        assistant(tool_calls=[{**CALL, "id": "c1"}]),
        tool_message("c1", "sunny"),
    ]
    completion = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    texts = "Be brief." + "Use tools." + "Weather?" + "get_weather" + '{"city":"Paris"}' + "sunny"
    chars = len(texts) + len(json.dumps(WEATHER_TOOL, separators=(",", ":")))
    assert completion.usage.prompt_tokens == math.ceil(chars / 4) + 3 * len(messages)
    assert completion.choices[0].message.content == "Tool results received: sunny"


def test_long_user_text_is_cut_to_60_chars_without_directives(client):
    said = "word " * 30
    completion = client.chat.completions.create(**body(f"[[fake:delay_ms=1]] {said}"))
    assert completion.choices[0].message.content == (
        "Hello from the fake OpenAI upstream. You said: " + " ".join(said.split())[:60].rstrip()
    )


def test_stream_grammar_on_raw_bytes(fake):
    payload = body(
        "Weather? [[fake:tools=2, text_then_tool]]",
        tools=[WEATHER_TOOL, PING_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    response = post(fake, payload)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"].startswith("req_")
    chunks, done = parse_sse(response.content)
    assert done
    streamed = check_grammar(chunks, include_usage=True)
    assert streamed["content"] == "I'll use the get_weather, ping tool."
    assert [c["function"]["name"] for c in streamed["tool_calls"]] == ["get_weather", "ping"]
    assert json.loads(streamed["tool_calls"][0]["function"]["arguments"]) == {"city": "example", "unit": "celsius"}
    assert streamed["tool_calls"][1]["function"]["arguments"] == "{}"
    assert streamed["finish_reason"] == "tool_calls"

    del payload["stream"], payload["stream_options"]
    plain = post(fake, payload).json()
    message = plain["choices"][0]["message"]
    assert message["content"] == streamed["content"] and message["tool_calls"] == streamed["tool_calls"]
    assert streamed["usage"] == plain["usage"]


def test_stream_without_include_usage_has_no_usage(fake):
    response = post(fake, body("Tell me something nice", stream=True))
    chunks, done = parse_sse(response.content)
    assert done
    streamed = check_grammar(chunks, include_usage=False)
    assert streamed["content"] == "Hello from the fake OpenAI upstream. You said: Tell me something nice"
    assert len(chunks) >= 5  # role, several text deltas, finish


def test_sdk_stream_matches_create(client):
    request = body("Stream me [[fake:words=40]]")
    with client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    plain = client.chat.completions.create(**request)
    assert text == plain.choices[0].message.content and len(text.split()) == 40
    assert chunks[-1].usage == plain.usage and plain.usage.completion_tokens == 40
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_async_sdk(fake):
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=f"{fake.url}/v1", max_retries=0) as sdk:
        completion = await sdk.chat.completions.create(**body("async hello"))
        assert completion.choices[0].message.content.endswith("You said: async hello")
        stream = await sdk.chat.completions.create(**body("async stream"), stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert text.endswith("You said: async stream")
        embedded = await sdk.embeddings.create(model="text-embedding-3-small", input="async")
        assert len(embedded.data[0].embedding) == 8
        with pytest.raises(openai.RateLimitError):
            await sdk.chat.completions.create(**body("[[fake:error=429]]"))


# --------------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------------


def test_parallel_tool_calls_cycle_through_tools(client):
    completion = client.chat.completions.create(**body("go [[fake:tools=3]]", tools=[WEATHER_TOOL, TIME_TOOL]))
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time", "get_weather"]
    assert [c.id for c in calls] == ["call_1", "call_2", "call_3"]
    assert json.loads(calls[0].function.arguments) == {"city": "example", "unit": "celsius"}
    assert json.loads(calls[1].function.arguments) == {"precise": True, "offset": 1.5, "tags": []}
    assert completion.usage.completion_tokens == sum(1 + len(c.function.arguments.split()) for c in calls)


def test_tool_choice_and_parallel_flag_drive_calls(client):
    tools = [WEATHER_TOOL, TIME_TOOL]
    named = {"type": "function", "function": {"name": "get_time"}}
    forced = client.chat.completions.create(**body("hi", tools=tools, tool_choice=named))
    assert [c.function.name for c in forced.choices[0].message.tool_calls] == ["get_time"]
    required = client.chat.completions.create(**body("hi", tools=tools, tool_choice="required"))
    assert required.choices[0].finish_reason == "tool_calls"
    single = client.chat.completions.create(**body("[[fake:tools=3]]", tools=tools, parallel_tool_calls=False))
    assert len(single.choices[0].message.tool_calls) == 1
    suppressed = client.chat.completions.create(**body("[[fake:tool]]", tools=tools, tool_choice="none"))
    assert suppressed.choices[0].finish_reason == "stop" and suppressed.choices[0].message.tool_calls is None
    plain = client.chat.completions.create(**body("hi", tools=tools))
    assert plain.choices[0].finish_reason == "stop"


def test_tool_results_round_trip_and_ids_stay_unique(client):
    tools = [WEATHER_TOOL, TIME_TOOL]
    messages: list[dict[str, Any]] = [user("Weather and time? [[fake:tools=2]]")]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=tools).choices[0].message
    messages.append(first.model_dump(exclude_none=True))
    messages += [tool_message("call_1", "18C, sunny"), tool_message("call_2", "noon [[fake:tool]]")]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=tools).choices[0].message
    assert [c.id for c in second.tool_calls] == ["call_3"]  # directives in trailing tool results apply
    messages += [second.model_dump(exclude_none=True), tool_message("call_3", [{"type": "text", "text": "done"}])]
    third = client.chat.completions.create(model=MODEL, messages=messages, tools=tools).choices[0]
    assert third.message.content == "Tool results received: done" and third.finish_reason == "stop"
    answered = [*messages[:3], tool_message("call_2", "noon")]
    both = client.chat.completions.create(model=MODEL, messages=answered, tools=tools).choices[0]
    assert both.message.content == "Tool results received: 18C, sunny; noon"


def test_sdk_stream_tool_arguments_reassemble(client):
    tool = {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}, "exact": {"type": "boolean"}},
            },
        },
    }
    arguments: dict[int, str] = {}
    fragments = 0
    for chunk in client.chat.completions.create(**body("[[fake:tools=2]]", tools=[tool]), stream=True):
        for call in chunk.choices[0].delta.tool_calls or []:
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
            fragments += 1
    assert fragments > 4
    assert [json.loads(arguments[i]) for i in (0, 1)] == [{"query": "example", "limit": 1, "exact": True}] * 2


# --------------------------------------------------------------------------------------------------
# Directives
# --------------------------------------------------------------------------------------------------


def test_words_max_tokens_and_length(client):
    cut = client.chat.completions.create(**body("[[fake:words=500]]", max_tokens=50))
    assert cut.choices[0].finish_reason == "length"
    assert len(cut.choices[0].message.content.split()) == 50 == cut.usage.completion_tokens
    newer = client.chat.completions.create(**body("[[fake:words=30]]", max_tokens=100, max_completion_tokens=7))
    assert len(newer.choices[0].message.content.split()) == 7
    fits = client.chat.completions.create(**body("[[fake:words=5]]", max_completion_tokens=5))
    assert fits.choices[0].finish_reason == "stop"
    forced = client.chat.completions.create(**body("[[fake:length]]"))
    assert forced.choices[0].finish_reason == "length"
    assert forced.choices[0].message.content.startswith("Hello from the fake OpenAI upstream.")


def test_delays(client, fake):
    started = time.perf_counter()
    client.chat.completions.create(**body("[[fake:delay_ms=150]]"))
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    response = post(fake, body("[[fake:words=6 chunk_delay_ms=30]]", stream=True))
    chunks, _ = parse_sse(response.content)
    assert time.perf_counter() - started >= 0.03 * (len(chunks) - 1)


ERROR_CASES = [
    (400, openai.BadRequestError, "invalid_request_error"),
    (401, openai.AuthenticationError, "invalid_request_error"),
    (403, openai.PermissionDeniedError, "request_forbidden"),
    (404, openai.NotFoundError, "invalid_request_error"),
    (429, openai.RateLimitError, "requests"),
    (500, openai.InternalServerError, "server_error"),
    (502, openai.InternalServerError, "server_error"),
    (503, openai.InternalServerError, "server_error"),
    (529, openai.InternalServerError, "server_error"),
]


@pytest.mark.parametrize(("status", "exception", "error_type"), ERROR_CASES)
def test_error_directives(client, status, exception, error_type):
    with pytest.raises(exception) as caught:
        client.chat.completions.create(**body(f"[[fake:error={status}]]"))
    error = caught.value
    assert error.status_code == status and error.type == error_type
    assert error.response.headers["x-request-id"].startswith("req_")
    check_schema("ErrorResponse", error.response.json())
    if status == 404:
        assert error.code == "model_not_found" and MODEL in error.message
    if status == 429:
        assert error.code == "rate_limit_exceeded"
        assert error.response.headers["retry-after"] == "1"
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_retry_after_and_errors_before_a_stream(client, fake):
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**body("[[fake:error=429, retry_after=7]]"))
    assert caught.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError):  # errors before the stream starts are plain JSON
        client.chat.completions.create(**body("[[fake:error=503]]"), stream=True)
    marker = uuid.uuid4().hex
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**body(f"{marker} [[fake:error=500]]"))
    entry = fake.entry_with(marker)
    assert (entry["outcome"], entry["status"]) == ("error", 500)


def test_midstream_error(client, fake):
    marker = uuid.uuid4().hex
    response = post(fake, body(f"{marker} [[fake:midstream_error]]", stream=True))
    assert response.status_code == 200
    chunks, done = parse_sse(response.content)
    assert not done
    *text_chunks, error = chunks
    texts = [c["choices"][0]["delta"].get("content") for c in text_chunks]
    assert texts == ["", "Hello from the ", "fake OpenAI upstream"]
    assert error["error"]["type"] == "server_error" and set(error["error"]) == {"message", "type", "param", "code"}
    assert fake.entry_with(marker)["outcome"] == "error"
    with pytest.raises(openai.APIError, match="The server had an error"):
        for _ in client.chat.completions.create(**body("[[fake:midstream_error]]"), stream=True):
            pass
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**body("[[fake:midstream_error]]"))


def test_drop_closes_the_connection_without_an_answer(client, fake):
    marker = uuid.uuid4().hex
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(**body(f"{marker} [[fake:drop]]"))
    assert (fake.entry_with(marker)["outcome"], fake.entry_with(marker)["status"]) == ("dropped", None)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(**body("[[fake:drop]]"), stream=True)
    with pytest.raises(httpx.RemoteProtocolError):
        post(fake, {"model": "e", "input": "[[fake:drop]]"}, path="/v1/embeddings")
    assert client.chat.completions.create(**body("still alive")).choices[0].finish_reason == "stop"


def test_unknown_or_misplaced_directive_is_rejected(fake):
    typo = post(fake, body("[[fake:explode]]"))
    assert typo.status_code == 400 and "fake directive" in typo.json()["error"]["message"]
    misplaced = post(fake, {"model": "e", "input": "[[fake:words=3]]"}, path="/v1/embeddings")
    assert misplaced.status_code == 400 and "does not apply" in misplaced.json()["error"]["message"]
    assert post(fake, body("[[fake:error=418]]")).status_code == 400


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def conversation(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), "tools": [WEATHER_TOOL], **extra}


# case -> (body, a fragment of the message, param)
REJECTIONS = {
    "missing model": ({"messages": [user("hi")]}, "you must provide a model parameter", None),
    "model not a string": (body(model=5), "expected a string, but got an integer", "model"),
    "missing messages": ({"model": MODEL}, "Missing required parameter: 'messages'.", "messages"),
    "empty messages": (body(messages=[]), "empty array", "messages"),
    "message not an object": (body(messages=["hi"]), "expected an object", "messages[0]"),
    "unknown role": (
        body(messages=[{"role": "function", "content": "x"}]),
        "Supported values are: 'system', 'developer', 'user', 'assistant', and 'tool'.",
        "messages[0].role",
    ),
    "missing content": (body(messages=[{"role": "user"}]), "Missing required parameter", "messages[0].content"),
    "content not text": (body(messages=[user(5)]), "expected one of a string or array", "messages[0].content"),
    "unknown part": (body(messages=[user([{"type": "video"}])]), "'video'", "messages[0].content[0].type"),
    "text part without text": (body(messages=[user([{"type": "text"}])]), "Missing", "messages[0].content[0].text"),
    "image part on a system message": (
        body(messages=[{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]),
        "Supported values are: 'text'",
        "messages[0].content[0].type",
    ),
    "assistant without content or tool_calls": (
        body(messages=[user("hi"), assistant()]),
        "Missing required parameter",
        "messages[1].content",
    ),
    "tool message without tool_calls before": (
        conversation(user("hi"), tool_message("call_a", "x")),
        "must be a response to a preceeding message with 'tool_calls'",
        "messages.[1].role",
    ),
    "tool message without tool_call_id": (
        conversation(user("hi"), assistant(tool_calls=[CALL]), {"role": "tool", "content": "x"}),
        "Missing required parameter",
        "messages[2].tool_call_id",
    ),
    "tool message with a wrong id": (
        conversation(user("hi"), assistant(tool_calls=[CALL]), tool_message("call_b", "x")),
        "'tool_call_id' of 'call_b' not found",
        "messages.[2].tool_call_id",
    ),
    "tool call unanswered": (
        conversation(user("hi"), assistant(tool_calls=[CALL]), user("never mind")),
        "did not have response messages: call_a",
        "messages.[1].role",
    ),
    "tool call unanswered at the end": (
        conversation(user("hi"), assistant(tool_calls=[CALL])),
        "did not have response messages: call_a",
        "messages.[1].role",
    ),
    "tool call arguments as an object": (
        conversation(
            user("hi"),
            assistant(tool_calls=[{**CALL, "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]),
            tool_message("call_a", "x"),
        ),
        "expected a string, but got an object",
        "messages[1].tool_calls[0].function.arguments",
    ),
    "tool call type": (
        conversation(user("hi"), assistant(tool_calls=[{**CALL, "type": "custom"}]), tool_message("call_a", "x")),
        "'custom'",
        "messages[1].tool_calls[0].type",
    ),
    "n above 1": (body(n=2), "only supports n=1", "n"),
    "max_tokens zero": (body(max_tokens=0), "integer below minimum value", "max_tokens"),
    "max_tokens string": (body(max_tokens="5"), "expected an integer", "max_tokens"),
    "max_tokens boolean": (body(max_tokens=True), "expected an integer, but got a boolean", "max_tokens"),
    "max_completion_tokens negative": (body(max_completion_tokens=-1), "below minimum", "max_completion_tokens"),
    "temperature above 2": (body(temperature=2.5), "Expected a value <= 2, but got 2.5", "temperature"),
    "temperature negative": (body(temperature=-0.1), "decimal below minimum value", "temperature"),
    "temperature string": (body(temperature="hot"), "expected a number", "temperature"),
    "top_p above 1": (body(top_p=1.5), "Expected a value <= 1", "top_p"),
    "stream not a boolean": (body(stream="yes"), "expected a boolean", "stream"),
    "stream_options without stream": (
        body(stream_options={"include_usage": True}),
        "only allowed when",
        "stream_options",
    ),
    "tool type": (body(tools=[{"type": "retrieval"}]), "'retrieval'", "tools[0].type"),
    "tool without function": (body(tools=[{"type": "function"}]), "Missing", "tools[0].function"),
    "tool name": (
        body(tools=[{"type": "function", "function": {"name": "get weather"}}]),
        "does not match pattern",
        "tools[0].function.name",
    ),
    "anthropic-style tool": (
        body(tools=[{"name": "t", "input_schema": {"type": "object"}}]),
        "Missing",
        "tools[0].type",
    ),
    "empty tools": (body(tools=[]), "empty array", "tools"),
    "tool_choice value": (body(tools=[PING_TOOL], tool_choice="any"), "'any'", "tool_choice"),
    "tool_choice required without tools": (body(tool_choice="required"), "only allowed when 'tools'", "tool_choice"),
    "tool_choice unknown function": (
        body(tools=[PING_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}),
        "no function named 'nope'",
        "tool_choice",
    ),
    "parallel_tool_calls without tools": (body(parallel_tool_calls=False), "only allowed when", "parallel_tool_calls"),
    "body not an object": ([user("hi")], "expected a JSON object", None),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_validation_rejections(fake, case):
    payload, message, param = REJECTIONS[case]
    response = post(fake, payload)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert message in error["message"] and error["param"] == param
    assert response.headers["x-request-id"].startswith("req_")


def test_rejections_through_sdk_and_log(client, fake):
    marker = uuid.uuid4().hex
    with pytest.raises(openai.BadRequestError, match="temperature") as caught:
        client.chat.completions.create(**body(marker), temperature=3)
    assert caught.value.code == "decimal_above_max_value" and caught.value.param == "temperature"
    entry = fake.entry_with(marker)
    assert (entry["outcome"], entry["status"]) == ("rejected", 400)
    bad_json = httpx.post(f"{fake.url}/v1/chat/completions", content=b"{nope", headers=HEADERS)
    assert bad_json.status_code == 400 and "could not parse the JSON body" in bad_json.json()["error"]["message"]


def test_missing_models_are_404_everywhere(client, fake):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(**body(model="missing-gpt"))
    assert caught.value.code == "model_not_found" and "`missing-gpt` does not exist" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="missing-embed", input="x")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("missing-model")
    rerank = post(fake, {"model": "missing-rerank", "query": "q", "documents": ["d"]}, path="/v1/rerank")
    assert rerank.status_code == 404 and rerank.json()["error"]["code"] == "model_not_found"


ACCEPTED = {
    "vendor extras": body(top_k=5, repetition_penalty=1.1, chat_template_kwargs={"thinking": False}, seed=1),
    "system, developer and parts": body(
        messages=[
            {"role": "system", "content": "Be brief.", "name": "rules"},
            {"role": "developer", "content": [{"type": "text", "text": "Really brief."}]},
            user(
                [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ]
            ),
        ]
    ),
    "tool loop with list content": conversation(
        user("hi"),
        assistant(tool_calls=[CALL, {**CALL, "id": "call_b"}]),
        tool_message("call_b", [{"type": "text", "text": "rainy"}]),
        tool_message("call_a", "sunny"),
        user("thanks"),
    ),
    "assistant text alongside tool calls": conversation(
        user("hi"), assistant("Checking.", tool_calls=[CALL]), tool_message("call_a", "sunny")
    ),
    "assistant refusal parts and prefill": body(
        messages=[user("hi"), assistant([{"type": "refusal", "refusal": "No."}]), user("ok"), assistant("Sure")]
    ),
    "limits at their bounds": body(n=1, temperature=2, top_p=0, max_tokens=1, max_completion_tokens=4096),
    "stream_options with stream": body(stream=True, stream_options={"include_usage": False}),
    "named tool_choice, no parallel calls": body(
        tools=[PING_TOOL], tool_choice={"type": "function", "function": {"name": "ping"}}, parallel_tool_calls=False
    ),
    "tool_choice none and auto without tools": body(tool_choice="none"),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_valid_requests_accepted(fake, case):
    response = post(fake, ACCEPTED[case])
    assert response.status_code == 200, response.text


def test_auth(fake):
    missing = post(fake, body(), headers={})
    assert missing.status_code == 401 and "didn't provide an API key" in missing.json()["error"]["message"]
    check_schema("ErrorResponse", missing.json())
    with openai.OpenAI(api_key="sk-wrong-key-123", base_url=f"{fake.url}/v1", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.chat.completions.create(**body())
        with pytest.raises(openai.AuthenticationError):
            wrong.embeddings.create(model="e", input="x")
    assert caught.value.code == "invalid_api_key" and "sk-wrong-key-123" not in caught.value.message
    assert httpx.get(f"{fake.url}/v1/models").status_code == 401
    assert post(fake, body(), headers={"Authorization": f"Basic {API_KEY}"}).status_code == 401


def test_expected_key_comes_from_the_environment_or_is_any(fake, monkeypatch):
    monkeypatch.setenv("FAKE_OPENAI_API_KEY", "env-key")
    runner, url = fake.serve()
    try:
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer env-key"}).status_code == 200
        assert httpx.get(f"{url}/v1/models", headers=HEADERS).status_code == 401
    finally:
        fake.stop(runner)
    monkeypatch.delenv("FAKE_OPENAI_API_KEY")
    runner, url = fake.serve()
    try:
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer anything"}).status_code == 200
    finally:
        fake.stop(runner)


# --------------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------------


def test_embeddings_float_vectors_are_deterministic_unit_norm(client, fake):
    raw = post(fake, {"model": "text-embedding-3-small", "input": ["hello world", "goodbye"]}, path="/v1/embeddings")
    payload = raw.json()
    check_schema("CreateEmbeddingResponse", payload)
    assert raw.headers["x-request-id"].startswith("req_")
    assert payload["object"] == "list" and payload["model"] == "text-embedding-3-small"
    assert [d["index"] for d in payload["data"]] == [0, 1] and all(d["object"] == "embedding" for d in payload["data"])
    first, second = (d["embedding"] for d in payload["data"])
    assert len(first) == len(second) == 8 and first != second
    assert math.isclose(math.fsum(v * v for v in first), 1.0, rel_tol=1e-5)
    tokens = math.ceil(len("hello world") / 4) + math.ceil(len("goodbye") / 4)
    assert payload["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    sdk = client.embeddings.create(model="text-embedding-3-small", input="hello world", encoding_format="float")
    assert sdk.data[0].embedding == first


def test_embeddings_base64_decodes_to_the_same_floats(client, fake):
    floats = post(fake, {"model": "m", "input": "same text", "encoding_format": "float"}, path="/v1/embeddings")
    encoded = post(fake, {"model": "m", "input": "same text", "encoding_format": "base64"}, path="/v1/embeddings")
    check_schema("CreateEmbeddingResponse", floats.json())
    vector = array.array("f", base64.b64decode(encoded.json()["data"][0]["embedding"]))
    if sys.byteorder == "big":
        vector.byteswap()  # the wire format is little-endian
    assert vector.tolist() == floats.json()["data"][0]["embedding"]
    # The SDK asks for base64 by default and decodes it itself.
    assert client.embeddings.create(model="m", input="same text").data[0].embedding == vector.tolist()


def test_embedding_dimensions_and_token_arrays(client):
    long = client.embeddings.create(model="m", input="matryoshka", dimensions=16, encoding_format="float")
    short = client.embeddings.create(model="m", input="matryoshka", dimensions=4, encoding_format="float")
    full, cut = long.data[0].embedding, short.data[0].embedding
    assert len(full) == 16 and len(cut) == 4
    norm = math.sqrt(math.fsum(v * v for v in full[:4]))
    assert all(math.isclose(a, b / norm, rel_tol=1e-5) for a, b in zip(cut, full[:4]))

    single = client.embeddings.create(model="m", input=[1, 2, 3], encoding_format="float")
    assert len(single.data) == 1 and single.usage.prompt_tokens == 3
    batch = client.embeddings.create(model="m", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert [d.embedding for d in batch.data][0] == single.data[0].embedding
    assert batch.usage.prompt_tokens == batch.usage.total_tokens == 5


def test_embeddings_accept_jina_extras_and_directives(client, fake):
    jina = post(
        fake,
        {
            "model": "jina-embeddings-v3",
            "input": ["a"],
            "task": "retrieval.query",
            "late_chunking": True,
            "truncate": True,
        },
        path="/v1/embeddings",
    )
    assert jina.status_code == 200
    with pytest.raises(openai.InternalServerError) as caught:
        client.embeddings.create(model="m", input=["fine", "[[fake:error=503]]"])
    assert caught.value.status_code == 503
    with pytest.raises(openai.RateLimitError) as caught:
        client.embeddings.create(model="m", input="[[fake:error=429 retry_after=3]]")
    assert caught.value.response.headers["retry-after"] == "3"


EMBEDDING_REJECTIONS = {
    "missing input": ({"model": "m"}, "Missing required parameter: 'input'."),
    "empty string": ({"model": "m", "input": ""}, "'$.input' is invalid"),
    "empty list": ({"model": "m", "input": []}, "'$.input' is invalid"),
    "mixed list": ({"model": "m", "input": ["a", [1]]}, "'$.input' is invalid"),
    "negative token": ({"model": "m", "input": [1, -2]}, "'$.input' is invalid"),
    "too many inputs": ({"model": "m", "input": ["a"] * 2049}, "array too long"),
    "encoding_format": ({"model": "m", "input": "a", "encoding_format": "int8"}, "'float' and 'base64'"),
    "dimensions zero": ({"model": "m", "input": "a", "dimensions": 0}, "below minimum"),
    "dimensions too big": ({"model": "m", "input": "a", "dimensions": 5000}, "above maximum"),
    "late_chunking type": ({"model": "m", "input": "a", "late_chunking": "yes"}, "expected a boolean"),
    "missing model": ({"input": "a"}, "you must provide a model parameter"),
}


@pytest.mark.parametrize("case", list(EMBEDDING_REJECTIONS))
def test_embedding_validation(fake, case):
    payload, message = EMBEDDING_REJECTIONS[case]
    response = post(fake, payload, path="/v1/embeddings")
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


# --------------------------------------------------------------------------------------------------
# Rerank
# --------------------------------------------------------------------------------------------------

DOCUMENTS = ["green apple", "a red apple pie", {"text": "fast red car"}, "nothing relevant"]


def rerank(fake: Fake, **extra: Any) -> httpx.Response:
    payload = {"model": "jina-reranker-v2-base-multilingual", "query": "Red apple", "documents": DOCUMENTS, **extra}
    return post(fake, payload, path="/v1/rerank")


def test_rerank_orders_by_word_overlap(fake):
    response = rerank(fake)
    assert response.status_code == 200 and response.headers["x-request-id"].startswith("req_")
    payload = response.json()
    assert payload["model"] == "jina-reranker-v2-base-multilingual" and payload["object"] == "list"
    results = payload["results"]
    assert [r["index"] for r in results] == [1, 0, 2, 3]
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert scores[0] == pytest.approx(2 / 4) and scores[-1] == 0
    assert results[2]["document"] == {"text": "fast red car"}
    tokens = math.ceil(len("Red apple") / 4) + sum(
        math.ceil(len(d if isinstance(d, str) else d["text"]) / 4) for d in DOCUMENTS
    )
    assert payload["usage"] == {"total_tokens": tokens, "prompt_tokens": tokens}
    assert rerank(fake).json() == payload


def test_rerank_top_n_and_return_documents(fake):
    top = rerank(fake, top_n=2).json()["results"]
    assert [r["index"] for r in top] == [1, 0]
    bare = rerank(fake, top_n=10, return_documents=False).json()["results"]
    assert len(bare) == 4 and all(set(r) == {"index", "relevance_score"} for r in bare)


def test_rerank_errors(fake):
    assert rerank(fake, query=None).json()["error"]["param"] == "query"
    assert rerank(fake, documents=[]).json()["error"]["code"] == "empty_array"
    assert rerank(fake, documents=[{"title": "x"}]).status_code == 400
    assert rerank(fake, top_n=0).status_code == 400
    failing = rerank(fake, query="apple [[fake:error=502]]")
    assert failing.status_code == 502 and failing.json()["error"]["type"] == "server_error"
    anonymous = post(fake, {"model": "r", "query": "q", "documents": ["d"]}, path="/v1/rerank", headers={})
    assert anonymous.status_code == 401


# --------------------------------------------------------------------------------------------------
# Models, request log, process
# --------------------------------------------------------------------------------------------------


def test_models(client, fake):
    listed = httpx.get(f"{fake.url}/v1/models", headers=HEADERS).json()
    check_schema("ListModelsResponse", listed)
    ids = [m["id"] for m in listed["data"]]
    assert "gpt-4o-mini" in ids and "jina-reranker-v2-base-multilingual" in ids
    assert [m.id for m in client.models.list()] == ids
    assert client.models.retrieve("deepseek-chat").owned_by == "deepseek"
    anything = client.models.retrieve("meta-llama/Llama-3.1-8B-Instruct")
    assert anything.id == "meta-llama/Llama-3.1-8B-Instruct" and anything.object == "model"


def test_request_log_records_requests(client, fake):
    marker = uuid.uuid4().hex
    client.chat.completions.create(**body(marker))
    entry = fake.entry_with(marker)
    assert entry["path"] == "/v1/chat/completions" and entry["body"] == body(marker)
    assert entry["headers"] == {"authorization": True}
    assert (entry["stream"], entry["outcome"], entry["status"]) == (False, "completed", 200)

    for _ in client.chat.completions.create(**body(marker + " streamed"), stream=True):
        pass
    streamed = fake.entry_with(marker + " streamed")
    assert (streamed["stream"], streamed["outcome"], streamed["status"]) == (True, "completed", 200)
    assert streamed["seq"] > entry["seq"]
    newer = httpx.get(f"{fake.url}/_fake/requests", params={"since": entry["seq"]}).json()
    assert newer and all(e["seq"] > entry["seq"] for e in newer)

    assert httpx.delete(f"{fake.url}/_fake/requests").status_code == 200
    assert fake.log() == []
    assert httpx.get(f"{fake.url}/_fake/health").json() == {"ok": True}
    unknown = httpx.post(f"{fake.url}/v1/completions", headers=HEADERS, json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "Invalid URL (POST /v1/completions)"


def test_aborted_stream_is_marked(fake):
    marker = uuid.uuid4().hex
    payload = json.dumps(body(f"{marker} [[fake:words=300, chunk_delay_ms=10]]", stream=True)).encode()
    host, port = fake.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)
        received = b""
        while received.count(b"data: ") < 3:
            received += sock.recv(4096)
        assert received.startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 3
    while (entry := fake.entry_with(marker))["outcome"] == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert entry["outcome"] == "aborted"


def test_no_log_mode(fake):
    runner, url = fake.serve(api_key=API_KEY, log_requests=False)
    try:
        assert httpx.post(f"{url}/v1/chat/completions", json=body(), headers=HEADERS).status_code == 200
        assert httpx.get(f"{url}/_fake/requests").json() == []
    finally:
        fake.stop(runner)


def test_command_line_prints_listening_line():
    command = [sys.executable, "-m", "fakes.openai_compat", "--host", "127.0.0.1", "--port", "0", "--no-log"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            line = process.stdout.readline().strip()
            assert line.startswith("fake-openai listening on http://127.0.0.1:")
            port = int(line.rsplit(":", 1)[1])
            assert httpx.get(f"http://127.0.0.1:{port}/_fake/health").json() == {"ok": True}
        finally:
            process.terminate()
            assert process.wait(5) == 0


def test_session_fixture_serves_the_sdk(fake_openai_upstream):
    with openai.OpenAI(api_key="any", base_url=f"{fake_openai_upstream}/v1", max_retries=0) as sdk:
        completion = sdk.chat.completions.create(**body("via the fixture"))
    assert completion.choices[0].message.content.endswith("You said: via the fixture")
