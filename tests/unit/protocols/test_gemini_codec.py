"""The Gemini API codec: request translation, response and stream rendering, error bodies.

Pure unit tests (no Django, no network). Every decoded request must pass the fake upstream's strict
Anthropic validator, every response and streamed chunk must validate as google-genai's
`GenerateContentResponse`, and the last section drives the real google-genai client through an httpx mock
transport: its requests go through the codec into the fake upstream's reply logic and back.
"""

from __future__ import annotations

import base64
import json
import re

import httpx
import orjson
import pytest
from google import genai
from google.genai import types

from fakes import anthropic as fake
from gateway.core import ANTHROPIC_REQUEST_FIELDS, GatewayError, ResponseContext, Usage, apply_model_limits, invalid
from gateway.protocols.gemini import StreamEncoder, decode_request, encode_response, error_body
from gateway.protocols._common.tools import tool_id as _tool_id
from gateway.protocols.openai_chat import JSON_OBJECT_INSTRUCTION, JSON_SCHEMA_INSTRUCTION
from tests.support.anthropic_events import anthropic_message as message

MODEL = "claude-sonnet-4-6"
REQUEST_ID = "req_0123456789abcdef01234567"
SAFE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\xfb\xff").decode()  # holds '+' or '/' in base64
PDF = base64.b64encode(b"%PDF-1.4 \xfb\xff").decode()
SIGNATURE = "EqQBCkgIAxABGAIiQPx+/abcd=="  # standard base64 with '+' and '/', like Anthropic's
WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
}
TIME = {"name": "get_time"}


# --- helpers ---------------------------------------------------------------------------------------


def upstream_accepts(params: dict) -> None:
    """The translated request, with max_tokens filled in, must pass the fake's strict validator."""
    params = dict(params)
    apply_model_limits(params, default_max_tokens=1024, max_output_tokens=64000)
    assert set(params) <= ANTHROPIC_REQUEST_FIELDS
    fake.parse_request({"model": MODEL, **params})


def decode(body: dict, **route):
    ireq = decode_request(body, request_id=REQUEST_ID, model=MODEL, **route)
    upstream_accepts(ireq.params)
    return ireq


def params(contents=None, **fields) -> dict:
    return decode({"contents": contents or [user("Hi")], **fields}).params


def rejected(body: dict, param: str | None = None) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        decode_request(body, request_id=REQUEST_ID, model=MODEL)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    if param is not None:
        assert caught.value.param == param
    return caught.value


def user(*parts, role="user"):
    return {"role": role, "parts": [{"text": p} if isinstance(p, str) else p for p in parts]}


def model(*parts):
    return user(*parts, role="model")


def call(name="get_weather", args=None, id=None):
    fc = {"name": name, "args": {"city": "Paris"} if args is None else args}
    if id is not None:
        fc["id"] = id
    return {"functionCall": fc}


def response(name="get_weather", result=None, id=None):
    fr = {"name": name, "response": {"output": "sunny"} if result is None else result}
    if id is not None:
        fr["id"] = id
    return {"functionResponse": fr}


def config(**fields):
    return {"generationConfig": fields}


def ctx(**options) -> ResponseContext:
    return ResponseContext(request_id=REQUEST_ID, created=1700000000, model=MODEL, options=options)


def text(value):
    return {"type": "text", "text": value}


def tool_use(call_id="toolu_1", name="get_weather", input=None):
    return {"type": "tool_use", "id": call_id, "name": name, "input": {"city": "Paris"} if input is None else input}


def thinking(value="Let me think.", signature=SIGNATURE):
    return {"type": "thinking", "thinking": value, "signature": signature}


def sdk(payload: dict) -> types.GenerateContentResponse:
    return types.GenerateContentResponse.model_validate(payload)


def sdk_content(payload: dict) -> dict:
    """The model content as google-genai sends it back: camelCase keys, bytes in URL-safe base64."""
    content = sdk(payload).candidates[0].content
    return content.model_dump(mode="json", by_alias=True, exclude_none=True)


def events_of(msg: dict, piece: int = 3) -> list[dict]:
    """The Anthropic stream events of a message, texts and arguments cut into `piece`-character deltas."""

    def cut(value: str) -> list[str]:
        return [value[k : k + piece] for k in range(0, len(value), piece)]

    events = [{"type": "message_start", "message": {**msg, "content": [], "stop_reason": None}}, {"type": "ping"}]
    for index, block in enumerate(msg["content"]):
        kind = block["type"]
        if kind == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in cut(block["text"])]
        elif kind == "tool_use":
            start = {**block, "input": {}}
            arguments = orjson.dumps(block["input"]).decode()
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in cut(arguments)]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in cut(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            start, deltas = block, []
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"]},
                   "usage": {"output_tokens": msg["usage"]["output_tokens"]}})
    events.append({"type": "message_stop"})
    return events


def streamed(msg: dict, *, sse: bool = True, **options) -> bytes:
    encoder = StreamEncoder(ctx(sse=sse, **options))
    out = b"".join(encoder.feed(event) for event in events_of(msg))
    usage = Usage()
    usage.update(msg["usage"])
    return out + encoder.finish(usage)


def sse_chunks(data: bytes) -> list[dict]:
    assert data.endswith(b"\r\n\r\n")
    events = data.split(b"\r\n\r\n")[:-1]
    assert all(event.startswith(b"data: ") for event in events)
    return [json.loads(event[6:]) for event in events]


def chunks_of(msg: dict, **options) -> list[dict]:
    chunks = sse_chunks(streamed(msg, **options))
    for chunk in chunks:
        sdk(chunk)
    return chunks


def parts(payload: dict) -> list[dict]:
    return payload["candidates"][0]["content"]["parts"]


# --- request: contents -----------------------------------------------------------------------------


def test_text_request_becomes_an_anthropic_message_with_route_options():
    ireq = decode({"contents": [user("Hello")]}, stream=True, sse=False)
    assert ireq.model == MODEL and ireq.stream is True
    assert ireq.params == {"messages": [{"role": "user", "content": [text("Hello")]}]}
    assert ireq.options == {"store": False, "sse": False}
    assert decode({"contents": [user("Hello")]}).options == {"store": False, "sse": True}


