"""Property tests: any valid request in an ingress format translates into an upstream request that the
fake Anthropic API's strict validator (`fakes.anthropic.parse_request`) accepts.

One strategy and one test per ingress format. A strategy builds well-formed conversations by
construction (every tool call answered in the next turn, thinking blocks signed, ...) with the awkward
corners real clients send: empty and whitespace-only texts, images and PDFs, parallel calls to one
function, odd call ids, prefills, thinking with tools. Pure: no Django, no network.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fakes.anthropic import MAX_CACHE_BREAKPOINTS, ApiError, _count_breakpoints, parse_request
from gateway.core import ResponseContext, apply_model_limits
from gateway.protocols import anthropic_messages, gemini, openai_chat, openai_responses

REQUEST_ID = "req_" + "0" * 24
UPSTREAM_MODEL = "claude-sonnet-4-6"
SIGNATURE = "EqQBCkgIAxABGAIiQPx+/abcd=="
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\xfb\xff").decode()
PDF = base64.b64encode(b"%PDF-1.4 \xfb\xff").decode()
PROPERTIES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_upstream_accepts(params: dict) -> None:
    apply_model_limits(params, default_max_tokens=1024, max_output_tokens=64000)
    try:
        parse_request({"model": UPSTREAM_MODEL, **params})
    except ApiError as error:
        pytest.fail(f"upstream rejects the translation: {error}\n{json.dumps(params, indent=1, ensure_ascii=False)}")


# --- shared building blocks ----------------------------------------------------------------------------

texts = st.one_of(st.sampled_from(["", " ", "\n\n", "Hello", "Trailing space  ", "é ✓ 中文"]), st.text(max_size=12))
words = st.sampled_from(["Hello", "What is the weather?", "Thanks!", "ok"])  # never empty
temperatures = st.floats(0, 2)
top_ps = st.floats(0, 1)
# orjson, which parses request bodies, holds integers to 64 bits.
arguments = st.dictionaries(st.sampled_from(["city", "days", "q"]),
                            st.integers(-(2**63), 2**64 - 1) | st.text(max_size=4), max_size=2)
TOOL_NAMES = ("get_weather", "get_time", "search")
JSON_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def max_tokens(thinking: bool):
    """With thinking on, Anthropic needs room for the smallest budget: lower limits are a gateway 400."""
    return st.integers(1025 if thinking else 1, 64000)


@st.composite
def unique_ids(draw, count: int, alphabet: str = ".:/ -") -> list[str]:
    """Call ids that stay distinct once sanitised: a counter, then characters `_safe_id` replaces."""
    return [f"call{n}" + draw(st.text(alphabet=alphabet, max_size=3)) for n in range(count)]


# --- Gemini ----------------------------------------------------------------------------------------------

GEMINI_DECLARATIONS = {
    "get_weather": {"name": "get_weather", "description": "Weather", "parameters": {
        "type": "OBJECT", "required": ["city"], "properties": {
            "city": {"type": "STRING"}, "days": {"type": "ARRAY", "items": {"type": "INTEGER"}},
            "unit": {"type": "STRING", "nullable": True}}}},
    "get_time": {"name": "get_time",
                 "parametersJsonSchema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
    "search": {"name": "search"},
}


def gemini_thought(draw) -> dict:
    """A thought part as our responses carry it, sent back with or without its text, maybe URL-safe encoded."""
    ctx = ResponseContext(request_id=REQUEST_ID, created=0, model="m",
                          options={"include_thoughts": draw(st.booleans())})
    block = draw(st.sampled_from([{"type": "thinking", "thinking": "Let me think.", "signature": SIGNATURE},
                                  {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT"}]))
    part = gemini.encode_response({"content": [block]}, ctx)["candidates"][0]["content"]["parts"][0]
    if draw(st.booleans()):  # google-genai re-encodes bytes in the URL-safe alphabet
        part["thoughtSignature"] = part["thoughtSignature"].replace("+", "-").replace("/", "_")
    return part


def gemini_user_part(draw) -> dict:
    kind = draw(st.sampled_from(["text", "text", "image", "pdf", "url"]))
    if kind == "text":
        return {"text": draw(texts)}
    if kind == "image":
        mime_type = draw(st.sampled_from(["image/png", "image/jpg", "IMAGE/WEBP"]))
        return {"inlineData": {"mimeType": mime_type, "data": PNG}}
    if kind == "pdf":
        return {"inline_data": {"mime_type": "application/pdf", "data": PDF}}
    return {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}


def split(draw, role: str, parts: list[dict]) -> list[dict]:
    """The parts as one content or as consecutive contents of one role (a streamed answer's history)."""
    if len(parts) > 1 and draw(st.booleans()):
        cut = draw(st.integers(1, len(parts) - 1))
        return [{"role": role, "parts": parts[:cut]}, {"role": role, "parts": parts[cut:]}]
    return [{"role": role, "parts": parts}]


@st.composite
def gemini_requests(draw) -> dict:
    thinking = draw(st.booleans())
    first = [{"text": draw(words)}] + [gemini_user_part(draw) for _ in range(draw(st.integers(0, 2)))]
    contents = [{"role": "user", "parts": first}]
    for _ in range(draw(st.integers(0, 3))):
        parts = [gemini_thought(draw)] if draw(st.booleans()) else []
        parts += [{"text": draw(texts)} for _ in range(draw(st.integers(0, 2)))]
        calls, given = [], set()
        for _ in range(draw(st.integers(0, 3))):
            call = {"name": draw(st.sampled_from(TOOL_NAMES)), "args": draw(arguments)}
            if draw(st.booleans()):
                # Ids are optional, unique within a turn (Gemini's rule), may repeat across turns and may
                # hold characters Anthropic refuses.
                call_id = draw(st.text(alphabet="abcXYZ019_-.:/", min_size=1, max_size=6).filter(lambda i: i not in given))
                given.add(call_id)
                call["id"] = call_id
            calls.append(call)
        parts += [{"functionCall": call} for call in calls]
        if not parts:
            continue
        contents += split(draw, "model", parts)
        answers = []
        for call in draw(st.permutations(calls)):
            answer = {"name": call["name"], "response": draw(st.sampled_from([{"output": "ok"}, {"error": "no"}, {}]))}
            if "id" in call and draw(st.booleans()):
                answer["id"] = call["id"]
            answers.append({"functionResponse": answer})
        answers += [gemini_user_part(draw) for _ in range(draw(st.integers(0, 2)))]
        if not calls:
            answers.append({"text": draw(words)})
        for content in split(draw, "user", answers):
            if draw(st.booleans()) and all("functionResponse" in part for part in content["parts"]):
                content["role"] = "function"
            contents.append(content)
    if draw(st.booleans()):
        contents.append({"role": "model", "parts": [{"text": draw(texts)}]})  # a prefill

    body: dict = {"contents": contents}
    system = draw(st.sampled_from([None, "Be brief.", {"parts": [{"text": "Be brief."}, {"text": ""}]}]))
    if system is not None:
        body[draw(st.sampled_from(["systemInstruction", "system_instruction"]))] = system
    config = draw(st.fixed_dictionaries({}, optional={
        "temperature": temperatures, "topP": top_ps, "topK": st.integers(1, 100) | st.sampled_from([40.0]),
        "maxOutputTokens": max_tokens(thinking), "stopSequences": st.lists(texts, max_size=5),
        "candidateCount": st.just(1), "seed": st.integers(), "presencePenalty": st.floats(-2, 2),
        "responseMimeType": st.sampled_from(["text/plain", "application/json"]),
        "responseSchema": st.sampled_from([{"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}},
                                           {"type": "ARRAY", "items": {"type": "STRING"}}]),
    }))
    if thinking:
        config["thinkingConfig"] = draw(st.sampled_from([
            {"thinkingBudget": -1}, {"thinkingBudget": 2048, "includeThoughts": True}, {"thinking_budget": 500},
            {"includeThoughts": True}, {"thinkingLevel": "LOW"}, {"thinkingBudget": 40000},
        ]))
    if config:
        body["generationConfig"] = config
    names = draw(st.lists(st.sampled_from(TOOL_NAMES), unique=True, max_size=3))
    if names:
        body["tools"] = [{"functionDeclarations": [GEMINI_DECLARATIONS[name] for name in names]}]
        modes = ["AUTO", "NONE", "VALIDATED"] if thinking else ["AUTO", "NONE", "VALIDATED", "ANY"]
        calling = draw(st.fixed_dictionaries({}, optional={
            "mode": st.sampled_from(modes),
            "allowedFunctionNames": st.lists(st.sampled_from(names), unique=True, min_size=1)}))
        if calling:
            body["toolConfig"] = {"functionCallingConfig": calling}
    return body


@PROPERTIES
@given(gemini_requests(), st.booleans(), st.booleans())
def test_valid_gemini_requests_translate_to_valid_upstream_requests(body, stream, sse):
    ireq = gemini.decode_request(body, request_id=REQUEST_ID, model="claude-sonnet-4-6", stream=stream, sse=sse)
    assert_upstream_accepts(ireq.params)


# --- OpenAI Chat Completions -----------------------------------------------------------------------------

CHAT_TOOLS = {
    "get_weather": {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                     "parameters": JSON_SCHEMA}},
    "get_time": {"type": "function", "function": {"name": "get_time"}},
    "search": {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}, "strict": True}},
}


