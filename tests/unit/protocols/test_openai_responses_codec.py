"""The OpenAI Responses codec: request translation, Response objects, stream events, error bodies.

Pure unit tests (no Django, no network). Every Response, stream event and stored input item the codec
produces is checked against the official OpenAI OpenAPI schemas when the spec file is present, and every
stream is replayed through the openai SDK's own stream accumulator, which refuses a stream out of order.
"""

from __future__ import annotations

import json
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import ANTHROPIC_REQUEST_FIELDS, GatewayError, ResponseContext, Usage, invalid
from gateway.protocols import openai_chat
from gateway.protocols.openai_chat import JSON_OBJECT_INSTRUCTION, JSON_SCHEMA_INSTRUCTION
from gateway.protocols.openai_responses import (
    REDACTED_THINKING_PREFIX,
    StreamEncoder,
    decode_input_items,
    decode_request,
    encode_response,
    error_body,
    response_to_items,
)
from tests.support.anthropic_events import (
    anthropic_message,
    block_delta,
    block_start,
    block_stop,
    json_delta,
    message_end,
    message_start,
    text_delta,
)
from tests.support.openapi import spec_available, spec_path, validate
from tests.support.responses_events import assert_valid, check_stream, sse_events

SPEC_AVAILABLE = spec_available()
MODEL = "claude-test"
REQUEST_ID = "req_0123456789abcdef01234567"
HEX = "0123456789abcdef01234567"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather",
                "parameters": WEATHER_SCHEMA, "strict": False}
TIME_TOOL = {"type": "function", "name": "get_time"}
SAFE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="
PDF_DATA_URL = "data:application/pdf;base64,JVBERi0xLjQ="


# --- helpers -----------------------------------------------------------------------------------------


def body(input="Hi", **fields):
    return {"model": MODEL, "input": input, **fields}


def decoded(input="Hi", **fields):
    return decode_request(body(input, **fields), request_id=REQUEST_ID)


def params(input="Hi", **fields) -> dict:
    return decoded(input, **fields).params


def rejected(request, **kwargs) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        decode_request(request, **kwargs)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


def user(content, **fields):
    return {"role": "user", "content": content, **fields}


def assistant(content, **fields):
    return {"role": "assistant", "content": content, **fields}


def input_text(value):
    return {"type": "input_text", "text": value}


def function_call(call_id, name="get_weather", arguments='{"city": "Paris"}'):
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def function_output(call_id, output):
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def text(value):
    return {"type": "text", "text": value}


def tool_use(tool_id, name="get_weather", tool_input=None):
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input if tool_input is not None else {}}


def tool_result(tool_use_id, content=None):
    block = {"type": "tool_result", "tool_use_id": tool_use_id}
    if content is not None:
        block["content"] = content
    return block


CITATION = {"type": "web_search_result_location", "url": "https://example.com/paris", "title": "Paris weather",
            "encrypted_index": "Eo8BCioI", "cited_text": "Sunny in Paris."}


def search_result(tool_use_id, *, error=False):
    content = ({"type": "web_search_tool_result_error", "error_code": "unavailable"} if error else
               [{"type": "web_search_result", "url": "https://example.com/paris", "title": "Paris weather",
                 "encrypted_content": "EqgfCioI", "page_age": "January 1, 2026"}])
    return {"type": "web_search_tool_result", "tool_use_id": tool_use_id, "content": content}


def ctx(**options) -> ResponseContext:
    return ResponseContext(request_id=REQUEST_ID, created=1_700_000_000, model="claude-shown", options=options)


def ctx_for(request: dict) -> ResponseContext:
    """The context the server builds: the decoded request's options."""
    return ctx(**decode_request(request, request_id=REQUEST_ID).options)


def run_stream(events, usage=None, **options) -> list[dict]:
    encoder = StreamEncoder(ctx(**options))
    raw = b"".join(encoder.feed(event) for event in events)
    raw += encoder.finish(usage or Usage(input_tokens=10, output_tokens=5))
    payloads = sse_events(raw)
    check_stream(payloads)
    assert payloads[-1]["response"] == encoder.response
    return payloads


def of_type(events, kind) -> list[dict]:
    return [event for event in events if event["type"] == kind]


@pytest.mark.skipif(not SPEC_AVAILABLE, reason=f"OpenAI spec not found at {spec_path()}: schema checks skipped")
def test_openai_spec_is_present_so_schema_checks_run():
    with pytest.raises(AssertionError, match="required property"):
        validate("ResponseTextDeltaEvent", {"type": "response.output_text.delta", "delta": "x"})


# --- request: basics ------------------------------------------------------------------------------------


def test_string_input_is_one_user_message_and_storage_options_have_defaults():
    request = decoded("Hello there")
    assert request.model == MODEL and request.stream is False
    assert request.params == {"messages": [{"role": "user", "content": [text("Hello there")]}]}
    options = request.options
    assert (options["store"], options["metadata"], options["previous_response_id"], options["conversation"],
            options["instructions"]) == (True, None, None, None, None)
    assert options["input_items"] == [
        {"id": f"msg_{HEX}_in0", "type": "message", "role": "user", "status": "completed",
         "content": [input_text("Hello there")]}
    ]


def test_input_items_without_a_request_id_keep_only_the_ids_the_client_sent():
    items = decode_request(body([user("a"), {**user("b"), "id": "msg_client"}])).options["input_items"]
    assert "id" not in items[0]
    assert items[1]["id"] == "msg_client"


def test_client_item_ids_are_kept_and_missing_ones_derive_from_the_request_id():
    items = decoded([user("a", id="msg_mine"), function_call("call_1"), function_output("call_1", "ok"),
                     assistant("b")]).options["input_items"]
    assert [item["id"] for item in items] == ["msg_mine", f"fc_{HEX}_in1", f"fco_{HEX}_in2", f"msg_{HEX}_in3"]


def test_instructions_come_first_in_system_then_system_and_developer_messages_in_order():
    result = params([user("q1"), {"role": "system", "content": "S1"}, assistant("a1"),
                     {"type": "message", "role": "developer", "content": [input_text("D1"), input_text("")]},
                     user("q2")], instructions="Be brief.")
    assert result["system"] == "Be brief.\nS1\nD1"
    assert result["messages"] == [
        {"role": "user", "content": [text("q1")]},
        {"role": "assistant", "content": [text("a1")]},
        {"role": "user", "content": [text("q2")]},
    ]
    assert decoded(instructions="Be brief.").options["instructions"] == "Be brief."


def test_message_items_with_and_without_type_and_text_parts_merge_per_role():
    result = params([
        {"type": "message", "role": "user", "content": [input_text("a"), input_text("")]},
        user([{"type": "output_text", "text": "b"}]),
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "c", "annotations": []}, {"type": "refusal", "refusal": "no"}]},
        user("d"),
    ])
    assert result["messages"] == [
        {"role": "user", "content": [text("a"), text("b")]},
        {"role": "assistant", "content": [text("c"), text("no")]},
        {"role": "user", "content": [text("d")]},
    ]


def test_stream_store_and_unknown_or_unmapped_fields():
    request = decode_request(body(stream=True, store=False, include=["reasoning.encrypted_content"],
                                  service_tier="auto", prompt_cache_key="k", safety_identifier="s",
                                  top_logprobs=2, truncation="auto", user="u-1", stream_options={},
                                  brand_new_field=1))
    assert request.stream is True
    assert request.options["store"] is False
    assert request.options["truncation"] == "auto" and request.options["user"] == "u-1"
    assert set(request.params) == {"messages"}