def test_missing_role_is_user_and_function_role_is_user():
    result = params([{"parts": [{"text": "Hi"}]}, model(call()), user(response(), role="function")])
    assert [m["role"] for m in result["messages"]] == ["user", "assistant", "user"]


def test_snake_case_fields_are_accepted():
    body = {
        "contents": [{"role": "user",
                      "parts": [{"text": "Hi"}, {"inline_data": {"mime_type": "image/png", "data": PNG}}]},
                     {"role": "model", "parts": [{"function_call": {"name": "get_weather", "args": {}}}]},
                     {"role": "user", "parts": [{"function_response": {"name": "get_weather", "response": {}}}]}],
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "generation_config": {"max_output_tokens": 50, "top_k": 5, "stop_sequences": ["END"],
                              "thinking_config": {"thinking_budget": 0}},
        "tools": [{"function_declarations": [{"name": "get_weather", "parameters_json_schema": {"type": "object"}}]}],
        "tool_config": {"function_calling_config": {"mode": "NONE"}},
    }
    result = decode(body).params
    assert result["system"] == "Be brief."
    assert result["max_tokens"] == 50 and result["top_k"] == 5 and result["stop_sequences"] == ["END"]
    assert result["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}}]
    assert result["tool_choice"] == {"type": "none"}
    assert result["messages"][0]["content"][1]["source"]["media_type"] == "image/png"


def test_consecutive_contents_of_one_role_merge():
    result = params([user("a"), user("b"), model("c"), model("d"), user("e")])
    assert result["messages"] == [
        {"role": "user", "content": [text("a"), text("b")]},
        {"role": "assistant", "content": [text("cd")]},
        {"role": "user", "content": [text("e")]},
    ]


def test_streamed_model_history_joins_its_text_chunks_including_whitespace_only_ones():
    history = [user("Hi"), model("Hello"), model("\n\n"), model("world"), model(""), user("Thanks")]
    assert params(history)["messages"][1] == {"role": "assistant", "content": [text("Hello\n\nworld")]}


def test_empty_and_whitespace_only_texts_are_dropped():
    result = params([user("", "Hi", " \n"), {"role": "model", "parts": []}, model(" "), user("there")])
    assert result["messages"] == [{"role": "user", "content": [text("Hi"), text("there")]}]


def test_contents_without_any_content_are_rejected():
    rejected({"contents": [user(""), model(" ")]}, "contents")
    rejected({"contents": []}, "contents")
    rejected({}, "contents")
    rejected({"contents": {"parts": []}}, "contents")


def test_trailing_model_turn_is_a_prefill_without_trailing_whitespace():
    result = params([user("Hi"), model("The answer is ")])
    assert result["messages"][-1] == {"role": "assistant", "content": [text("The answer is")]}


def test_inline_images_and_pdfs_become_base64_blocks():
    result = params([user(
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"inlineData": {"mimeType": "IMAGE/JPG", "data": PNG}},
        {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
        "What is this?",
    )])
    image, jpeg, pdf, question = result["messages"][0]["content"]
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert jpeg["source"]["media_type"] == "image/jpeg"
    assert pdf == {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}
    assert question == text("What is this?")


def test_url_safe_base64_from_the_sdk_is_turned_back_into_standard_base64():
    url_safe = base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode()
    assert "-" in url_safe or "_" in url_safe
    block = params([user({"inlineData": {"mimeType": "image/png", "data": url_safe}})])["messages"][0]["content"][0]
    assert block["source"]["data"] == base64.b64encode(b"\xfb\xff\xfe").decode()


def test_file_data_https_urls_are_passed_on_for_upstream_to_fetch():
    result = params([user(
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}},
        {"file_data": {"mime_type": "application/pdf", "file_uri": "https://example.com/doc.pdf"}},
        "Compare",
    )])
    image, pdf, _ = result["messages"][0]["content"]
    assert image == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}}
    assert pdf == {"type": "document", "source": {"type": "url", "url": "https://example.com/doc.pdf"}}


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"inlineData": {"mimeType": "audio/wav", "data": PNG}}, "contents[0].parts[0].inlineData.mimeType"),
        ({"inlineData": {"data": PNG}}, "contents[0].parts[0].inlineData.mimeType"),
        ({"inlineData": {"mimeType": "image/png"}}, "contents[0].parts[0].inlineData.data"),
        ({"inlineData": "x"}, "contents[0].parts[0].inlineData"),
        ({"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/cat.png"}},
         "contents[0].parts[0].fileData.fileUri"),
        ({"fileData": {"mimeType": "image/png", "fileUri": "http://example.com/cat.png"}},
         "contents[0].parts[0].fileData.fileUri"),
        ({"fileData": {"mimeType": "image/png",
                       "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
         "contents[0].parts[0].fileData.fileUri"),
        ({"fileData": {"fileUri": "https://example.com/cat.png"}}, "contents[0].parts[0].fileData.mimeType"),
        ({"fileData": {"mimeType": "video/mp4", "fileUri": "https://example.com/a.mp4"}},
         "contents[0].parts[0].fileData.mimeType"),
        ({"executableCode": {"language": "PYTHON", "code": "1"}}, "contents[0].parts[0].executableCode"),
        ({"codeExecutionResult": {"outcome": "OUTCOME_OK"}}, "contents[0].parts[0].codeExecutionResult"),
        ({}, "contents[0].parts[0]"),
        ({"text": 5}, "contents[0].parts[0].text"),
        ({"functionCall": {"name": "f"}}, "contents[0].parts[0].functionCall"),
        ("Hi", "contents[0].parts[0]"),
    ],
)
def test_bad_user_parts_are_rejected_naming_the_field(part, param):
    rejected({"contents": [{"role": "user", "parts": [part]}]}, param)


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"inlineData": {"mimeType": "image/png", "data": PNG}}, "contents[1].parts[0]"),
        (response(), "contents[1].parts[0].functionResponse"),
        ({"functionCall": {"args": {}}}, "contents[1].parts[0].functionCall.name"),
        ({"functionCall": {"name": "f", "args": [1]}}, "contents[1].parts[0].functionCall.args"),
        ({"text": "x", "thought": "yes"}, "contents[1].parts[0].thought"),
        ({"text": "x", "thoughtSignature": 5}, "contents[1].parts[0].thoughtSignature"),
        ({"executableCode": {"code": "1"}}, "contents[1].parts[0].executableCode"),
    ],
)
def test_bad_model_parts_are_rejected_naming_the_field(part, param):
    rejected({"contents": [user("Hi"), {"role": "model", "parts": [part]}]}, param)


