"""The Gemini API end to end: the official `google-genai` SDK -> the gateway -> the fake Anthropic upstream."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from google import genai
from google.genai import errors, types

from billing.models import UsageEvent
from tests.support.e2e import marker, upstream_request, usage_row

pytestmark = pytest.mark.e2e

SONNET = "claude-sonnet-4-6"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
WEATHER = types.FunctionDeclaration(
    name="get_weather", description="Weather for a city",
    parameters=types.Schema(type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)},
                            required=["city"]))
NO_AUTO_CALLS = types.AutomaticFunctionCallingConfig(disable=True)


@pytest.fixture
def client(gateway, persona):
    return genai.Client(api_key=persona.key, http_options=types.HttpOptions(base_url=f"{gateway}/gemini"))


def test_generate_content_is_translated_and_metered(client, fake_upstream, django_db_blocker):
    tag = marker()
    response = client.models.generate_content(
        model=SONNET,
        contents=[types.Content(role="user", parts=[types.Part.from_text(text=f"Describe {tag}"),
                                                    types.Part.from_bytes(data=PNG, mime_type="image/png")])],
        config=types.GenerateContentConfig(system_instruction="Be brief.", temperature=1.5, top_p=0.9,
                                           max_output_tokens=300, stop_sequences=["END", " "]))
    assert response.text.startswith("Hello from the fake upstream")
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    sent = upstream_request(fake_upstream, tag)["body"]
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 300 and sent["temperature"] == 1
    assert sent["stop_sequences"] == ["END"]
    image = sent["messages"][0]["content"][1]
    assert image["type"] == "image" and image["source"]["media_type"] == "image/png"
    row = usage_row(response.response_id, django_db_blocker)
    assert row.endpoint == "gemini.generateContent" and row.status == UsageEvent.Status.OK
    assert row.output_tokens == usage.candidates_token_count


def test_streaming_with_sse(client, django_db_blocker):
    chunks = list(client.models.generate_content_stream(model=SONNET, contents="[[fake:words=30]] go"))
    text = "".join(chunk.text or "" for chunk in chunks)
    assert len(text.split()) == 30
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 30
    assert len({chunk.response_id for chunk in chunks}) == 1
    row = usage_row(chunks[-1].response_id, django_db_blocker)
    assert row.stream and row.endpoint == "gemini.streamGenerateContent" and row.output_tokens == 30


def test_multi_turn_chat_as_the_sdk_sends_it(client, fake_upstream):
    tag = marker()
    chat = client.chats.create(model=SONNET)
    first = chat.send_message(f"first {tag}")
    second = chat.send_message(f"second {tag}")
    assert first.text and second.text.startswith("Hello from the fake upstream. You said: second")
    sent = upstream_request(fake_upstream, f"second {tag}")["body"]
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"][0]["text"] == first.text


def test_function_calls_round_trip_with_ids(client, fake_upstream):
    tag = marker()
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])],
                                         automatic_function_calling=NO_AUTO_CALLS)
    asked = types.Content(role="user", parts=[types.Part.from_text(text=f"{tag} [[fake:tools=2]]")])
    first = client.models.generate_content(model=SONNET, contents=[asked], config=config)
    calls = first.function_calls
    assert [call.name for call in calls] == ["get_weather", "get_weather"] and calls[0].args == {"city": "example"}
    assert calls[0].id and calls[0].id != calls[1].id
    # The client answers by name only, as google-genai code usually does: paired in order.
    answers = types.Content(role="user", parts=[
        types.Part.from_function_response(name="get_weather", response={"result": "sunny"}),
        types.Part.from_function_response(name="get_weather", response={"result": "rain"})])
    second = client.models.generate_content(model=SONNET, contents=[asked, first.candidates[0].content, answers],
                                            config=config)
    assert "sunny" in second.text and "rain" in second.text
    sent = upstream_request(fake_upstream, "rain")["body"]
    uses = [b for b in sent["messages"][1]["content"] if b["type"] == "tool_use"]
    results = [b for b in sent["messages"][2]["content"] if b["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == [u["id"] for u in uses]


def test_streamed_function_call_arrives_whole(client):
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])],
                                         automatic_function_calling=NO_AUTO_CALLS)
    chunks = list(client.models.generate_content_stream(model=SONNET, contents="[[fake:tool]] weather", config=config))
    calls = [call for chunk in chunks for call in chunk.function_calls or ()]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].args == {"city": "example"}


def test_json_array_stream_without_alt_sse(gateway, persona):
    url = f"{gateway}/gemini/v1beta/models/{SONNET}:streamGenerateContent"
    response = httpx.post(url, headers={"x-goog-api-key": persona.key},
                          json={"contents": [{"role": "user", "parts": [{"text": "[[fake:words=12]] go"}]}]})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    chunks = json.loads(response.content)
    assert isinstance(chunks, list) and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    text = "".join(part.get("text", "") for chunk in chunks for candidate in chunk["candidates"]
                   for part in (candidate.get("content") or {}).get("parts") or ())
    assert len(text.split()) == 12


def test_raw_sse_bytes_are_gemini_chunks(gateway, persona):
    url = f"{gateway}/gemini/v1beta/models/{SONNET}:streamGenerateContent?alt=sse&key={persona.key}"
    response = httpx.post(url, json={"contents": [{"parts": [{"text": "[[fake:words=8]] go"}]}]})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    frames = [frame for frame in response.content.replace(b"\r\n", b"\n").split(b"\n\n") if frame]
    chunks = [json.loads(frame.removeprefix(b"data: ")) for frame in frames]
    assert all(frame.startswith(b"data: ") for frame in frames)
    for chunk in chunks:
        types.GenerateContentResponse.model_validate(chunk)
    assert [c["candidates"][0].get("finishReason") for c in chunks].count("STOP") == 1
    assert "finishReason" in chunks[-1]["candidates"][0] and "usageMetadata" in chunks[-1]


def test_count_tokens_and_models(client):
    counted = client.models.count_tokens(model=SONNET, contents="How many tokens is this?")
    assert counted.total_tokens > 0
    names = [model.name for model in client.models.list()]
    assert f"models/{SONNET}" in names
    assert client.models.get(model=SONNET).name == f"models/{SONNET}"


def test_errors_come_in_gemini_shape(gateway, persona, client):
    url = f"{gateway}/gemini/v1beta/models/{SONNET}:generateContent"
    hello = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}

    def check(response: httpx.Response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == status and error["status"] == code and error["message"]

    check(httpx.post(url, json=hello), 401, "UNAUTHENTICATED")
    check(httpx.post(url, json=hello, headers={"x-goog-api-key": "sk_cdx_aaaaaaaaaaaa_" + "A" * 32}), 401,
          "UNAUTHENTICATED")
    check(httpx.post(url.replace(SONNET, "nope"), json=hello, headers={"x-goog-api-key": persona.key}), 404,
          "NOT_FOUND")
    check(httpx.post(url, json={"contents": "nope"}, headers={"x-goog-api-key": persona.key}), 400, "INVALID_ARGUMENT")
    check(httpx.post(url.replace(":generateContent", ":embed"), json=hello, headers={"x-goog-api-key": persona.key}),
          404, "NOT_FOUND")
    overloaded = {"contents": [{"role": "user", "parts": [{"text": "[[fake:error=529]]"}]}]}
    check(httpx.post(url, json=overloaded, headers={"x-goog-api-key": persona.key}), 503, "UNAVAILABLE")
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model="nope", contents="Hi")
    assert refused.value.code == 404