def test_trailing_assistant_message_is_prefill_without_trailing_whitespace():
    assert params([user("Hi"), assistant("The answer is  \n")])["messages"][-1] == {
        "role": "assistant", "content": [text("The answer is")]}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ([1], None),
        ({"input": "x"}, "model"),
        ({"model": "", "input": "x"}, "model"),
        ({"model": MODEL}, "input"),
        ({"model": MODEL, "input": 5}, "input"),
        ({"model": MODEL, "input": ""}, "input"),
        ({"model": MODEL, "input": []}, "input"),
        ({"model": MODEL, "input": [{"role": "system", "content": "only system"}]}, "input"),
        (body([7]), "input[0]"),
        (body([{"content": "x"}]), "input[0].role"),
        (body([{"role": "tool", "content": "x"}]), "input[0].role"),
        (body([{"role": "user"}]), "input[0].content"),
        (body([{"role": "user", "content": 3}]), "input[0].content"),
        (body([user([{"text": "x"}])]), "input[0].content[0].type"),
        (body([user([{"type": "input_text"}])]), "input[0].content[0].text"),
        (body([user([{"type": "input_audio", "input_audio": {}}])]), "input[0].content[0].type"),
        (body([user([{"type": "text", "text": "x"}])]), "input[0].content[0].type"),
        (body([assistant([{"type": "input_image", "image_url": PNG_DATA_URL}])]), "input[0].content[0].type"),
        (body([{"role": "system", "content": [{"type": "input_image"}]}]), "input[0].content[0].type"),
        (body([{"type": "item_reference", "id": "msg_1"}]), "input[0].type"),
        (body([{"type": "file_search_call", "id": "fs_1"}]), "input[0].type"),
        (body([{"type": 3}]), "input[0].type"),
        (body([{"type": "function_call", "name": "f", "arguments": "{}"}]), "input[0].call_id"),
        (body([{"type": "function_call", "call_id": "c", "arguments": "{}"}]), "input[0].name"),
        (body([{"type": "function_call", "call_id": "c", "name": "f"}]), "input[0].arguments"),
        (body([function_call("c", arguments="[1]")]), "input[0].arguments"),
        (body([function_call("c", arguments="{oops")]), "input[0].arguments"),
        (body([{"type": "function_call_output", "output": "x"}]), "input[0].call_id"),
        (body([{"type": "function_call_output", "call_id": "c"}]), "input[0].output"),
        (body([function_output("c", 5)]), "input[0].output"),
        (body([function_output("c", [{"type": "refusal", "refusal": "x"}])]), "input[0].output[0].type"),
        (body([{"type": "reasoning", "summary": "x"}]), "input[0].summary"),
        (body([{"type": "reasoning", "summary": [{"type": "summary_text"}]}]), "input[0].summary[0].text"),
        (body([{"type": "reasoning", "summary": [], "encrypted_content": 5}]), "input[0].encrypted_content"),
        (body(instructions=["x"]), "instructions"),
        (body(stream="yes"), "stream"),
        (body(store="no"), "store"),
        (body(max_output_tokens=0), "max_output_tokens"),
        (body(max_output_tokens=1.5), "max_output_tokens"),
        (body(temperature=2.5), "temperature"),
        (body(temperature="hot"), "temperature"),
        (body(top_p=1.5), "top_p"),
        (body(parallel_tool_calls="no"), "parallel_tool_calls"),
        (body(truncation="middle"), "truncation"),
        (body(user=5), "user"),
        (body(background=True), "background"),
        (body(prompt={"id": "pmpt_1"}), "prompt"),
    ],
)
def test_invalid_requests_are_rejected_naming_the_field_path(payload, param):
    assert rejected(payload).param == param


def test_error_messages_read_like_openai():
    assert rejected({"input": "x"}).message == "Missing required parameter: 'model'."
    assert rejected(body(temperature="hot")).message == (
        "Invalid type for 'temperature': expected a number, but got a string instead."
    )
    assert rejected(body([{"type": "computer_call"}])).message == (
        "Invalid value for 'input[0].type': \"computer_call\". Supported values are: 'message', "
        "'function_call', 'function_call_output', 'custom_tool_call', 'custom_tool_call_output', 'local_shell_call', "
        "'local_shell_call_output', 'web_search_call' and 'reasoning'."
    )


def test_items_decoded_on_their_own_name_the_parameter_they_came_in():
    with pytest.raises(GatewayError) as caught:
        decode_input_items([user([{"type": "input_video"}])], param="items")
    assert caught.value.param == "items[0].content[0].type"
    # The value list keeps its own names: only the parameter path is the caller's.
    assert caught.value.message == (
        "Invalid value for 'items[0].content[0].type': \"input_video\". Supported values are: 'input_text', "
        "'input_image' and 'input_file'."
    )
    with pytest.raises(GatewayError) as caught:
        decode_input_items([user("  ")], param="items")
    assert caught.value.param == "items"
    messages, system = decode_input_items([{"role": "system", "content": "Be brief."}, user("Hi")], param="items")
    assert messages == [{"role": "user", "content": [text("Hi")]}] and system == ["Be brief."]


def test_max_output_tokens_becomes_max_tokens_and_is_left_out_for_the_catalog_default():
    assert params(max_output_tokens=500)["max_tokens"] == 500
    assert "max_tokens" not in params()
    assert decoded(max_output_tokens=500).options["max_output_tokens"] == 500


@pytest.mark.parametrize(("given", "sent"), [(0, 0), (0.7, 0.7), (1, 1), (1.5, 1), (2, 1)])
def test_temperature_is_capped_to_one_and_top_p_forwarded(given, sent):
    result = params(temperature=given, top_p=0.9)
    assert (result["temperature"], result["top_p"]) == (sent, 0.9)


# --- request: images and files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "source"),
    [
        (PNG_DATA_URL, {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}),
        ("data:image/jpg;base64,/9j/", {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}),
        ("https://example.com/cat.png", {"type": "url", "url": "https://example.com/cat.png"}),
    ],
)
def test_input_image_becomes_an_image_block(url, source):
    content = [input_text("What is this?"), {"type": "input_image", "image_url": url, "detail": "high"}]
    request = decoded([user(content)])
    assert request.params["messages"][0]["content"] == [text("What is this?"), {"type": "image", "source": source}]
    assert request.options["input_items"][0]["content"][1] == {
        "type": "input_image", "image_url": url, "file_id": None, "detail": "high"}


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_image", "image_url": "data:image/bmp;base64,Qk0="}, "input[0].content[0].image_url"),
        ({"type": "input_image", "image_url": "ftp://example.com/cat.png"}, "input[0].content[0].image_url"),
        ({"type": "input_image"}, "input[0].content[0].image_url"),
        ({"type": "input_image", "file_id": "file-1"}, "input[0].content[0].file_id"),
        ({"type": "input_image", "image_url": PNG_DATA_URL, "detail": "huge"}, "input[0].content[0].detail"),
        ({"type": "input_file", "file_id": "file-1"}, "input[0].content[0].file_id"),
        ({"type": "input_file", "file_data": "data:text/plain;base64,aGk="}, "input[0].content[0].file_data"),
        ({"type": "input_file", "file_data": "JVBERi0xLjQ="}, "input[0].content[0].file_data"),
        ({"type": "input_file", "file_url": "file:///etc/passwd"}, "input[0].content[0].file_url"),
        ({"type": "input_file"}, "input[0].content[0].file_data"),
    ],
)
def test_unsupported_images_and_files_are_rejected_naming_the_field(part, param):
    assert rejected(body([user([part])])).param == param


def test_pdf_input_file_becomes_a_document_block_inline_or_by_url():
    content = [{"type": "input_file", "filename": "a.pdf", "file_data": PDF_DATA_URL},
               {"type": "input_file", "file_url": "https://example.com/b.pdf"}]
    request = decoded([user(content)])
    assert request.params["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/b.pdf"}},
    ]
    assert request.options["input_items"][0]["content"] == [
        {"type": "input_file", "filename": "a.pdf", "file_data": PDF_DATA_URL},
        {"type": "input_file", "file_url": "https://example.com/b.pdf"},
    ]


# --- request: tool calls -----------------------------------------------------------------------------------


def test_function_call_items_become_tool_use_and_outputs_tool_results_first_in_the_user_turn():
    result = params([
        user("Weather in Paris and the time?"),
        assistant("Checking."),
        function_call("call_1"),
        function_call("call_2", "get_time", ""),
        user("Also, be quick."),
        function_output("call_1", "18C"),
        function_output("call_2", ""),
    ], tools=[WEATHER_TOOL, TIME_TOOL])
    assert result["messages"] == [
        {"role": "user", "content": [text("Weather in Paris and the time?")]},
        {"role": "assistant", "content": [text("Checking."), tool_use("call_1", tool_input={"city": "Paris"}),
                                          tool_use("call_2", "get_time")]},
        {"role": "user", "content": [tool_result("call_1", "18C"), tool_result("call_2"), text("Also, be quick.")]},
    ]


def test_call_ids_are_sanitised_the_same_way_on_both_sides():
    messages = params([user("q"), function_call("functions.get_weather:0"),
                       function_output("functions.get_weather:0", "ok")])["messages"]
    safe = messages[1]["content"][0]["id"]
    assert safe == messages[2]["content"][0]["tool_use_id"] and safe.startswith("functions_get_weather_0_")


def test_function_call_output_parts_become_tool_result_blocks():
    output = [input_text("See the chart."), input_text(""), {"type": "input_image", "image_url": PNG_DATA_URL}]
    messages = params([user("q"), function_call("call_1"), function_output("call_1", output)])["messages"]
    assert messages[2]["content"] == [tool_result("call_1", [
        text("See the chart."),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
    ])]


