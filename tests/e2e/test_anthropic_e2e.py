"""The native Anthropic Messages API end to end: the official `anthropic` SDK -> the gateway -> the fake upstream.

The SDK is pointed at `/anthropic` (its paths then start with /v1) or at our root, and authenticates
with `x-api-key` as it always does. Prompts carry a unique marker to find their upstream request.
"""

from __future__ import annotations

import anthropic
import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from billing.models import UsageEvent
from tests.support.anthropic_events import parse_sse
from tests.support.claude_code import CLAUDE_CODE_BETAS, CLAUDE_CODE_BODY
from tests.support.e2e import marker, upstream_request, usage_row

pytestmark = pytest.mark.e2e

SONNET = "claude-sonnet-4-6"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def client(gateway, persona):
    return anthropic.Anthropic(base_url=f"{gateway}/anthropic", api_key=persona.key, max_retries=0)


@pytest.fixture
def aclient(gateway, persona):
    return anthropic.AsyncAnthropic(base_url=f"{gateway}/anthropic", api_key=persona.key, max_retries=0)


def post(gateway: str, key: str | None, body: dict, *, path: str = "/anthropic/v1/messages", **headers) -> httpx.Response:
    sent = {"anthropic-version": "2023-06-01", **({"x-api-key": key} if key else {}), **headers}
    return httpx.post(f"{gateway}{path}", json=body, headers=sent)


def check_stream(raw: bytes) -> list[dict]:
    """Anthropic's grammar on the gateway's raw bytes; returns the events."""
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    open_index, next_index = None, 0
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
        elif name in ("content_block_delta", "content_block_stop"):
            assert data["index"] == open_index
            if name == "content_block_stop":
                open_index = None
        else:
            assert name == "ping"
    assert open_index is None
    assert events[-2][1]["delta"]["stop_reason"] and "output_tokens" in events[-2][1]["usage"]
    return [data for _, data in events]


def test_sdk_message_is_passed_through_and_metered(client, gateway, fake_upstream, django_db_blocker):
    tag = marker()
    raw = client.messages.with_raw_response.create(
        model=SONNET, max_tokens=200, system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": f"Hi {tag} [[fake:cache]]",
                                                 "cache_control": {"type": "ephemeral"}}]}],
        metadata={"user_id": "u-42"}, service_tier="auto")
    message = raw.parse()
    assert message.type == "message" and message.model == SONNET and message.id.startswith("msg_")
    assert message.content[0].text.startswith("Hello from the fake upstream")
    assert message.usage.cache_creation_input_tokens == 100 and message.usage.cache_read_input_tokens == 200
    request_id = raw.headers["request-id"]
    assert request_id.startswith("req_") and raw.headers["x-request-id"] == request_id
    # Lossless: the upstream got the blocks, cache breakpoints and metadata exactly as sent.
    sent = upstream_request(fake_upstream, tag)["body"]
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["metadata"] == {"user_id": "u-42"} and sent["service_tier"] == "auto" and sent["max_tokens"] == 200
    row = usage_row(request_id, django_db_blocker)
    assert row.endpoint == "messages" and row.status == UsageEvent.Status.OK and not row.stream
    assert (row.input_tokens, row.output_tokens) == (message.usage.input_tokens, message.usage.output_tokens)
    assert (row.cache_creation_input_tokens, row.cache_read_input_tokens) == (100, 200)
    assert row.cost_nano > 0


def test_sdk_at_our_root_reaches_messages_and_models(gateway, persona):
    client = anthropic.Anthropic(base_url=gateway, api_key=persona.key, max_retries=0)
    message = client.messages.create(model=SONNET, max_tokens=50, messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].text.startswith("Hello from the fake upstream")
    models = client.models.list()
    assert SONNET in [model.id for model in models.data] and models.data[0].type == "model"
    assert client.models.retrieve(SONNET).display_name == SONNET
    assert client.messages.count_tokens(model=SONNET, messages=[{"role": "user", "content": "Hi"}]).input_tokens > 0