def chat_user_content(draw):
    if draw(st.booleans()):
        return draw(texts)
    parts = [draw(st.sampled_from([
        {"type": "text", "text": draw(texts)},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64," + PDF, "filename": "a.pdf"}},
    ])) for _ in range(draw(st.integers(1, 3)))]
    return parts


def chat_text_content(draw):
    return draw(texts) if draw(st.booleans()) else [{"type": "text", "text": draw(texts)}]


@st.composite
def chat_requests(draw) -> dict:
    thinking = draw(st.booleans())
    messages = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "developer"])), "content": chat_text_content(draw)})
    messages.append({"role": "user", "content": draw(words)})
    count = 0
    for _ in range(draw(st.integers(0, 3))):
        n = draw(st.integers(0, 3))
        ids = draw(unique_ids(count + n))[count:]
        count += n
        calls = [{"id": call_id, "type": "function",
                  "function": {"name": draw(st.sampled_from(TOOL_NAMES)), "arguments": json.dumps(draw(arguments))}}
                 for call_id in ids]
        content = draw(st.none() | texts | st.just([{"type": "text", "text": "ok"}]))
        assistant: dict = {"role": "assistant", "content": content}
        if calls:
            assistant["tool_calls"] = calls
        if draw(st.booleans()):
            assistant.update(reasoning_content="Thinking.", reasoning_signature=SIGNATURE)
        messages.append(assistant)
        for call in draw(st.permutations(calls)):
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": chat_text_content(draw)})
        if not calls:
            messages.append({"role": "user", "content": draw(words)})
        if draw(st.booleans()):
            messages.append({"role": "user", "content": chat_user_content(draw)})
    if draw(st.booleans()):
        messages.append({"role": "assistant", "content": draw(texts)})  # a prefill

    body = {"model": "claude-sonnet-4-6", "messages": messages}
    body.update(draw(st.fixed_dictionaries({}, optional={
        "temperature": temperatures, "top_p": top_ps,
        draw(st.sampled_from(["max_tokens", "max_completion_tokens"])): max_tokens(thinking),
        "stop": texts | st.lists(texts, max_size=4), "n": st.just(1), "seed": st.integers(), "user": st.just("u1"),
        "stream": st.booleans(), "store": st.booleans(),
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"},
                                            {"type": "json_schema",
                                             "json_schema": {"name": "city", "schema": JSON_SCHEMA}},
                                            {"type": "json_schema", "json_schema": {"schema": {"type": "array"}}}]),
    })))
    if thinking:
        body.update(draw(st.sampled_from([{"reasoning_effort": "low"}, {"reasoning_effort": "high"},
                                          {"thinking": {"type": "enabled", "budget_tokens": 1024}}])))
    names = draw(st.lists(st.sampled_from(TOOL_NAMES), unique=True, max_size=3))
    if names:
        body["tools"] = [CHAT_TOOLS[name] for name in names]
        choices = ["auto", "none"] if thinking else ["auto", "none", "required", "function"]
        choice = draw(st.sampled_from(choices + [None]))
        if choice == "function":
            body["tool_choice"] = {"type": "function", "function": {"name": draw(st.sampled_from(names))}}
        elif choice is not None:
            body["tool_choice"] = choice
        if draw(st.booleans()):
            body["parallel_tool_calls"] = draw(st.booleans())
    return body


