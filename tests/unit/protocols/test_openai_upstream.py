"""The pure translation to and from an OpenAI-compatible upstream (gateway.protocols.openai_chat.upstream): the
request both ways, the answer, and the stream translator's event grammar."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import GatewayError, MessageAccumulator, Usage
from gateway.protocols._common.tools import tool_id as _tool_id
from gateway.protocols.openai_chat import decode_request
from gateway.protocols.openai_chat.upstream import (
    StreamTranslator,
    UpstreamError,
    error_of,
    from_openai_response,
    to_openai_request,
)
from tests.support.openai_upstream import MODEL, SAFE_ID, USAGE, check_grammar, chunk, completion
from tests.support.openapi import spec_available, validate

SPEC_AVAILABLE = spec_available()
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PNG = "iVBORw0KGgo="


def assert_valid_request(request: dict) -> None:
    if SPEC_AVAILABLE:
        validate("CreateChatCompletionRequest", request)


def translate(messages, *, stream=False, **fields) -> dict:
    request = to_openai_request({"model": MODEL, "messages": messages, "max_tokens": 100, **fields}, stream=stream)
    assert_valid_request(request)
    return request


def rejected(messages, **fields) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        to_openai_request({"model": MODEL, "messages": messages, **fields}, stream=False)
    assert (caught.value.status, caught.value.type) == (400, "invalid_request_error")
    return caught.value


def text(value: str, **extra) -> dict:
    return {"type": "text", "text": value, **extra}


def tool_use(tool_id: str, name: str = "get_weather", **tool_input) -> dict:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def tool_result(tool_id: str, content=None, **extra) -> dict:
    block = {"type": "tool_result", "tool_use_id": tool_id, **extra}
    if content is not None:
        block["content"] = content
    return block


# --- request ---------------------------------------------------------------------------------------------


def test_system_text_and_blocks_become_a_leading_system_message():
    assert translate([{"role": "user", "content": "Hi"}], system="Be brief.")["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    blocks = [text("One.", cache_control={"type": "ephemeral"}), text("Two.")]
    assert translate([{"role": "user", "content": "Hi"}], system=blocks)["messages"][0] == {
        "role": "system", "content": "One.\nTwo."}


def test_user_images_become_image_url_parts_and_text_only_content_a_string():
    content = [
        text("What is this?"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert translate([{"role": "user", "content": content}])["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]},
    ]
    # DeepSeek and older servers take string contents only.
    assert translate([{"role": "user", "content": [text("a"), text("b")]}])["messages"] == [
        {"role": "user", "content": "a\nb"}]


def test_text_documents_become_text_and_other_documents_are_refused():
    plain = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The memo."}}
    assert translate([{"role": "user", "content": [plain, text("Summarise")]}])["messages"] == [
        {"role": "user", "content": "The memo.\nSummarise"}]
    blocks = {"type": "document", "source": {"type": "content", "content": [text("A"), text("B")]}}
    assert translate([{"role": "user", "content": [blocks]}])["messages"] == [{"role": "user", "content": "A\nB"}]
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    error = rejected([{"role": "user", "content": [pdf]}])
    assert "cannot take documents" in error.message
    assert error.param == "messages[0].content[0]"


def test_assistant_tool_use_becomes_tool_calls_with_compact_json_arguments():
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [text("Checking."), tool_use("toolu_1", city="Paris", days=2),
                                          tool_use("functions.lookup:1", "lookup")]},
        {"role": "user", "content": [tool_result("toolu_1", "Sunny"), tool_result("functions.lookup:1")]},
    ]
    assert translate(messages)["messages"][1:] == [
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather",
                                                                "arguments": '{"city":"Paris","days":2}'}},
            {"id": _tool_id("functions.lookup:1"), "type": "function", "function": {"name": "lookup",
                                                                                    "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": _tool_id("functions.lookup:1"), "content": ""},
    ]


def test_an_assistant_turn_of_tool_calls_only_has_null_content():
    messages = [{"role": "user", "content": "Go"}, {"role": "assistant", "content": [tool_use("t1")]},
                {"role": "user", "content": [tool_result("t1", "ok")]}]
    assert translate(messages)["messages"][1] == {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}


def test_tool_results_come_before_the_user_text_of_their_turn():
    messages = [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [tool_use("a"), tool_use("b")]},
        {"role": "user", "content": [text("Also, hurry."), tool_result("a", [text("one"), text("two")]),
                                     tool_result("b", "three", is_error=True)]},
    ]
    assert translate(messages)["messages"][2:] == [
        {"role": "tool", "tool_call_id": "a", "content": "one\ntwo"},
        {"role": "tool", "tool_call_id": "b", "content": "three"},
        {"role": "user", "content": "Also, hurry."},
    ]


def test_images_in_a_tool_result_move_to_the_user_message_after_the_tool_messages():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    messages = [
        {"role": "user", "content": "Screenshot please"},
        {"role": "assistant", "content": [tool_use("shot", "screenshot")]},
        {"role": "user", "content": [tool_result("shot", [text("Here:"), image])]},
    ]
    assert translate(messages)["messages"][2:] == [
        {"role": "tool", "tool_call_id": "shot", "content": "Here:"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
    ]


def test_thinking_blocks_are_dropped_and_a_thinking_only_turn_disappears():
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    redacted = {"type": "redacted_thinking", "data": "xyz"}
    messages = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": [thinking, text("A1")]},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": [redacted]},
        {"role": "user", "content": "Q3"},
    ]
    assert translate(messages)["messages"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
        {"role": "user", "content": "Q3"},
    ]


def test_assistant_texts_are_joined_without_separator():
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [text("Hel"), text("lo")]}]
    assert translate(messages)["messages"][1] == {"role": "assistant", "content": "Hello"}


def test_sampling_limits_and_user_are_forwarded_and_the_rest_dropped():
    request = translate(
        [{"role": "user", "content": "Hi"}], temperature=0.3, top_p=0.9, top_k=5, stop_sequences=["END", "STOP"],
        metadata={"user_id": "u-42"}, thinking={"type": "enabled", "budget_tokens": 2048}, service_tier="auto")
    assert request == {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100,
                       "temperature": 0.3, "top_p": 0.9, "stop": ["END", "STOP"], "user": "u-42"}


def test_streaming_requests_ask_for_the_usage_chunk():
    request = translate([{"role": "user", "content": "Hi"}], stream=True)
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert "stream" not in translate([{"role": "user", "content": "Hi"}])


def test_tools_become_function_tools():
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA,
              "cache_control": {"type": "ephemeral"}},
             {"name": "noop", "type": "custom", "input_schema": {"type": "object"}}]
    assert translate([{"role": "user", "content": "Hi"}], tools=tools)["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                          "parameters": WEATHER_SCHEMA}},
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
    ]


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, {"tool_choice": "auto"}),
    ({"type": "any"}, {"tool_choice": "required"}),
    ({"type": "none"}, {"tool_choice": "none"}),
    ({"type": "tool", "name": "get_weather"},
     {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
    ({"type": "any", "disable_parallel_tool_use": True}, {"tool_choice": "required", "parallel_tool_calls": False}),
])
def test_tool_choice_translates(choice, expected):
    tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    request = translate([{"role": "user", "content": "Hi"}], tools=tools, tool_choice=choice)
    assert {k: request[k] for k in ("tool_choice", "parallel_tool_calls") if k in request} == expected


def test_tool_choice_without_tools_is_not_sent():
    request = translate([{"role": "user", "content": "Hi"}], tool_choice={"type": "none"})
    assert "tool_choice" not in request and "tools" not in request


def test_server_tools_and_unknown_blocks_are_refused():
    error = rejected([{"role": "user", "content": "Hi"}],
                     tools=[{"type": "code_execution_20250825", "name": "code_execution"}])
    assert error.param == "tools[0].type"
    error = rejected([{"role": "user", "content": [{"type": "search_result", "source": "x", "content": []}]}])
    assert error.param == "messages[0].content[0].type"


def test_cache_control_is_stripped_everywhere():
    cache = {"cache_control": {"type": "ephemeral"}}
    messages = [
        {"role": "user", "content": [text("Hi", **cache),
                                     {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}, **cache}]},
        {"role": "assistant", "content": [text("Hello", **cache), {**tool_use("t1"), **cache}]},
        {"role": "user", "content": [tool_result("t1", [text("r", **cache)], **cache), text("more", **cache)]},
    ]
    request = translate(messages, system=[text("sys", **cache)],
                        tools=[{"name": "get_weather", "input_schema": WEATHER_SCHEMA, **cache}])
    assert b"cache_control" not in orjson.dumps(request)


# --- request: property -----------------------------------------------------------------------------------

_ids = st.text(alphabet="abcXYZ019_-.:/ ", min_size=1, max_size=10)
_texts = st.text(max_size=10)
_contents = st.one_of(_texts, st.lists(_texts.map(lambda t: {"type": "text", "text": t}), min_size=1, max_size=3))
_user_contents = st.one_of(_contents, st.just([
    {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]))
_arguments = st.dictionaries(st.text(max_size=4), st.integers(-1000, 1000) | st.text(max_size=4), max_size=2)


@st.composite
def _tool_exchange(draw) -> list[dict]:
    ids = draw(st.lists(_ids, min_size=1, max_size=3, unique=True))
    calls = [{"id": call_id, "type": "function",
              "function": {"name": draw(st.sampled_from(["get_weather", "get_time"])),
                           "arguments": json.dumps(draw(_arguments))}} for call_id in ids]
    exchange = [{"role": "assistant", "content": draw(st.none() | _contents), "tool_calls": calls}]
    exchange += [{"role": "tool", "tool_call_id": call_id, "content": draw(_contents)} for call_id in ids]
    return exchange


_exchanges = st.one_of(
    st.builds(lambda c: [{"role": "user", "content": c}], _user_contents),
    st.builds(lambda c: [{"role": "assistant", "content": c}], _contents),
    st.builds(lambda c: [{"role": "system", "content": c}], _contents),
    _tool_exchange(),
)
_requests = st.fixed_dictionaries(
    {"model": st.just(MODEL), "messages": st.lists(_exchanges, min_size=1, max_size=6).map(
        lambda exchanges: [message for exchange in exchanges for message in exchange])},
    optional={
        "max_tokens": st.integers(1, 4096),
        "temperature": st.floats(0, 2),
        "stop": st.lists(_texts, max_size=4),
        "reasoning_effort": st.sampled_from(["none", "low", "high"]),
        "tools": st.just([{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}},
                          {"type": "function", "function": {"name": "get_time"}}]),
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "parallel_tool_calls": st.booleans(),
    },
)


@settings(max_examples=300, deadline=None)
@given(_requests, st.booleans())
def test_decoded_chat_requests_translate_back_to_well_ordered_openai_requests(request, stream):
    try:
        ireq = decode_request(request)
    except GatewayError as error:
        # Nothing but empty content was left, or a forced tool with reasoning on.
        assert error.param in ("messages", "tool_choice")
        return
    translated = to_openai_request({"model": MODEL, **ireq.params}, stream=stream)
    assert json.loads(json.dumps(translated)) == orjson.loads(orjson.dumps(translated))
    assert_valid_request(translated)
    messages = translated["messages"]
    assert all(m["role"] != "system" for m in messages[1:])
    pending: set[str] = set()  # calls of the last assistant message not answered yet
    for position, message in enumerate(messages):
        if message["role"] == "tool":
            previous = next(m for m in reversed(messages[:position]) if m["role"] != "tool")
            assert previous["role"] == "assistant"
            assert message["tool_call_id"] in {c["id"] for c in previous["tool_calls"]}
            pending.discard(message["tool_call_id"])
            continue
        assert not pending, "an assistant's tool calls must all be answered before the next message"
        if message["role"] == "assistant":
            assert message["content"] or message.get("tool_calls")
            pending = {c["id"] for c in message.get("tool_calls", ())}
            assert all(SAFE_ID.match(call_id) for call_id in pending)


# --- response --------------------------------------------------------------------------------------------


def test_a_text_completion_becomes_an_anthropic_message():
    usage = {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
             "prompt_tokens_details": {"cached_tokens": 60}}
    assert from_openai_response(completion({"content": "Hello!"}, usage=usage), model=MODEL) == {
        "id": "msg_chatcmpl-abc123",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 40, "output_tokens": 7, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 60},
    }


def test_usage_without_details_and_deepseek_cache_hits():
    plain = from_openai_response(completion({"content": "x"}), model=MODEL)["usage"]
    assert plain == {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0,
                     "cache_read_input_tokens": 0}
    deepseek = {"prompt_tokens": 50, "completion_tokens": 2, "prompt_cache_hit_tokens": 32,
                "prompt_cache_miss_tokens": 18}
    assert from_openai_response(completion({"content": "x"}, usage=deepseek), model=MODEL)["usage"][
        "cache_read_input_tokens"] == 32
    usage = Usage()
    usage.update(from_openai_response(completion({"content": "x"}, usage=deepseek), model=MODEL)["usage"])
    assert usage.prompt_tokens == 50


def test_unreported_usage_is_estimated_rather_than_free():
    payload = completion({"content": "x" * 40})
    del payload["usage"]
    assert from_openai_response(payload, model=MODEL, estimated_input_tokens=77)["usage"] == {
        "input_tokens": 77, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    partial = completion({"content": "x" * 40}, usage={"completion_tokens": 3})
    assert from_openai_response(partial, model=MODEL, estimated_input_tokens=77)["usage"]["input_tokens"] == 77


def test_tool_calls_become_tool_use_blocks_with_sanitised_ids_that_round_trip():
    message = from_openai_response(completion({"content": None, "tool_calls": [
        {"id": "functions.Bash:0", "type": "function",
         "function": {"name": "Bash", "arguments": '{"command": "ls"}'}},
        {"id": "call 2", "type": "function", "function": {"name": "Bash", "arguments": "{not json"}},
        {"id": "call3", "type": "function", "function": {"name": "Bash", "arguments": "[1, 2]"}},
    ]}, finish_reason="tool_calls"), model=MODEL)
    assert message["content"] == [
        {"type": "tool_use", "id": _tool_id("functions.Bash:0"), "name": "Bash", "input": {"command": "ls"}},
        {"type": "tool_use", "id": _tool_id("call 2"), "name": "Bash", "input": {}},
        {"type": "tool_use", "id": "call3", "name": "Bash", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"
    follow_up = translate([
        {"role": "user", "content": "list"},
        {"role": "assistant", "content": message["content"]},
        {"role": "user", "content": [tool_result(block["id"], "ok") for block in message["content"]]},
    ])["messages"]
    ids = [_tool_id("functions.Bash:0"), _tool_id("call 2"), "call3"]
    assert ids[0].startswith("functions_Bash_0_") and ids[1].startswith("call_2_")
    assert [c["id"] for c in follow_up[1]["tool_calls"]] == ids  # already safe: unchanged on the way back
    assert [m["tool_call_id"] for m in follow_up[2:]] == ids


def test_tool_calls_without_ids_get_generated_ones():
    message = from_openai_response(completion({"tool_calls": [
        {"type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "", "type": "function", "function": {"name": "b", "arguments": "{}"}},
    ]}, finish_reason="tool_calls"), model=MODEL)
    ids = [block["id"] for block in message["content"]]
    assert ids == ["toolu_chatcmpl-abc123_0", "toolu_chatcmpl-abc123_1"]


def test_reasoning_content_becomes_an_unsigned_thinking_block_first():
    message = from_openai_response(completion({"content": "42", "reasoning_content": "Let me think."}), model=MODEL)
    assert message["content"] == [{"type": "thinking", "thinking": "Let me think.", "signature": ""},
                                  {"type": "text", "text": "42"}]
    newer = from_openai_response(completion({"content": "42", "reasoning": "Hm."}), model=MODEL)
    assert newer["content"][0] == {"type": "thinking", "thinking": "Hm.", "signature": ""}


@pytest.mark.parametrize("finish_reason, stop_reason", [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("function_call", "tool_use"),
    ("content_filter", "refusal"), (None, "end_turn"), ("something_new", "end_turn"),
])
def test_finish_reasons_map_to_stop_reasons(finish_reason, stop_reason):
    assert from_openai_response(completion({"content": "x"}, finish_reason), model=MODEL)["stop_reason"] == stop_reason


def test_a_stop_with_tool_calls_is_tool_use():
    # Older Ollama answers finish_reason "stop" with tool calls; Anthropic clients only run tools on tool_use.
    message = from_openai_response(completion({"tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}), model=MODEL)
    assert message["stop_reason"] == "tool_use"


def test_vllm_matched_stop_string_is_a_stop_sequence_and_refusals_are_text():
    message = from_openai_response(completion({"content": "1, 2, "}, stop_reason="3"), model=MODEL)
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "3")
    eos = from_openai_response(completion({"content": "done"}, stop_reason=None), model=MODEL)
    assert (eos["stop_reason"], eos["stop_sequence"]) == ("end_turn", None)
    refused = from_openai_response(completion({"content": None, "refusal": "I can't help with that."}), model=MODEL)
    assert refused["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert refused["stop_reason"] == "refusal"


def test_error_objects_are_raised_as_the_upstreams_own_words_for_the_provider_to_redact():
    with pytest.raises(UpstreamError) as caught:
        from_openai_response({"error": {"message": "bad", "type": "BadRequestError", "code": 400}}, model=MODEL)
    assert (caught.value.status, caught.value.kind, caught.value.message) == (400, "BadRequestError", "bad")
    with pytest.raises(UpstreamError) as caught:
        StreamTranslator(model=MODEL).feed({"error": {"message": "Overloaded", "type": "server_error", "code": 503}})
    assert (caught.value.status, caught.value.anthropic_status) == (503, 529)
    assert error_of({"detail": [{"msg": "bad"}]}, 422).anthropic_status == 400
    assert error_of({"message": "x", "type": "requests", "code": "insufficient_quota"}, 429).kind == "insufficient_quota"
    assert (error_of("plain text", 500).kind, error_of("plain text", 500).message) == ("api_error", "plain text")


# --- stream translator -----------------------------------------------------------------------------------


def call_delta(index, arguments=None, *, call_id=None, name=None) -> dict:
    delta: dict = {"index": index, "function": {}}
    if call_id is not None:
        delta.update(id=call_id, type="function")
        delta["function"]["name"] = name
    if arguments is not None:
        delta["function"]["arguments"] = arguments
    return {"tool_calls": [delta]}


def run(chunks: list[dict], *, done=True, estimated_input_tokens=0) -> list[dict]:
    translator = StreamTranslator(model=MODEL, estimated_input_tokens=estimated_input_tokens)
    events = []
    for item in chunks:
        events += translator.feed(item)
    if done:
        events += translator.finish()
    assert translator.finish() == []
    return events


def test_a_text_stream_with_its_usage_chunk():
    events = run([
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        chunk(choices=False, usage=USAGE),
    ])
    assert check_grammar(events) == [{"type": "text", "text": "Hello"}]
    assert events[0] == {"type": "message_start", "message": {
        "id": "msg_chatcmpl-s1", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}}
    assert events[-2] == {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                          "usage": {"input_tokens": 16, "output_tokens": 9, "cache_creation_input_tokens": 0,
                                    "cache_read_input_tokens": 4}}
    usage = Usage()
    for event in events:
        usage.update(event.get("usage") or (event.get("message") or {}).get("usage"))
    assert (usage.prompt_tokens, usage.output_tokens) == (20, 9)


def test_the_end_comes_with_the_usage_chunk_not_with_finish_reason():
    translator = StreamTranslator(model=MODEL)
    translator.feed(chunk({"content": "Hi"}))
    at_finish = translator.feed(chunk({}, "stop"))
    assert "message_delta" not in [e["type"] for e in at_finish]
    at_usage = translator.feed(chunk(choices=False, usage=USAGE))
    assert [e["type"] for e in at_usage] == ["content_block_stop", "message_delta", "message_stop"]
    assert translator.feed(chunk({"content": "late"})) == [] and translator.finish() == []


def test_without_a_usage_chunk_the_end_comes_at_done_with_estimates():
    events = run([chunk({"content": "x" * 40}), chunk({}, "length")], estimated_input_tokens=123)
    check_grammar(events)
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2]["usage"] == {"input_tokens": 123, "output_tokens": 10, "cache_creation_input_tokens": 0,
                                   "cache_read_input_tokens": 0}


def test_reasoning_then_text_are_two_blocks():
    events = run([
        chunk({"role": "assistant", "reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"reasoning": None, "content": "Answer"}),
        chunk({}, "stop"),
    ])
    assert check_grammar(events) == [{"type": "thinking", "thinking": "Thinking.", "signature": ""},
                                     {"type": "text", "text": "Answer"}]


def test_text_then_parallel_tool_calls():
    events = run([
        chunk({"role": "assistant", "content": "Let me check."}),
        chunk(call_delta(0, "", call_id="call_a", name="get_weather")),
        chunk(call_delta(0, '{"city": ')),
        chunk(call_delta(0, '"Paris"}')),
        chunk(call_delta(1, "", call_id="functions.get_time:1", name="get_time")),
        chunk(call_delta(1, "{}")),
        chunk({}, "tool_calls"),
        chunk(choices=False, usage=USAGE),
    ])
    assert check_grammar(events) == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}, "partial_json": '{"city": "Paris"}'},
        {"type": "tool_use", "id": _tool_id("functions.get_time:1"), "name": "get_time", "input": {},
         "partial_json": "{}"},
    ]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    # Fragments are relayed as they come.
    fragments = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta" and e["index"] == 1]
    assert fragments == ['{"city": ', '"Paris"}']


def test_interleaved_tool_call_fragments_are_held_back_until_the_open_call_is_complete():
    events = run([
        chunk({"tool_calls": [
            {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x"'}},
            {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": '{"y":'}},
        ]}),
        chunk(call_delta(1, " 2}")),
        chunk(call_delta(0, ": 1")),
        chunk({"content": "note"}),
        chunk(call_delta(0, "}")),
        chunk({}, "tool_calls"),
    ])
    blocks = check_grammar(events)
    assert blocks == [
        {"type": "tool_use", "id": "a", "name": "f", "input": {}, "partial_json": '{"x": 1}'},
        {"type": "tool_use", "id": "b", "name": "g", "input": {}, "partial_json": '{"y": 2}'},
        {"type": "text", "text": "note"},
    ]
    accumulator = MessageAccumulator()
    for event in events:
        accumulator.feed(event)
    assert [block.get("input") for block in accumulator.content()] == [{"x": 1}, {"y": 2}, None]


def test_whole_calls_at_index_zero_with_new_ids_are_separate_calls():
    events = run([
        chunk(call_delta(0, '{"a": 1}', call_id="c1", name="f")),
        chunk(call_delta(0, '{"b": 2}', call_id="c2", name="f")),
        chunk({}, "stop"),  # with tool calls: still tool_use
    ])
    blocks = check_grammar(events)
    assert [(b["id"], b["partial_json"]) for b in blocks] == [("c1", '{"a": 1}'), ("c2", '{"b": 2}')]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_empty_choices_role_only_deltas_and_empty_contents_open_no_block():
    events = run([
        chunk(choices=False),
        chunk({"role": "assistant"}),
        chunk({"content": ""}),
        chunk({"content": None, "tool_calls": []}),
        chunk({}, "stop"),
        chunk(choices=False, usage=USAGE),
    ])
    assert check_grammar(events) == []
    assert events[-2]["delta"]["stop_reason"] == "end_turn"


def test_a_stream_without_finish_reason_is_not_a_normal_finish():
    translator = StreamTranslator(model=MODEL)
    translator.feed(chunk({"content": "cut"}))
    with pytest.raises(GatewayError) as caught:
        translator.finish()
    assert caught.value.status == 502
    with pytest.raises(GatewayError):
        StreamTranslator(model=MODEL).finish()


def test_a_vllm_stop_string_in_a_stream_is_a_stop_sequence():
    events = run([chunk({"content": "1, 2, "}), chunk({}, "stop", stop_reason="3")])
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "3"}


@st.composite
def _plans(draw):
    """A text, some tool calls with their JSON split into fragments, and a random interleaving of them."""
    text_pieces = draw(st.lists(st.text(min_size=1, max_size=5), max_size=4))
    calls = []
    for k in range(draw(st.integers(0, 3))):
        arguments = json.dumps(draw(_arguments))
        cuts = sorted(draw(st.lists(st.integers(0, len(arguments)), max_size=4)))
        fragments = [arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)])]
        calls.append((f"call.{k}", arguments, [f for f in fragments if f] or [""]))
    streams = [[("text", piece) for piece in text_pieces]]
    for k, (call_id, _, fragments) in enumerate(calls):
        streams.append([("call", k, call_id, n, fragment) for n, fragment in enumerate(fragments)])
    order = []
    streams = [s for s in streams if s]
    while streams:
        stream = streams[draw(st.integers(0, len(streams) - 1))]
        order.append(stream.pop(0))
        streams = [s for s in streams if s]
    return "".join(text_pieces), calls, order


@settings(max_examples=300, deadline=None)
@given(_plans(), st.booleans())
def test_any_interleaving_of_text_and_tool_fragments_keeps_the_grammar_and_the_content(plan, with_usage):
    full_text, calls, order = plan
    chunks = [chunk({"role": "assistant", "content": ""})]
    for item in order:
        if item[0] == "text":
            chunks.append(chunk({"content": item[1]}))
        else:
            _, k, call_id, n, fragment = item
            chunks.append(chunk(call_delta(k, fragment, call_id=call_id if n == 0 else None,
                                           name="f" if n == 0 else None)))
    chunks.append(chunk({}, "tool_calls" if calls else "stop"))
    if with_usage:
        chunks.append(chunk(choices=False, usage=USAGE))
    blocks = check_grammar(run(chunks))
    assert "".join(b["text"] for b in blocks if b["type"] == "text") == full_text
    tools = [b for b in blocks if b["type"] == "tool_use"]
    first_seen = [item[1] for item in order if item[0] == "call" and item[3] == 0]
    assert [(b["id"], b["partial_json"]) for b in tools] == [(_tool_id(calls[k][0]), calls[k][1])
                                                             for k in first_seen]


def test_the_web_search_server_tool_and_earlier_searches_are_dropped_not_refused():
    search = {"type": "web_search_20250305", "name": "web_search"}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "paris"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            text("Sunny.", citations=[{"type": "web_search_result_location", "url": "https://x.example/",
                                       "title": "x", "encrypted_index": "e", "cited_text": "Sunny"}]),
        ]},
        {"role": "user", "content": "Thanks"},
    ]
    request = translate(messages, tools=[search, {"name": "f", "input_schema": {"type": "object"}}])
    assert [tool["function"]["name"] for tool in request["tools"]] == ["f"]
    assert request["messages"][1] == {"role": "assistant", "content": "Sunny."}
    assert "tools" not in translate(messages, tools=[search], tool_choice={"type": "auto"})
    error = rejected(messages, tools=[search, {"name": "f", "input_schema": {"type": "object"}}],
                     tool_choice={"type": "tool", "name": "web_search"})
    assert error.param == "tool_choice"