def test_function_tools_become_anthropic_tools_and_are_echoed_as_function_tools():
    request = decoded(tools=[WEATHER_TOOL, TIME_TOOL])
    assert request.params["tools"] == [
        {"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_SCHEMA},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert request.params["tools"][0]["input_schema"] is WEATHER_SCHEMA  # forwarded by reference
    assert request.options["tools"] == [
        {**WEATHER_TOOL},
        {"type": "function", "name": "get_time", "description": None, "parameters": None, "strict": None},
    ]


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ({"type": "function"}, "tools"),
        ([{"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com"}], "tools[0].type"),
        ([{"type": "file_search", "vector_store_ids": []}], "tools[0].type"),
        ([{"name": "f"}], "tools[0].type"),
        ([{"type": "function", "function": {"name": "f"}}], "tools[0].name"),
        ([{"type": "function", "name": "has space"}], "tools[0].name"),
        ([{"type": "function", "name": "f", "parameters": "{}"}], "tools[0].parameters"),
        ([{"type": "function", "name": "f", "description": 1}], "tools[0].description"),
        ([{"type": "function", "name": "f", "strict": "yes"}], "tools[0].strict"),
        ([TIME_TOOL, TIME_TOOL], "tools[1].name"),
    ],
)
def test_invalid_and_non_function_tools_are_rejected(tools, param):
    assert rejected(body(tools=tools)).param == param


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "name": "get_time"}, {"type": "tool", "name": "get_time"}),
    ],
)
def test_tool_choice_maps_to_anthropic_and_is_echoed(choice, expected):
    request = decoded(tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice)
    assert request.params["tool_choice"] == expected
    assert request.options["tool_choice"] == choice


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ("sometimes", "tool_choice"),
        (5, "tool_choice"),
        ({"type": "function", "name": "missing"}, "tool_choice.name"),
        ({"type": "function"}, "tool_choice.name"),
        ({"type": "allowed_tools", "mode": "auto", "tools": []}, "tool_choice.type"),
        ({"type": "web_search_preview"}, "tool_choice.type"),
    ],
)
def test_invalid_tool_choice_is_rejected_even_without_tools(choice, param):
    assert rejected(body(tools=[TIME_TOOL], tool_choice=choice)).param == param
    assert rejected(body(tool_choice=choice)).param == param


def test_tool_choice_and_parallel_tool_calls_without_tools_are_dropped():
    request = decoded(tool_choice="required", parallel_tool_calls=False)
    assert set(request.params) == {"messages"}
    assert (request.options["tool_choice"], request.options["parallel_tool_calls"]) == ("required", False)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),
    ],
)
def test_parallel_tool_calls_false_disables_parallel_tool_use(choice, expected):
    fields = {"tool_choice": choice} if choice else {}
    assert params(tools=[TIME_TOOL], parallel_tool_calls=False, **fields)["tool_choice"] == expected


# --- request: reasoning and text.format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 32768)]
)
def test_reasoning_effort_maps_to_the_chat_codecs_thinking_budget(effort, budget):
    request = decoded(reasoning={"effort": effort, "summary": "auto"})
    assert request.params["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert request.options["reasoning"] == {"effort": effort, "summary": "auto"}
    chat = openai_chat.decode_request({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                                       "reasoning_effort": effort})
    assert chat.params["thinking"] == request.params["thinking"]


@pytest.mark.parametrize("reasoning", [None, {}, {"effort": None}, {"effort": "none"}, {"summary": "concise"}])
def test_no_effort_means_no_thinking(reasoning):
    assert "thinking" not in params(reasoning=reasoning)


@pytest.mark.parametrize(
    ("reasoning", "param"),
    [("high", "reasoning"), ({"effort": "ultra"}, "reasoning.effort"), ({"effort": 3}, "reasoning.effort"),
     ({"effort": "low", "summary": "long"}, "reasoning.summary")],
)
def test_invalid_reasoning_is_rejected(reasoning, param):
    assert rejected(body(reasoning=reasoning)).param == param


def test_thinking_drops_temperature_and_top_p_and_forcing_a_tool_is_rejected():
    result = params(reasoning={"effort": "low"}, temperature=0.2, top_p=0.5)
    assert "temperature" not in result and "top_p" not in result
    error = rejected(body(reasoning={"effort": "low"}, tools=[TIME_TOOL], tool_choice="required"))
    assert error.param == "tool_choice"


def test_thinking_is_switched_off_when_the_last_tool_turn_lacks_its_reasoning_item():
    items = [user("q"), function_call("call_1"), function_output("call_1", "ok")]
    assert "thinking" not in params(items, reasoning={"effort": "low"}, tools=[WEATHER_TOOL])
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Let me look."}],
                 "encrypted_content": "EqQBsig"}
    result = params([items[0], reasoning, *items[1:]], reasoning={"effort": "low"}, tools=[WEATHER_TOOL])
    assert result["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert result["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Let me look.", "signature": "EqQBsig"},
        tool_use("call_1", tool_input={"city": "Paris"}),
    ]


def test_a_reasoning_items_summary_parts_join_into_the_thinking_text_unchanged():
    reasoning = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "First, "},
                                                  {"type": "summary_text", "text": "then."}],
                 "encrypted_content": "sig"}
    assert params([user("q"), reasoning, assistant("a")])["messages"][1]["content"][0] == {
        "type": "thinking", "thinking": "First, then.", "signature": "sig"}


def test_reasoning_items_without_encrypted_content_are_dropped_and_redacted_ones_come_back():
    items = [user("q"), {"type": "reasoning", "summary": [{"type": "summary_text", "text": "x"}]},
             {"type": "reasoning", "summary": [], "encrypted_content": REDACTED_THINKING_PREFIX + "EmwKAhgB"},
             assistant("a")]
    request = decoded(items)
    assert request.params["messages"][1]["content"] == [{"type": "redacted_thinking", "data": "EmwKAhgB"}, text("a")]
    assert [item.get("encrypted_content") for item in request.options["input_items"][1:3]] == [
        None, REDACTED_THINKING_PREFIX + "EmwKAhgB"]


def test_text_format_text_adds_nothing_and_json_object_appends_a_system_instruction():
    assert set(params(text={"format": {"type": "text"}, "verbosity": "low"})) == {"messages"}
    result = params(instructions="Be brief.", text={"format": {"type": "json_object"}})
    assert result["system"] == "Be brief.\n" + JSON_OBJECT_INSTRUCTION


def test_text_format_json_schema_becomes_a_forced_tool_like_chat_response_format():
    fmt = {"type": "json_schema", "name": "weather.report", "schema": WEATHER_SCHEMA, "strict": True,
           "description": "A report"}
    request = decoded(text={"format": fmt})
    assert request.params["tools"] == [{"name": "weather_report", "input_schema": WEATHER_SCHEMA,
                                        "description": "A report"}]
    assert request.params["tool_choice"] == {"type": "tool", "name": "weather_report"}
    assert request.options["json_tool"] == "weather_report"
    assert request.options["text"] == {"format": fmt}


@pytest.mark.parametrize(
    "fields",
    [{"tools": [TIME_TOOL]}, {"reasoning": {"effort": "low"}}, {"schema": {"type": "array"}}],
)
def test_text_format_json_schema_falls_back_to_a_system_instruction(fields):
    fmt = {"type": "json_schema", "name": "out", "schema": fields.pop("schema", WEATHER_SCHEMA)}
    result = params(text={"format": fmt}, **fields)
    assert result["system"] == JSON_SCHEMA_INSTRUCTION + orjson.dumps(fmt["schema"]).decode()
    assert result.get("tools", [{}])[0].get("name") != "out"


def test_json_schema_format_without_a_name_is_echoed_with_the_default_tool_name():
    request = decoded(text={"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}})
    assert request.options["json_tool"] == "json_response"
    assert request.options["text"]["format"]["name"] == "json_response"


@pytest.mark.parametrize(
    ("text_param", "param"),
    [
        ("json", "text"),
        ({"format": "json"}, "text.format"),
        ({"format": {"type": "xml"}}, "text.format.type"),
        ({"format": {"type": "json_schema", "name": "x"}}, "text.format.schema"),
        ({"format": {"type": "json_schema", "name": "x", "schema": "{}"}}, "text.format.schema"),
        ({"format": {"type": "json_schema", "name": 5, "schema": {}}}, "text.format.name"),
        ({"verbosity": "loud"}, "text.verbosity"),
    ],
)
def test_invalid_text_format_is_rejected(text_param, param):
    assert rejected(body(text=text_param)).param == param


# --- request: storage options and history ------------------------------------------------------------------


def test_storage_options_for_the_server():
    request = decoded(store=False, metadata={"team": "blue"}, previous_response_id="resp_prev")
    assert request.options["store"] is False
    assert request.options["metadata"] == {"team": "blue"}
    assert request.options["previous_response_id"] == "resp_prev"
    assert decoded(conversation="conv_1").options["conversation"] == "conv_1"
    assert decoded(conversation={"id": "conv_2"}).options["conversation"] == "conv_2"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"previous_response_id": ""}, "previous_response_id"),
        ({"previous_response_id": 5}, "previous_response_id"),
        ({"conversation": 5}, "conversation"),
        ({"conversation": {}}, "conversation.id"),
        ({"conversation": "conv_1", "previous_response_id": "resp_1"}, "conversation"),
    ],
)
def test_invalid_storage_options_are_rejected(fields, param):
    assert rejected(body(**fields)).param == param


def test_history_is_merged_before_the_new_input_and_not_stored_as_input_items():
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "Look it up.", "signature": "sig"},
                                          tool_use("toolu_1", tool_input={"city": "Paris"})]},
    ]
    request = decode_request(body([function_output("toolu_1", "18C"), user("Thanks")],
                                  reasoning={"effort": "low"}, tools=[WEATHER_TOOL]),
                             request_id=REQUEST_ID, history=history)
    assert request.params["messages"] == [
        {"role": "user", "content": [text("Weather in Paris?")]},
        history[1],
        {"role": "user", "content": [tool_result("toolu_1", "18C"), text("Thanks")]},
    ]
    assert "thinking" in request.params
    assert [item["type"] for item in request.options["input_items"]] == ["function_call_output", "message"]


