"""The OpenAI Chat Completions codec: request translation, response and stream rendering, error bodies.

Pure unit tests (no Django, no network). Every response, chunk and error the codec produces is checked
against the official OpenAI OpenAPI schemas when the spec file is present.
"""

from __future__ import annotations

import json
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import ANTHROPIC_REQUEST_FIELDS, GatewayError, ResponseContext, Usage, invalid, nesting_exceeds
from gateway.protocols.openai_chat import (
    JSON_OBJECT_INSTRUCTION,
    JSON_SCHEMA_INSTRUCTION,
    StreamEncoder,
    decode_request,
    encode_response,
    error_body,
)
from tests.support.anthropic_events import (
    anthropic_message,
    block_delta,
    block_start,
    block_stop,
    json_delta,
    message_end,
    message_start,
)
from tests.support.openapi import spec_available, spec_path, validate

SPEC_AVAILABLE = spec_available()
MODEL = "claude-test"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather", "parameters": WEATHER_SCHEMA},
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time"}}
SAFE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


# --- helpers -----------------------------------------------------------------------------------------


def assert_valid(schema_name: str, instance: object) -> None:
    """Schema check; without the spec file it is skipped, which test_openai_spec_is_present reports."""
    if SPEC_AVAILABLE:
        validate(schema_name, instance)


def body(messages=None, **fields):
    return {"model": MODEL, "messages": messages or [{"role": "user", "content": "Hi"}], **fields}


def params(messages=None, **fields) -> dict:
    return decode_request(body(messages, **fields)).params


def rejected(request) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        decode_request(request)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


def user(content):
    return {"role": "user", "content": content}


def assistant(content=None, **fields):
    return {"role": "assistant", "content": content, **fields}


def tool(tool_call_id, content):
    return {"role": "tool", "tool_call_id": tool_call_id, "content": content}


def call(call_id, name="get_weather", arguments='{"city": "Paris"}'):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def text(value):
    return {"type": "text", "text": value}


def tool_result(tool_use_id, content=None):
    block = {"type": "tool_result", "tool_use_id": tool_use_id}
    if content is not None:
        block["content"] = content
    return block


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url, "detail": "high"}}


def ctx(**options) -> ResponseContext:
    return ResponseContext(request_id="req_abc", created=1_700_000_000, model="claude-shown", options=options)


def sse_payloads(raw: bytes) -> list:
    """Split SSE bytes into parsed `data:` payloads; `[DONE]` stays the string "[DONE]"."""
    assert raw.endswith(b"\n\n")
    payloads = []
    for event in raw.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: "), event
        data = event[len(b"data: ") :]
        payloads.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return payloads


def run_stream(events, usage=None, **options) -> list:
    encoder = StreamEncoder(ctx(**options))
    raw = b"".join(encoder.feed(event) for event in events)
    raw += encoder.finish(usage or Usage(input_tokens=10, output_tokens=5))
    payloads = sse_payloads(raw)
    for chunk in payloads[:-1]:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    return payloads


def deltas(chunks) -> list[dict]:
    return [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]


@pytest.mark.skipif(not SPEC_AVAILABLE, reason=f"OpenAI spec not found at {spec_path()}: schema checks skipped")
def test_openai_spec_is_present_so_schema_checks_run():
    with pytest.raises(AssertionError, match="required property"):
        validate("ErrorResponse", {"error": {"message": "m", "type": "t"}})


# --- request: envelope and validation -----------------------------------------------------------------


def test_model_and_stream_come_from_the_body():
    request = decode_request(body(stream=True))
    assert (request.model, request.stream) == (MODEL, True)
    assert "model" not in request.params and "stream" not in request.params


@pytest.mark.parametrize("payload", [None, [], "hi", 3])
def test_body_that_is_not_an_object_is_rejected(payload):
    assert "JSON object" in rejected(payload).message


@pytest.mark.parametrize("model", [None, "", 3])
def test_model_must_be_a_non_empty_string(model):
    request = body()
    request["model"] = model
    assert rejected(request).param == "model"


@pytest.mark.parametrize("messages", [None, [], "Hi", {"role": "user"}])
def test_messages_must_be_a_non_empty_array(messages):
    request = body()
    request["messages"] = messages
    assert rejected(request).param == "messages"


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ("Hi", "messages[0]"),
        ({"content": "Hi"}, "messages[0].role"),
        ({"role": "bot", "content": "Hi"}, "messages[0].role"),
        ({"role": "user"}, "messages[0].content"),
    ],
)
def test_each_message_needs_an_object_with_a_known_role_and_content(message, param):
    assert rejected(body([message])).param == param