@PROPERTIES
@given(chat_requests())
def test_valid_chat_requests_translate_to_valid_upstream_requests(body):
    ireq = openai_chat.decode_request(body, request_id=REQUEST_ID)
    assert_upstream_accepts(ireq.params)


# --- OpenAI Responses -------------------------------------------------------------------------------------

RESPONSES_TOOLS = {
    "get_weather": {"type": "function", "name": "get_weather", "description": "Weather", "parameters": JSON_SCHEMA,
                    "strict": False},
    "get_time": {"type": "function", "name": "get_time"},
    "search": {"type": "function", "name": "search", "parameters": {"type": "object"}},
}
# Tools beyond functions, as Codex declares them: each is translated, never refused.
RESPONSES_OTHER_TOOLS = {
    "agents": {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
        {"type": "function", "name": "spawn_agent", "parameters": JSON_SCHEMA},
        {"type": "custom", "name": "note"}]},
    "apply_patch": {"type": "custom", "name": "apply_patch",
                    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    "local_shell": {"type": "local_shell"},
    "web_search": {"type": "web_search", "external_web_access": False,
                   "user_location": {"type": "approximate", "country": "FR"}},
}


def responses_call(draw, call_id: str) -> dict:
    """A call item as a client sends one back: a function (maybe namespaced), custom or local shell call."""
    kind = draw(st.sampled_from(["function", "namespaced", "custom", "local_shell"]))
    if kind == "custom":
        return {"type": "custom_tool_call", "call_id": call_id, "name": "apply_patch", "input": draw(texts)}
    if kind == "local_shell":
        return {"type": "local_shell_call", "call_id": call_id, "status": "completed",
                "action": {"type": "exec", "command": ["ls", draw(words)], "env": {}, "timeout_ms": None}}
    name = "spawn_agent" if kind == "namespaced" else draw(st.sampled_from(TOOL_NAMES))
    call = {"type": "function_call", "call_id": call_id, "name": name, "arguments": json.dumps(draw(arguments))}
    return {**call, "namespace": "multi_agent_v1"} if kind == "namespaced" else call