def test_input_items_have_the_shape_of_the_input_items_list():
    items = decoded([
        user([input_text("Look:"), {"type": "input_image", "image_url": "https://example.com/a.png"},
              {"type": "input_file", "filename": "a.pdf", "file_data": PDF_DATA_URL}]),
        {"role": "developer", "content": "Be nice."},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}], "encrypted_content": "sig"},
        assistant([{"type": "output_text", "text": "Here", "annotations": []}, {"type": "refusal", "refusal": "no"}]),
        function_call("call_1"),
        function_output("call_1", [input_text("ok")]),
        function_output("call_1", "ok"),
    ]).options["input_items"]
    for item in items:
        assert_valid("ItemResource", item)
    page = {"object": "list", "data": items, "has_more": False, "first_id": items[0]["id"],
            "last_id": items[-1]["id"]}
    assert_valid("ResponseItemList", page)
    assert items[3]["content"] == [
        {"type": "output_text", "text": "Here", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "no"},
    ]


def test_a_full_create_response_body_is_valid_per_the_spec_and_decodes():
    # String content: the spec's InputItem is a oneOf that only its discriminator tells apart, and
    # jsonschema ignores discriminators, so a part-list user message would match two branches.
    request = body(
        [user("Hi"), function_call("call_1"), function_output("call_1", "ok")],
        instructions="Be brief.", tools=[WEATHER_TOOL], tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False, max_output_tokens=256, temperature=0.5, top_p=0.9, store=True,
        metadata={"k": "v"}, text={"format": {"type": "json_schema", "name": "w", "schema": WEATHER_SCHEMA}},
        stream=True, truncation="disabled", include=["reasoning.encrypted_content"],
    )
    assert_valid("CreateResponse", request)
    assert decode_request(request).stream is True


# --- request: property --------------------------------------------------------------------------------------

_texts = st.one_of(st.just(""), st.just(" \n"), st.text(max_size=12))
_contents = st.one_of(_texts, st.lists(_texts.map(input_text), min_size=1, max_size=3))
_ids = st.text(alphabet="abcXYZ019_-.:/ ", min_size=1, max_size=10)
_arguments = st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=2)
_items = st.one_of(
    st.builds(lambda role, content: {"role": role, "content": content},
              st.sampled_from(["system", "developer"]), _contents),
    st.builds(user, _contents),
    st.builds(lambda content: {"type": "message", "role": "assistant", "content": content}, _texts),
    st.builds(lambda call_id, args: function_call(call_id, "get_time", json.dumps(args)), _ids, _arguments),
    st.builds(function_output, _ids, _texts),
    st.builds(lambda texts, signature: {"type": "reasoning", "summary": [
        {"type": "summary_text", "text": t} for t in texts], "encrypted_content": signature},
        st.lists(_texts, max_size=2), st.sampled_from([None, "sig", REDACTED_THINKING_PREFIX + "data"])),
)
_requests = st.fixed_dictionaries(
    {"model": st.just(MODEL), "input": st.one_of(_texts, st.lists(_items, min_size=1, max_size=8))},
    optional={
        "instructions": _texts,
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "max_output_tokens": st.integers(1, 100_000),
        "reasoning": st.sampled_from([{"effort": "none"}, {"effort": "low"}, {"effort": "high", "summary": "auto"}]),
        "tools": st.just([WEATHER_TOOL, TIME_TOOL]),
        "parallel_tool_calls": st.booleans(),
        "text": st.sampled_from([{"format": {"type": "text"}}, {"format": {"type": "json_object"}},
                                 {"format": {"type": "json_schema", "name": "w", "schema": WEATHER_SCHEMA}}]),
        "store": st.booleans(),
        "metadata": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    },
)


@settings(max_examples=300, deadline=None)
@given(_requests)
def test_valid_requests_decode_to_well_formed_anthropic_params(request):
    try:
        decoded_request = decode_request(request, request_id=REQUEST_ID)
    except GatewayError as error:
        assert error.param == "input"  # only when no user or assistant content is left
        return
    result = decoded_request.params
    assert set(result) <= ANTHROPIC_REQUEST_FIELDS
    messages = result["messages"]
    assert all(first["role"] != second["role"] for first, second in zip(messages, messages[1:]))
    for message in messages:
        content = message["content"]
        assert content
        kinds = [block["type"] for block in content]
        results = kinds.count("tool_result")
        assert kinds[:results] == ["tool_result"] * results
        for block in content:
            assert block["type"] != "text" or block["text"]
            assert SAFE_ID.match(block.get("id") or block.get("tool_use_id") or "x")
    if "thinking" in result:
        assert "temperature" not in result and "top_p" not in result
    items = decoded_request.options["input_items"]
    assert len(items) == (1 if isinstance(request["input"], str) else len(request["input"]))
    assert len({item["id"] for item in items}) == len(items)


# --- response ----------------------------------------------------------------------------------------------


