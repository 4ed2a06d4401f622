"""OpenAI Chat Completions codec: `/v1/chat/completions` to and from the internal Anthropic Messages shape.

Pure and on the hot path: plain dicts, one pass, no I/O, clock or randomness (ids and timestamps come
from `ResponseContext`). Client data is never deep-copied: tool and response schemas are forwarded
by reference.

Where the two APIs do not line up:

- `response_format`: `text` adds nothing. `json_object` appends an instruction to the system prompt
  to answer with one JSON object and nothing else. `json_schema` uses a forced tool when the request
  has no tools, thinking is off and the schema describes an object. The codec adds a tool named after
  `json_schema.name` (sanitised, default `json_response`) with the schema as its `input_schema`, and
  forces it with `tool_choice: {type: tool}`. The tool name goes into `options["json_tool"]`. On the
  way back, that tool call's input becomes the message `content` as compact JSON with finish_reason
  "stop". In streams, its `input_json_delta` fragments become content deltas. In every other case
  the schema goes into a system instruction as best effort: client tools present (a forced tool would
  shadow them), thinking on (Anthropic forbids forced tools with thinking), or a schema whose root is
  not an object (a tool input must be one).
- Thinking: a `thinking` object in the body (`enabled` with `budget_tokens`, or `disabled`) wins over
  `reasoning_effort` (budgets in `EFFORT_BUDGETS`; `none` means off). With thinking on,
  temperature and top_p are dropped (Anthropic requires their defaults), and a tool_choice that forces
  a tool is a 400. Anthropic rejects a thinking request whose last assistant turn used a tool without
  its signed thinking block. When the client did not send back `reasoning_content` and
  `reasoning_signature` on that turn, thinking is switched off for the request instead of failing it.
- Returned thinking goes to the extension fields `reasoning_content` (the text) and
  `reasoning_signature` (the last signature). Send both back on the assistant message to keep
  thinking across tool turns.
- `stop`: whitespace-only sequences are dropped because Anthropic rejects them. If none are left, the
  field is omitted, so those sequences are not honoured.
- A trailing assistant message (prefill) is forwarded with its trailing whitespace removed, because
  Anthropic always rejects that whitespace. Whether the model supports prefill is for upstream to say.
- Tools: `function` tools are Anthropic tools. `custom` (freeform) tools are Anthropic tools whose one
  string property `input` holds the raw input, the grammar (lark, regex) in the description since
  Anthropic cannot enforce it; their calls come back as `custom` tool calls (`options["custom_tools"]`
  names them), are sent back the same way and can be forced with `tool_choice` `custom`. Streaming with
  a custom tool is a 400: `chat.completion.chunk` tool calls can only be functions. Any other tool type
  is a 400 naming `tools[k].type`. `web_search_options` is dropped like the other unknown fields.
- Fields with no Anthropic equivalent (penalties, seed, logprobs, user, metadata, ...) and unknown
  fields are accepted and dropped, so only `ANTHROPIC_REQUEST_FIELDS` ever reach a provider.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core import GatewayError, InternalRequest, ResponseContext, Usage, invalid
from gateway.protocols._common.checks import (int_at_least, is_int, json_type, missing, number_in_range, optional_bool,
                                              required_dict, required_str, show, unsupported_value, wrong_type)
from gateway.protocols._common.content import (Turn, append_blocks, image_url_block, pdf_data_block, strip_prefill,
                                               text_block)
from gateway.protocols._common.structured import JSON_OBJECT_INSTRUCTION, JSON_SCHEMA_INSTRUCTION, apply_json_schema
from gateway.protocols._common.thinking import decode_thinking_object, effort_thinking, last_tool_turn_lacks_thinking
from gateway.protocols._common.tools import (custom_input, custom_tool, decode_tool_choice, function_name, function_tool,
                                             grammar_of, parse_arguments, tool_id)

__all__ = ["JSON_OBJECT_INSTRUCTION", "JSON_SCHEMA_INSTRUCTION", "StreamEncoder", "decode_request", "encode_response",
           "error_body"]

_MAX_STOP_SEQUENCES = 4


_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# ---------------------------------------------------------------------------------------------------
# Request: OpenAI Chat Completions body -> InternalRequest
# ---------------------------------------------------------------------------------------------------


def decode_request(body: Any, *, request_id: str | None = None) -> InternalRequest:
    """Validate a parsed Chat Completions body and translate it; raise a 400 `GatewayError` naming the field.

    `request_id` is part of the codec interface (other codecs name items after it); chat needs none.
    """
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object, but got {json_type(body)}.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise missing("model") if model is None else wrong_type("model", "a non-empty string", model)
    stream = optional_bool(body.get("stream"), "stream")
    _check_n(body.get("n"))

    system, messages = _decode_messages(body.get("messages"))
    params: dict[str, Any] = {"messages": messages}
    options: dict[str, Any] = {}
    if stream and _include_usage(body.get("stream_options")):
        options["include_usage"] = True
    _apply_storage(body, options)

    max_tokens = _max_tokens(body)
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    thinking = _requested_thinking(body)
    if thinking and not last_tool_turn_lacks_thinking(messages):
        params["thinking"] = thinking
    _apply_sampling(body, params)
    _apply_tools(body, params, options, stream)
    _apply_response_format(body.get("response_format"), params, system, options)
    if system:
        params["system"] = "\n".join(system)
    return InternalRequest(model=model, params=params, stream=stream, options=options)


def _apply_storage(body: dict, options: dict) -> None:
    """`store` (default true) and our `conversation_id` extension, for the server's history (conversations/)."""
    options["store"] = True if body.get("store") is None else optional_bool(body["store"], "store")
    conversation_id = body.get("conversation_id")
    if conversation_id is not None:
        if not isinstance(conversation_id, str) or not conversation_id:
            raise wrong_type("conversation_id", "a conversation id (conv_...)", conversation_id)
        options["conversation_id"] = conversation_id