RESPONSES_HISTORIES = [
    (),
    ({"role": "user", "content": "Hi"}, {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]}),
    ({"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
     {"role": "assistant", "content": [{"type": "thinking", "thinking": "Hm.", "signature": SIGNATURE},
                                       {"type": "tool_use", "id": "toolu_h1", "name": "get_weather", "input": {}}]},
     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_h1", "content": "sunny"}]},
     {"role": "assistant", "content": [{"type": "text", "text": "It is sunny."}]}),
]


def responses_user_content(draw):
    if draw(st.booleans()):
        return draw(texts)
    return [draw(st.sampled_from([
        {"type": "input_text", "text": draw(texts)},
        {"type": "input_image", "image_url": "data:image/png;base64," + PNG, "detail": "auto"},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
        {"type": "input_file", "file_data": "data:application/pdf;base64," + PDF, "filename": "a.pdf"},
        {"type": "input_file", "file_url": "https://example.com/a.pdf"},
    ])) for _ in range(draw(st.integers(1, 3)))]


@st.composite
def responses_requests(draw) -> tuple[dict, tuple]:
    thinking = draw(st.booleans())
    items: list[dict] = [{"role": "user", "content": draw(words)}]
    if draw(st.booleans()):
        items.insert(0, {"type": "message", "role": draw(st.sampled_from(["system", "developer"])),
                         "content": [{"type": "input_text", "text": draw(texts)}]})
    count = 0
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):  # reasoning comes first in an answer, as OpenAI and our responses order it
            items.append({"type": "reasoning", "summary": [{"type": "summary_text", "text": "Thinking."}],
                          "encrypted_content": draw(st.sampled_from([SIGNATURE, "redacted_thinking:EmwKAhgB"]))})
        if draw(st.booleans()):
            content = draw(texts)
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": content, "annotations": []}]})
        n = draw(st.integers(0, 3))
        ids = draw(unique_ids(count + n))[count:]
        count += n
        calls = [responses_call(draw, call_id) for call_id in ids]
        if calls and draw(st.booleans()):
            items.append({"type": "web_search_call", "status": "completed",
                          "action": {"type": "search", "query": "weather"}})
        items += calls
        for call in draw(st.permutations(calls)):
            output = draw(texts) if draw(st.booleans()) else [{"type": "input_text", "text": draw(texts)}]
            kind = "custom_tool_call_output" if call["type"] == "custom_tool_call" else "function_call_output"
            items.append({"type": kind, "call_id": call["call_id"], "output": output})
        if not calls:
            items.append({"role": "user", "content": draw(words)})
        if draw(st.booleans()):
            items.append({"role": "user", "content": responses_user_content(draw)})
    if draw(st.booleans()):
        items.append({"role": "assistant", "content": draw(texts)})  # a prefill

    body = {"model": "claude-sonnet-4-6", "input": items}
    body.update(draw(st.fixed_dictionaries({}, optional={
        "instructions": texts, "temperature": temperatures, "top_p": top_ps, "max_output_tokens": max_tokens(thinking),
        "store": st.booleans(), "stream": st.booleans(), "user": st.just("u1"), "truncation": st.just("auto"),
        "metadata": st.just({"k": "v"}),
        "text": st.sampled_from([{"format": {"type": "text"}}, {"format": {"type": "json_object"}},
                                 {"format": {"type": "json_schema", "name": "city", "schema": JSON_SCHEMA}},
                                 {"verbosity": "low"}]),
    })))
    if thinking:
        body["reasoning"] = {"effort": draw(st.sampled_from(["minimal", "low", "medium"])), "summary": "auto"}
    names = draw(st.lists(st.sampled_from(TOOL_NAMES), unique=True, max_size=3))
    others = draw(st.lists(st.sampled_from(sorted(RESPONSES_OTHER_TOOLS)), unique=True, max_size=4))
    if others:
        body["tools"] = [RESPONSES_OTHER_TOOLS[name] for name in others]
    if names:
        body["tools"] = [RESPONSES_TOOLS[name] for name in names] + body.get("tools", [])
        choices = ["auto", "none"] if thinking else ["auto", "none", "required", "function"]
        choice = draw(st.sampled_from(choices + [None]))
        if choice == "function":
            body["tool_choice"] = {"type": "function", "name": draw(st.sampled_from(names))}
        elif choice is not None:
            body["tool_choice"] = choice
        if draw(st.booleans()):
            body["parallel_tool_calls"] = draw(st.booleans())
    return body, draw(st.sampled_from(RESPONSES_HISTORIES))