def test_legacy_function_role_is_rejected_as_unsupported():
    error = rejected(body([user("Hi"), {"role": "function", "name": "f", "content": "1"}]))
    assert error.param == "messages[1].role"
    assert "not supported" in error.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": [1]}, "top_p"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"stop": [1]}, "stop[0]"),
        ({"stop": 7}, "stop"),
        ({"response_format": "json"}, "response_format"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"thinking": {"type": "enabled", "budget_tokens": "lots"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1023}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "adaptive"}}, "thinking.type"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": 5}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": 1}}]}, "tools[0].function.parameters"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "description": 1}}]},
            "tools[0].function.description",
        ),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "allowed_tools"}}, "tool_choice.type"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": 1}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": 1}}}, "response_format.json_schema.name"),
        ({"tools": [WEATHER_TOOL], "tool_choice": 5}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "parallel_tool_calls": "no"}, "parallel_tool_calls"),
        ({"messages": [user(5)]}, "messages[0].content"),
        ({"messages": [user(["Hi"])]}, "messages[0].content[0]"),
        ({"messages": [user([{"text": "Hi"}])]}, "messages[0].content[0].type"),
        ({"messages": [user([{"type": "text", "text": None}])]}, "messages[0].content[0].text"),
        ({"messages": [user([{"type": "video", "video": "x"}])]}, "messages[0].content[0].type"),
        ({"messages": [user("Hi"), assistant(7)]}, "messages[1].content"),
        ({"messages": [user("Hi"), assistant([image_part("https://a.example/b.png")])]}, "messages[1].content[0].type"),
        ({"messages": [user("Hi"), assistant("x", refusal=5)]}, "messages[1].refusal"),
        (
            {"messages": [user("Hi"), assistant(None, function_call={"name": "f", "arguments": "{}"})]},
            "messages[1].function_call",
        ),
        (
            {"messages": [user("Hi"), assistant(tool_calls=[{**call("c1"), "type": "mcp"}])]},
            "messages[1].tool_calls[0].type",
        ),
        ({"messages": [user("Hi"), assistant(tool_calls=[call("c1")]), tool("c1", None)]}, "messages[2].content"),
        ({"messages": [user("Hi"), assistant(tool_calls={})]}, "messages[1].tool_calls"),
        ({"messages": [user("Hi"), assistant(tool_calls=[{"type": "function"}])]}, "messages[1].tool_calls[0].id"),
        (
            {"messages": [user("Hi"), assistant(tool_calls=[call("c1", arguments=5)])]},
            "messages[1].tool_calls[0].function.arguments",
        ),
        ({"messages": [user("Hi"), {"role": "tool", "content": "1"}]}, "messages[1].tool_call_id"),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url"}]}, user("Hi")]},
            "messages[0].content[0].type",
        ),
    ],
)
def test_wrong_types_are_rejected_naming_the_field_path(fields, param):
    assert rejected(body(**fields)).param == param


def test_error_messages_read_like_openai():
    assert rejected(body(temperature="hot")).message == (
        "Invalid type for 'temperature': expected a number, but got a string instead."
    )
    request = body()
    del request["model"]
    assert rejected(request).message == "Missing required parameter: 'model'."


# --- request: sampling and limits ---------------------------------------------------------------------


def test_system_and_developer_messages_anywhere_join_into_system():
    messages = [
        {"role": "system", "content": "Be brief."},
        user("Hi"),
        {"role": "developer", "content": [text("Answer in French."), text("No emoji.")]},
        assistant("Salut"),
        {"role": "system", "content": ""},
        user("Again"),
    ]
    result = params(messages)
    assert result["system"] == "Be brief.\nAnswer in French.\nNo emoji."
    assert [message["role"] for message in result["messages"]] == ["user", "assistant", "user"]


def test_max_completion_tokens_wins_over_max_tokens():
    assert params(max_tokens=100, max_completion_tokens=200)["max_tokens"] == 200
    assert params(max_tokens=100)["max_tokens"] == 100


def test_max_tokens_is_left_out_when_the_client_gave_none_for_the_catalog_default():
    assert "max_tokens" not in params()
    assert "max_tokens" not in params(max_tokens=None)


@pytest.mark.parametrize("value", [0, -5, 1.5, True, "10"])
def test_max_tokens_must_be_a_positive_integer(value):
    assert rejected(body(max_completion_tokens=value)).param == "max_completion_tokens"


@pytest.mark.parametrize(("given", "sent"), [(0, 0), (0.7, 0.7), (1, 1), (1.5, 1), (2, 1)])
def test_temperature_is_capped_to_one(given, sent):
    assert params(temperature=given)["temperature"] == sent


@pytest.mark.parametrize("value", [-0.1, 2.01, float("nan")])
def test_temperature_outside_zero_to_two_is_rejected(value):
    assert rejected(body(temperature=value)).param == "temperature"


def test_top_p_between_zero_and_one_is_forwarded():
    assert params(top_p=0.9)["top_p"] == 0.9
    assert rejected(body(top_p=1.5)).param == "top_p"


def test_stop_string_becomes_a_stop_sequences_list():
    assert params(stop="END")["stop_sequences"] == ["END"]


def test_whitespace_only_stop_sequences_are_dropped():
    assert params(stop=[" ", "\n", "STOP", ""])["stop_sequences"] == ["STOP"]
    assert "stop_sequences" not in params(stop=["\n\n"])
    assert "stop_sequences" not in params(stop=[])


def test_more_than_four_stop_sequences_are_rejected():
    assert rejected(body(stop=["a", "b", "c", "d", "e"])).param == "stop"


@pytest.mark.parametrize("n", [None, 1])
def test_n_of_one_or_null_is_accepted(n):
    assert decode_request(body(n=n)).params


@pytest.mark.parametrize("n", [2, 0, True, 1.0, "1", 10**30])
def test_n_other_than_one_is_rejected(n):
    error = rejected(body(n=n))
    assert error.param == "n"
    assert "n must be 1" in error.message