def _apply_sampling(body: dict, params: dict) -> None:
    temperature = number_in_range(body.get("temperature"), "temperature", 0, 2)
    top_p = number_in_range(body.get("top_p"), "top_p", 0, 1)
    if "thinking" not in params:  # with thinking, Anthropic only accepts the defaults
        if temperature is not None:
            params["temperature"] = min(temperature, 1)
        if top_p is not None:
            params["top_p"] = top_p
    stop_sequences = _stop_sequences(body.get("stop"))
    if stop_sequences:
        params["stop_sequences"] = stop_sequences


def _apply_tools(body: dict, params: dict, options: dict, stream: bool) -> None:
    tools, custom = _decode_tools(body.get("tools"))
    if not tools:
        return  # tool_choice and parallel_tool_calls mean nothing without tools
    if custom:
        if stream:
            raise invalid(
                "Custom tools cannot be streamed: chat.completion.chunk has no custom tool calls. Send "
                "'stream': false, or use the Responses API, which streams them.",
                "stream",
            )
        options["custom_tools"] = custom
    params["tools"] = tools
    tool_choice = decode_tool_choice(body.get("tool_choice"), tools, body.get("parallel_tool_calls"), _chat_forced_name)
    if not tool_choice:
        return
    if "thinking" in params and tool_choice["type"] in ("any", "tool"):
        raise invalid(
            "Invalid 'tool_choice': forcing a tool call is not supported when reasoning is enabled; "
            "use 'auto' or 'none', or turn reasoning off.",
            "tool_choice",
        )
    params["tool_choice"] = tool_choice


def _decode_messages(messages: Any) -> tuple[list[str], list[dict]]:
    """Return the system texts and the merged, alternating Anthropic messages."""
    if not isinstance(messages, list):
        raise missing("messages") if messages is None else wrong_type("messages", "an array", messages)
    if not messages:
        raise invalid("Invalid 'messages': empty array. Expected an array with at least one message.", "messages")
    system: list[str] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise wrong_type(f"messages[{i}]", "an object", message)
        role = message.get("role")
        if role == "user":
            append_blocks(turns, "user", _user_blocks(message.get("content"), i))
        elif role == "assistant":
            append_blocks(turns, "assistant", _assistant_blocks(message, i))
        elif role == "tool":
            append_blocks(turns, "user", [_tool_result_block(message, i)], results=True)
        elif role == "system" or role == "developer":
            system.extend(text for text in _texts(message.get("content"), i) if text)
        elif role == "function":
            raise invalid(
                "The deprecated 'function' role is not supported; use 'tool' messages with 'tool_call_id'.",
                f"messages[{i}].role",
            )
        elif role is None:
            raise missing(f"messages[{i}].role")
        else:
            raise unsupported_value(
                f"messages[{i}].role", role, "'system', 'developer', 'user', 'assistant' and 'tool'"
            )
    strip_prefill(turns)
    if not turns:
        raise invalid(
            "Invalid 'messages': at least one user or assistant message with content is required.", "messages"
        )
    return system, [turn.as_message() for turn in turns]