def test_text_response_becomes_a_response_object():
    response = encode_response(anthropic_message([text("Hello"), text(" world")]), ctx())
    assert_valid("Response", response)
    assert response == {
        "id": f"resp_{HEX}",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": "claude-shown",
        "output": [
            {
                "id": f"msg_{HEX}_0",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello world", "annotations": [], "logprobs": []}],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "metadata": {},
        "conversation": None,
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        },
    }


def test_response_echoes_the_request_settings():
    request = body(
        "Hi", instructions="Be brief.", tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="none",
        parallel_tool_calls=False, max_output_tokens=300, temperature=1.5, top_p=0.5, store=False,
        metadata={"team": "blue"}, previous_response_id="resp_prev", reasoning={"effort": "low", "summary": "auto"},
        text={"format": {"type": "json_object"}, "verbosity": "low"}, user="u-1", truncation="auto",
    )
    response = encode_response(anthropic_message([text("{}")]), ctx_for(request))
    assert_valid("Response", response)
    echoed = {key: response[key] for key in request if key not in ("model", "input")}
    assert echoed == {key: value for key, value in request.items() if key not in ("model", "input")} | {
        "tools": [WEATHER_TOOL, {**TIME_TOOL, "description": None, "parameters": None, "strict": None}]}
    conversation = encode_response(anthropic_message([text("x")]), ctx_for(body(conversation={"id": "conv_1"})))
    assert conversation["conversation"] == {"id": "conv_1"}


def test_tool_use_blocks_become_function_call_items_with_compact_json_arguments():
    content = [
        text("Checking."),
        tool_use("toolu_1", tool_input={"city": "Paris", "days": 2}),
        tool_use("toolu_2", "get_time"),
    ]
    response = encode_response(anthropic_message(content, "tool_use"), ctx())
    assert_valid("Response", response)
    assert response["status"] == "completed"
    assert response["output"][1:] == [
        {"id": f"fc_{HEX}_1", "type": "function_call", "status": "completed", "call_id": "toolu_1",
         "name": "get_weather", "arguments": '{"city":"Paris","days":2}'},
        {"id": f"fc_{HEX}_2", "type": "function_call", "status": "completed", "call_id": "toolu_2",
         "name": "get_time", "arguments": "{}"},
    ]


def test_thinking_becomes_reasoning_items_carrying_the_signature_and_redacted_thinking_is_kept():
    content = [
        {"type": "thinking", "thinking": "First, then.", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "thinking", "thinking": "", "signature": "sig2"},
        text("Answer."),
    ]
    response = encode_response(anthropic_message(content), ctx())
    assert_valid("Response", response)
    assert response["output"][:3] == [
        {"id": f"rs_{HEX}_0", "type": "reasoning", "summary": [{"type": "summary_text", "text": "First, then."}],
         "encrypted_content": "sig1", "status": "completed"},
        {"id": f"rs_{HEX}_1", "type": "reasoning", "summary": [],
         "encrypted_content": REDACTED_THINKING_PREFIX + "EmwKAhgB", "status": "completed"},
        {"id": f"rs_{HEX}_2", "type": "reasoning", "summary": [], "encrypted_content": "sig2",
         "status": "completed"},
    ]
    assert response["output"][3]["content"][0]["text"] == "Answer."


def test_empty_text_blocks_make_no_message_item():
    response = encode_response(anthropic_message([text(""), tool_use("toolu_1")], "tool_use"), ctx())
    assert [item["type"] for item in response["output"]] == ["function_call"]
    assert encode_response(anthropic_message([]), ctx())["output"] == []


@pytest.mark.parametrize(
    ("stop_reason", "status", "reason"),
    [
        ("end_turn", "completed", None),
        ("stop_sequence", "completed", None),
        ("tool_use", "completed", None),
        ("pause_turn", "completed", None),
        (None, "completed", None),
        ("max_tokens", "incomplete", "max_output_tokens"),
        ("model_context_window_exceeded", "incomplete", "max_output_tokens"),
        ("refusal", "incomplete", "content_filter"),
    ],
)
def test_stop_reason_sets_the_status_and_the_last_item_of_an_incomplete_answer(stop_reason, status, reason):
    content = [{"type": "thinking", "thinking": "t", "signature": "s"}, text("Partial ans")]
    response = encode_response(anthropic_message(content, stop_reason), ctx())
    assert_valid("Response", response)
    assert response["status"] == status
    assert response["incomplete_details"] == ({"reason": reason} if reason else None)
    assert [item["status"] for item in response["output"]] == ["completed", status]


def test_usage_counts_cache_reads_and_writes_as_input_tokens():
    message = anthropic_message([text("x")], cache_creation_input_tokens=5, cache_read_input_tokens=20,
                                output_tokens=7)
    assert encode_response(message, ctx())["usage"] == {
        "input_tokens": 35,
        "input_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 5},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 42,
    }


def test_json_schema_tool_call_is_rendered_as_the_message_text():
    content = [tool_use("toolu_1", "report", {"city": "Paris", "temp": 18})]
    response = encode_response(anthropic_message(content, "tool_use"), ctx(json_tool="report"))
    assert_valid("Response", response)
    assert response["status"] == "completed"
    [item] = response["output"]
    assert item["type"] == "message"
    assert item["content"][0]["text"] == '{"city":"Paris","temp":18}'


def test_response_to_items_are_the_output_of_encode_response():
    message = anthropic_message([{"type": "thinking", "thinking": "t", "signature": "s"}, text("a"),
                                 tool_use("toolu_1")], "max_tokens")
    assert response_to_items(message, ctx()) == encode_response(message, ctx())["output"]


def test_request_id_without_the_req_prefix_still_gives_safe_ids():
    context = ResponseContext(request_id="abc.def", created=1, model="m")
    response = encode_response(anthropic_message([text("x")]), context)
    assert (response["id"], response["output"][0]["id"]) == ("resp_abc_def", "msg_abc_def_0")


def test_output_items_sent_back_as_input_rebuild_the_anthropic_turn():
    """Stateless multi-turn (store: false): the client sends the whole output back with its tool outputs."""
    content = [
        {"type": "thinking", "thinking": "I need the weather.", "signature": "EqQBsig"},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        text("Checking."),
        tool_use("toolu_01A", tool_input={"city": "Paris"}),
        tool_use("toolu_01B", "get_time"),
    ]
    output = encode_response(anthropic_message(content, "tool_use"), ctx())["output"]
    follow_up = [user("Weather?"), *output, function_output("toolu_01A", "18C"), function_output("toolu_01B", "9:00")]
    request = decode_request(body(follow_up, reasoning={"effort": "low"}, tools=[WEATHER_TOOL, TIME_TOOL]),
                             request_id="req_ffff")
    assert_valid("CreateResponse", body(follow_up))
    assert request.params["messages"] == [
        {"role": "user", "content": [text("Weather?")]},
        {"role": "assistant", "content": content},
        {"role": "user", "content": [tool_result("toolu_01A", "18C"), tool_result("toolu_01B", "9:00")]},
    ]
    assert "thinking" in request.params
    assert [item["id"] for item in request.options["input_items"][1:6]] == [item["id"] for item in output]


# --- stream ------------------------------------------------------------------------------------------------


WEATHER_ARGS = '{"city":"Paris","unit":"C"}'
TIME_ARGS = '{"tz":"Europe/Paris"}'
TOOL_STREAM = [
    message_start(),
    {"type": "ping"},
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    block_delta(0, {"type": "thinking_delta", "thinking": "The user wants "}),
    block_delta(0, {"type": "thinking_delta", "thinking": "weather and time."}),
    block_delta(0, {"type": "signature_delta", "signature": "EqQBCkYIARgC"}),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    text_delta(1, "Let me "),
    text_delta(1, "check."),
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}),
    json_delta(2, ""),
    json_delta(2, WEATHER_ARGS[:9]),
    {"type": "ping"},
    json_delta(2, WEATHER_ARGS[9:20]),
    json_delta(2, WEATHER_ARGS[20:]),
    block_stop(2),
    block_start(3, {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}),
    json_delta(3, TIME_ARGS[:5]),
    json_delta(3, TIME_ARGS[5:]),
    block_stop(3),
    {"type": "some_future_event", "data": 1},
    *message_end("tool_use"),
]
TOOL_STREAM_MESSAGE = anthropic_message(
    [
        {"type": "thinking", "thinking": "The user wants weather and time.", "signature": "EqQBCkYIARgC"},
        text("Let me check."),
        tool_use("toolu_01", tool_input=json.loads(WEATHER_ARGS)),
        tool_use("toolu_02", "get_time", json.loads(TIME_ARGS)),
    ],
    "tool_use",
)


def test_stream_renders_thinking_text_and_two_tool_calls_in_order():
    usage = Usage(input_tokens=10, output_tokens=42, cache_read_input_tokens=3)
    events = run_stream(TOOL_STREAM, usage)
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = [event["item"] for event in of_type(events, "response.output_item.added")]
    assert added[2] == {"id": f"fc_{HEX}_2", "type": "function_call", "status": "in_progress",
                        "call_id": "toolu_01", "name": "get_weather", "arguments": ""}
    assert of_type(events, "response.function_call_arguments.done")[1]["name"] == "get_time"
    final = events[-1]["response"]
    assert final["usage"]["input_tokens"] == 13 and final["usage"]["output_tokens"] == 42
    # The streamed answer is exactly what the same message gives without streaming.
    expected = encode_response(TOOL_STREAM_MESSAGE, ctx())
    assert final == {**expected, "usage": final["usage"]}


def test_stream_max_tokens_ends_with_response_incomplete_and_the_cut_item_incomplete():
    events = run_stream([message_start(), block_start(0, {"type": "text", "text": ""}), text_delta(0, "Once upon"),
                         block_stop(0), *message_end("max_tokens")])
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert of_type(events, "response.output_item.done")[0]["item"]["status"] == "incomplete"


def test_streamed_tool_call_without_input_gets_empty_object_arguments():
    events = run_stream([message_start(), block_start(0, {"type": "tool_use", "id": "toolu_01", "name": "get_time",
                                                          "input": {}}),
                         json_delta(0, ""), block_stop(0), *message_end("tool_use")])
    assert [event["delta"] for event in of_type(events, "response.function_call_arguments.delta")] == ["{}"]
    assert events[-1]["response"]["output"][0]["arguments"] == "{}"


def test_consecutive_text_blocks_stream_into_one_message_and_empty_ones_into_none():
    events = run_stream([
        message_start(),
        block_start(0, {"type": "text", "text": ""}), block_stop(0),
        block_start(1, {"type": "text", "text": ""}), text_delta(1, "Paris "), block_stop(1),
        block_start(2, {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "lookup", "input": {}}),
        json_delta(2, '{"q": "x"}'), block_stop(2),
        block_start(3, {"type": "text", "text": ""}),
        block_delta(3, {"type": "citations_delta", "citation": {}}), text_delta(3, "is sunny."), block_stop(3),
        *message_end("end_turn"),
    ])
    [message] = events[-1]["response"]["output"]
    assert message["content"][0]["text"] == "Paris is sunny."


def test_streamed_json_schema_tool_fragments_become_output_text():
    start = block_start(0, {"type": "tool_use", "id": "toolu_01", "name": "report", "input": {}})
    events = run_stream([message_start(), start, json_delta(0, '{"city":'), json_delta(0, ' "Paris"}'), block_stop(0),
                         *message_end("tool_use")], json_tool="report")
    assert not of_type(events, "response.function_call_arguments.delta")
    assert of_type(events, "response.output_text.done")[0]["text"] == '{"city": "Paris"}'
    assert events[-1]["response"]["status"] == "completed"


def test_streamed_json_schema_tool_without_input_is_an_empty_json_object():
    events = run_stream([message_start(), block_start(0, {"type": "tool_use", "id": "t", "name": "report",
                                                          "input": {}}),
                         block_stop(0), *message_end("tool_use")], json_tool="report")
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "{}"


def test_stream_redacted_thinking_is_a_reasoning_item_without_summary_events():
    events = run_stream([message_start(), block_start(0, {"type": "redacted_thinking", "data": "EmwKAhgB"}),
                         block_stop(0), block_start(1, {"type": "text", "text": ""}), text_delta(1, "Hi"),
                         block_stop(1), *message_end("end_turn")])
    assert not of_type(events, "response.reasoning_summary_part.added")
    assert events[-1]["response"]["output"][0]["encrypted_content"] == REDACTED_THINKING_PREFIX + "EmwKAhgB"