UNFORWARDED = {
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "seed": 7,
    "logprobs": True,
    "top_logprobs": 3,
    "user": "alice",
    "metadata": {"team": "a"},
    "store": True,
    "service_tier": "auto",
    "prediction": {"type": "content", "content": "x"},
    "modalities": ["text"],
    "audio": {"voice": "alloy", "format": "mp3"},
    "web_search_options": {},
    "verbosity": "low",
    "prompt_cache_key": "k",
    "safety_identifier": "s",
    "some_future_field": {"x": 1},
    "top_k": 5,
}


def test_openai_only_and_unknown_fields_are_accepted_and_not_forwarded():
    assert params(**UNFORWARDED) == {"messages": [{"role": "user", "content": [text("Hi")]}]}


# --- request: tools -----------------------------------------------------------------------------------


def test_function_tools_become_anthropic_tools_sharing_the_schema_object():
    strict_tool = {"type": "function", "function": {**WEATHER_TOOL["function"], "strict": True}}
    result = params(tools=[strict_tool])
    assert result["tools"] == [
        {"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_SCHEMA}
    ]
    assert result["tools"][0]["input_schema"] is WEATHER_SCHEMA


def test_tool_without_parameters_gets_an_empty_object_schema_and_no_description():
    assert params(tools=[TIME_TOOL])["tools"] == [
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
    ]


def test_tools_other_than_function_and_custom_are_rejected():
    error = rejected(body(tools=[{"type": "web_search", "web_search": {}}]))
    assert error.param == "tools[0].type"
    assert error.message == ("Invalid value for 'tools[0].type': \"web_search\". Supported values are: 'function' "
                             "and 'custom'.")


def tool_use(tool_id, name, tool_input):
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


GREP = {"type": "custom", "custom": {"name": "grep", "description": "Search files.",
                                      "format": {"type": "grammar",
                                                 "grammar": {"syntax": "regex", "definition": "[a-z]+"}}}}


def test_custom_tools_take_one_raw_input_string_and_come_back_as_custom_tool_calls():
    request = decode_request(body(tools=[GREP, WEATHER_TOOL]))
    tool = request.params["tools"][0]
    assert tool["name"] == "grep" and tool["input_schema"]["required"] == ["input"]
    assert tool["description"].startswith("Search files.\n\ngrep is a freeform tool")
    assert tool["description"].endswith("The input must match this regex grammar:\n[a-z]+")
    assert request.options["custom_tools"] == ["grep"]
    message = anthropic_message([tool_use("toolu_1", "grep", {"input": "needle"}),
                                 tool_use("toolu_2", "get_weather", {"city": "Paris"})], "tool_use")
    completion = encode_response(message, ctx(**request.options))
    assert_valid("CreateChatCompletionResponse", completion)
    calls = completion["choices"][0]["message"]["tool_calls"]
    assert calls[0] == {"id": "toolu_1", "type": "custom", "custom": {"name": "grep", "input": "needle"}}
    assert calls[1]["type"] == "function"


def test_custom_tool_calls_sent_back_and_forced_become_tool_use_and_tool_choice():
    custom_call = {"id": "call_1", "type": "custom", "custom": {"name": "grep", "input": "needle"}}
    result = params(messages=[user("Find it"), assistant(tool_calls=[custom_call]),
                              {"role": "tool", "tool_call_id": "call_1", "content": "found"}],
                    tools=[GREP], tool_choice={"type": "custom", "custom": {"name": "grep"}})
    assert result["messages"][1]["content"] == [tool_use("call_1", "grep", {"input": "needle"})]
    assert result["tool_choice"] == {"type": "tool", "name": "grep"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "custom"}]}, "tools[0].custom"),
        ({"tools": [{"type": "custom", "custom": {"name": "g", "format": {"type": "grammar"}}}]},
         "tools[0].custom.format.grammar"),
        ({"tools": [{"type": "custom", "custom": {"name": "g", "format": {
            "type": "grammar", "grammar": {"syntax": "ebnf", "definition": "x"}}}}]},
         "tools[0].custom.format.grammar.syntax"),
        ({"tools": [GREP], "stream": True}, "stream"),
        ({"tools": [GREP], "tool_choice": {"type": "custom", "custom": {"name": "nope"}}},
         "tool_choice.custom.name"),
        ({"messages": [user("Hi"), assistant(tool_calls=[{"id": "c", "type": "custom", "custom": {"name": "g"}}])]},
         "messages[1].tool_calls[0].custom.input"),
    ],
)
def test_invalid_custom_tools_are_rejected_naming_the_field_path(fields, param):
    assert rejected(body(**fields)).param == param


@pytest.mark.parametrize("name", ["get weather", "x" * 65, "tool.call"])
def test_tool_names_anthropic_cannot_take_are_rejected(name):
    assert rejected(body(tools=[{"type": "function", "function": {"name": name}}])).param == "tools[0].function.name"


def test_duplicate_tool_names_are_rejected():
    assert rejected(body(tools=[TIME_TOOL, TIME_TOOL])).param == "tools[1].function.name"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_maps_to_anthropic(choice, expected):
    assert params(tools=[WEATHER_TOOL], tool_choice=choice)["tool_choice"] == expected