def test_bad_roles_and_contents_are_rejected():
    rejected({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role")
    rejected({"contents": [{"role": ["user"], "parts": [{"text": "x"}]}]}, "contents[0].role")
    rejected({"contents": ["Hi"]}, "contents[0]")
    rejected({"contents": [{"parts": "Hi"}]}, "contents[0].parts")
    rejected([], None)


# --- request: function calls and their ids -----------------------------------------------------------


def test_calls_without_ids_get_positional_ids_and_results_pair_by_name():
    result = params([user("Weather and time?"), model(call(), call("get_time", {})),
                     user(response("get_time", {"output": "noon"}), response())])
    assert result["messages"][1]["content"] == [
        tool_use("call_1_0"), tool_use("call_1_1", "get_time", {}),
    ]
    assert result["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1_1", "content": '{"output":"noon"}'},
        {"type": "tool_result", "tool_use_id": "call_1_0", "content": '{"output":"sunny"}'},
    ]


def test_parallel_calls_to_one_function_pair_in_order():
    result = params([user("Paris and Rome?"), model(call(args={"city": "Paris"}), call(args={"city": "Rome"})),
                     user(response(result={"output": "sunny"}), response(result={"output": "rain"}))])
    results = result["messages"][2]["content"]
    assert [(r["tool_use_id"], r["content"]) for r in results] == [
        ("call_1_0", '{"output":"sunny"}'), ("call_1_1", '{"output":"rain"}')]


def test_ids_pair_results_in_any_order_and_are_sanitised_on_both_sides():
    result = params([user("Hi"), model(call(id="functions.get:0"), call(id="functions.get:1")),
                     user(response(id="functions.get:1", result={"output": 1}),
                          response(id="functions.get:0", result={"output": 0}))])
    first, second = _tool_id("functions.get:0"), _tool_id("functions.get:1")
    assert [b["id"] for b in result["messages"][1]["content"]] == [first, second]
    assert [(b["tool_use_id"], b["content"]) for b in result["messages"][2]["content"]] == [
        (second, '{"output":1}'), (first, '{"output":0}')]


def test_results_with_ids_pair_first_and_the_others_by_name():
    result = params([user("Hi"), model(call(id="x", args={"city": "A"}), call(id="y", args={"city": "B"})),
                     user(response(result={"output": "for y"}), response(id="x", result={"output": "for x"}))])
    assert [(b["tool_use_id"], b["content"]) for b in result["messages"][2]["content"]] == [
        ("y", '{"output":"for y"}'), ("x", '{"output":"for x"}')]


def test_ids_pair_as_sent_even_when_they_sanitise_alike():
    result = params([user("Hi"), model(call(id="a.b", args={"city": "A"}), call(id="a_b", args={"city": "B"})),
                     user(response(id="a_b", result={"output": "B"}), response(id="a.b", result={"output": "A"}))])
    calls = {b["input"]["city"]: b["id"] for b in result["messages"][1]["content"]}
    assert calls == {"A": _tool_id("a.b"), "B": "a_b"}
    assert [(b["tool_use_id"], b["content"]) for b in result["messages"][2]["content"]] == [
        ("a_b", '{"output":"B"}'), (_tool_id("a.b"), '{"output":"A"}')]


def test_a_result_without_id_answers_a_call_with_one_by_name():
    result = params([user("Hi"), model(call(id="abc")), user(response())])
    assert result["messages"][2]["content"][0]["tool_use_id"] == "abc"


def test_a_result_with_an_invented_id_answers_a_call_without_one_by_name():
    result = params([user("Hi"), model(call()), user(response(id="xyz"))])
    assert result["messages"][2]["content"][0]["tool_use_id"] == "call_1_0"


def test_reused_ids_are_made_unique_across_the_conversation():
    result = params([user("Hi"), model(call(id="c1")), user(response(id="c1")),
                     model(call(id="c1")), user(response(id="c1"))])
    assert result["messages"][1]["content"][0]["id"] == "c1"
    assert result["messages"][3]["content"][0]["id"] == "c1_"
    assert result["messages"][4]["content"][0]["tool_use_id"] == "c1_"


def test_calls_and_results_split_over_several_contents_still_pair():
    result = params([user("Hi"), model("Checking."), model(call()), model(call("get_time", {})),
                     user(response("get_time", {})), user(response(), "Also, thanks")])
    assert [m["role"] for m in result["messages"]] == ["user", "assistant", "user"]
    kinds = [b["type"] for b in result["messages"][2]["content"]]
    assert kinds == ["tool_result", "tool_result", "text"]


def test_results_come_first_in_their_turn():
    result = params([user("Hi"), model(call()), user("Here you go", response())])
    assert [b["type"] for b in result["messages"][2]["content"]] == ["tool_result", "text"]


def test_a_result_with_error_and_no_output_is_an_error_result():
    result = params([user("Hi"), model(call()), user(response(result={"error": "city not found"}))])
    assert result["messages"][2]["content"][0]["is_error"] is True


def test_a_result_with_media_parts_keeps_them():
    fr = {"functionResponse": {"name": "get_weather", "response": {"output": "see map"},
                               "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]}}
    block = params([user("Hi"), model(call()), user(fr)])["messages"][2]["content"][0]
    assert block["content"] == [text('{"output":"see map"}'),
                                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]


@pytest.mark.parametrize(
    ("contents", "param"),
    [
        ([user("Hi"), model(call()), user(response("get_time"))], "contents[2].parts[0].functionResponse"),
        ([user("Hi"), model(call(id="a")), user(response(id="b"))], "contents[2].parts[0].functionResponse"),
        ([user(response())], "contents[0].parts[0].functionResponse"),
        ([user("Hi"), model(call()), user(response(), response())], "contents[2].parts[1].functionResponse"),
        ([user("Hi"), model(call(), call()), user(response())], "contents[1].parts[1].functionCall"),
        ([user("Hi"), model(call()), user("What?"), model("Ok")], "contents[1].parts[0].functionCall"),
        ([user("Hi"), model(call()), user({"functionResponse": {"name": "get_weather"}})],
         "contents[2].parts[0].functionResponse.response"),
        ([user("Hi"), model(call()), user({"functionResponse": {"response": {}}})],
         "contents[2].parts[0].functionResponse.name"),
    ],
)
def test_unpaired_calls_and_results_are_rejected(contents, param):
    rejected({"contents": contents}, param)


# --- request: thinking and thought signatures ----------------------------------------------------------


def thinking_config(**fields):
    return config(thinkingConfig=fields)


@pytest.mark.parametrize(
    ("fields", "expected", "include"),
    [
        ({"thinkingBudget": 0}, None, False),
        ({"thinkingBudget": 0, "includeThoughts": True}, None, True),
        ({"thinkingBudget": -1}, 8192, False),
        ({"thinkingBudget": 500}, 1024, False),
        ({"thinkingBudget": 5000, "includeThoughts": True}, 5000, True),
        ({"includeThoughts": True}, 8192, True),
        ({"includeThoughts": False}, None, False),
        ({"thinkingLevel": "HIGH"}, 16384, False),
        ({"thinkingLevel": "low"}, 2048, False),
        ({}, None, False),
    ],
)
def test_thinking_config_maps_to_a_budget(fields, expected, include):
    ireq = decode({"contents": [user("Hi")], **thinking_config(**fields)})
    if expected is None:
        assert "thinking" not in ireq.params
    else:
        assert ireq.params["thinking"] == {"type": "enabled", "budget_tokens": expected}
    assert bool(ireq.options.get("include_thoughts")) is include


def test_no_thinking_config_means_no_thinking():
    assert "thinking" not in params()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"thinkingBudget": -2}, "generationConfig.thinkingConfig.thinkingBudget"),
        ({"thinkingBudget": "a lot"}, "generationConfig.thinkingConfig.thinkingBudget"),
        ({"thinkingLevel": "EXTREME"}, "generationConfig.thinkingConfig.thinkingLevel"),
        ({"thinkingLevel": "HIGH", "thinkingBudget": 2000}, "generationConfig.thinkingConfig.thinkingLevel"),
        ({"includeThoughts": "yes"}, "generationConfig.thinkingConfig.includeThoughts"),
    ],
)
def test_bad_thinking_config_is_rejected(fields, param):
    rejected({"contents": [user("Hi")], **thinking_config(**fields)}, param)