def test_stream_starts_on_the_first_event_and_ping_or_unknown_events_add_nothing():
    encoder = StreamEncoder(ctx())
    started = sse_events(encoder.feed({"type": "ping"}))
    assert [event["type"] for event in started] == ["response.created", "response.in_progress"]
    assert started[0]["response"]["status"] == "in_progress" and "usage" not in started[0]["response"]
    assert encoder.feed(message_start()) == b""
    assert encoder.feed({"type": "brand_new_event"}) == b""
    assert encoder.feed(block_delta(5, {"type": "text_delta", "text": "stray"})) == b""
    assert encoder.feed(block_start(0, {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "lookup"})) == b""


def test_stream_failure_closes_the_open_item_and_ends_with_response_failed():
    encoder = StreamEncoder(ctx(store=False))
    raw = encoder.feed(message_start())
    raw += encoder.feed(block_start(0, {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}))
    raw += encoder.feed(json_delta(0, '{"ci'))
    raw += encoder.fail(GatewayError(503, "The upstream is overloaded.", type="overloaded_error"))
    events = sse_events(raw)
    check_stream(events)
    assert [event["type"] for event in events[-2:]] == ["response.output_item.done", "response.failed"]
    assert events[-2]["item"]["status"] == "incomplete"
    failed = events[-1]["response"]
    assert (failed["status"], failed["error"]) == ("failed", {"code": "server_error",
                                                              "message": "The upstream is overloaded."})
    assert failed["store"] is False and "usage" not in failed
    assert encoder.response == failed
    assert encoder.feed(json_delta(0, 'ty"}')) == b""
    assert encoder.finish(Usage()) == b""
    assert encoder.fail(GatewayError(500, "again")) == b""


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limit_exceeded"), (400, "invalid_prompt"),
                                              (500, "server_error"), (502, "server_error")])
def test_a_failure_before_any_event_still_starts_the_stream(status, code):
    encoder = StreamEncoder(ctx())
    events = sse_events(encoder.fail(GatewayError(status, "Nope.")))
    check_stream(events)
    assert [event["type"] for event in events] == ["response.created", "response.in_progress", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == code


def test_finish_after_message_stop_only_once_and_nothing_after_it():
    encoder = StreamEncoder(ctx())
    for event in [message_start(), block_start(0, {"type": "text", "text": ""}), text_delta(0, "x"), block_stop(0),
                  *message_end("end_turn")]:
        encoder.feed(event)
    assert encoder.finish(Usage(input_tokens=1, output_tokens=1))
    assert encoder.finish(Usage()) == b""
    assert encoder.fail(GatewayError(500, "late")) == b""
    assert encoder.feed(text_delta(0, "late")) == b""
    assert encoder.response["status"] == "completed"


# --- stream: property -------------------------------------------------------------------------------------

_fragments = st.lists(st.text(alphabet="abc {}\":,é", min_size=0, max_size=5), max_size=4)
_blocks = st.one_of(
    st.tuples(st.just("text"), _fragments, st.booleans()),
    st.tuples(st.just("thinking"), _fragments, st.sampled_from(["", "sig"])),
    st.tuples(st.just("redacted_thinking"), st.just("data")),
    st.tuples(st.just("tool_use"), st.sampled_from(["get_weather", "get_time", "report"]),
              st.sampled_from([{}, {"city": "Paris"}, {"n": [1, 2]}])),
    st.tuples(st.just("server_tool_use"), st.sampled_from([{}, {"query": "weather in Paris"}]),
              st.sampled_from(["results", "error", None])),
)


def _stream_of(blocks, stop_reason):
    """The Anthropic stream for `blocks`, and the message the same answer gives without streaming."""
    events, content = [message_start()], []
    for index, spec in enumerate(blocks):
        kind = spec[0]
        if kind == "text":
            events += [block_start(index, text("")), *[text_delta(index, piece) for piece in spec[1]]]
            content.append(text("".join(spec[1])))
            if spec[2]:
                events.append(block_delta(index, {"type": "citations_delta", "citation": CITATION}))
                content[-1]["citations"] = [CITATION]
        elif kind == "thinking":
            events.append(block_start(index, {"type": "thinking", "thinking": "", "signature": ""}))
            events += [block_delta(index, {"type": "thinking_delta", "thinking": piece}) for piece in spec[1]]
            events.append(block_delta(index, {"type": "signature_delta", "signature": spec[2]}))
            content.append({"type": "thinking", "thinking": "".join(spec[1]), "signature": spec[2]})
        elif kind == "redacted_thinking":
            events.append(block_start(index, {"type": "redacted_thinking", "data": spec[1]}))
            content.append({"type": "redacted_thinking", "data": spec[1]})
        elif kind == "tool_use":
            arguments = orjson.dumps(spec[2]).decode() if spec[2] else ""
            events.append(block_start(index, tool_use(f"toolu_{index}", spec[1])))
            events += [json_delta(index, arguments[:3]), json_delta(index, arguments[3:])]
            content.append(tool_use(f"toolu_{index}", spec[1], spec[2]))
        else:
            call = {"type": "server_tool_use", "id": f"srvtoolu_{index}", "name": "web_search", "input": {}}
            arguments = orjson.dumps(spec[1]).decode() if spec[1] else ""
            events += [block_start(index, call), json_delta(index, arguments[:5]), json_delta(index, arguments[5:])]
            content.append({**call, "input": spec[1]})
            if spec[2] is not None:
                events.append(block_stop(index))
                index += 100  # a block of its own
                result = search_result(f"srvtoolu_{index - 100}", error=spec[2] == "error")
                events.append(block_start(index, result))
                content.append(result)
        events.append(block_stop(index))
    events += message_end(stop_reason)
    return events, anthropic_message(content, stop_reason)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_blocks, max_size=6),
    st.sampled_from(["end_turn", "tool_use", "max_tokens", "refusal", None]),
    st.sampled_from([None, "report"]),
    st.integers(0, 40),
)
def test_any_stream_follows_the_grammar_and_matches_the_non_streamed_response(blocks, stop_reason, json_tool,
                                                                              cut):
    events, message = _stream_of(blocks, stop_reason)
    options = {"json_tool": json_tool} if json_tool else {}
    usage = Usage(input_tokens=10, output_tokens=5)

    encoder = StreamEncoder(ctx(**options))
    raw = b"".join(encoder.feed(event) for event in events) + encoder.finish(usage)
    streamed = sse_events(raw)
    check_stream(streamed, full_schema=False)
    assert streamed[-1]["response"] == encode_response(message, ctx(**options))

    # The same stream failing after any event still ends in order, with response.failed.
    encoder = StreamEncoder(ctx(**options))
    raw = b"".join(encoder.feed(event) for event in events[: cut % (len(events) + 1)])
    raw += encoder.fail(GatewayError(502, "The upstream stream ended before the message was complete."))
    failed = sse_events(raw)
    check_stream(failed, full_schema=False)
    assert failed[-1]["type"] == "response.failed"


# --- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [invalid("Invalid 'input'.", "input"), GatewayError(429, "Slow down."),
                                   GatewayError(529, "Overloaded.", type="overloaded_error")])
def test_error_body_is_the_openai_error_shape_shared_with_chat(error):
    payload = error_body(error)
    assert payload == openai_chat.error_body(error)
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert_valid("ErrorResponse", payload)


# --- tools beyond function: namespace, custom, local_shell, web_search --------------------------------

SPAWN = {"type": "function", "name": "spawn_agent", "description": "Start a sub-agent.",
         "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}}
WAIT = {"type": "function", "name": "wait_agent", "parameters": {"type": "object", "properties": {}}}
AGENTS = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [SPAWN, WAIT]}
GRAMMAR = "start: 'ok'"
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
               "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR}}
SHELL = {"type": "local_shell"}
SEARCH = {"type": "web_search", "external_web_access": True, "search_context_size": "high",
          "filters": {"allowed_domains": ["example.com"]},
          "user_location": {"type": "approximate", "city": "Paris", "country": "FR", "region": None}}


def test_namespace_functions_become_anthropic_tools_named_namespace__name():
    request = decoded(tools=[WEATHER_TOOL, AGENTS])
    assert [tool["name"] for tool in request.params["tools"]] == [
        "get_weather", "multi_agent_v1__spawn_agent", "multi_agent_v1__wait_agent"]
    spawn = request.params["tools"][1]
    assert spawn["input_schema"] is SPAWN["parameters"]
    assert spawn["description"] == "Start a sub-agent.\n\nPart of the multi_agent_v1 tools: Sub-agents."
    assert request.options["tools"] == [WEATHER_TOOL, AGENTS]
    assert request.options["tool_calls"] == {
        "multi_agent_v1__spawn_agent": {"type": "function", "name": "spawn_agent", "namespace": "multi_agent_v1"},
        "multi_agent_v1__wait_agent": {"type": "function", "name": "wait_agent", "namespace": "multi_agent_v1"},
    }


def test_a_namespaced_call_comes_back_as_a_function_call_carrying_its_namespace():
    request = body(tools=[AGENTS])
    message = anthropic_message([tool_use("toolu_1", "multi_agent_v1__spawn_agent", {"task": "fix"})], "tool_use")
    response = encode_response(message, ctx_for(request))
    assert_valid("Response", response)
    assert response["output"] == [{"id": f"fc_{HEX}_0", "type": "function_call", "status": "completed",
                                   "call_id": "toolu_1", "namespace": "multi_agent_v1", "name": "spawn_agent",
                                   "arguments": '{"task":"fix"}'}]