def test_tool_choice_naming_a_tool_not_in_tools_is_rejected():
    choice = {"type": "function", "function": {"name": "get_stock"}}
    assert rejected(body(tools=[WEATHER_TOOL], tool_choice=choice)).param == "tool_choice.function.name"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),
    ],
)
def test_parallel_tool_calls_false_disables_parallel_tool_use(choice, expected):
    assert params(tools=[WEATHER_TOOL], tool_choice=choice, parallel_tool_calls=False)["tool_choice"] == expected


def test_parallel_tool_calls_true_changes_nothing():
    assert "tool_choice" not in params(tools=[WEATHER_TOOL], parallel_tool_calls=True)


def test_tool_choice_without_tools_is_dropped():
    result = params(tool_choice="required", parallel_tool_calls=False)
    assert "tool_choice" not in result and "tools" not in result


# --- request: content parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "media_type"),
    [
        ("data:image/png;base64,iVBORw0K", "image/png"),
        ("data:image/jpg;base64,/9j/4AAQ", "image/jpeg"),
        ("data:image/JPEG;base64,/9j/4AAQ", "image/jpeg"),
        ("data:image/gif;base64,R0lGOD", "image/gif"),
        ("data:image/webp;base64,UklGR", "image/webp"),
    ],
)
def test_data_url_image_becomes_a_base64_image_block(url, media_type):
    [message] = params([user([text("What is this?"), image_part(url)])])["messages"]
    assert message["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": url.partition(",")[2]},
    }


def test_unsupported_image_type_is_rejected_naming_the_url():
    error = rejected(body([user("Hi"), assistant("Yes?"), user([image_part("data:image/bmp;base64,Qk0")])]))
    assert error.param == "messages[2].content[0].image_url.url"
    assert "image/bmp" in error.message


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://example.com/cat.png"])
def test_http_image_url_becomes_a_url_source_and_is_not_downloaded(url):
    [message] = params([user([image_part(url)])])["messages"]
    assert message["content"] == [{"type": "image", "source": {"type": "url", "url": url}}]


@pytest.mark.parametrize("url", ["ftp://example.com/cat.png", "file:///etc/passwd", "cat.png", "data:image/png,raw"])
def test_other_image_urls_are_rejected(url):
    assert rejected(body([user([image_part(url)])])).param == "messages[0].content[0].image_url.url"


def test_pdf_file_part_becomes_a_document_block():
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0"}}
    [message] = params([user([part, text("Summarise")])])["messages"]
    assert message["content"][0] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0"},
    }


@pytest.mark.parametrize(
    ("file", "param"),
    [
        ({"file_data": "data:text/plain;base64,aGk="}, "messages[0].content[0].file.file_data"),
        ({"file_id": "file-abc"}, "messages[0].content[0].file.file_id"),
        ({}, "messages[0].content[0].file.file_data"),
    ],
)
def test_files_other_than_inline_pdf_are_rejected(file, param):
    assert rejected(body([user([{"type": "file", "file": file}])])).param == param


def test_input_audio_is_rejected_as_unsupported():
    part = {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}
    error = rejected(body([user([part])]))
    assert error.param == "messages[0].content[0].type"
    assert "not supported" in error.message


# --- request: assistant turns and tool results ----------------------------------------------------------


def test_assistant_tool_calls_become_tool_use_blocks_without_an_empty_text_block():
    for empty in (None, ""):
        messages = [user("Weather?"), assistant(empty, tool_calls=[call("call_1"), call("call_2", "get_time", "")])]
        assert params(messages)["messages"][1] == {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
            ],
        }


def test_assistant_text_comes_before_its_tool_use_blocks():
    content = params([user("Weather?"), assistant("Checking.", tool_calls=[call("c1")])])["messages"][1]["content"]
    assert [block["type"] for block in content] == ["text", "tool_use"]


@pytest.mark.parametrize("arguments", ['{"city":', "[1, 2]", "not json"])
def test_tool_call_arguments_that_are_not_a_json_object_are_rejected(arguments):
    error = rejected(body([user("Hi"), assistant(tool_calls=[call("c1", arguments=arguments)])]))
    assert error.param == "messages[1].tool_calls[0].function.arguments"


def test_assistant_refusal_becomes_text():
    messages = [user("Hi"), assistant([{"type": "refusal", "refusal": "I can't help with that."}]), user("Why?")]
    assert params(messages)["messages"][1]["content"] == [text("I can't help with that.")]
    messages[1] = assistant(None, refusal="No.")
    assert params(messages)["messages"][1]["content"] == [text("No.")]


def test_round_tripped_reasoning_fields_rebuild_a_leading_thinking_block():
    turn = assistant("Sunny.", reasoning_content="Let me think.", reasoning_signature="sig==")
    content = params([user("Weather?"), turn, user("Thanks")])["messages"][1]["content"]
    assert content == [{"type": "thinking", "thinking": "Let me think.", "signature": "sig=="}, text("Sunny.")]


def test_reasoning_content_without_signature_is_ignored():
    turn = assistant("Sunny.", reasoning_content="Let me think.")
    assert params([user("Weather?"), turn, user("Thanks")])["messages"][1]["content"] == [text("Sunny.")]


def test_tool_message_becomes_a_tool_result_block():
    messages = [
        user("Weather?"),
        assistant(tool_calls=[call("c1"), call("c2"), call("c3")]),
        tool("c1", "18C"),
        tool("c2", [text("sunny"), text(""), text("windy")]),
        tool("c3", ""),
    ]
    assert params(messages)["messages"][2]["content"] == [
        tool_result("c1", "18C"),
        tool_result("c2", [text("sunny"), text("windy")]),
        tool_result("c3"),
    ]