def test_sampling_is_dropped_with_thinking():
    result = params(generationConfig={"temperature": 0.3, "topP": 0.5, "topK": 3,
                                      "thinkingConfig": {"thinkingBudget": 2048}})
    assert "temperature" not in result and "top_p" not in result and "top_k" not in result


def test_forcing_a_function_with_thinking_is_rejected():
    body = {"contents": [user("Hi")], "tools": [{"functionDeclarations": [WEATHER]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}, **thinking_config(thinkingBudget=2048)}
    rejected(body, "toolConfig.functionCallingConfig.mode")


def test_thinking_comes_back_from_our_signature_and_keeps_thinking_on_across_tool_turns():
    answer = encode_response(message([thinking(), tool_use()], "tool_use"), ctx())
    contents = [user("Weather?"), sdk_content(answer), user(response(id="toolu_1"))]
    result = params(contents, **thinking_config(thinkingBudget=2048))
    assert result["messages"][1]["content"] == [thinking(), tool_use()]
    assert result["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_a_tool_turn_without_its_thinking_switches_thinking_off():
    contents = [user("Weather?"), model(call()), user(response())]
    assert "thinking" not in params(contents, **thinking_config(thinkingBudget=2048))


def test_thought_parts_without_our_signature_are_dropped():
    contents = [user("Hi"),
                model({"text": "pondering", "thought": True},
                      {"text": "hm", "thought": True, "thoughtSignature": "R2VtaW5p"},
                      {"text": "Hello", "thoughtSignature": "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I="},
                      {"thoughtSignature": "not base64!"}),
                user("Bye")]
    assert params(contents)["messages"][1]["content"] == [text("Hello")]


def test_redacted_thinking_survives_the_round_trip():
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT"}
    answer = encode_response(message([redacted, thinking(), tool_use()], "tool_use"), ctx())
    contents = [user("Hi"), sdk_content(answer), user(response())]
    assert params(contents)["messages"][1]["content"] == [redacted, thinking(), tool_use()]


def test_thought_parts_in_user_turns_are_ignored():
    assert params([user({"text": "secret", "thought": True}, "Hi")])["messages"][0]["content"] == [text("Hi")]


# --- request: system and generation config --------------------------------------------------------------


def test_system_instruction_as_content_or_string():
    content = {"role": "user", "parts": [{"text": "Be brief."}, {"text": ""}, {"text": "Be kind."}]}
    assert params(systemInstruction=content)["system"] == "Be brief.\nBe kind."
    assert params(systemInstruction="Be brief.")["system"] == "Be brief."
    assert "system" not in params(systemInstruction={"parts": []})


def test_system_instruction_with_non_text_parts_is_rejected():
    body = {"contents": [user("Hi")], "systemInstruction": {"parts": [{"inlineData": {"mimeType": "image/png"}}]}}
    rejected(body, "systemInstruction.parts[0]")


def test_generation_config_maps_to_sampling_and_limits():
    result = params(generationConfig={"temperature": 1.7, "topP": 0.9, "topK": 40.0, "maxOutputTokens": 300,
                                      "stopSequences": ["END", " ", "\n"], "candidateCount": 1,
                                      "presencePenalty": 0.5, "frequencyPenalty": 0.1, "seed": 7,
                                      "responseLogprobs": False, "responseModalities": ["TEXT"],
                                      "mediaResolution": "MEDIA_RESOLUTION_LOW"})
    assert result["temperature"] == 1 and result["top_p"] == 0.9 and result["top_k"] == 40
    assert isinstance(result["top_k"], int)
    assert result["max_tokens"] == 300
    assert result["stop_sequences"] == ["END"]


def test_unsupported_but_harmless_fields_are_dropped():
    result = params(safetySettings=[{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
                    labels={"team": "a"}, someFutureField={"x": 1})
    assert set(result) == {"messages"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "generationConfig.temperature"),
        ({"temperature": "hot"}, "generationConfig.temperature"),
        ({"topP": 1.5}, "generationConfig.topP"),
        ({"topK": 0}, "generationConfig.topK"),
        ({"topK": 2.5}, "generationConfig.topK"),
        ({"maxOutputTokens": 0}, "generationConfig.maxOutputTokens"),
        ({"maxOutputTokens": True}, "generationConfig.maxOutputTokens"),
        ({"stopSequences": ["a", "b", "c", "d", "e", "f"]}, "generationConfig.stopSequences"),
        ({"stopSequences": "END"}, "generationConfig.stopSequences"),
        ({"stopSequences": [1]}, "generationConfig.stopSequences[0]"),
        ({"candidateCount": 2}, "generationConfig.candidateCount"),
        ({"responseModalities": ["TEXT", "IMAGE"]}, "generationConfig.responseModalities[1]"),
        ({"responseMimeType": "text/x.enum"}, "generationConfig.responseMimeType"),
        ({"responseSchema": {"type": "OBJECT"}, "responseJsonSchema": {"type": "object"}},
         "generationConfig.responseJsonSchema"),
        ({"responseSchema": "object"}, "generationConfig.responseSchema"),
        ({"thinkingConfig": 5}, "generationConfig.thinkingConfig"),
    ],
)
def test_bad_generation_config_is_rejected(fields, param):
    rejected({"contents": [user("Hi")], **config(**fields)}, param)


def test_bad_top_level_fields_are_rejected():
    rejected({"contents": [user("Hi")], "generationConfig": []}, "generationConfig")
    rejected({"contents": [user("Hi")], "cachedContent": "cachedContents/abc"}, "cachedContent")
    with pytest.raises(GatewayError):
        decode_request({"contents": [user("Hi")]}, model="")


def test_json_mime_type_adds_the_json_instruction():
    assert params(**config(responseMimeType="application/json"))["system"] == JSON_OBJECT_INSTRUCTION
    assert "system" not in params(**config(responseMimeType="text/plain"))


def test_response_schema_becomes_a_forced_tool_with_json_schema_types():
    schema = {"type": "OBJECT", "title": "City", "properties": {
        "name": {"type": "STRING"},
        "population": {"type": "INTEGER", "nullable": True},
        "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "max_items": 3},
        "where": {"any_of": [{"type": "STRING"}, {"type": "NUMBER"}]},
        "type": {"type": "STRING", "enum": ["OBJECT"]},
        "kind": {"type": ["STRING", "NULL"], "default": {"type": "OBJECT"}},
    }, "required": ["name"], "property_ordering": ["name", "population"]}
    ireq = decode({"contents": [user("Hi")], **config(responseMimeType="application/json", responseSchema=schema)})
    assert ireq.params["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert ireq.options["json_tool"] == "json_response"
    assert ireq.params["tools"][0]["input_schema"] == {"type": "object", "title": "City", "properties": {
        "name": {"type": "string"},
        "population": {"type": ["integer", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "where": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        "type": {"type": "string", "enum": ["OBJECT"]},
        "kind": {"type": ["string", "null"], "default": {"type": "OBJECT"}},
    }, "required": ["name"], "propertyOrdering": ["name", "population"]}
    assert "system" not in ireq.params


def test_response_json_schema_is_forwarded_as_is():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    ireq = decode({"contents": [user("Hi")], **config(responseJsonSchema=schema)})
    assert ireq.params["tools"][0]["input_schema"] is schema


def test_response_schema_falls_back_to_an_instruction_next_to_tools_or_for_a_non_object_root():
    body = {"contents": [user("Hi")], "tools": [{"functionDeclarations": [WEATHER]}],
            **config(responseSchema={"type": "OBJECT"})}
    result = decode(body).params
    assert result["system"].startswith(JSON_SCHEMA_INSTRUCTION) and '"type":"object"' in result["system"]
    result = params(**config(responseSchema={"type": "ARRAY", "items": {"type": "STRING"}}))
    assert result["system"] == JSON_SCHEMA_INSTRUCTION + '{"type":"array","items":{"type":"string"}}'


# --- request: tools ------------------------------------------------------------------------------------


def tools_body(*declarations, **tool_config):
    body = {"contents": [user("Hi")], "tools": [{"functionDeclarations": list(declarations)}]}
    if tool_config:
        body["toolConfig"] = {"functionCallingConfig": tool_config}
    return body


def test_function_declarations_become_anthropic_tools():
    json_schema = {"type": "object", "properties": {"tz": {"type": "string"}}}
    body = {"contents": [user("Hi")], "tools": [{"functionDeclarations": [WEATHER]},
                                                {"functionDeclarations": [{**TIME,
                                                                           "parametersJsonSchema": json_schema}]},
                                                {"functionDeclarations": [{"name": "noop", "description": ""}]}]}
    assert decode(body).params["tools"] == [
        {"name": "get_weather", "description": "Current weather", "input_schema": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "input_schema": json_schema},
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("mode", "allowed", "choice", "names"),
    [
        ("AUTO", None, {"type": "auto"}, ["get_weather", "get_time"]),
        ("VALIDATED", None, {"type": "auto"}, ["get_weather", "get_time"]),
        ("NONE", None, {"type": "none"}, ["get_weather", "get_time"]),
        ("ANY", None, {"type": "any"}, ["get_weather", "get_time"]),
        ("ANY", ["get_time"], {"type": "tool", "name": "get_time"}, ["get_time"]),
        ("ANY", ["get_time", "get_weather"], {"type": "any"}, ["get_weather", "get_time"]),
        ("AUTO", ["get_weather"], {"type": "auto"}, ["get_weather"]),
        ("any", None, {"type": "any"}, ["get_weather", "get_time"]),
        (None, None, None, ["get_weather", "get_time"]),
    ],
)
def test_function_calling_config_maps_to_tool_choice(mode, allowed, choice, names):
    fields = {k: v for k, v in {"mode": mode, "allowedFunctionNames": allowed}.items() if v is not None}
    result = decode(tools_body(WEATHER, TIME, **fields)).params
    assert result.get("tool_choice") == choice
    assert [tool["name"] for tool in result["tools"]] == names


def test_tool_config_without_tools_is_ignored():
    assert set(params(toolConfig={"functionCallingConfig": {"mode": "ANY"}})) == {"messages"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
        ({"tools": [{"functionDeclarations": [WEATHER], "codeExecution": {}}]}, "tools[0].codeExecution"),
        ({"tools": {"functionDeclarations": []}}, "tools"),
        ({"tools": [{"functionDeclarations": [{"name": "get.weather"}]}]}, "tools[0].functionDeclarations[0].name"),
        ({"tools": [{"functionDeclarations": [{}]}]}, "tools[0].functionDeclarations[0].name"),
        ({"tools": [{"functionDeclarations": [TIME]}, {"functionDeclarations": [TIME]}]},
         "tools[1].functionDeclarations[0].name"),
        ({"tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "STRING"}}]}]},
         "tools[0].functionDeclarations[0].parameters"),
        ({"tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": []}]}]},
         "tools[0].functionDeclarations[0].parametersJsonSchema"),
        ({"tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "string"}}]}]},
         "tools[0].functionDeclarations[0].parametersJsonSchema"),
        ({"tools": [{"functionDeclarations": [{"name": "f", "description": 5}]}]},
         "tools[0].functionDeclarations[0].description"),
        ({"tools": [{"functionDeclarations": [TIME]}], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
         "toolConfig.functionCallingConfig.mode"),
        ({"tools": [{"functionDeclarations": [TIME]}],
          "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["nope"]}}},
         "toolConfig.functionCallingConfig.allowedFunctionNames[0]"),
        ({"tools": [{"functionDeclarations": [TIME]}], "toolConfig": {"functionCallingConfig": "ANY"}},
         "toolConfig.functionCallingConfig"),
    ],
)
def test_bad_tools_are_rejected_naming_the_field(body, param):
    rejected({"contents": [user("Hi")], **body}, param)


# --- response --------------------------------------------------------------------------------------


def test_text_response_becomes_a_generate_content_response():
    payload = encode_response(message([text("Hello"), text(" world")]), ctx())
    assert payload == {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}, {"text": " world"}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": MODEL,
        "responseId": REQUEST_ID,
    }
    assert sdk(payload).text == "Hello world"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "STOP"), ("stop_sequence", "STOP"), ("tool_use", "STOP"), ("max_tokens", "MAX_TOKENS"),
     ("model_context_window_exceeded", "MAX_TOKENS"), ("refusal", "SAFETY"), ("pause_turn", "STOP"), (None, "STOP")],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason, finish):
    payload = encode_response(message([text("Hi")], stop_reason), ctx())
    assert payload["candidates"][0]["finishReason"] == finish
    sdk(payload)