def _part_type(part: Any, i: int, j: int) -> Any:
    if not isinstance(part, dict):
        raise wrong_type(f"messages[{i}].content[{j}]", "an object", part)
    kind = part.get("type")
    if not isinstance(kind, str):
        param = f"messages[{i}].content[{j}].type"
        raise missing(param) if kind is None else wrong_type(param, "a string", kind)
    return kind


def _part_string(part: dict, key: str, i: int, j: int) -> str:
    value = part.get(key)
    if not isinstance(value, str):
        param = f"messages[{i}].content[{j}].{key}"
        raise missing(param) if value is None else wrong_type(param, "a string", value)
    return value


def _content_parts(content: Any, i: int) -> list:
    """A non-string message content must be an array of parts."""
    if not isinstance(content, list):
        param = f"messages[{i}].content"
        raise missing(param) if content is None else wrong_type(param, "a string or an array", content)
    return content


def _texts(content: Any, i: int) -> list[str]:
    """The texts of a content that may only hold text: a string or an array of text parts."""
    if isinstance(content, str):
        return [content]
    texts = []
    for j, part in enumerate(_content_parts(content, i)):
        kind = _part_type(part, i, j)
        if kind != "text":
            raise unsupported_value(f"messages[{i}].content[{j}].type", kind, "'text'")
        texts.append(_part_string(part, "text", i, j))
    return texts


def _user_blocks(content: Any, i: int) -> list[dict]:
    if isinstance(content, str):
        return [text_block(content)] if content else []
    blocks = []
    for j, part in enumerate(_content_parts(content, i)):
        kind = _part_type(part, i, j)
        if kind == "text":
            text = _part_string(part, "text", i, j)
            if text:
                blocks.append(text_block(text))
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"messages[{i}].content[{j}].image_url"))
        elif kind == "file":
            blocks.append(_document_block(part.get("file"), f"messages[{i}].content[{j}].file"))
        elif kind == "input_audio":
            raise invalid(
                "Audio input ('input_audio') is not supported by this model.", f"messages[{i}].content[{j}].type"
            )
        else:
            raise unsupported_value(
                f"messages[{i}].content[{j}].type", kind, "'text', 'image_url' and 'file'"
            )
    return blocks


def _image_block(image_url: Any, param: str) -> dict:
    url = required_str(required_dict(image_url, param), "url", param)
    return image_url_block(url, param + ".url")


def _document_block(file: Any, param: str) -> dict:
    file = required_dict(file, param)
    data_url = file.get("file_data")
    if data_url is None and file.get("file_id") is not None:
        raise invalid(
            "Uploaded files ('file_id') are not supported; send the file inline as 'file_data'.",
            f"{param}.file_id",
        )
    return pdf_data_block(data_url, param + ".file_data")


def _assistant_blocks(message: dict, i: int) -> list[dict]:
    thinking = _round_tripped_thinking(message)
    blocks = [thinking] if thinking else []
    _append_assistant_texts(blocks, message.get("content"), i)
    refusal = message.get("refusal")
    if refusal is not None:
        if not isinstance(refusal, str):
            raise wrong_type(f"messages[{i}].refusal", "a string or null", refusal)
        if refusal:
            blocks.append(text_block(refusal))
    if message.get("function_call") is not None:
        raise invalid(
            "The deprecated 'function_call' is not supported; use 'tool_calls'.", f"messages[{i}].function_call"
        )
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise wrong_type(f"messages[{i}].tool_calls", "an array", tool_calls)
        blocks.extend(_tool_use_block(call, f"messages[{i}].tool_calls[{k}]") for k, call in enumerate(tool_calls))
    return blocks