def test_consecutive_tool_messages_become_one_user_message_results_first():
    messages = [
        user("Weather and time?"),
        assistant(tool_calls=[call("c1"), call("c2", "get_time", "{}")]),
        tool("c1", "18C"),
        user("Also, be brief."),
        tool("c2", "12:00"),
    ]
    result = params(messages)["messages"]
    assert len(result) == 3
    assert result[2] == {
        "role": "user",
        "content": [tool_result("c1", "18C"), tool_result("c2", "12:00"), text("Also, be brief.")],
    }


def test_consecutive_messages_of_the_same_role_are_merged():
    image = image_part("https://example.com/a.png")
    messages = [user("a"), user([text("b"), image]), assistant("c"), assistant("d"), user("e")]
    result = params(messages)["messages"]
    assert [message["role"] for message in result] == ["user", "assistant", "user"]
    assert [block.get("text") for block in result[0]["content"]] == ["a", "b", None]
    assert result[1]["content"] == [text("c"), text("d")]


def test_empty_text_is_never_sent_and_emptied_messages_are_dropped():
    messages = [user(""), assistant(""), user([text(""), text("Hi")]), assistant(None), user("")]
    assert params(messages)["messages"] == [{"role": "user", "content": [text("Hi")]}]


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "Be brief."}],
        [{"role": "developer", "content": "Be brief."}, user("")],
        [user([text("")]), assistant("  ")],
    ],
)
def test_a_request_with_no_user_or_assistant_content_is_rejected(messages):
    assert rejected(body(messages)).param == "messages"


def test_tool_call_ids_are_sanitised_the_same_way_on_both_sides():
    messages = [user("List files"), assistant(tool_calls=[call("functions.Bash:0")]), tool("functions.Bash:0", "ok")]
    result = params(messages)["messages"]
    safe = result[1]["content"][0]["id"]
    assert re.fullmatch(r"functions_Bash_0_[0-9a-f]{8}", safe) and result[2]["content"][0]["tool_use_id"] == safe


def test_name_on_messages_is_ignored():
    messages = [{"role": "user", "name": "alice", "content": "Hi"}, assistant("Hello", name="bot"), user("Bye")]
    assert all(set(message) == {"role", "content"} for message in params(messages)["messages"])


def test_trailing_assistant_prefill_is_forwarded_without_trailing_whitespace():
    result = params([user("Name a colour."), assistant([text("The colour is "), text("  \n")])])
    assert result["messages"][-1] == {"role": "assistant", "content": [text("The colour is")]}


def test_trailing_whitespace_only_prefill_is_dropped():
    assert params([user("Hi"), assistant(" \n")])["messages"] == [{"role": "user", "content": [text("Hi")]}]


# --- request: response_format --------------------------------------------------------------------------


def test_response_format_text_adds_nothing():
    assert params(response_format={"type": "text"}) == params()


def test_response_format_json_object_appends_a_system_instruction():
    messages = [{"role": "system", "content": "Be brief."}, user("Hi")]
    result = params(messages, response_format={"type": "json_object"})
    assert result["system"] == "Be brief.\n" + JSON_OBJECT_INSTRUCTION
    assert "tools" not in result


def test_response_format_json_schema_becomes_a_forced_tool():
    fmt = {"type": "json_schema", "json_schema": {"name": "weather report", "schema": WEATHER_SCHEMA, "strict": True}}
    request = decode_request(body(response_format=fmt))
    assert request.params["tools"] == [{"name": "weather_report", "input_schema": WEATHER_SCHEMA}]
    assert request.params["tool_choice"] == {"type": "tool", "name": "weather_report"}
    assert request.options["json_tool"] == "weather_report"
    assert "system" not in request.params


def test_response_format_json_schema_tool_name_defaults_to_json_response():
    request = decode_request(body(response_format={"type": "json_schema", "json_schema": {"schema": WEATHER_SCHEMA}}))
    assert request.options["json_tool"] == "json_response"


def test_response_format_json_schema_description_and_missing_schema():
    fmt = {"type": "json_schema", "json_schema": {"name": "anything", "description": "Any object"}}
    assert params(response_format=fmt)["tools"] == [
        {"name": "anything", "description": "Any object", "input_schema": {"type": "object"}}
    ]


@pytest.mark.parametrize(
    ("fields", "schema"),
    [
        ({"tools": [TIME_TOOL]}, WEATHER_SCHEMA),
        ({"reasoning_effort": "low"}, WEATHER_SCHEMA),
        ({}, {"type": "array", "items": {"type": "string"}}),
    ],
    ids=["client-tools", "thinking", "non-object-schema"],
)
def test_response_format_json_schema_falls_back_to_a_system_instruction(fields, schema):
    fmt = {"type": "json_schema", "json_schema": {"name": "report", "schema": schema}}
    request = decode_request(body(response_format=fmt, **fields))
    assert request.params["system"] == JSON_SCHEMA_INSTRUCTION + json.dumps(schema, separators=(",", ":"))
    assert "json_tool" not in request.options
    assert "tool_choice" not in request.params