@PROPERTIES
@given(responses_requests())
def test_valid_responses_requests_translate_to_valid_upstream_requests(request):
    body, history = request
    ireq = openai_responses.decode_request(body, request_id=REQUEST_ID, history=history)
    assert_upstream_accepts(ireq.params)


# --- Anthropic Messages (native: passed through, so what a valid body sends must stay valid) ----------

cache = st.sampled_from([{}, {"cache_control": {"type": "ephemeral"}}])
non_blank = st.text(min_size=1, max_size=12).filter(lambda text: not text.isspace())


@st.composite
def anthropic_requests(draw) -> dict:
    thinking = draw(st.booleans())
    tools = [{"name": name, "description": "d", "input_schema": JSON_SCHEMA, **draw(cache)}
             for name in draw(st.lists(st.sampled_from(TOOL_NAMES), unique=True, max_size=3))]
    user = [{"type": "text", "text": draw(non_blank), **draw(cache)}]
    if draw(st.booleans()):
        user.append({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}})
    if draw(st.booleans()):
        user.append({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                     "citations": {"enabled": True}})
    messages = [{"role": "user", "content": user if draw(st.booleans()) else draw(non_blank)}]
    for turn in range(draw(st.integers(0, 2)) if tools else 0):
        calls = range(draw(st.integers(1, 2)))
        reply = [{"type": "thinking", "thinking": "hmm", "signature": SIGNATURE}] if thinking else []
        reply += [{"type": "tool_use", "id": f"toolu_{turn}{i}", "name": draw(st.sampled_from(tools))["name"],
                   "input": {"city": "Paris"}} for i in calls]
        messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{turn}{i}", "content": draw(non_blank),
             "is_error": draw(st.booleans())} for i in calls]})
    body = {"model": UPSTREAM_MODEL, "max_tokens": draw(max_tokens(thinking)), "messages": messages,
            "stream": draw(st.booleans())}
    if draw(st.booleans()):
        body["system"] = draw(st.sampled_from([draw(non_blank), [{"type": "text", "text": "Be brief.", **draw(cache)}]]))
    if tools:
        body["tools"] = tools
        if not thinking:
            body["tool_choice"] = draw(st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"},
                                                        {"type": "tool", "name": tools[0]["name"]}]))
    if thinking:
        body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    else:
        body.update(draw(st.fixed_dictionaries({}, optional={"temperature": st.floats(0, 1), "top_k": st.integers(0, 50)})))
    body.update(draw(st.fixed_dictionaries({}, optional={
        "metadata": st.just({"user_id": "u-1"}), "stop_sequences": st.lists(non_blank, max_size=3)})))
    # Up to five blocks above may draw a cache breakpoint (three tools, the user text, the system); a valid
    # body has at most four, as the API (and the fake) counts them.
    assume(_count_breakpoints(body) <= MAX_CACHE_BREAKPOINTS)
    return body


