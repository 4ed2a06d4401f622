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
  `reasoning_effort` (budgets in `_EFFORT_BUDGETS`; `none` means off). With thinking on,
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

import hashlib
import re
from collections.abc import Callable
from typing import Any

import orjson

from gateway.core import (MIN_THINKING_BUDGET, GatewayError, InternalRequest, ResponseContext, Usage, depth_checked,
                          invalid)

_EFFORT_BUDGETS = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 32768,  # the official spec lists `max` too; it gets our largest budget rather than a 400
}
_TOOL_CHOICE_MODES = {"auto": "auto", "required": "any", "none": "none"}
_IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_MAX_STOP_SEQUENCES = 4
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_UNSAFE_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_DEFAULT_JSON_TOOL = "json_response"

JSON_OBJECT_INSTRUCTION = (
    "Respond with exactly one valid JSON object and nothing else: no prose, no Markdown code fences."
)
JSON_SCHEMA_INSTRUCTION = (
    "Respond with exactly one valid JSON value that conforms to the following JSON Schema, and nothing "
    "else: no prose, no Markdown code fences.\nJSON Schema: "
)

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
        raise invalid(f"The request body must be a JSON object, but got {_json_type(body)}.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _missing("model") if model is None else _wrong_type("model", "a non-empty string", model)
    stream = _optional_bool(body, "stream")
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
    if thinking and not _last_tool_turn_lacks_thinking(messages):
        params["thinking"] = thinking
    _apply_sampling(body, params)
    _apply_tools(body, params, options, stream)
    _apply_response_format(body.get("response_format"), params, system, options)
    if system:
        params["system"] = "\n".join(system)
    return InternalRequest(model=model, params=params, stream=stream, options=options)


def _apply_storage(body: dict, options: dict) -> None:
    """`store` (default true) and our `conversation_id` extension, for the server's history (conversations/)."""
    options["store"] = True if body.get("store") is None else _optional_bool(body, "store")
    conversation_id = body.get("conversation_id")
    if conversation_id is not None:
        if not isinstance(conversation_id, str) or not conversation_id:
            raise _wrong_type("conversation_id", "a conversation id (conv_...)", conversation_id)
        options["conversation_id"] = conversation_id


def _apply_sampling(body: dict, params: dict) -> None:
    temperature = _number_in_range(body, "temperature", 0, 2)
    top_p = _number_in_range(body, "top_p", 0, 1)
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
    tool_choice = _decode_tool_choice(body.get("tool_choice"), tools, body.get("parallel_tool_calls"))
    if not tool_choice:
        return
    if "thinking" in params and tool_choice["type"] in ("any", "tool"):
        raise invalid(
            "Invalid 'tool_choice': forcing a tool call is not supported when reasoning is enabled; "
            "use 'auto' or 'none', or turn reasoning off.",
            "tool_choice",
        )
    params["tool_choice"] = tool_choice


class _Turn:
    """An Anthropic message being assembled from consecutive OpenAI messages of one role."""

    __slots__ = ("role", "results", "blocks")

    def __init__(self, role: str) -> None:
        self.role = role
        self.results: list[dict] = []  # tool_result blocks, which Anthropic wants before anything else
        self.blocks: list[dict] = []

    def as_message(self) -> dict:
        return {"role": self.role, "content": self.results + self.blocks if self.results else self.blocks}


def _decode_messages(messages: Any) -> tuple[list[str], list[dict]]:
    """Return the system texts and the merged, alternating Anthropic messages."""
    if not isinstance(messages, list):
        raise _missing("messages") if messages is None else _wrong_type("messages", "an array", messages)
    if not messages:
        raise invalid("Invalid 'messages': empty array. Expected an array with at least one message.", "messages")
    system: list[str] = []
    turns: list[_Turn] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _wrong_type(f"messages[{i}]", "an object", message)
        role = message.get("role")
        if role == "user":
            _append_blocks(turns, "user", _user_blocks(message.get("content"), i))
        elif role == "assistant":
            _append_blocks(turns, "assistant", _assistant_blocks(message, i))
        elif role == "tool":
            _append_blocks(turns, "user", [_tool_result_block(message, i)], results=True)
        elif role == "system" or role == "developer":
            system.extend(text for text in _texts(message.get("content"), i) if text)
        elif role == "function":
            raise invalid(
                "The deprecated 'function' role is not supported; use 'tool' messages with 'tool_call_id'.",
                f"messages[{i}].role",
            )
        elif role is None:
            raise _missing(f"messages[{i}].role")
        else:
            raise _unsupported_value(
                f"messages[{i}].role", role, "'system', 'developer', 'user', 'assistant' and 'tool'"
            )
    _strip_prefill(turns)
    if not turns:
        raise invalid(
            "Invalid 'messages': at least one user or assistant message with content is required.", "messages"
        )
    return system, [turn.as_message() for turn in turns]


def _append_blocks(turns: list[_Turn], role: str, blocks: list[dict], *, results: bool = False) -> None:
    # Anthropic rejects empty and whitespace-only text blocks; such a text says nothing anyway.
    blocks = [block for block in blocks if block["type"] != "text" or not block["text"].isspace()]
    if not blocks:
        return
    if not turns or turns[-1].role != role:
        turns.append(_Turn(role))
    turn = turns[-1]
    (turn.results if results else turn.blocks).extend(blocks)


def _strip_prefill(turns: list[_Turn]) -> None:
    """Anthropic rejects a final assistant message ending in whitespace: strip its trailing text blocks."""
    if not turns or turns[-1].role != "assistant":
        return
    blocks = turns[-1].blocks
    while blocks and blocks[-1]["type"] == "text":
        text = blocks[-1]["text"].rstrip()
        if text:
            blocks[-1]["text"] = text
            break
        blocks.pop()
    if not blocks:
        turns.pop()


def _text_block(text: str) -> dict:
    return {"type": "text", "text": text}


def _part_type(part: Any, i: int, j: int) -> Any:
    if not isinstance(part, dict):
        raise _wrong_type(f"messages[{i}].content[{j}]", "an object", part)
    kind = part.get("type")
    if not isinstance(kind, str):
        param = f"messages[{i}].content[{j}].type"
        raise _missing(param) if kind is None else _wrong_type(param, "a string", kind)
    return kind


def _part_string(part: dict, key: str, i: int, j: int) -> str:
    value = part.get(key)
    if not isinstance(value, str):
        param = f"messages[{i}].content[{j}].{key}"
        raise _missing(param) if value is None else _wrong_type(param, "a string", value)
    return value


def _content_parts(content: Any, i: int) -> list:
    """A non-string message content must be an array of parts."""
    if not isinstance(content, list):
        param = f"messages[{i}].content"
        raise _missing(param) if content is None else _wrong_type(param, "a string or an array", content)
    return content


def _texts(content: Any, i: int) -> list[str]:
    """The texts of a content that may only hold text: a string or an array of text parts."""
    if isinstance(content, str):
        return [content]
    texts = []
    for j, part in enumerate(_content_parts(content, i)):
        kind = _part_type(part, i, j)
        if kind != "text":
            raise _unsupported_value(f"messages[{i}].content[{j}].type", kind, "'text'")
        texts.append(_part_string(part, "text", i, j))
    return texts


def _user_blocks(content: Any, i: int) -> list[dict]:
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    blocks = []
    for j, part in enumerate(_content_parts(content, i)):
        kind = _part_type(part, i, j)
        if kind == "text":
            text = _part_string(part, "text", i, j)
            if text:
                blocks.append(_text_block(text))
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"messages[{i}].content[{j}].image_url"))
        elif kind == "file":
            blocks.append(_document_block(part.get("file"), f"messages[{i}].content[{j}].file"))
        elif kind == "input_audio":
            raise invalid(
                "Audio input ('input_audio') is not supported by this model.", f"messages[{i}].content[{j}].type"
            )
        else:
            raise _unsupported_value(
                f"messages[{i}].content[{j}].type", kind, "'text', 'image_url' and 'file'"
            )
    return blocks