# --- request: thinking -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 32768), ("max", 32768)],
)
def test_reasoning_effort_maps_to_a_thinking_budget(effort, budget):
    assert params(reasoning_effort=effort)["thinking"] == {"type": "enabled", "budget_tokens": budget}


def test_reasoning_effort_none_means_no_thinking():
    assert "thinking" not in params(reasoning_effort="none")


def test_thinking_object_wins_over_reasoning_effort():
    enabled = {"type": "enabled", "budget_tokens": 4000}
    assert params(thinking=enabled, reasoning_effort="high")["thinking"] == enabled
    assert params(thinking=enabled)["thinking"] is not enabled
    assert "thinking" not in params(thinking={"type": "disabled"}, reasoning_effort="high")


def test_thinking_drops_temperature_and_top_p():
    result = params(reasoning_effort="low", temperature=0.2, top_p=0.5)
    assert "temperature" not in result and "top_p" not in result


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_thinking_with_a_forced_tool_choice_is_rejected(choice):
    error = rejected(body(tools=[WEATHER_TOOL], tool_choice=choice, reasoning_effort="low"))
    assert error.param == "tool_choice"


def test_thinking_is_switched_off_when_the_last_tool_turn_lacks_its_signature():
    messages = [user("Weather?"), assistant(tool_calls=[call("c1")]), tool("c1", "18C")]
    result = params(messages, tools=[WEATHER_TOOL], reasoning_effort="high", temperature=0.3, tool_choice="required")
    assert "thinking" not in result
    assert result["temperature"] == 0.3
    assert result["tool_choice"] == {"type": "any"}


def test_thinking_stays_on_when_the_last_tool_turn_round_trips_its_signature():
    turn = assistant(tool_calls=[call("c1")], reasoning_content="Need weather.", reasoning_signature="sig")
    result = params([user("Weather?"), turn, tool("c1", "18C")], tools=[WEATHER_TOOL], reasoning_effort="high")
    assert result["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert result["messages"][1]["content"][0]["type"] == "thinking"


# --- request: streaming options ---------------------------------------------------------------------------


def test_include_usage_is_recorded_for_streams_only():
    streamed = decode_request(body(stream=True, stream_options={"include_usage": True}))
    assert streamed.options == {"include_usage": True, "store": True}
    assert decode_request(body(stream=False, stream_options={"include_usage": True})).options == {"store": True}
    assert decode_request(body(stream=True)).options == {"store": True}


def test_storage_options_are_decoded_and_checked():
    assert decode_request(body(store=False, conversation_id="conv_1")).options == {"store": False,
                                                                                 "conversation_id": "conv_1"}
    for bad in ({"store": "no"}, {"conversation_id": 7}, {"conversation_id": ""}):
        with pytest.raises(GatewayError) as raised:
            decode_request(body(**bad))
        assert raised.value.param == next(iter(bad))


# --- request: property ------------------------------------------------------------------------------------

_texts = st.one_of(st.just(""), st.just(" \n"), st.text(max_size=12))
_contents = st.one_of(_texts, st.lists(_texts.map(text), min_size=1, max_size=3))
_ids = st.text(alphabet="abcXYZ019_-.:/ ", min_size=1, max_size=10)
_arguments = st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=2)
_tool_calls = st.builds(lambda call_id, args: call(call_id, "f", json.dumps(args)), _ids, _arguments)
_messages = st.one_of(
    st.builds(
        lambda role, content: {"role": role, "content": content}, st.sampled_from(["system", "developer"]), _contents
    ),
    st.builds(user, _contents),
    st.builds(
        lambda content, calls, reasoning: assistant(content, **({"tool_calls": calls} if calls else {}), **reasoning),
        st.none() | _contents,
        st.lists(_tool_calls, max_size=2),
        st.sampled_from([{}, {"reasoning_content": "hm", "reasoning_signature": "sig"}]),
    ),
    st.builds(tool, _ids, _contents),
)
_requests = st.fixed_dictionaries(
    {"model": st.just(MODEL), "messages": st.lists(_messages, min_size=1, max_size=8)},
    optional={
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "max_tokens": st.integers(1, 100_000),
        "stop": st.lists(_texts, max_size=4),
        "reasoning_effort": st.sampled_from(["none", "low", "high"]),
        "tools": st.just([WEATHER_TOOL, TIME_TOOL]),
        "parallel_tool_calls": st.booleans(),
        "response_format": st.sampled_from(
            [
                {"type": "text"},
                {"type": "json_object"},
                {"type": "json_schema", "json_schema": {"schema": WEATHER_SCHEMA}},
            ]
        ),
        **{name: st.just(value) for name, value in UNFORWARDED.items()},
    },
)


def _text_blocks(blocks):
    for block in blocks:
        if block["type"] == "text":
            yield block
        elif block["type"] == "tool_result" and isinstance(block.get("content"), list):
            yield from block["content"]