@PROPERTIES
@given(anthropic_requests())
def test_valid_anthropic_requests_pass_through_unchanged_and_valid(body):
    ireq = anthropic_messages.decode_request(body, request_id=REQUEST_ID)
    assert ireq.params == {key: value for key, value in body.items() if key not in ("model", "stream")}
    assert_upstream_accepts(ireq.params)


# --- translation bugs the properties above found, kept as regression tests --------------------------------


def decoded_params(codec, body: dict) -> dict:
    return codec.decode_request(body, request_id=REQUEST_ID).params


@pytest.mark.parametrize(
    ("codec", "body"),
    [
        (openai_chat, {"model": "m", "messages": [{"role": "user", "content": "Hi"},
                                                  {"role": "user", "content": " "}]}),
        (openai_responses, {"model": "m", "input": [{"role": "user", "content": "Hi"},
                                                    {"role": "user", "content": "\n"}]}),
    ],
)
def test_whitespace_only_text_is_not_forwarded(codec, body):
    assert_upstream_accepts(decoded_params(codec, body))


@pytest.mark.parametrize("codec", [openai_responses, gemini])
def test_thinking_after_text_in_the_last_tool_turn_switches_thinking_off(codec):
    if codec is gemini:
        token = gemini.encode_response({"content": [{"type": "thinking", "thinking": "Hm.", "signature": SIGNATURE}]},
                                       ResponseContext(request_id=REQUEST_ID, created=0, model="m"))
        thought = token["candidates"][0]["content"]["parts"][0]
        body = {"contents": [{"role": "user", "parts": [{"text": "Weather?"}]},
                             {"role": "model", "parts": [{"text": "Let me check."}, thought,
                                                         {"functionCall": {"name": "get_weather", "args": {}}}]},
                             {"role": "user",
                              "parts": [{"functionResponse": {"name": "get_weather", "response": {}}}]}],
                "generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}}}
        params = gemini.decode_request(body, request_id=REQUEST_ID, model="m").params
    else:
        body = {"model": "m", "reasoning": {"effort": "low"}, "input": [
            {"role": "user", "content": "Weather?"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
            {"type": "reasoning", "summary": [], "encrypted_content": SIGNATURE},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"}]}
        params = decoded_params(codec, body)
    assert_upstream_accepts(params)


def test_call_ids_that_sanitise_alike_stay_distinct():
    calls = [{"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}
             for call_id in ("call.1", "call_1")]
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"},
                                       {"role": "assistant", "content": None, "tool_calls": calls},
                                       {"role": "tool", "tool_call_id": "call.1", "content": "a"},
                                       {"role": "tool", "tool_call_id": "call_1", "content": "b"}]}
    assert_upstream_accepts(decoded_params(openai_chat, body))
