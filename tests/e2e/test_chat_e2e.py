"""OpenAI Chat Completions end to end: the official `openai` SDK -> the gateway process -> the fake upstream.

Fake-upstream directives (`[[fake:...]]`, see fakes/anthropic.py) in the prompt choose the
upstream's behaviour. Each test tags its prompt with a unique marker to find its upstream request in
the fake's request log.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.support.e2e import chat, marker, upstream_request, usage_row
from tests.support.openapi import spec_available, validate

pytestmark = pytest.mark.e2e  # no test transaction: the server process must see committed rows


@pytest.fixture
def alice(personas):
    return personas["alice"]


@pytest.fixture
def client(gateway, alice):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=alice.key, max_retries=0)


@pytest.fixture
def aclient(gateway, alice):
    return openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=alice.key, max_retries=0)


def validate_if_spec(schema: str, instance) -> None:
    if spec_available():
        validate(schema, instance)


def test_chat_completion_is_answered_metered_and_spec_valid(gateway, alice, client, django_db_blocker):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith("Hello from the fake upstream")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "claude-sonnet-4-6"
    validate_if_spec("CreateChatCompletionResponse", raw.http_response.json())

    request_id = raw.headers["x-request-id"]
    assert completion.id == f"chatcmpl-{request_id}"
    row = usage_row(request_id, django_db_blocker)
    assert (row.status, row.stream, row.http_status) == ("ok", False, 200)
    assert row.tenant_id == alice.tenant.pk and row.api_key_id == alice.api_key.pk
    assert (row.requested_model, row.model, row.upstream_model) == ("gpt-4o", "claude-sonnet-4-6", "claude-sonnet-4-6")
    assert row.input_tokens == completion.usage.prompt_tokens
    assert row.output_tokens == completion.usage.completion_tokens > 0


def test_streaming_with_include_usage_ends_with_usage_chunk_and_is_metered(client, django_db_blocker):
    with client.chat.completions.with_streaming_response.create(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Hello [[fake:words=40]]"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.id == chunks[0].id for chunk in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 40
    assert all(chunk.usage is None for chunk in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 40
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    row = usage_row(request_id, django_db_blocker)
    assert (row.status, row.stream, row.output_tokens) == ("ok", True, 40)
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms


def test_raw_stream_chunks_validate_against_the_spec_and_end_with_done(gateway, alice):
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {alice.key}"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    import json

    for line in lines[:-1]:
        assert line.startswith("data: ")
        validate_if_spec("CreateChatCompletionStreamResponse", json.loads(line[6:]))


async def test_async_client_streams_and_completes(aclient):
    completion = await aclient.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Hi"}])
    assert completion.model == "claude-opus-4-6"
    stream = await aclient.chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "Hi [[fake:words=12]]"}], stream=True
    )
    text = ""
    async for chunk in stream:
        text += chunk.choices[0].delta.content or ""
    assert len(text.split()) == 12


async def test_concurrent_async_requests_each_get_their_own_answer(aclient):
    async def ask(n: int) -> str:
        reply = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"number {n}"}]
        )
        return reply.choices[0].message.content

    answers = await asyncio.gather(*(ask(n) for n in range(20)))
    assert [a.endswith(f"number {n}") for n, a in enumerate(answers)] == [True] * 20


def test_tool_call_round_trip_with_parallel_calls(client, fake_upstream):
    tag = marker()
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "get_time"}},
    ]
    messages = [{"role": "user", "content": f"{tag} weather and time? [[fake:tools=2]]"}]
    first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert calls[0].function.arguments == '{"city":"example"}' and calls[1].function.arguments == "{}"

    messages += [choice.message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": c.id, "content": f"result of {c.function.name}"} for c in calls]
    second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    assert second.choices[0].message.content == "Tool results received: result of get_weather; result of get_time"

    sent = upstream_request(fake_upstream, tag)["body"]
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent["messages"][2]["content"]] == ["tool_result", "tool_result"]
    assert sent["tools"][1]["input_schema"] == {"type": "object", "properties": {}}


def test_streamed_tool_call_arguments_reassemble(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}}}}]
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "find it"}], tools=tools,
        tool_choice="required", stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": call.id, "name": call.function.name, "arguments": ""})
            entry["arguments"] += call.function.arguments or ""
    assert finish == "tool_calls"
    assert calls[0]["name"] == "lookup" and calls[0]["id"]
    assert calls[0]["arguments"] == '{"query":"example","limit":1}'


def test_reasoning_effort_returns_reasoning_content(gateway, alice, fake_upstream):
    tag = marker()
    response = chat(gateway, alice.key, model="claude-sonnet-4-6", reasoning_effort="low", temperature=0.5,
                    messages=[{"role": "user", "content": f"{tag} think"}])
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert message["reasoning_content"] and message["reasoning_signature"]
    sent = upstream_request(fake_upstream, tag)["body"]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "temperature" not in sent and sent["max_tokens"] > 2048


def test_images_are_forwarded_by_reference_and_inline(client, fake_upstream):
    tag = marker()
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [
        {"type": "text", "text": f"{tag} what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,aGVsbG8="}},
    ]}])
    blocks = upstream_request(fake_upstream, tag)["body"]["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "url", "url": "https://example.com/cat.png"}
    assert blocks[2]["source"] == {"type": "base64", "media_type": "image/jpeg", "data": "aGVsbG8="}


def test_upstream_rate_limit_reaches_client_as_429_with_retry_after(client, django_db_blocker):
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "[[fake:error=429 retry_after=7]]"}])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["code"] == "rate_limit_exceeded"
    validate_if_spec("ErrorResponse", caught.value.response.json())
    row = usage_row(caught.value.response.headers["x-request-id"], django_db_blocker)
    assert (row.status, row.http_status) == ("error", 429)


def test_upstream_overload_529_becomes_503(client):
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "[[fake:error=529]]"}])
    assert caught.value.status_code == 503
    assert caught.value.body["type"] == "overloaded_error"


def test_upstream_overload_before_first_token_of_a_stream_is_an_http_error(client):
    with pytest.raises(openai.InternalServerError) as caught:
        list(client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "[[fake:error=529]]"}], stream=True))
    assert caught.value.status_code == 503


def test_midstream_upstream_error_raises_in_the_client_and_is_recorded(client, django_db_blocker):
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "[[fake:midstream_error]]"}], stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        received = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in response.parse():
                received.append(chunk)
    assert "overloaded" in str(caught.value).lower()
    assert all(c.choices[0].finish_reason is None for c in received)  # never a fake normal finish
    row = usage_row(request_id, django_db_blocker)
    assert row.status == "error" and row.input_tokens > 0


def test_client_hang_up_mid_stream_leaves_partial_row_and_closes_upstream(gateway, alice, fake_upstream, django_db_blocker):
    tag = marker()
    body = {"model": "gpt-4o", "stream": True,
            "messages": [{"role": "user", "content": f"{tag} [[fake:words=3000 chunk_delay_ms=5]]"}]}
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {alice.key}"}) as response:
        request_id = response.headers["x-request-id"]
        for n, _ in enumerate(response.iter_lines()):
            if n > 20:
                break  # leaving the block closes the connection mid-stream
    row = usage_row(request_id, django_db_blocker)
    assert row.status == "partial"
    assert row.input_tokens > 0 and 0 < row.output_tokens < 3000
    assert upstream_request(fake_upstream, tag)["outcome"] == "aborted"


def test_unknown_model_is_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["code"] == "model_not_found"
    assert caught.value.body["param"] == "model"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
     {"Authorization": "Bearer sk_cdx_aaaaaaaaaaaa_" + "A" * 32}],
    ids=["missing", "malformed", "wrong-scheme", "unknown"],
)
def test_missing_malformed_or_unknown_key_is_401_in_openai_shape(gateway, headers):
    response = httpx.post(f"{gateway}/v1/chat/completions", headers=headers,
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    validate_if_spec("ErrorResponse", response.json())


def test_revoked_key_is_refused_within_one_second(gateway, django_db_blocker):
    from accounts.services import api_key_revoke
    from tests.support.e2e import make_persona

    with django_db_blocker.unblock():
        carol = make_persona("initech")
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=carol.key, max_retries=0)
    client.models.list()
    with django_db_blocker.unblock():
        api_key_revoke(api_key=carol.api_key)
    revoked_at = time.monotonic()
    while True:
        try:
            client.models.list()
        except openai.AuthenticationError:
            break
        assert time.monotonic() - revoked_at < 1.5, "revoked key still accepted"
        time.sleep(0.05)
    assert time.monotonic() - revoked_at <= 1.2


def test_suspended_tenant_is_403(gateway, django_db_blocker):
    from accounts.models import Tenant
    from accounts.services import tenant_set_status
    from tests.support.e2e import make_persona

    with django_db_blocker.unblock():
        dave = make_persona("umbrella")
        tenant_set_status(tenant=dave.tenant, status=Tenant.Status.SUSPENDED)
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=dave.key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])


@pytest.mark.parametrize(
    "content, status, needle",
    [
        (b"{not json", 400, "parse the JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"model": "gpt-4o", "messages": "hi"}', 400, "messages"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "temperature"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "n": 2}', 400, "n"),
        (b"{" + b" " * (1024 * 1024 + 10) + b"}", 413, "too large"),
    ],
    ids=["not-json", "not-object", "messages-type", "temperature-type", "n", "too-large"],
)
def test_bad_request_bodies_get_clear_openai_errors(gateway, alice, content, status, needle):
    response = httpx.post(f"{gateway}/v1/chat/completions", content=content,
                          headers={"Authorization": f"Bearer {alice.key}", "Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert needle.lower() in (error["message"] + str(error["param"])).lower()
    validate_if_spec("ErrorResponse", response.json())


def test_models_list_and_retrieve_in_openai_shape(gateway, client):
    raw = client.models.with_raw_response.list()
    validate_if_spec("ListModelsResponse", raw.http_response.json())
    ids = {m.id for m in raw.parse().data}
    assert {"claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5", "gpt-4", "gpt-4o", "gpt-4-turbo",
            "gpt-3.5-turbo", "gpt-4o-mini"} <= ids
    model = client.models.retrieve("gpt-4o-mini")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o-mini", "model", "anthropic")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_openai_prefix_serves_the_same_api(gateway, alice):
    client = openai.OpenAI(base_url=f"{gateway}/openai/v1", api_key=alice.key, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content


def test_unknown_api_route_is_404_json(gateway, alice):
    response = httpx.get(f"{gateway}/v1/nothing-here", headers={"Authorization": f"Bearer {alice.key}"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


def test_health_needs_no_key(gateway):
    response = httpx.get(f"{gateway}/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_thinking_with_tools_round_trips_the_signed_reasoning(gateway, alice, fake_upstream):
    tag = marker()
    messages = [{"role": "user", "content": f"{tag} weather? [[fake:tool]]"}]
    first = chat(gateway, alice.key, model="gpt-4o", reasoning_effort="low", tools=[WEATHER_TOOL], messages=messages)
    assistant = first.json()["choices"][0]["message"]
    assert assistant["tool_calls"] and assistant["reasoning_signature"]

    messages += [assistant, {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": "sunny"}]
    second = chat(gateway, alice.key, model="gpt-4o", reasoning_effort="low", tools=[WEATHER_TOOL], messages=messages)
    assert second.status_code == 200, second.text
    sent = upstream_request(fake_upstream, tag)["body"]
    assert sent["thinking"]["type"] == "enabled"
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "tool_use"]


def test_thinking_is_switched_off_for_a_tool_turn_without_its_reasoning(gateway, alice, fake_upstream):
    tag = marker()
    messages = [
        {"role": "user", "content": f"{tag} weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "functions.get_weather:0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "rain"},
    ]
    response = chat(gateway, alice.key, model="gpt-4o", reasoning_effort="high", tools=[WEATHER_TOOL], messages=messages)
    assert response.status_code == 200, response.text
    sent = upstream_request(fake_upstream, tag)["body"]
    assert "thinking" not in sent
    safe = sent["messages"][1]["content"][0]["id"]
    assert safe == sent["messages"][2]["content"][0]["tool_use_id"] and safe.startswith("functions_get_weather_0_")


def test_json_schema_response_format_returns_the_json_as_content(gateway, alice, fake_upstream):
    tag = marker()
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    response = chat(gateway, alice.key, model="gpt-4o", messages=[{"role": "user", "content": f"{tag} answer"}],
                    response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}})
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert choice["message"]["content"] == '{"answer":"example"}'
    sent = upstream_request(fake_upstream, tag)["body"]
    assert sent["tool_choice"] == {"type": "tool", "name": "reply"}


def test_prefill_is_rejected_by_a_model_that_does_not_support_it(gateway, alice):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure, "}]
    refused = chat(gateway, alice.key, model="claude-opus-4-6", messages=messages)
    assert refused.status_code == 400 and "prefill" in refused.json()["error"]["message"]
    accepted = chat(gateway, alice.key, model="claude-haiku-4-5", messages=messages)
    assert accepted.status_code == 200, accepted.text  # trailing whitespace stripped before forwarding


def test_stop_sequences_and_capped_temperature_reach_the_upstream(gateway, alice, fake_upstream):
    tag = marker()
    response = chat(gateway, alice.key, model="gpt-4o", temperature=1.7, stop=["END", "\n"], seed=7,
                    messages=[{"role": "developer", "content": "Be terse."},
                              {"role": "user", "content": f"{tag} go [[fake:stop_sequence]]"}])
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    sent = upstream_request(fake_upstream, tag)["body"]
    assert (sent["temperature"], sent["stop_sequences"], sent["system"]) == (1, ["END"], "Be terse.")
    assert "seed" not in sent


def test_max_tokens_cut_is_finish_reason_length(client):
    reply = client.chat.completions.create(model="gpt-4o", max_completion_tokens=5,
                                           messages=[{"role": "user", "content": "[[fake:words=50]]"}])
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5


def test_retrieved_model_validates_against_the_spec(gateway, alice):
    response = httpx.get(f"{gateway}/v1/models/gpt-4o", headers={"Authorization": f"Bearer {alice.key}"})
    validate_if_spec("Model", response.json())


def test_cache_tokens_are_metered_separately_and_counted_in_prompt_tokens(client, django_db_blocker):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "[[fake:cache_write=100 cache_read=200]]"}])
    usage = raw.parse().usage
    row = usage_row(raw.headers["x-request-id"], django_db_blocker)
    assert (row.cache_creation_input_tokens, row.cache_read_input_tokens) == (100, 200)
    assert usage.prompt_tokens == row.input_tokens + 300
    assert usage.prompt_tokens_details.cached_tokens == 200


def test_errors_before_the_upstream_still_carry_a_request_id(gateway):
    response = httpx.get(f"{gateway}/v1/models")
    assert response.status_code == 401 and response.headers["x-request-id"].startswith("req_")
