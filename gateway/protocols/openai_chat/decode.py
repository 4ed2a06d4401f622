"""Chat Completions request body -> InternalRequest (the rules are in the package docstring)."""

from __future__ import annotations

from typing import Any

from gateway.core import InternalRequest, invalid, openai_end_user
from gateway.protocols._common.checks import (int_at_least, is_int, json_type, missing, number_in_range, optional_bool,
                                              required_dict, required_str, show, unsupported_value, wrong_type)
from gateway.protocols._common.content import (Turn, append_blocks, image_url_block, pdf_data_block, strip_prefill,
                                               text_block)
from gateway.protocols._common.structured import JSON_OBJECT_INSTRUCTION, apply_json_schema
from gateway.protocols._common.thinking import decode_thinking_object, effort_thinking, last_tool_turn_lacks_thinking
from gateway.protocols._common.tools import (custom_tool, decode_tool_choice, function_name, function_tool, grammar_of,
                                             parse_arguments, tool_id)

_MAX_STOP_SEQUENCES = 4


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
    return InternalRequest(model=model, params=params, stream=stream, options=options,
                           end_user=openai_end_user(body))


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