async def test_async_sdk_streams_text_with_exact_grammar(aclient, django_db_blocker):
    async with aclient.messages.stream(model=SONNET, max_tokens=300,
                                       messages=[{"role": "user", "content": "[[fake:words=40]] go"}]) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    assert len("".join(texts).split()) == 40 and final.stop_reason == "end_turn"
    assert final.model == SONNET and final.usage.output_tokens == 40
    row = await sync_to_async(_usage_row_on_a_thread)(request_id, django_db_blocker)
    assert row.stream and row.status == UsageEvent.Status.OK and row.output_tokens == 40


def _usage_row_on_a_thread(request_id: str, django_db_blocker) -> UsageEvent:
    try:
        return usage_row(request_id, django_db_blocker)
    finally:
        connection.close()  # the thread's own connection would keep the test database from being dropped


def test_raw_stream_bytes_follow_anthropic_grammar(gateway, persona):
    body = {"model": SONNET, "max_tokens": 2048, "stream": True, "tools": [WEATHER],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "[[fake:tool, text_then_tool]] weather?"}]}
    response = post(gateway, persona.key, body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = check_stream(response.content)
    assert events[0]["message"]["model"] == SONNET
    kinds = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert kinds == ["thinking", "text", "tool_use"]


def test_tool_use_round_trip_with_thinking_and_signatures(client, fake_upstream):
    tag = marker()
    first = client.messages.create(
        model=SONNET, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}, tools=[WEATHER],
        messages=[{"role": "user", "content": f"{tag} [[fake:tool]]"}])
    assert first.stop_reason == "tool_use"
    thinking, call = first.content[0], first.content[-1]
    assert thinking.type == "thinking" and thinking.signature and call.type == "tool_use"
    second = client.messages.create(
        model=SONNET, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}, tools=[WEATHER],
        messages=[{"role": "user", "content": f"{tag} [[fake:tool]]"},
                  {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
    assert "Tool results received: sunny" in second.content[-1].text
    sent = upstream_request(fake_upstream, "sunny")["body"]
    assert sent["messages"][1]["content"][0] == {"type": "thinking", "thinking": thinking.thinking,
                                                  "signature": thinking.signature}


def test_parallel_tool_calls_stream_through_the_sdk(client):
    weather, time_tool = WEATHER, {**WEATHER, "name": "get_time"}
    with client.messages.stream(model=SONNET, max_tokens=500, tools=[weather, time_tool],
                                messages=[{"role": "user", "content": "[[fake:tools=2]] both"}]) as stream:
        final = stream.get_final_message()
    calls = [block for block in final.content if block.type == "tool_use"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert all(call.input == {"city": "example"} for call in calls)


def test_documents_and_citations_pass_through(client, fake_upstream):
    tag = marker()
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
                "title": "Sky", "citations": {"enabled": True}}
    client.messages.create(model=SONNET, max_tokens=100, tool_choice={"type": "auto"}, tools=[WEATHER],
                           messages=[{"role": "user", "content": [document, {"type": "text", "text": tag}]}])
    sent = upstream_request(fake_upstream, tag)["body"]
    assert sent["messages"][0]["content"][0] == document and sent["tool_choice"] == {"type": "auto"}


def test_errors_come_in_anthropic_shape_and_status(gateway, persona, client):
    def check(response: httpx.Response, status: int, kind: str) -> dict:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == kind and body["error"]["message"]
        assert body["request_id"] == response.headers["request-id"]
        return body

    hello = {"model": SONNET, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    check(post(gateway, None, hello), 401, "authentication_error")
    assert "x-api-key" in post(gateway, None, hello).json()["error"]["message"]
    check(post(gateway, "sk_cdx_aaaaaaaaaaaa_" + "A" * 32, hello), 401, "authentication_error")
    check(post(gateway, persona.key, {**hello, "model": "nope"}), 404, "not_found_error")
    check(post(gateway, persona.key, {k: v for k, v in hello.items() if k != "max_tokens"}), 400, "invalid_request_error")
    check(post(gateway, persona.key, {**hello, "frequency_penalty": 1}), 400, "invalid_request_error")
    check(post(gateway, persona.key, {**hello, "temperature": 1.5}), 400, "invalid_request_error")
    upstream_400 = check(post(gateway, persona.key, {**hello, "messages": [{"role": "user", "content": ""}]}), 400,
                         "invalid_request_error")
    assert "empty" in upstream_400["error"]["message"]  # the upstream's own explanation, passed on
    overloaded = {**hello, "messages": [{"role": "user", "content": "[[fake:error=529]]"}]}
    check(post(gateway, persona.key, overloaded), 529, "overloaded_error")
    check(post(gateway, persona.key, {**overloaded, "stream": True}), 529, "overloaded_error")
    check(post(gateway, persona.key, hello, path="/anthropic/v1/nothing"), 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    # Root listing with the Anthropic SDK's headers: errors in Anthropic's shape there too.
    check(httpx.get(f"{gateway}/v1/models", headers={"anthropic-version": "2023-06-01"}), 401, "authentication_error")


def test_a_failure_mid_stream_is_an_error_event(gateway, persona):
    body = {"model": SONNET, "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "[[fake:midstream_error]]"}]}
    response = post(gateway, persona.key, body)
    assert response.status_code == 200
    events = parse_sse(response.content)
    assert events[0][0] == "message_start" and events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    assert "message_stop" not in [name for name, _ in events]


def test_claude_code_request_with_its_betas_reaches_the_upstream_as_sent(gateway, persona, fake_upstream):
    tag = marker()
    cc_body = {**CLAUDE_CODE_BODY, "model": SONNET,
               "messages": [{"role": "user", "content": [{"type": "text", "text": tag}]}]}
    response = post(gateway, persona.key, cc_body, path="/anthropic/v1/messages?beta=true",
                    **{"anthropic-beta": CLAUDE_CODE_BETAS})
    assert response.status_code == 200, response.text
    check_stream(response.content)
    sent = upstream_request(fake_upstream, tag)
    assert sent["headers"]["anthropic-beta"] == CLAUDE_CODE_BETAS
    # Every field, the ones the gateway does not know included, reaches the upstream untouched.
    assert {k: v for k, v in sent["body"].items() if k != "model"} == {k: v for k, v in cc_body.items() if k != "model"}


def test_blocked_beta_is_refused_in_anthropic_shape(gateway_db_url, fake_upstream, persona):
    from tests.support.e2e import start_gateway, stop_process

    url, process = start_gateway(gateway_db_url, fake_upstream,
                                 ANTHROPIC_BLOCKED_BETAS="context-1m-2025-08-07,some-beta-2026-01-01")
    try:
        hello = {"model": SONNET, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
        refused = post(url, persona.key, hello, **{"anthropic-beta": "interleaved-thinking-2025-05-14, context-1m-2025-08-07"})
        assert refused.status_code == 400
        error = refused.json()
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        assert "'context-1m-2025-08-07'" in error["error"]["message"]
        counted = post(url, persona.key, {"model": SONNET, "messages": hello["messages"]},
                       path="/anthropic/v1/messages/count_tokens", **{"anthropic-beta": "some-beta-2026-01-01"})
        assert counted.status_code == 400 and "some-beta-2026-01-01" in counted.json()["error"]["message"]
        assert post(url, persona.key, hello, **{"anthropic-beta": "claude-code-20250219"}).status_code == 200
    finally:
        stop_process(process)


def test_bearer_auth_and_models_listing(gateway, persona):
    headers = {"Authorization": f"Bearer {persona.key}", "anthropic-version": "2023-06-01"}
    listed = httpx.get(f"{gateway}/anthropic/v1/models", headers=headers).json()
    assert listed["has_more"] is False and listed["first_id"] == listed["data"][0]["id"]
    assert all(model["type"] == "model" and model["created_at"].endswith("Z") for model in listed["data"])
    missing = httpx.get(f"{gateway}/anthropic/v1/models/nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_budget_and_allow_list_apply_to_native_requests(gateway, django_db_blocker):
    from tests.support.e2e import make_persona

    with django_db_blocker.unblock():
        broke = make_persona(f"broke-{marker()}", credit_nano=0)
        limited = make_persona(f"lim-{marker()}", allowed_models=["claude-haiku-4-5"])
    hello = {"model": SONNET, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    refused = post(gateway, broke.key, hello)
    assert refused.status_code == 429 and refused.headers["x-should-retry"] == "false"
    assert refused.json()["error"]["type"] == "billing_error"
    forbidden = post(gateway, limited.key, hello)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["type"] == "permission_error"
    count = post(gateway, limited.key, {"model": SONNET, "messages": hello["messages"]},
                 path="/anthropic/v1/messages/count_tokens")
    assert count.status_code == 403