def _append_assistant_texts(blocks: list[dict], content: Any, i: int) -> None:
    if isinstance(content, str):
        if content:
            blocks.append(text_block(content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            kind = _part_type(part, i, j)
            if kind != "text" and kind != "refusal":
                raise unsupported_value(f"messages[{i}].content[{j}].type", kind, "'text' and 'refusal'")
            text = _part_string(part, kind, i, j)
            if text:
                blocks.append(text_block(text))
    elif content is not None:
        raise wrong_type(f"messages[{i}].content", "a string, an array or null", content)


def _round_tripped_thinking(message: dict) -> dict | None:
    """Rebuild the thinking block from our own response extension fields, when both came back.

    Other OpenAI-compatible servers return `reasoning_content` without a signature; clients echo it,
    and it must be ignored rather than rejected, since Anthropic cannot take thinking without one.
    """
    reasoning = message.get("reasoning_content")
    signature = message.get("reasoning_signature")
    if isinstance(reasoning, str) and isinstance(signature, str) and signature:
        return {"type": "thinking", "thinking": reasoning, "signature": signature}
    return None


def _tool_use_block(call: Any, param: str) -> dict:
    call = required_dict(call, param)
    kind = call.get("type", "function")
    call_id = required_str(call, "id", param)
    if kind == "custom":
        custom = required_dict(call.get("custom"), f"{param}.custom")
        name = required_str(custom, "name", f"{param}.custom")
        tool_input = {"input": required_str(custom, "input", f"{param}.custom", allow_empty=True)}
    elif kind == "function":
        function = required_dict(call.get("function"), f"{param}.function")
        name = required_str(function, "name", f"{param}.function")
        arguments = required_str(function, "arguments", f"{param}.function", allow_empty=True)
        tool_input = parse_arguments(arguments, f"{param}.function.arguments")
    else:
        raise unsupported_value(f"{param}.type", kind, "'function' and 'custom'")
    return {"type": "tool_use", "id": tool_id(call_id), "name": name, "input": tool_input}


def _tool_result_block(message: dict, i: int) -> dict:
    tool_call_id = required_str(message, "tool_call_id", f"messages[{i}]")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(tool_call_id)}
    content = message.get("content")
    if isinstance(content, str):
        if content and not content.isspace():
            block["content"] = content
    else:
        texts = [text_block(text) for text in _texts(content, i) if text and not text.isspace()]
        if texts:
            block["content"] = texts
    return block


def _decode_tools(tools: Any) -> tuple[list[dict], list[str]]:
    """The Anthropic tools and the names of the custom ones (whose calls go back as `custom` tool calls)."""
    if tools is None:
        return [], []
    if not isinstance(tools, list):
        raise wrong_type("tools", "an array", tools)
    decoded = []
    custom = []
    names = set()
    for k, tool in enumerate(tools):
        param = f"tools[{k}]"
        tool = required_dict(tool, param)
        kind = tool.get("type")
        if kind == "function":
            param += ".function"
            function = required_dict(tool.get("function"), param)
            entry = function_tool(function, param, function_name(function, param))
        elif kind == "custom":
            param += ".custom"
            spec = required_dict(tool.get("custom"), param)
            name = function_name(spec, param)
            entry = custom_tool(spec, param, name, name, _chat_grammar(spec.get("format"), f"{param}.format"))
            custom.append(name)
        else:
            param += ".type"
            raise missing(param) if kind is None else unsupported_value(param, kind, "'function' and 'custom'")
        if entry["name"] in names:
            raise invalid(f"Invalid 'tools': the tool name '{entry['name']}' is used twice.", f"{param}.name")
        names.add(entry["name"])
        decoded.append(entry)
    return decoded, custom


def _chat_grammar(fmt: Any, param: str) -> tuple[str, str] | None:
    """A chat custom tool's `format`: None for text, else (syntax, definition) of its `grammar`."""
    if fmt is None:
        return None
    kind = required_dict(fmt, param).get("type")
    if kind == "text":
        return None
    if kind != "grammar":
        raise unsupported_value(f"{param}.type", kind, "'text' and 'grammar'")
    grammar = required_dict(fmt.get("grammar"), f"{param}.grammar")
    return grammar_of(grammar, f"{param}.grammar")


def _chat_forced_name(choice: dict) -> tuple[str, str]:
    kind = choice.get("type")
    if kind != "function" and kind != "custom":
        raise unsupported_value("tool_choice.type", kind, "'function' and 'custom'")
    spec = required_dict(choice.get(kind), f"tool_choice.{kind}")
    return required_str(spec, "name", f"tool_choice.{kind}"), f"tool_choice.{kind}.name"


def _requested_thinking(body: dict) -> dict | None:
    """The thinking the client asked for: a `thinking` object wins over `reasoning_effort`."""
    thinking = body.get("thinking")
    if thinking is not None:
        return decode_thinking_object(thinking, "thinking")
    return effort_thinking(body.get("reasoning_effort"), "reasoning_effort")


def _apply_response_format(fmt: Any, params: dict, system: list[str], options: dict) -> None:
    if fmt is None:
        return
    fmt = required_dict(fmt, "response_format")
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        system.append(JSON_OBJECT_INSTRUCTION)
        return
    if kind != "json_schema":
        raise unsupported_value("response_format.type", kind, "'text', 'json_object' and 'json_schema'")
    param = "response_format.json_schema"
    apply_json_schema(required_dict(fmt.get("json_schema"), param), params, system, options, param)


def _max_tokens(body: dict) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            return int_at_least(value, name, 1)
    return None


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    elif not isinstance(stop, list):
        raise wrong_type("stop", "a string or an array of strings", stop)
    elif len(stop) > _MAX_STOP_SEQUENCES:
        raise invalid(f"Invalid 'stop': at most {_MAX_STOP_SEQUENCES} sequences are allowed, got {len(stop)}.", "stop")
    for k, sequence in enumerate(stop):
        if not isinstance(sequence, str):
            raise wrong_type(f"stop[{k}]", "a string", sequence)
    return [sequence for sequence in stop if sequence.strip()]


def _check_n(n: Any) -> None:
    if n is None or (is_int(n) and n == 1):
        return
    raise invalid(f"Invalid 'n': only one choice per request is supported (n must be 1), got {show(n)}.", "n")


def _include_usage(stream_options: Any) -> bool:
    if stream_options is None:
        return False
    return optional_bool(required_dict(stream_options, "stream_options").get("include_usage"),
                         "stream_options.include_usage")


# ---------------------------------------------------------------------------------------------------
# Response: Anthropic Message -> chat.completion
# ---------------------------------------------------------------------------------------------------


def encode_response(message: dict, ctx: ResponseContext) -> dict:
    """Render an Anthropic Message dict as a `chat.completion` object."""
    json_tool = ctx.options.get("json_tool")
    custom = ctx.options.get("custom_tools") or ()
    texts: list[str] = []
    reasoning: list[str] = []
    signature = None
    tool_calls = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            signature = block.get("signature") or signature
        elif kind == "tool_use" and block.get("name") in custom:
            call = {"name": block.get("name"), "input": custom_input(block.get("input"))}
            tool_calls.append({"id": block.get("id"), "type": "custom", "custom": call})
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if json_tool is not None and block.get("name") == json_tool:
                texts.append(arguments)
            else:
                function = {"name": block.get("name"), "arguments": arguments}
                tool_calls.append({"id": block.get("id"), "type": "function", "function": function})
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
        if signature:
            reply["reasoning_signature"] = signature
    usage = Usage()
    usage.update(message.get("usage"))
    completion = {
        "id": _completion_id(ctx),
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": _finish_reason(message.get("stop_reason"), json_tool),
                "logprobs": None,
            }
        ],
        "usage": _usage_body(usage),
    }
    if ctx.conversation_id:
        completion["conversation_id"] = ctx.conversation_id
    return completion