@settings(max_examples=300, deadline=None)
@given(_requests)
def test_valid_requests_decode_to_well_formed_anthropic_params(request):
    try:
        result = decode_request(request).params
    except GatewayError as error:
        assert error.param == "messages"  # only when no user or assistant content is left
        return
    assert set(result) <= ANTHROPIC_REQUEST_FIELDS
    messages = result["messages"]
    assert all(first["role"] != second["role"] for first, second in zip(messages, messages[1:]))
    for message in messages:
        content = message["content"]
        assert content
        assert all(block["text"] for block in _text_blocks(content))
        kinds = [block["type"] for block in content]
        results = kinds.count("tool_result")
        assert kinds[:results] == ["tool_result"] * results
        for block in content:
            assert SAFE_ID.match(block.get("id") or block.get("tool_use_id") or "x")
    if messages[-1]["role"] == "assistant":
        last_block = messages[-1]["content"][-1]
        assert last_block["type"] != "text" or last_block["text"] == last_block["text"].rstrip()
    assert all(sequence.strip() for sequence in result.get("stop_sequences", ["x"]))
    if "thinking" in result:
        assert "temperature" not in result and "top_p" not in result


# --- response ----------------------------------------------------------------------------------------------


def test_text_response_becomes_a_chat_completion():
    response = encode_response(anthropic_message([text("Hello"), text(" world")]), ctx())
    assert_valid("CreateChatCompletionResponse", response)
    assert response == {
        "id": "chatcmpl-req_abc",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "claude-shown",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reason_maps_to_one_of_the_openai_finish_reasons(stop_reason, finish_reason):
    response = encode_response(anthropic_message([text("x")], stop_reason), ctx())
    assert_valid("CreateChatCompletionResponse", response)
    assert response["choices"][0]["finish_reason"] == finish_reason


def test_tool_use_blocks_become_tool_calls_with_compact_json_arguments():
    content = [
        text("Checking."),
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "days": 2}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
    ]
    response = encode_response(anthropic_message(content, "tool_use"), ctx())
    assert_valid("CreateChatCompletionResponse", response)
    message = response["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris","days":2}'},
        },
        {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert response["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_calls_only_response_has_null_content():
    content = [{"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}]
    response = encode_response(anthropic_message(content, "tool_use"), ctx())
    assert_valid("CreateChatCompletionResponse", response)
    assert response["choices"][0]["message"]["content"] is None


def test_thinking_goes_to_reasoning_content_with_the_last_signature_and_redacted_thinking_is_dropped():
    content = [
        {"type": "thinking", "thinking": "First, ", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "EqQB"},
        {"type": "thinking", "thinking": "then.", "signature": "sig2"},
        text("Answer."),
    ]
    response = encode_response(anthropic_message(content), ctx())
    assert_valid("CreateChatCompletionResponse", response)
    message = response["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"], message["reasoning_signature"]) == (
        "Answer.",
        "First, then.",
        "sig2",
    )


def test_reasoning_fields_are_absent_without_thinking_and_no_system_fingerprint_is_sent():
    response = encode_response(anthropic_message([text("x")]), ctx())
    assert "reasoning_content" not in response["choices"][0]["message"]
    assert "system_fingerprint" not in response


def test_usage_counts_cache_reads_and_writes_as_prompt_tokens():
    message = anthropic_message([text("x")], cache_creation_input_tokens=5, cache_read_input_tokens=20, output_tokens=7)
    usage = encode_response(message, ctx())["usage"]
    assert usage == {
        "prompt_tokens": 35,
        "completion_tokens": 7,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 20},
    }


def test_json_schema_tool_call_is_rendered_as_content_with_finish_reason_stop():
    content = [{"type": "tool_use", "id": "toolu_1", "name": "report", "input": {"city": "Paris", "temp": 18}}]
    response = encode_response(anthropic_message(content, "tool_use"), ctx(json_tool="report"))
    assert_valid("CreateChatCompletionResponse", response)
    choice = response["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": '{"city":"Paris","temp":18}', "refusal": None}
    assert choice["finish_reason"] == "stop"


# --- stream ------------------------------------------------------------------------------------------------


WEATHER_ARGS = '{"city": "Paris", "unit": "C"}'
TIME_ARGS = '{"tz": "Europe/Paris"}'
TOOL_STREAM = [
    message_start(),
    {"type": "ping"},
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    block_delta(0, {"type": "thinking_delta", "thinking": "The user wants "}),
    block_delta(0, {"type": "thinking_delta", "thinking": "weather and time."}),
    block_delta(0, {"type": "signature_delta", "signature": "EqQBCkYIARgC"}),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    block_delta(1, {"type": "text_delta", "text": "Let me "}),
    block_delta(1, {"type": "text_delta", "text": "check."}),
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


def test_stream_renders_thinking_text_and_two_parallel_tool_calls():
    usage = Usage(input_tokens=10, output_tokens=42, cache_read_input_tokens=3)
    payloads = run_stream(TOOL_STREAM, usage, include_usage=True)
    assert payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    assert {(chunk["id"], chunk["created"], chunk["model"]) for chunk in chunks} == {
        ("chatcmpl-req_abc", 1_700_000_000, "claude-shown")
    }
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 13,
        "completion_tokens": 42,
        "total_tokens": 55,
        "prompt_tokens_details": {"cached_tokens": 3},
    }

    stream_deltas = deltas(chunks)
    assert stream_deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(delta.get("reasoning_content", "") for delta in stream_deltas) == "The user wants weather and time."
    signatures = [delta["reasoning_signature"] for delta in stream_deltas if "reasoning_signature" in delta]
    assert signatures == ["EqQBCkYIARgC"]
    assert "".join(delta.get("content", "") for delta in stream_deltas) == "Let me check."

    calls = [tool_call for delta in stream_deltas for tool_call in delta.get("tool_calls", [])]
    assert [tool_call["index"] for tool_call in calls if "id" in tool_call] == [0, 1]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(tool_call) == {"index", "function"} for tool_call in calls if "id" not in tool_call)
    for index, upstream_json in [(0, WEATHER_ARGS), (1, TIME_ARGS)]:
        arguments = "".join(tool_call["function"]["arguments"] for tool_call in calls if tool_call["index"] == index)
        assert arguments == upstream_json

    finishes = [chunk["choices"][0]["finish_reason"] for chunk in chunks if chunk["choices"]]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    assert stream_deltas[-1] == {}


def test_stream_without_include_usage_has_no_usage_key_and_no_usage_chunk():
    payloads = run_stream(TOOL_STREAM)
    assert payloads[-1] == "[DONE]"
    assert all("usage" not in chunk and len(chunk["choices"]) == 1 for chunk in payloads[:-1])
    assert payloads[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_streamed_tool_call_without_input_gets_empty_object_arguments():
    events = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_01", "name": "get_time", "input": {}}),
        json_delta(0, ""),
        block_stop(0),
        *message_end("tool_use"),
    ]
    calls = [tool_call for delta in deltas(run_stream(events)[:-1]) for tool_call in delta.get("tool_calls", [])]
    assert calls == [
        {"index": 0, "id": "toolu_01", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        {"index": 0, "function": {"arguments": "{}"}},
    ]


def test_stream_ping_and_unknown_events_produce_nothing():
    encoder = StreamEncoder(ctx())
    assert encoder.feed({"type": "ping"}) == b""
    assert encoder.feed({"type": "message_stop"}) == b""
    assert encoder.feed({"type": "brand_new_event"}) == b""
    assert encoder.feed(block_delta(0, {"type": "citations_delta", "citation": {}})) == b""
    assert encoder.feed(block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search"})) == b""


def test_stream_message_delta_carries_the_mapped_finish_reason():
    events = [message_start(), block_start(0, {"type": "text", "text": ""}), block_stop(0), *message_end("max_tokens")]
    payloads = run_stream(events)
    assert payloads[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}


def test_streamed_json_schema_tool_fragments_become_content():
    events = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_01", "name": "report", "input": {}}),
        json_delta(0, '{"city":'),
        json_delta(0, ' "Paris"}'),
        block_stop(0),
        *message_end("tool_use"),
    ]
    stream_deltas = deltas(run_stream(events, json_tool="report")[:-1])
    assert not any("tool_calls" in delta for delta in stream_deltas)
    assert "".join(delta.get("content", "") for delta in stream_deltas) == '{"city": "Paris"}'
    assert stream_deltas[-1] == {}


def test_stream_failure_after_the_200_sends_one_error_and_nothing_after():
    encoder = StreamEncoder(ctx(include_usage=True))
    encoder.feed(message_start())
    encoder.feed(block_start(0, {"type": "text", "text": ""}))
    failed = encoder.fail(GatewayError(503, "The upstream is overloaded.", type="overloaded_error"))
    [payload] = sse_payloads(failed)
    assert payload == {
        "error": {"message": "The upstream is overloaded.", "type": "overloaded_error", "param": None, "code": None}
    }
    assert_valid("ErrorResponse", payload)
    assert encoder.feed(block_delta(0, {"type": "text_delta", "text": "late"})) == b""
    assert encoder.finish(Usage()) == b""
    assert encoder.fail(GatewayError(500, "again")) == b""


# --- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected_type"),
    [
        (400, None, "invalid_request_error"),
        (404, "model_not_found", "invalid_request_error"),
        (413, None, "invalid_request_error"),
        (401, None, "authentication_error"),
        (403, None, "permission_error"),
        (429, None, "rate_limit_error"),
        (429, "insufficient_quota", "insufficient_quota"),
        (500, None, "server_error"),
        (502, None, "server_error"),
        (503, None, "server_error"),
    ],
)
def test_error_body_type_follows_the_status(status, code, expected_type):
    payload = error_body(GatewayError(status, "Something went wrong.", code=code))
    assert_valid("ErrorResponse", payload)
    assert payload["error"] == {"message": "Something went wrong.", "type": expected_type, "param": None, "code": code}


def test_error_body_keeps_an_explicit_type_and_the_param():
    payload = error_body(invalid("Invalid 'n'.", "n"))
    assert payload["error"] == {"message": "Invalid 'n'.", "type": "invalid_request_error", "param": "n", "code": None}
    assert error_body(GatewayError(529, "Overloaded.", type="overloaded_error"))["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("depth, exceeds", [(1, False), (64, False), (65, True), (500, True)])
def test_nesting_depth_is_measured_over_objects_and_arrays(depth, exceeds):
    value: object = {}
    for level in range(depth - 1):
        value = {"a": value} if level % 2 else [value, "text", 1]
    assert nesting_exceeds(value) is exceeds
    assert nesting_exceeds("a string") is False


def test_tool_call_arguments_nested_too_deep_are_a_400_naming_the_param():
    arguments = '{"a":' * 100 + "{}" + "}" * 100
    with pytest.raises(GatewayError) as caught:
        decode_request({"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                  "function": {"name": "f", "arguments": arguments}}]}]})
    assert caught.value.status == 400 and caught.value.param == "messages[0].tool_calls[0].function.arguments"