def test_usage_counts_cache_reads_and_writes_in_the_prompt():
    msg = message([text("Hi")], cache_creation_input_tokens=100, cache_read_input_tokens=200)
    payload = encode_response(msg, ctx())
    assert payload["usageMetadata"] == {"promptTokenCount": 310, "candidatesTokenCount": 5, "totalTokenCount": 315,
                                        "cachedContentTokenCount": 200}
    assert sdk(payload).usage_metadata.cached_content_token_count == 200


def test_tool_use_becomes_a_function_call_part():
    payload = encode_response(message([text("Checking."), tool_use(), tool_use("toolu_2", "get_time", {})], "tool_use"),
                              ctx())
    assert parts(payload) == [
        {"text": "Checking."},
        {"functionCall": {"id": "toolu_1", "name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"id": "toolu_2", "name": "get_time", "args": {}}},
    ]
    calls = sdk(payload).function_calls
    assert [(c.id, c.name, c.args) for c in calls] == [("toolu_1", "get_weather", {"city": "Paris"}),
                                                       ("toolu_2", "get_time", {})]


def test_hidden_thoughts_leave_only_an_empty_thought_part_with_the_signature():
    payload = encode_response(message([thinking(), text("Hi")]), ctx())
    thought, answer = parts(payload)
    assert thought["text"] == "" and thought["thought"] is True and thought["thoughtSignature"]
    assert answer == {"text": "Hi"}
    assert sdk(payload).text == "Hi"


def test_included_thoughts_show_the_thinking_text():
    payload = encode_response(message([thinking("Deep thought."), text("42")]), ctx(include_thoughts=True))
    assert parts(payload)[0]["text"] == "Deep thought." and parts(payload)[0]["thought"] is True
    assert sdk(payload).text == "42"


def test_thinking_without_signature_is_left_out():
    payload = encode_response(message([thinking(signature=""), text("Hi")]), ctx(include_thoughts=True))
    assert parts(payload) == [{"text": "Hi"}]


def test_the_forced_json_tool_comes_back_as_text():
    payload = encode_response(message([tool_use("toolu_1", "json_response", {"n": 1})], "tool_use"),
                              ctx(json_tool="json_response"))
    assert parts(payload) == [{"text": '{"n":1}'}]
    assert payload["candidates"][0]["finishReason"] == "STOP"


def test_an_empty_answer_still_has_one_part():
    payload = encode_response(message([]), ctx())
    assert parts(payload) == [{"text": ""}]
    sdk(payload)


@pytest.mark.parametrize(
    ("status", "name"),
    [(400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED"), (404, "NOT_FOUND"),
     (413, "INVALID_ARGUMENT"), (429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (502, "UNAVAILABLE"),
     (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED"), (529, "UNAVAILABLE"), (418, "FAILED_PRECONDITION"),
     (507, "INTERNAL")],
)
def test_error_body_uses_googles_status_names(status, name):
    assert error_body(GatewayError(status, "Nope.")) == {"error": {"code": status, "message": "Nope.", "status": name}}


def test_error_body_for_a_validation_error():
    assert error_body(invalid("Bad.", "contents")) == {"error": {"code": 400, "message": "Bad.",
                                                                 "status": "INVALID_ARGUMENT"}}


# --- streaming ---------------------------------------------------------------------------------------

MESSAGES = {
    "text": message([text("Hello there, how are you today?")]),
    "tools": message([text("Let me check."), tool_use(), tool_use("toolu_2", "get_time", {})], "tool_use"),
    "thinking": message([thinking("Hmm, the user greets me."), text("Hi! 👋 \"quoted\"\n")]),
    "thinking_tools": message([thinking(), tool_use()], "tool_use"),
    "max_tokens": message([text("This answer was cut sho")], "max_tokens"),
    "empty": message([]),
}


@pytest.mark.parametrize("name", list(MESSAGES))
@pytest.mark.parametrize("include_thoughts", [False, True])
def test_streamed_chunks_validate_and_add_up_to_the_non_streamed_answer(name, include_thoughts):
    msg = MESSAGES[name]
    whole = sdk(encode_response(msg, ctx(include_thoughts=include_thoughts)))
    chunks = [sdk(chunk) for chunk in chunks_of(msg, include_thoughts=include_thoughts)]
    assert "".join(chunk.text or "" for chunk in chunks) == (whole.text or "")
    calls = [call for chunk in chunks for call in chunk.function_calls or ()]
    assert calls == (whole.function_calls or [])
    assert [c.candidates[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + [
        whole.candidates[0].finish_reason]
    assert chunks[-1].usage_metadata == whole.usage_metadata
    assert all(c.response_id == REQUEST_ID and c.model_version == MODEL for c in chunks)
    # What a client keeps of either form decodes to the same assistant turn.
    assert assistant_turn([whole.candidates[0].content]) == assistant_turn([c.candidates[0].content for c in chunks])


def assistant_turn(contents: list[types.Content]) -> list[dict] | None:
    history = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in contents]
    messages = decode_request({"contents": [user("Hi"), *history]}, model=MODEL).params["messages"]
    return messages[1]["content"] if len(messages) == 2 else None


def test_text_chunks_carry_one_delta_each():
    chunks = chunks_of(message([text("abcdefg")]))
    assert [parts(c) for c in chunks] == [[{"text": "abc"}], [{"text": "def"}], [{"text": "g"}], [{"text": ""}]]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}
    assert "usageMetadata" not in chunks[0] and "finishReason" not in chunks[0]["candidates"][0]


def test_a_tool_call_is_sent_whole_when_its_block_stops():
    chunks = chunks_of(message([tool_use(input={"city": "Paris", "days": [1, 2]})], "tool_use"))
    assert parts(chunks[0]) == [{"functionCall": {"id": "toolu_1", "name": "get_weather",
                                                  "args": {"city": "Paris", "days": [1, 2]}}}]
    assert len(chunks) == 2


def test_a_tool_call_without_arguments_has_empty_args():
    encoder = StreamEncoder(ctx())
    events = [{"type": "content_block_start", "index": 0, "content_block": tool_use(input={})},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
              {"type": "content_block_stop", "index": 0}]
    out = b"".join(encoder.feed(e) for e in events)
    assert parts(sse_chunks(out)[0]) == [{"functionCall": {"id": "toolu_1", "name": "get_weather", "args": {}}}]


def test_hidden_thinking_streams_only_its_signature_part():
    chunks = chunks_of(MESSAGES["thinking"])
    assert not any(p.get("thought") and p["text"] for c in chunks for p in parts(c))
    assert [p for c in chunks for p in parts(c) if p.get("thought")] == [
        parts(encode_response(MESSAGES["thinking"], ctx()))[0]]


def test_included_thinking_streams_thought_deltas_then_the_signature():
    chunks = chunks_of(MESSAGES["thinking"], include_thoughts=True)
    thoughts = [p for c in chunks for p in parts(c) if p.get("thought")]
    assert "".join(p["text"] for p in thoughts) == "Hmm, the user greets me."
    assert [bool(p.get("thoughtSignature")) for p in thoughts] == [False] * (len(thoughts) - 1) + [True]


def test_the_forced_json_tool_streams_as_text():
    msg = message([tool_use("toolu_1", "json_response", {"n": 1, "s": "x"})], "tool_use")
    chunks = chunks_of(msg, json_tool="json_response")
    assert "".join(p.get("text", "") for c in chunks for p in parts(c)) == '{"n":1,"s":"x"}'
    empty = chunks_of(message([tool_use("toolu_1", "json_response", {})], "tool_use"), json_tool="json_response")
    assert "".join(p.get("text", "") for c in empty for p in parts(c)) == "{}"


def test_max_tokens_ends_the_stream_with_max_tokens():
    assert chunks_of(MESSAGES["max_tokens"])[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_without_sse_the_stream_is_one_json_array():
    data = streamed(MESSAGES["tools"], sse=False)
    assert data.startswith(b"[{") and data.endswith(b"}]")
    chunks = json.loads(data)
    assert chunks == sse_chunks(streamed(MESSAGES["tools"]))
    for chunk in chunks:
        sdk(chunk)


def test_a_failure_after_the_200_ends_the_sse_stream_with_an_error_object():
    encoder = StreamEncoder(ctx(sse=True))
    out = b"".join(encoder.feed(e) for e in events_of(MESSAGES["text"])[:5])
    out += encoder.fail(GatewayError(502, "The upstream stream ended early."))
    chunks = sse_chunks(out)
    assert chunks[-1] == {"error": {"code": 502, "message": "The upstream stream ended early.",
                                    "status": "UNAVAILABLE"}}
    assert encoder.feed({"type": "message_stop"}) == b""
    assert encoder.finish(Usage()) == b"" and encoder.fail(GatewayError(500, "x")) == b""


def test_a_failure_closes_the_json_array_with_an_error_object():
    encoder = StreamEncoder(ctx(sse=False))
    out = b"".join(encoder.feed(e) for e in events_of(MESSAGES["text"])[:5])
    out += encoder.fail(GatewayError(504, "Too slow."))
    chunks = json.loads(out)
    assert chunks[0]["candidates"][0]["content"]["parts"] == [{"text": "Hel"}]
    assert chunks[-1] == {"error": {"code": 504, "message": "Too slow.", "status": "DEADLINE_EXCEEDED"}}


def test_a_failure_before_any_chunk_is_still_a_valid_array():
    encoder = StreamEncoder(ctx(sse=False))
    assert json.loads(encoder.fail(GatewayError(500, "Oops."))) == [
        {"error": {"code": 500, "message": "Oops.", "status": "INTERNAL"}}]


def test_pings_and_unknown_events_produce_nothing():
    encoder = StreamEncoder(ctx())
    assert encoder.feed({"type": "ping"}) == b""
    stray = {"type": "content_block_delta", "index": 7, "delta": {"type": "text_delta", "text": "x"}}
    assert encoder.feed(stray) == b""
    assert encoder.feed({"type": "content_block_start", "index": 0,
                         "content_block": {"type": "server_tool_use", "id": "s", "name": "web_search"}}) == b""


# --- the google-genai client, end to end through the codec and the fake upstream's reply logic ---------


class FakeGemini:
    """An httpx transport answering google-genai like the gateway would: codec in, fake upstream, codec out."""

    def __init__(self) -> None:
        self.upstream_bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        model_name, _, method = request.url.path.rsplit("/", 1)[1].partition(":")
        stream = method == "streamGenerateContent"
        try:
            ireq = decode_request(json.loads(request.content), request_id=REQUEST_ID, model=model_name,
                                  stream=stream, sse=request.url.params.get("alt") == "sse")
        except GatewayError as error:
            return httpx.Response(error.status, json=error_body(error))
        apply_model_limits(ireq.params, default_max_tokens=1024, max_output_tokens=64000)
        body = {"model": model_name, **ireq.params}
        self.upstream_bodies.append(body)
        prompt = fake.parse_request(body)
        reply = fake.build_reply(prompt, fake.parse_directives(prompt.directive_text))
        context = ResponseContext(request_id=REQUEST_ID, created=0, model=model_name, options=ireq.options)
        if not stream:
            msg = {"id": "msg_1", "type": "message", "role": "assistant", "content": reply.blocks,
                   "stop_reason": reply.stop_reason, "usage": reply.usage}
            return httpx.Response(200, json=encode_response(msg, context))
        encoder = StreamEncoder(context)
        usage = Usage()
        out = []
        for event in fake.stream_events("msg_1", prompt, reply):
            event = orjson.loads(event.split(b"data: ", 1)[1])
            usage.update(event.get("usage") or event.get("message", {}).get("usage"))
            out.append(encoder.feed(event))
        out.append(encoder.finish(usage))
        return httpx.Response(200, content=b"".join(out), headers={"content-type": "text/event-stream"})


def get_weather(city: str) -> dict:
    """Current weather in a city."""
    return {"city": city, "sky": "clear"}


@pytest.fixture
def gemini():
    transport = FakeGemini()
    client = genai.Client(api_key="gh-test", http_options=types.HttpOptions(
        base_url="http://gateway.test/gemini", httpx_client=httpx.Client(transport=httpx.MockTransport(transport))))
    client.transport = transport
    return client


def test_sdk_generate_content_and_stream(gemini):
    answer = gemini.models.generate_content(model=MODEL, contents="Bonjour")
    assert answer.text == "Hello from the fake upstream. You said: Bonjour"
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents="Bonjour"))
    assert "".join(c.text or "" for c in chunks) == answer.text
    assert chunks[-1].usage_metadata.total_token_count == answer.usage_metadata.total_token_count


def test_sdk_structured_output_with_a_pydantic_schema(gemini):
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        population: int | None = None

    answer = gemini.models.generate_content(model=MODEL, contents="A city?", config=types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=City))
    assert answer.parsed == City(name="example")


def test_sdk_automatic_function_calling_round_trip(gemini):
    answer = gemini.models.generate_content(model=MODEL, contents="[[fake:tool]] Weather in Paris?",
                                            config=types.GenerateContentConfig(tools=[get_weather]))
    assert answer.text == 'Tool results received: {"result":{"city":"example","sky":"clear"}}'
    second = gemini.transport.upstream_bodies[-1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[2]["content"][0]["tool_use_id"] == second[1]["content"][0]["id"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("include_thoughts", [False, True])
def test_sdk_chat_keeps_thinking_across_a_tool_turn(gemini, stream, include_thoughts):
    chat = gemini.chats.create(model=MODEL, config=types.GenerateContentConfig(
        tools=[get_weather], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=types.ThinkingConfig(thinking_budget=2048, include_thoughts=include_thoughts)))
    send = (lambda m: list(chat.send_message_stream(m))) if stream else (lambda m: [chat.send_message(m)])
    first = send("[[fake:tool]] Weather in Paris?")
    calls = [call for chunk in first for call in chunk.function_calls or ()]
    assert [c.name for c in calls] == ["get_weather"]
    thoughts = [p.text for chunk in first for p in chunk.candidates[0].content.parts if p.thought]
    assert bool("".join(thoughts)) is include_thoughts
    second = send(types.Part.from_function_response(name="get_weather", response={"output": "sunny"}))
    assert "".join(c.text or "" for c in second) == 'Tool results received: {"output":"sunny"}'
    upstream = gemini.transport.upstream_bodies[-1]
    assert upstream["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assistant = upstream["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": fake.THINKING_TEXT, "signature": fake.THINKING_SIGNATURE}
    assert upstream["messages"][2]["content"][0]["tool_use_id"] == assistant[1]["id"]
    assert len(chat.get_history(curated=True)) == len(chat.get_history())  # no turn was judged invalid


def test_sdk_sees_a_400_naming_the_field(gemini):
    from google.genai import errors

    with pytest.raises(errors.ClientError) as caught:
        gemini.models.generate_content(model=MODEL, contents="Hi",
                                       config=types.GenerateContentConfig(candidate_count=2))
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert "candidateCount" in caught.value.message