def test_a_streamed_namespaced_call_names_the_function_and_its_namespace():
    events = [message_start(), block_start(0, tool_use("toolu_1", "multi_agent_v1__wait_agent")),
              json_delta(0, ""), block_stop(0), *message_end("tool_use")]
    encoder = StreamEncoder(ctx_for(body(tools=[AGENTS])))
    raw = b"".join(encoder.feed(event) for event in events) + encoder.finish(Usage(input_tokens=1, output_tokens=1))
    streamed = sse_events(raw)
    check_stream(streamed)
    added = of_type(streamed, "response.output_item.added")[0]["item"]
    assert (added["namespace"], added["name"]) == ("multi_agent_v1", "wait_agent")
    assert of_type(streamed, "response.function_call_arguments.done")[0]["name"] == "wait_agent"
    assert streamed[-1]["response"]["output"][0]["arguments"] == "{}"


def test_namespaced_function_calls_sent_back_round_trip_to_the_same_tool_use():
    request = body(tools=[AGENTS])
    message = anthropic_message([text("On it."), tool_use("toolu_1", "multi_agent_v1__spawn_agent",
                                                          {"task": "fix"})], "tool_use")
    items = response_to_items(message, ctx_for(request))
    follow_up = decode_request(body([user("Go"), *items, function_output("toolu_1", "spawned")], tools=[AGENTS]),
                               request_id=REQUEST_ID)
    assert follow_up.params["messages"][1:] == [
        {"role": "assistant", "content": [text("On it."), tool_use("toolu_1", "multi_agent_v1__spawn_agent",
                                                                   {"task": "fix"})]},
        {"role": "user", "content": [tool_result("toolu_1", "spawned")]},
    ]
    stored = follow_up.options["input_items"]
    assert stored[2]["namespace"] == "multi_agent_v1" and stored[2]["name"] == "spawn_agent"
    for item in stored:
        assert_valid("ItemResource", item)


def test_a_stored_turn_with_a_namespaced_call_replays_under_its_flattened_name():
    history = [{"role": "user", "content": [text("Go")]},
               {"role": "assistant", "content": [tool_use("toolu_1", "multi_agent_v1__spawn_agent", {"task": "x"})]}]
    request = decode_request(body([function_output("toolu_1", "done")], tools=[AGENTS]), history=history)
    assert request.params["messages"][1]["content"][0]["name"] == "multi_agent_v1__spawn_agent"
    assert request.params["tools"][0]["name"] == "multi_agent_v1__spawn_agent"


def test_custom_tools_take_one_raw_input_string_and_their_grammar_in_the_description():
    request = decoded(tools=[APPLY_PATCH])
    [tool] = request.params["tools"]
    assert tool["name"] == "apply_patch"
    assert tool["input_schema"]["properties"] == {"input": {"type": "string",
                                                            "description": "The tool's entire raw input."}}
    assert tool["input_schema"]["required"] == ["input"]
    assert tool["description"].startswith("Edit files.\n\napply_patch is a freeform tool")
    assert tool["description"].endswith(f"The input must match this lark grammar:\n{GRAMMAR}")
    assert request.options["tool_calls"] == {"apply_patch": {"type": "custom", "name": "apply_patch"}}


def test_a_custom_tool_call_comes_back_as_custom_tool_call_with_its_raw_input():
    patch = "*** Begin Patch\n*** End Patch"
    message = anthropic_message([tool_use("toolu_1", "apply_patch", {"input": patch})], "tool_use")
    response = encode_response(message, ctx_for(body(tools=[APPLY_PATCH])))
    assert_valid("Response", response)
    assert response["output"] == [{"id": f"ctc_{HEX}_0", "type": "custom_tool_call", "status": "completed",
                                   "call_id": "toolu_1", "name": "apply_patch", "input": patch}]
    # A model that ignored the one-string schema still gets its input through, as JSON.
    odd = anthropic_message([tool_use("toolu_1", "apply_patch", {"patch": "x"})], "tool_use")
    assert encode_response(odd, ctx_for(body(tools=[APPLY_PATCH])))["output"][0]["input"] == '{"patch":"x"}'


def test_a_streamed_custom_tool_call_ends_with_its_whole_input():
    patch = 'line "one"\nline two'
    arguments = orjson.dumps({"input": patch}).decode()
    events = [message_start(), block_start(0, tool_use("toolu_1", "apply_patch")),
              json_delta(0, arguments[:7]), json_delta(0, arguments[7:]), block_stop(0), *message_end("tool_use")]
    streamed = run_stream(events, **decode_request(body(tools=[APPLY_PATCH])).options)
    assert not of_type(streamed, "response.function_call_arguments.delta")
    assert [event["delta"] for event in of_type(streamed, "response.custom_tool_call_input.delta")] == [patch]
    assert of_type(streamed, "response.custom_tool_call_input.done")[0]["input"] == patch
    assert streamed[-1]["response"]["output"][0]["input"] == patch


def test_custom_tool_calls_and_outputs_sent_back_become_tool_use_and_tool_result():
    namespaced = {"type": "namespace", "name": "edits", "description": "Edits.", "tools": [
        {"type": "custom", "name": "apply_patch"}]}
    request = decoded([
        user("Fix it"),
        {"type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": "patch text"},
        {"type": "custom_tool_call", "call_id": "call_2", "namespace": "edits", "name": "apply_patch", "input": ""},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "Done"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": [input_text("Done too")]},
    ], tools=[APPLY_PATCH, namespaced])
    assert request.params["messages"][1:] == [
        {"role": "assistant", "content": [tool_use("call_1", "apply_patch", {"input": "patch text"}),
                                          tool_use("call_2", "edits__apply_patch", {"input": ""})]},
        {"role": "user", "content": [tool_result("call_1", "Done"), tool_result("call_2", [text("Done too")])]},
    ]
    for item in request.options["input_items"]:
        assert_valid("ItemResource", item)
    message = anthropic_message([tool_use("toolu_9", "edits__apply_patch", {"input": "p"})], "tool_use")
    item = encode_response(message, ctx(**request.options))["output"][0]
    assert (item["type"], item["namespace"], item["name"], item["input"]) == (
        "custom_tool_call", "edits", "apply_patch", "p")


def test_local_shell_is_a_tool_whose_calls_come_back_as_local_shell_calls():
    request = decoded(tools=[SHELL])
    [tool] = request.params["tools"]
    assert tool["name"] == "local_shell" and tool["input_schema"]["required"] == ["command"]
    tool_input = {"command": ["bash", "-lc", "ls"], "working_directory": "/repo", "timeout_ms": 5000}
    message = anthropic_message([tool_use("toolu_1", "local_shell", tool_input)], "tool_use")
    response = encode_response(message, ctx(**request.options))
    assert_valid("Response", response)
    assert response["output"] == [{
        "id": f"lsh_{HEX}_0", "type": "local_shell_call", "status": "completed", "call_id": "toolu_1",
        "action": {"type": "exec", "command": ["bash", "-lc", "ls"], "timeout_ms": 5000,
                   "working_directory": "/repo", "env": {}, "user": None},
    }]
    arguments = orjson.dumps(tool_input).decode()
    streamed = run_stream([message_start(), block_start(0, tool_use("toolu_1", "local_shell")),
                           json_delta(0, arguments[:9]), json_delta(0, arguments[9:]), block_stop(0),
                           *message_end("tool_use")], **request.options)
    assert streamed[-1]["response"]["output"] == response["output"]
    assert of_type(streamed, "response.output_item.added")[0]["item"]["action"]["command"] == []


def test_local_shell_calls_and_outputs_sent_back_become_tool_use_and_tool_result():
    action = {"type": "exec", "command": ["ls"], "env": {}, "timeout_ms": None, "working_directory": None}
    request = decoded([
        user("List"),
        {"type": "local_shell_call", "id": "lsh_1", "call_id": "call_1", "action": action, "status": "completed"},
        {"type": "local_shell_call_output", "id": "call_1", "output": '{"output": "a.txt"}'},
    ], tools=[SHELL])
    assert request.params["messages"][1:] == [
        {"role": "assistant", "content": [tool_use("call_1", "local_shell", {"command": ["ls"], "env": {}})]},
        {"role": "user", "content": [tool_result("call_1", '{"output": "a.txt"}')]},
    ]
    assert request.options["input_items"][1]["id"] == "lsh_1"
    for item in request.options["input_items"]:
        assert_valid("ItemResource", item)


def test_web_search_becomes_anthropic_server_web_search_with_its_filters_and_location():
    for kind in ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"):
        request = decoded(tools=[{**SEARCH, "type": kind}])
        assert request.params["tools"] == [{"type": "web_search_20250305", "name": "web_search",
                                            "allowed_domains": ["example.com"],
                                            "user_location": {"type": "approximate", "city": "Paris",
                                                              "country": "FR"}}]
        assert request.options["tools"] == [{**SEARCH, "type": kind}]
        assert "tool_calls" not in request.options
    assert decoded(tools=[{"type": "web_search"}]).params["tools"] == [{"type": "web_search_20250305",
                                                                        "name": "web_search"}]