def error_body(error: GatewayError) -> dict:
    """The OpenAI error object; all four keys are always present."""
    return {
        "error": {
            "message": error.message,
            "type": error.type or _error_type(error.status, error.code),
            "param": error.param,
            "code": error.code,
        }
    }


def _error_type(status: int, code: str | None) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "insufficient_quota" if code == "insufficient_quota" else "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _finish_reason(stop_reason: Any, json_tool: str | None) -> str:
    reason = _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    # The forced json_schema tool is our device, not a tool call the client asked for.
    if reason == "tool_calls" and json_tool is not None:
        return "stop"
    return reason


def _usage_body(usage: Usage) -> dict:
    prompt_tokens = usage.prompt_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_input_tokens},
    }


def _completion_id(ctx: ResponseContext) -> str:
    return "chatcmpl-" + ctx.request_id


# ---------------------------------------------------------------------------------------------------
# Streaming: Anthropic stream events -> chat.completion.chunk SSE lines
# ---------------------------------------------------------------------------------------------------

# Everything after the delta, per finish_reason: chunks are assembled from pre-serialised bytes so
# that each token costs one small orjson.dumps of the delta.
_CHOICE_ENDINGS = {
    reason: b',"logprobs":null,"finish_reason":' + orjson.dumps(reason) + b"}]"
    for reason in (None, "stop", "length", "tool_calls", "content_filter")
}
_DONE = b"data: [DONE]\n\n"


class _OpenToolCall:
    """A tool_use block between its start and stop; `index` is None for the json_schema tool."""

    __slots__ = ("index", "has_arguments")

    def __init__(self, index: int | None) -> None:
        self.index = index
        self.has_arguments = False