def _image_block(image_url: Any, param: str) -> dict:
    url = _required_str(_required_dict(image_url, param), "url", param)
    return _image_url_block(url, param + ".url")


def _image_url_block(url: str, param: str) -> dict:
    """An Anthropic image block for a data URL or an http(s) URL (shared with the Responses codec)."""
    scheme = url[:8].lower()
    if scheme.startswith("data:"):
        media_type, data = _parse_data_url(url, param)
        if media_type == "image/jpg":
            media_type = "image/jpeg"
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise invalid(
                f"Invalid '{param}': unsupported image type '{media_type}'. "
                "Supported types are image/jpeg, image/png, image/gif and image/webp.",
                param,
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    # Passed on as a URL for upstream to fetch: downloading it here would be an SSRF hole and add latency.
    if scheme.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise invalid(
        f"Invalid '{param}': expected an http(s) URL or a base64 data URL ('data:image/png;base64,...').", param
    )


def _document_block(file: Any, param: str) -> dict:
    file = _required_dict(file, param)
    data_url = file.get("file_data")
    if data_url is None and file.get("file_id") is not None:
        raise invalid(
            "Uploaded files ('file_id') are not supported; send the file inline as 'file_data'.",
            f"{param}.file_id",
        )
    return _pdf_data_block(data_url, param + ".file_data")


def _pdf_data_block(data_url: Any, param: str) -> dict:
    """A `file_data` PDF data URL (chat's `file` part and the Responses API's `input_file`) as a document."""
    if not isinstance(data_url, str):
        raise _missing(param) if data_url is None else _wrong_type(param, "a string", data_url)
    media_type, data = _parse_data_url(data_url, param)
    if media_type != "application/pdf":
        raise invalid(
            f"Invalid '{param}': unsupported file type '{media_type}'. Only application/pdf is supported.", param
        )
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _parse_data_url(url: str, param: str) -> tuple[str, str]:
    """Split `data:<media type>;base64,<data>` into the lower-cased media type and the data."""
    header, comma, data = url.partition(",")
    media_type, _, encoding = header[5:].partition(";")
    if not comma or not data or encoding.lower() != "base64":
        raise invalid(f"Invalid '{param}': expected a base64 data URL ('data:<media type>;base64,<data>').", param)
    return media_type.strip().lower(), data


def _assistant_blocks(message: dict, i: int) -> list[dict]:
    thinking = _round_tripped_thinking(message)
    blocks = [thinking] if thinking else []
    _append_assistant_texts(blocks, message.get("content"), i)
    refusal = message.get("refusal")
    if refusal is not None:
        if not isinstance(refusal, str):
            raise _wrong_type(f"messages[{i}].refusal", "a string or null", refusal)
        if refusal:
            blocks.append(_text_block(refusal))
    if message.get("function_call") is not None:
        raise invalid(
            "The deprecated 'function_call' is not supported; use 'tool_calls'.", f"messages[{i}].function_call"
        )
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise _wrong_type(f"messages[{i}].tool_calls", "an array", tool_calls)
        blocks.extend(_tool_use_block(call, f"messages[{i}].tool_calls[{k}]") for k, call in enumerate(tool_calls))
    return blocks


def _append_assistant_texts(blocks: list[dict], content: Any, i: int) -> None:
    if isinstance(content, str):
        if content:
            blocks.append(_text_block(content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            kind = _part_type(part, i, j)
            if kind != "text" and kind != "refusal":
                raise _unsupported_value(f"messages[{i}].content[{j}].type", kind, "'text' and 'refusal'")
            text = _part_string(part, kind, i, j)
            if text:
                blocks.append(_text_block(text))
    elif content is not None:
        raise _wrong_type(f"messages[{i}].content", "a string, an array or null", content)


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
    call = _required_dict(call, param)
    kind = call.get("type", "function")
    call_id = _required_str(call, "id", param)
    if kind == "custom":
        custom = _required_dict(call.get("custom"), f"{param}.custom")
        name = _required_str(custom, "name", f"{param}.custom")
        tool_input = {"input": _required_str(custom, "input", f"{param}.custom", allow_empty=True)}
    elif kind == "function":
        function = _required_dict(call.get("function"), f"{param}.function")
        name = _required_str(function, "name", f"{param}.function")
        arguments = _required_str(function, "arguments", f"{param}.function", allow_empty=True)
        tool_input = _parse_arguments(arguments, f"{param}.function.arguments")
    else:
        raise _unsupported_value(f"{param}.type", kind, "'function' and 'custom'")
    return {"type": "tool_use", "id": _tool_id(call_id), "name": name, "input": tool_input}


def _parse_arguments(arguments: str, param: str) -> dict:
    if not arguments or arguments.isspace():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise invalid(f"Invalid '{param}': the tool call arguments are not valid JSON.", param) from None
    if not isinstance(value, dict):
        raise invalid(f"Invalid '{param}': the tool call arguments must be a JSON object.", param)
    return depth_checked(value, param)


def _tool_result_block(message: dict, i: int) -> dict:
    tool_call_id = _required_str(message, "tool_call_id", f"messages[{i}]")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(tool_call_id)}
    content = message.get("content")
    if isinstance(content, str):
        if content and not content.isspace():
            block["content"] = content
    else:
        texts = [_text_block(text) for text in _texts(content, i) if text and not text.isspace()]
        if texts:
            block["content"] = texts
    return block


def _safe_id(value: str) -> str:
    """A name Anthropic accepts (^[a-zA-Z0-9_-]+$): other characters become `_`."""
    return _UNSAFE_ID_CHARS.sub("_", value)


def _tool_id(value: str) -> str:
    """A tool call id Anthropic accepts, the same on a call and on its result. Other providers' ids look
    like `functions.Bash:0`; one that needs changing also gets a digest of itself, so that two ids that
    differ only in the replaced characters (`call.1`, `call_1`) stay two ids."""
    safe = _safe_id(value)
    return value if safe == value else f"{safe}_{hashlib.sha256(value.encode()).hexdigest()[:8]}"


def _last_tool_turn_lacks_thinking(messages: list[dict]) -> bool:
    """Whether Anthropic would reject thinking: the last assistant turn used a tool and does not start with
    its (possibly redacted) thinking block."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            content = message["content"]
            uses_tool = any(block["type"] == "tool_use" for block in content)
            return uses_tool and content[0]["type"] not in ("thinking", "redacted_thinking")
    return False


def _decode_tools(tools: Any) -> tuple[list[dict], list[str]]:
    """The Anthropic tools and the names of the custom ones (whose calls go back as `custom` tool calls)."""
    if tools is None:
        return [], []
    if not isinstance(tools, list):
        raise _wrong_type("tools", "an array", tools)
    decoded = []
    custom = []
    names = set()
    for k, tool in enumerate(tools):
        param = f"tools[{k}]"
        tool = _required_dict(tool, param)
        kind = tool.get("type")
        if kind == "function":
            param += ".function"
            function = _required_dict(tool.get("function"), param)
            entry = _function_tool(function, param, _function_name(function, param))
        elif kind == "custom":
            param += ".custom"
            spec = _required_dict(tool.get("custom"), param)
            name = _function_name(spec, param)
            entry = custom_tool(spec, param, name, name, _chat_grammar(spec.get("format"), f"{param}.format"))
            custom.append(name)
        else:
            param += ".type"
            raise _missing(param) if kind is None else _unsupported_value(param, kind, "'function' and 'custom'")
        if entry["name"] in names:
            raise invalid(f"Invalid 'tools': the tool name '{entry['name']}' is used twice.", f"{param}.name")
        names.add(entry["name"])
        decoded.append(entry)
    return decoded, custom


def _chat_grammar(fmt: Any, param: str) -> tuple[str, str] | None:
    """A chat custom tool's `format`: None for text, else (syntax, definition) of its `grammar`."""
    if fmt is None:
        return None
    kind = _required_dict(fmt, param).get("type")
    if kind == "text":
        return None
    if kind != "grammar":
        raise _unsupported_value(f"{param}.type", kind, "'text' and 'grammar'")
    grammar = _required_dict(fmt.get("grammar"), f"{param}.grammar")
    return grammar_of(grammar, f"{param}.grammar")


def grammar_of(grammar: dict, param: str) -> tuple[str, str]:
    """(syntax, definition) of a custom tool's grammar at `param` (shared with the Responses codec)."""
    syntax = grammar.get("syntax")
    if syntax not in ("lark", "regex"):
        raise _unsupported_value(f"{param}.syntax", syntax, "'lark' and 'regex'")
    return syntax, _required_str(grammar, "definition", param)


_CUSTOM_INPUT_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's entire raw input."}},
    "required": ["input"],
}


def custom_tool(spec: dict, param: str, anthropic_name: str, name: str, grammar: tuple[str, str] | None,
                note: str = "") -> dict:
    """The Anthropic tool for an OpenAI custom (freeform) tool: Claude writes its raw input as the one string
    property `input`, and the grammar, which Anthropic cannot enforce, is in the description."""
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise _wrong_type(f"{param}.description", "a string", description)
    parts = [description] if description else []
    if note:
        parts.append(note)
    parts.append(f"{name} is a freeform tool: put its entire raw input, exactly as the tool expects it "
                 "and not JSON-encoded, in the `input` string.")
    if grammar is not None:
        parts.append(f"The input must match this {grammar[0]} grammar:\n{grammar[1]}")
    return {"name": anthropic_name, "description": "\n\n".join(parts), "input_schema": _CUSTOM_INPUT_SCHEMA}


def custom_input(tool_input: Any) -> str:
    """A custom tool call's raw input; a model that ignored the one-string schema still gets it through, as JSON."""
    if not isinstance(tool_input, dict):
        return ""
    raw = tool_input.get("input")
    return raw if isinstance(raw, str) else (orjson.dumps(tool_input).decode() if tool_input else "")


def _function_name(function: dict, param: str) -> str:
    """A function tool's name, as Anthropic accepts it (shared with the Responses codec)."""
    name = _required_str(function, "name", param)
    if not _TOOL_NAME.fullmatch(name):
        raise invalid(
            f"Invalid '{param}.name': {_show(name)} must be 1 to 64 characters from a-z, A-Z, 0-9, "
            "underscores and dashes.",
            f"{param}.name",
        )
    return name


def _function_tool(function: dict, param: str, name: str) -> dict:
    """The Anthropic tool for an OpenAI function definition (`parameters`, `description` checked)."""
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _wrong_type(f"{param}.parameters", "an object", parameters)
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise _wrong_type(f"{param}.description", "a string", description)
    # Anthropic requires an object input_schema; OpenAI lets parameters be left out.
    entry = {"name": name, "input_schema": parameters or {"type": "object", "properties": {}}}
    if description:
        entry["description"] = description
    return entry


def _decode_tool_choice(choice: Any, tools: list[dict], parallel: Any,
                        forced_name: Callable[[dict], tuple[str, str]] | None = None) -> dict | None:
    """Anthropic's tool_choice for OpenAI's `tool_choice` and `parallel_tool_calls`.

    `forced_name(choice)` checks a tool_choice object and gives the Anthropic name of the tool it forces
    and its param: chat nests a function's name under `function` (the default), the Responses API does
    not and also forces custom and hosted tools.
    """
    if choice is None:
        decoded = None
    elif isinstance(choice, str):
        mode = _TOOL_CHOICE_MODES.get(choice)
        if mode is None:
            raise _unsupported_value("tool_choice", choice, "'auto', 'required', 'none' or a function")
        decoded = {"type": mode}
    elif isinstance(choice, dict):
        name, param = (forced_name or _chat_forced_name)(choice)
        if not any(tool["name"] == name for tool in tools):
            raise invalid(f"Invalid '{param}': no tool named {_show(name)} in 'tools'.", param)
        decoded = {"type": "tool", "name": name}
    else:
        raise _wrong_type("tool_choice", "a string or an object", choice)
    if parallel is not None and not isinstance(parallel, bool):
        raise _wrong_type("parallel_tool_calls", "a boolean", parallel)
    if parallel is False:
        if decoded is None:
            decoded = {"type": "auto"}
        if decoded["type"] != "none":
            decoded["disable_parallel_tool_use"] = True
    return decoded


def _chat_forced_name(choice: dict) -> tuple[str, str]:
    kind = choice.get("type")
    if kind != "function" and kind != "custom":
        raise _unsupported_value("tool_choice.type", kind, "'function' and 'custom'")
    spec = _required_dict(choice.get(kind), f"tool_choice.{kind}")
    return _required_str(spec, "name", f"tool_choice.{kind}"), f"tool_choice.{kind}.name"


def _requested_thinking(body: dict) -> dict | None:
    """The thinking the client asked for: a `thinking` object wins over `reasoning_effort`."""
    thinking = body.get("thinking")
    if thinking is not None:
        return _decode_thinking_object(thinking)
    return _effort_thinking(body.get("reasoning_effort"), "reasoning_effort")


def _effort_thinking(effort: Any, param: str) -> dict | None:
    """Thinking for an OpenAI reasoning effort, through `_EFFORT_BUDGETS` (shared with the Responses codec)."""
    if effort is None or effort == "none":
        return None
    if not isinstance(effort, str):
        raise _wrong_type(param, "a string", effort)
    budget = _EFFORT_BUDGETS.get(effort)
    if budget is None:
        supported = "'none', " + ", ".join(f"'{name}'" for name in _EFFORT_BUDGETS)
        raise _unsupported_value(param, effort, supported)
    return {"type": "enabled", "budget_tokens": budget}


def _decode_thinking_object(thinking: Any) -> dict | None:
    kind = _required_dict(thinking, "thinking").get("type")
    if kind == "disabled":
        return None
    if kind != "enabled":
        raise _unsupported_value("thinking.type", kind, "'enabled' and 'disabled'")
    budget = thinking.get("budget_tokens")
    if budget is None:
        raise _missing("thinking.budget_tokens")
    if not _is_int(budget):
        raise _wrong_type("thinking.budget_tokens", "an integer", budget)
    if budget < MIN_THINKING_BUDGET:
        raise invalid(
            f"Invalid 'thinking.budget_tokens': expected a value >= {MIN_THINKING_BUDGET}, but got {budget}.",
            "thinking.budget_tokens",
        )
    return {"type": "enabled", "budget_tokens": budget}


def _apply_response_format(fmt: Any, params: dict, system: list[str], options: dict) -> None:
    if fmt is None:
        return
    fmt = _required_dict(fmt, "response_format")
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        system.append(JSON_OBJECT_INSTRUCTION)
        return
    if kind != "json_schema":
        raise _unsupported_value("response_format.type", kind, "'text', 'json_object' and 'json_schema'")
    _apply_json_schema(_required_dict(fmt.get("json_schema"), "response_format.json_schema"), params, system, options)


def _apply_json_schema(spec: dict, params: dict, system: list[str], options: dict) -> None:
    """Forced tool when possible, else a system instruction (see the module docstring)."""
    schema = spec.get("schema")
    if schema is None:
        schema = {"type": "object"}
    elif not isinstance(schema, dict):
        raise _wrong_type("response_format.json_schema.schema", "an object", schema)
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise _wrong_type("response_format.json_schema.name", "a string", name)
    if "tools" in params or "thinking" in params or schema.get("type") != "object":
        system.append(JSON_SCHEMA_INSTRUCTION + orjson.dumps(schema).decode())
        return
    tool_name = _safe_id(name)[:64] if name else _DEFAULT_JSON_TOOL
    tool = {"name": tool_name, "input_schema": schema}
    description = spec.get("description")
    if isinstance(description, str) and description:
        tool["description"] = description
    params["tools"] = [tool]
    params["tool_choice"] = {"type": "tool", "name": tool_name}
    options["json_tool"] = tool_name


def _max_tokens(body: dict) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not _is_int(value):
            raise _wrong_type(name, "an integer", value)
        if value < 1:
            raise invalid(f"Invalid '{name}': expected a value >= 1, but got {value}.", name)
        return value
    return None


def _number_in_range(body: dict, name: str, low: int, high: int) -> int | float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _wrong_type(name, "a number", value)
    if not low <= value <= high:  # also false for NaN
        raise invalid(f"Invalid '{name}': expected a value between {low} and {high}, but got {value}.", name)
    return value


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    elif not isinstance(stop, list):
        raise _wrong_type("stop", "a string or an array of strings", stop)
    elif len(stop) > _MAX_STOP_SEQUENCES:
        raise invalid(f"Invalid 'stop': at most {_MAX_STOP_SEQUENCES} sequences are allowed, got {len(stop)}.", "stop")
    for k, sequence in enumerate(stop):
        if not isinstance(sequence, str):
            raise _wrong_type(f"stop[{k}]", "a string", sequence)
    return [sequence for sequence in stop if sequence.strip()]


def _check_n(n: Any) -> None:
    if n is None or (_is_int(n) and n == 1):
        return
    raise invalid(f"Invalid 'n': only one choice per request is supported (n must be 1), got {_show(n)}.", "n")


def _include_usage(stream_options: Any) -> bool:
    if stream_options is None:
        return False
    return _optional_bool(_required_dict(stream_options, "stream_options"), "include_usage", "stream_options.")


def _optional_bool(container: dict, key: str, prefix: str = "") -> bool:
    value = container.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _wrong_type(prefix + key, "a boolean", value)
    return value


def _required_dict(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise _missing(param) if value is None else _wrong_type(param, "an object", value)
    return value


def _required_str(container: dict, key: str, parent: str, *, allow_empty: bool = False) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not (value or allow_empty):
        param = f"{parent}.{key}"
        expected = "a string" if allow_empty else "a non-empty string"
        raise _missing(param) if value is None else _wrong_type(param, expected, value)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    """A short JSON rendering of a client value for an error message."""
    try:
        shown = orjson.dumps(value).decode()
    except TypeError:
        shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _wrong_type(param: str, expected: str, value: Any) -> GatewayError:
    return invalid(f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.", param)


def _missing(param: str) -> GatewayError:
    return invalid(f"Missing required parameter: '{param}'.", param)


def _unsupported_value(param: str, value: Any, supported: str) -> GatewayError:
    return invalid(f"Invalid value for '{param}': {_show(value)}. Supported values are: {supported}.", param)


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