def _searched_message(*, error=False):
    cited = {**text("Paris is sunny today."), "citations": [CITATION, {"type": "char_location", "cited_text": "x",
                                                                        "document_index": 0}]}
    return anthropic_message([
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "paris weather"}},
        search_result("srvtoolu_1", error=error),
        text("Here is what I found. "),
        cited,
    ], server_tool_use={"web_search_requests": 1})


def test_a_web_search_answer_is_a_web_search_call_and_a_message_with_url_citations():
    response = encode_response(_searched_message(), ctx_for(body(tools=[SEARCH])))
    assert_valid("Response", response)
    search, message = response["output"]
    assert search == {"id": f"ws_{HEX}_0", "type": "web_search_call", "status": "completed",
                      "action": {"type": "search", "query": "paris weather", "queries": ["paris weather"],
                                 "sources": [{"type": "url", "url": "https://example.com/paris"}]}}
    [part] = message["content"]
    assert part["text"] == "Here is what I found. Paris is sunny today."
    assert part["annotations"] == [{"type": "url_citation", "url": "https://example.com/paris",
                                    "title": "Paris weather", "start_index": 22, "end_index": 43}]
    assert part["text"][22:43] == "Paris is sunny today."


def test_a_failed_web_search_is_a_failed_web_search_call():
    search = encode_response(_searched_message(error=True), ctx_for(body(tools=[SEARCH])))["output"][0]
    assert search["status"] == "failed" and "sources" not in search["action"]


def test_a_streamed_web_search_gives_the_search_events_and_the_same_response():
    message = _searched_message()
    query = orjson.dumps({"query": "paris weather"}).decode()
    events = [
        message_start(),
        block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        json_delta(0, query[:6]), json_delta(0, query[6:]), block_stop(0),
        block_start(1, message["content"][1]), block_stop(1),
        block_start(2, text("")), text_delta(2, "Here is what I found. "), block_stop(2),
        block_start(3, {**text(""), "citations": []}),
        block_delta(3, {"type": "citations_delta", "citation": CITATION}),
        text_delta(3, "Paris is sunny "), text_delta(3, "today."), block_stop(3),
        *message_end("end_turn"),
    ]
    options = decode_request(body(tools=[SEARCH])).options
    streamed = run_stream(events, **options)
    kinds = [event["type"] for event in streamed]
    assert [kind for kind in kinds if kind.startswith("response.web_search_call.")] == [
        "response.web_search_call.in_progress", "response.web_search_call.searching",
        "response.web_search_call.completed"]
    [added] = of_type(streamed, "response.output_text.annotation.added")
    assert added["annotation"]["start_index"] == 22 and added["annotation_index"] == 0
    assert streamed[-1]["response"]["output"] == encode_response(message, ctx(**options))["output"]


def test_web_search_calls_sent_back_are_kept_as_items_but_not_sent_to_the_model():
    request = decoded([
        user("Weather?"),
        {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "paris"}},
        assistant([{"type": "output_text", "text": "Sunny.", "annotations": [
            {"type": "url_citation", "url": "https://example.com/", "title": "x", "start_index": 0, "end_index": 6}]}]),
        user("Thanks"),
    ], tools=[SEARCH])
    assert request.params["messages"] == [
        {"role": "user", "content": [text("Weather?")]},
        {"role": "assistant", "content": [text("Sunny.")]},
        {"role": "user", "content": [text("Thanks")]},
    ]
    stored = request.options["input_items"][1]
    assert stored == {"id": f"ws_{HEX}_in1", "type": "web_search_call", "status": "completed",
                      "action": {"type": "search", "query": "paris"}}
    assert_valid("ItemResource", stored)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "function", "name": "spawn_agent"}, "multi_agent_v1__spawn_agent"),
        ({"type": "function", "name": "multi_agent_v1__spawn_agent"}, "multi_agent_v1__spawn_agent"),
        ({"type": "function", "name": "get_weather"}, "get_weather"),
        ({"type": "custom", "name": "apply_patch"}, "apply_patch"),
        ({"type": "web_search_preview"}, "web_search"),
    ],
)
def test_tool_choice_can_force_namespaced_custom_and_web_search_tools(choice, expected):
    request = decoded(tools=[WEATHER_TOOL, AGENTS, APPLY_PATCH, SEARCH], tool_choice=choice)
    assert request.params["tool_choice"] == {"type": "tool", "name": expected}


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({"type": "custom", "name": "get_weather"}, "tool_choice.name"),
        ({"type": "function", "name": "apply_patch"}, "tool_choice.name"),
        ({"type": "file_search"}, "tool_choice.type"),
        ({"type": "mcp", "server_label": "docs"}, "tool_choice.type"),
        ({"type": "allowed_tools", "mode": "auto", "tools": []}, "tool_choice.type"),
    ],
)
def test_tool_choice_naming_a_tool_of_another_kind_or_an_unserved_one_is_rejected(choice, param):
    assert rejected(body(tools=[WEATHER_TOOL, APPLY_PATCH], tool_choice=choice)).param == param


@pytest.mark.parametrize(
    ("tool", "name"),
    [
        ({"type": "file_search", "vector_store_ids": ["vs_1"]}, "file_search"),
        ({"type": "code_interpreter", "container": {"type": "auto"}}, "code_interpreter"),
        ({"type": "image_generation"}, "image_generation"),
        ({"type": "computer_use_preview", "display_width": 1, "display_height": 1, "environment": "linux"},
         "computer_use_preview"),
        ({"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com"}, "MCP"),
        ({"type": "tool_search"}, "tool_search"),
        ({"type": "shell"}, "shell"),
        ({"type": "apply_patch"}, "apply_patch"),
        ({"type": "programmatic_tool_calling"}, "programmatic"),
    ],
)
def test_tools_claude_cannot_serve_are_a_400_naming_the_tool_and_its_index(tool, name):
    error = rejected(body(tools=[WEATHER_TOOL, tool]))
    assert error.param == "tools[1].type"
    assert error.message.startswith("Invalid 'tools[1].type': ") and name in error.message


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "namespace", "name": "ns", "tools": []}], "tools[0].tools"),
        ([{"type": "namespace", "tools": [SPAWN]}], "tools[0].name"),
        ([{"type": "namespace", "name": "ns", "tools": [{"type": "web_search"}]}], "tools[0].tools[0].type"),
        ([{"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "a b"}]}],
         "tools[0].tools[0].name"),
        ([{"type": "namespace", "name": "ns", "tools": [{"type": "mcp", "name": "x"}]}], "tools[0].tools[0].type"),
        ([{"type": "namespace", "name": "n" * 120, "tools": [SPAWN]}], "tools[0].tools[0].name"),
        ([{"type": "function", "name": "ns__spawn_agent"},
          {"type": "namespace", "name": "ns", "tools": [SPAWN]}], "tools[1].tools[0].name"),
        ([{"type": "custom"}], "tools[0].name"),
        ([{"type": "custom", "name": "x", "format": {"type": "grammar", "syntax": "ebnf", "definition": "a"}}],
         "tools[0].format.syntax"),
        ([{"type": "custom", "name": "x", "format": {"type": "grammar", "syntax": "lark"}}],
         "tools[0].format.definition"),
        ([{"type": "custom", "name": "x", "format": {"type": "json"}}], "tools[0].format.type"),
        ([SHELL, {"type": "function", "name": "local_shell"}], "tools[1].name"),
        ([{"type": "web_search", "filters": {"allowed_domains": "example.com"}}], "tools[0].filters.allowed_domains"),
        ([{"type": "web_search", "user_location": {"type": "approximate", "city": 5}}],
         "tools[0].user_location.city"),
        ([{"type": "brand_new_tool"}], "tools[0].type"),
    ],
)
def test_invalid_tools_beyond_functions_are_rejected_naming_the_field_path(tools, param):
    assert rejected(body(tools=tools)).param == param


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "custom_tool_call", "call_id": "c", "name": "x"}, "input[1].input"),
        ({"type": "function_call", "call_id": "c", "name": "x", "arguments": "{}", "namespace": 5},
         "input[1].namespace"),
        ({"type": "custom_tool_call_output", "call_id": "c"}, "input[1].output"),
        ({"type": "local_shell_call", "call_id": "c", "action": {"type": "exec", "command": "ls"}},
         "input[1].action.command"),
        ({"type": "local_shell_call", "call_id": "c"}, "input[1].action"),
        ({"type": "local_shell_call_output", "output": "x"}, "input[1].call_id"),
        ({"type": "local_shell_call_output", "id": "c", "output": 5}, "input[1].output"),
        ({"type": "web_search_call", "action": "search"}, "input[1].action"),
    ],
)
def test_invalid_tool_items_are_rejected_naming_the_field_path(item, param):
    assert rejected(body([user("q"), item])).param == param