class StreamEncoder:
    """Turns one upstream answer's Anthropic stream events into OpenAI `chat.completion.chunk` SSE bytes."""

    __slots__ = ("_ctx", "_json_tool", "_include_usage", "_head", "_end", "_open_calls", "_tool_count", "_closed")

    def __init__(self, ctx: ResponseContext) -> None:
        self._ctx = ctx
        self._json_tool = ctx.options.get("json_tool")
        self._include_usage = bool(ctx.options.get("include_usage"))
        self._head = b"".join(
            (
                b'data: {"id":',
                orjson.dumps(_completion_id(ctx)),
                b',"object":"chat.completion.chunk","created":',
                orjson.dumps(ctx.created),
                b',"model":',
                orjson.dumps(ctx.model),
                b',"conversation_id":' + orjson.dumps(ctx.conversation_id) if ctx.conversation_id else b"",
                b',"choices":[{"index":0,"delta":',
            )
        )
        self._end = b',"usage":null}\n\n' if self._include_usage else b"}\n\n"
        self._open_calls: dict[int, _OpenToolCall] = {}  # by Anthropic content block index
        self._tool_count = 0
        self._closed = False

    def feed(self, event: dict) -> bytes:
        """Zero or more SSE lines for one Anthropic event (b"" for ping and unknown events)."""
        if self._closed:
            return b""
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._on_delta(event)
        if kind == "content_block_start":
            return self._on_block_start(event)
        if kind == "content_block_stop":
            return self._on_block_stop(event)
        if kind == "message_start":
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "message_delta":
            stop_reason = (event.get("delta") or {}).get("stop_reason")
            return self._chunk({}, _finish_reason(stop_reason, self._json_tool))
        return b""

    def finish(self, usage: Usage) -> bytes:
        """The usage chunk (with `include_usage`) and `[DONE]`, after message_stop."""
        if self._closed:
            return b""
        self._closed = True
        if not self._include_usage:
            return _DONE
        ctx = self._ctx
        chunk = {
            "id": _completion_id(ctx),
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "choices": [],
            "usage": _usage_body(usage),
        }
        if ctx.conversation_id:
            chunk["conversation_id"] = ctx.conversation_id
        return b"data: " + orjson.dumps(chunk) + b"\n\n" + _DONE

    def fail(self, error: GatewayError) -> bytes:
        """An error after the 200: the openai SDK raises on a chunk with a top-level `error`; nothing follows."""
        if self._closed:
            return b""
        self._closed = True
        return b"data: " + orjson.dumps(error_body(error)) + b"\n\n"

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> bytes:
        return b"".join((self._head, orjson.dumps(delta), _CHOICE_ENDINGS[finish_reason], self._end))

    def _on_delta(self, event: dict) -> bytes:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(delta.get("text"), "content")
        if kind == "input_json_delta":
            call = self._open_calls.get(event.get("index"))
            fragment = delta.get("partial_json")
            if call is None or not fragment:
                return b""
            call.has_arguments = True
            return self._arguments(call, fragment)
        if kind == "thinking_delta":
            return self._text(delta.get("thinking"), "reasoning_content")
        if kind == "signature_delta":
            return self._text(delta.get("signature"), "reasoning_signature")
        return b""

    def _on_block_start(self, event: dict) -> bytes:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            return self._text(block.get("text"), "content")
        if kind == "thinking":
            return self._text(block.get("thinking"), "reasoning_content")
        if kind != "tool_use":
            return b""
        name = block.get("name")
        if self._json_tool is not None and name == self._json_tool:
            self._open_calls[event.get("index")] = _OpenToolCall(None)
            return b""
        index = self._tool_count
        self._tool_count += 1
        self._open_calls[event.get("index")] = _OpenToolCall(index)
        call = {"index": index, "id": block.get("id"), "type": "function", "function": {"name": name, "arguments": ""}}
        return self._chunk({"tool_calls": [call]})

    def _on_block_stop(self, event: dict) -> bytes:
        call = self._open_calls.pop(event.get("index"), None)
        if call is None or call.has_arguments:
            return b""
        return self._arguments(call, "{}")

    def _arguments(self, call: _OpenToolCall, fragment: str) -> bytes:
        if call.index is None:
            return self._chunk({"content": fragment})
        return self._chunk({"tool_calls": [{"index": call.index, "function": {"arguments": fragment}}]})

    def _text(self, text: Any, key: str) -> bytes:
        return self._chunk({key: text}) if text else b""
