"""Responses request body -> InternalRequest (the rules are in the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gateway.core import WEB_SEARCH_TOOL_TYPE, InternalRequest, invalid, openai_end_user
from gateway.protocols._common.checks import (int_at_least, is_int, json_type, missing, number_in_range, optional_bool,
                                              required_dict, required_str, show, unsupported_value, wrong_type)
from gateway.protocols._common.content import (Turn, append_blocks, image_url_block, pdf_data_block, strip_prefill,
                                               text_block)
from gateway.protocols._common.structured import DEFAULT_JSON_TOOL, JSON_OBJECT_INSTRUCTION, apply_json_schema
from gateway.protocols._common.thinking import decode_thinking_object, effort_thinking, last_tool_turn_lacks_thinking
from gateway.protocols._common.tools import (custom_tool, decode_tool_choice, function_name, function_tool, grammar_of,
                                             parse_arguments, safe_id, tool_id)

REDACTED_THINKING_PREFIX = "redacted_thinking:"  # signatures are base64, so never start like this
_ROLES = "'user', 'assistant', 'system' and 'developer'"
_ITEM_TYPES = ("'message', 'function_call', 'function_call_output', 'custom_tool_call', 'custom_tool_call_output', "
               "'local_shell_call', 'local_shell_call_output', 'web_search_call' and 'reasoning'")
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs",
                "custom_tool_call": "ctc", "custom_tool_call_output": "ctco", "local_shell_call": "lsh",
                "local_shell_call_output": "lsho", "web_search_call": "ws"}
_TEXT_PARTS = ("input_text", "output_text")
_REASONING_SUMMARIES = ("auto", "concise", "detailed")
_VERBOSITIES = ("low", "medium", "high")
_IMAGE_DETAILS = ("auto", "low", "high", "original")
_TRUNCATIONS = ("auto", "disabled")
_MAX_METADATA_KEYS = 16
_DEFAULT_TEXT = {"format": {"type": "text"}}
WEB_SEARCH_TOOL = "web_search"  # the name of Anthropic's server web search tool
LOCAL_SHELL_TOOL = "local_shell"
_MAX_TOOL_NAME = 128  # Anthropic's limit
_WEB_SEARCH_TYPES = ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11")
_WEB_SEARCH_CHOICES = ("web_search", "web_search_preview", "web_search_preview_2025_03_11")
_TOOL_TYPES = "'function', 'custom', 'namespace', 'local_shell', 'web_search' and 'web_search_preview'"
_HOSTED = "runs on OpenAI's servers and has no equivalent here; leave it out of 'tools'."
_UNSERVED_TOOLS = {
    "file_search": "the 'file_search' tool searches OpenAI vector stores, which this gateway does not have; "
                   "leave it out of 'tools'.",
    "code_interpreter": "the 'code_interpreter' tool " + _HOSTED,
    "image_generation": "the 'image_generation' tool " + _HOSTED,
    "computer": "the 'computer' tool is not supported; leave it out of 'tools'.",
    "computer_use": "the 'computer_use' tool is not supported; leave it out of 'tools'.",
    "computer_use_preview": "the 'computer_use_preview' tool is not supported; leave it out of 'tools'.",
    "mcp": "remote MCP servers ('mcp' tools) are not supported; connect the MCP server in your client and "
           "declare its tools as functions.",
    "tool_search": "the 'tool_search' tool (deferred tool loading) is not supported; declare the tools directly.",
    "programmatic_tool_calling": "programmatic tool calling is not supported; leave it out of 'tools'.",
    "shell": "the 'shell' tool is not supported; declare 'local_shell' or a function tool instead.",
    "apply_patch": "the 'apply_patch' tool is not supported; declare it as a 'custom' or function tool instead.",
}
_LOCAL_SHELL_DEFINITION = {
    "name": LOCAL_SHELL_TOOL,
    "description": "Runs a command on the user's machine and returns its output.",
    "input_schema": {
        "type": "object",
        "properties": {
            "command": {"type": "array", "items": {"type": "string"},
                        "description": "The program and its arguments, e.g. [\"bash\", \"-lc\", \"ls\"]."},
            "working_directory": {"type": "string"},
            "timeout_ms": {"type": "integer"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["command"],
    },
}


def decode_request(
    body: Any, *, request_id: str | None = None, history: Sequence[dict] = ()
) -> InternalRequest:
    """Validate a parsed `POST /v1/responses` body and translate it; raise a 400 `GatewayError` naming the field.

    `request_id` (`req_<hex>`) names the input items that came without an id (`msg_<hex>_in<n>`, ...);
    without it they get no `id`. `history` is the earlier turns as Anthropic messages, oldest first
    (a previous response's messages plus its answer, or a stored conversation); it is merged with the
    new input under the same rules, and is not part of `options["input_items"]`.
    """
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object, but got {json_type(body)}.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise missing("model") if model is None else wrong_type("model", "a non-empty string", model)
    stream = optional_bool(body.get("stream"), "stream")
    _reject_unsupported(body)
    options = _storage_options(body)

    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise wrong_type("instructions", "a string", instructions)
    options["instructions"] = instructions
    system = [instructions] if instructions else []
    turns: list[Turn] = []
    for message in history:
        _append_anthropic_message(turns, message)
    hex_id = _hex(request_id) if request_id else None
    options["input_items"] = _decode_input(body.get("input"), "input", turns, system, hex_id)
    messages = _messages(turns, "input")

    params: dict[str, Any] = {"messages": messages}
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None:
        params["max_tokens"] = int_at_least(max_tokens, "max_output_tokens", 1)
    options["max_output_tokens"] = max_tokens
    thinking = _requested_thinking(body, options)
    if thinking and not last_tool_turn_lacks_thinking(messages):
        params["thinking"] = thinking
    _apply_sampling(body, params, options)
    _apply_tools(body, params, options)
    _apply_text(body.get("text"), params, system, options)
    if system:
        params["system"] = "\n".join(system)
    return InternalRequest(model=model, params=params, stream=stream, options=options,
                           end_user=openai_end_user(body))


def decode_input_items(items: Any, *, param: str) -> tuple[list[dict], list[str]]:
    """Input items on their own (the Conversations API's `items`), validated as `input` is with errors naming
    `param`: the Anthropic messages and the system texts."""
    system: list[str] = []
    turns: list[Turn] = []
    _decode_input(items, param, turns, system, None)
    return _messages(turns, param), system


def _messages(turns: list[Turn], param: str) -> list[dict]:
    strip_prefill(turns)
    if not turns:
        raise invalid(f"Invalid '{param}': at least one user or assistant message with content is required.", param)
    return [turn.as_message() for turn in turns]


def _reject_unsupported(body: dict) -> None:
    if body.get("background") is True:
        raise invalid("Background responses ('background': true) are not supported.", "background")
    if body.get("prompt") is not None:
        raise invalid("Prompt templates ('prompt') are not supported; send 'instructions' and 'input'.", "prompt")


def _storage_options(body: dict) -> dict[str, Any]:
    """What the server needs to store the response and find earlier turns, validated."""
    options: dict[str, Any] = {"store": True if body.get("store") is None else optional_bool(body["store"], "store")}
    options["metadata"] = _metadata(body.get("metadata"))
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise wrong_type("previous_response_id", "a non-empty string", previous)
    options["previous_response_id"] = previous
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        conversation = required_str(conversation, "id", "conversation")
    elif conversation is not None and (not isinstance(conversation, str) or not conversation):
        raise wrong_type("conversation", "a conversation id or an object with an 'id'", conversation)
    if conversation is not None and previous is not None:
        raise invalid("'previous_response_id' and 'conversation' cannot be used together; send only one.",
                      "conversation")
    options["conversation"] = conversation
    truncation = body.get("truncation")
    if truncation is not None and truncation not in _TRUNCATIONS:
        raise unsupported_value("truncation", truncation, "'auto' and 'disabled'")
    options["truncation"] = truncation or "disabled"
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise wrong_type("user", "a string", user)
    options["user"] = user
    return options


def _metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise wrong_type("metadata", "an object", metadata)
    if len(metadata) > _MAX_METADATA_KEYS:
        raise invalid(f"Invalid 'metadata': at most {_MAX_METADATA_KEYS} keys are allowed, got {len(metadata)}.",
                      "metadata")
    for key, value in metadata.items():
        if len(key) > 64:
            raise invalid(f"Invalid 'metadata': the key {show(key)} is longer than 64 characters.", "metadata")
        if not isinstance(value, str):
            raise wrong_type(f"metadata.{key}", "a string", value)
        if len(value) > 512:
            raise invalid(f"Invalid 'metadata.{key}': the value is longer than 512 characters.", f"metadata.{key}")
    return metadata


def _append_anthropic_message(turns: list[Turn], message: dict) -> None:
    """One stored (trusted) Anthropic message, merged like the client's items."""
    content = message["content"]
    if isinstance(content, str):
        append_blocks(turns, message["role"], [text_block(content)] if content else [])
        return
    results = [block for block in content if block.get("type") == "tool_result"]
    append_blocks(turns, message["role"], results, results=True)
    append_blocks(turns, message["role"], [block for block in content if block.get("type") != "tool_result"])


def _decode_input(value: Any, param: str, turns: list[Turn], system: list[str], hex_id: str | None) -> list[dict]:
    """Translate the input into `turns` and `system`; return the items normalised for storage."""
    if isinstance(value, str):
        append_blocks(turns, "user", [text_block(value)] if value else [])
        item = {"type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_text", "text": value}]}
        return [_with_id(item, None, hex_id, 0)]
    if not isinstance(value, list):
        raise missing(param) if value is None else wrong_type(param, "a string or an array", value)
    stored = []
    parent = param
    for n, item in enumerate(value):
        param = f"{parent}[{n}]"
        item = required_dict(item, param)
        kind = item.get("type", "message")
        if kind == "message":
            normalised = _message_item(item, param, turns, system)
        elif kind == "function_call" or kind == "custom_tool_call":
            normalised = _call_item(item, param, turns, kind)
        elif kind == "function_call_output" or kind == "custom_tool_call_output":
            normalised = _call_output_item(item, param, turns, kind)
        elif kind == "local_shell_call":
            normalised = _local_shell_call_item(item, param, turns)
        elif kind == "local_shell_call_output":
            normalised = _local_shell_output_item(item, param, turns)
        elif kind == "web_search_call":
            normalised = _web_search_call_item(item, param)
        elif kind == "reasoning":
            normalised = _reasoning_item(item, param, turns)
        elif kind == "item_reference":
            raise invalid("Item references ('item_reference') are not supported; send the item itself.",
                          f"{param}.type")
        elif not isinstance(kind, str):
            raise wrong_type(f"{param}.type", "a string", kind)
        else:
            raise unsupported_value(f"{param}.type", kind, _ITEM_TYPES)
        stored.append(_with_id(normalised, item.get("id"), hex_id, n))
    return stored


def _with_id(item: dict, given: Any, hex_id: str | None, n: int) -> dict:
    """The client's item id when it sent one (e.g. an output item sent back), else one derived from the request."""
    if isinstance(given, str) and given:
        return {"id": given, **item}
    if hex_id is None:
        return item
    return {"id": f"{_ID_PREFIXES[item['type']]}_{hex_id}_in{n}", **item}


def _message_item(item: dict, param: str, turns: list[Turn], system: list[str]) -> dict:
    role = item.get("role")
    content = item.get("content")
    if isinstance(content, str):
        parts: list = [{"type": "output_text" if role == "assistant" else "input_text", "text": content}]
    elif isinstance(content, list):
        parts = content
    else:
        param += ".content"
        raise missing(param) if content is None else wrong_type(param, "a string or an array", content)
    if role == "user":
        blocks, stored = _user_parts(parts, f"{param}.content")
        append_blocks(turns, "user", blocks)
    elif role == "assistant":
        blocks, stored = _assistant_parts(parts, f"{param}.content")
        append_blocks(turns, "assistant", blocks)
    elif role == "system" or role == "developer":
        stored = [{"type": "input_text", "text": _text_part(part, f"{param}.content[{j}]", ("input_text",))}
                  for j, part in enumerate(parts)]
        system.extend(part["text"] for part in stored if part["text"])
    elif role is None:
        raise missing(f"{param}.role")
    else:
        raise unsupported_value(f"{param}.role", role, _ROLES)
    return {"type": "message", "role": role, "status": "completed", "content": stored}


def _part_kind(part: Any, param: str) -> Any:
    kind = required_dict(part, param).get("type")
    if not isinstance(kind, str):
        param += ".type"
        raise missing(param) if kind is None else wrong_type(param, "a string", kind)
    return kind


def _text_part(part: Any, param: str, kinds: tuple[str, ...]) -> str:
    """The text of a part that may only hold text (output_text is accepted everywhere input_text is)."""
    kind = _part_kind(part, param)
    if kind not in _TEXT_PARTS:
        raise unsupported_value(f"{param}.type", kind, " and ".join(f"'{name}'" for name in kinds))
    return required_str(part, "text", param, allow_empty=True)


def _user_parts(parts: list, param: str) -> tuple[list[dict], list[dict]]:
    """Anthropic blocks and stored parts of a user content (or a function_call_output's) at `param`."""
    blocks, stored = [], []
    for j, part in enumerate(parts):
        part_param = f"{param}[{j}]"
        kind = _part_kind(part, part_param)
        if kind in _TEXT_PARTS:
            text = required_str(part, "text", part_param, allow_empty=True)
            if text:
                blocks.append(text_block(text))
            stored.append({"type": "input_text", "text": text})
        elif kind == "input_image":
            blocks.append(_image_block(part, part_param))
            detail = part.get("detail")
            if detail is not None and detail not in _IMAGE_DETAILS:
                raise unsupported_value(f"{part_param}.detail", detail, "'auto', 'low', 'high' and 'original'")
            stored.append({"type": "input_image", "image_url": part["image_url"], "file_id": None,
                           "detail": detail or "auto"})
        elif kind == "input_file":
            blocks.append(_document_block(part, part_param))
            stored.append({key: part[key] for key in ("type", "filename", "file_data", "file_url") if key in part})
        elif kind == "input_audio":
            raise invalid("Audio input ('input_audio') is not supported by this model.", f"{part_param}.type")
        else:
            raise unsupported_value(f"{part_param}.type", kind, "'input_text', 'input_image' and 'input_file'")
    return blocks, stored


def _assistant_parts(parts: list, param: str) -> tuple[list[dict], list[dict]]:
    blocks, stored = [], []
    for j, part in enumerate(parts):
        part_param = f"{param}[{j}]"
        kind = _part_kind(part, part_param)
        if kind == "refusal":
            text = required_str(part, "refusal", part_param, allow_empty=True)
            stored.append({"type": "refusal", "refusal": text})
        elif kind in _TEXT_PARTS:
            text = required_str(part, "text", part_param, allow_empty=True)
            stored.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
        else:
            raise unsupported_value(f"{part_param}.type", kind, "'output_text' and 'refusal'")
        if text:
            blocks.append(text_block(text))
    return blocks, stored


def _image_block(part: dict, param: str) -> dict:
    url = part.get("image_url")
    if url is None and part.get("file_id") is not None:
        raise invalid("Uploaded files ('file_id') are not supported; send the image as 'image_url'.",
                      f"{param}.file_id")
    param += ".image_url"
    if not isinstance(url, str):
        raise missing(param) if url is None else wrong_type(param, "a string", url)
    return image_url_block(url, param)


def _document_block(part: dict, param: str) -> dict:
    data_url = part.get("file_data")
    file_url = part.get("file_url")
    if data_url is None and file_url is not None:
        param += ".file_url"
        if not isinstance(file_url, str) or not file_url[:8].lower().startswith(("https://", "http://")):
            raise invalid(f"Invalid '{param}': expected an http(s) URL of a PDF.", param)
        return {"type": "document", "source": {"type": "url", "url": file_url}}
    if data_url is None and part.get("file_id") is not None:
        raise invalid("Uploaded files ('file_id') are not supported; send the file as 'file_data' or 'file_url'.",
                      f"{param}.file_id")
    return pdf_data_block(data_url, param + ".file_data")


def _call_item(item: dict, param: str, turns: list[Turn], kind: str) -> dict:
    """A `function_call` or `custom_tool_call` sent back: its tool_use block, named as in `tools`."""
    call_id = required_str(item, "call_id", param)
    name = required_str(item, "name", param)
    namespace = item.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise wrong_type(f"{param}.namespace", "a string", namespace)
    if kind == "function_call":
        arguments = required_str(item, "arguments", param, allow_empty=True)
        tool_input = parse_arguments(arguments, f"{param}.arguments")
        normalised = {"type": kind, "call_id": call_id, "name": name, "arguments": arguments}
    else:
        raw = required_str(item, "input", param, allow_empty=True)
        tool_input = {"input": raw}
        normalised = {"type": kind, "call_id": call_id, "name": name, "input": raw}
    if namespace:
        normalised["namespace"] = namespace
    anthropic_name = namespaced_name(namespace, name) if namespace else name
    append_blocks(turns, "assistant",
                   [{"type": "tool_use", "id": tool_id(call_id), "name": anthropic_name, "input": tool_input}])
    normalised["status"] = "completed"
    return normalised


def _call_output_item(item: dict, param: str, turns: list[Turn], kind: str) -> dict:
    call_id = required_str(item, "call_id", param)
    output = item.get("output")
    _append_result(turns, call_id, output, param)
    return {"type": kind, "call_id": call_id, "output": output, "status": "completed"}


def _append_result(turns: list[Turn], call_id: str, output: Any, param: str) -> None:
    """A tool's output (a string or input parts) as a tool_result block."""
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(call_id)}
    if isinstance(output, str):
        if output and not output.isspace():  # Anthropic rejects whitespace-only text
            block["content"] = output
    elif isinstance(output, list):
        content, _ = _user_parts(output, f"{param}.output")
        content = [part for part in content if part["type"] != "text" or not part["text"].isspace()]
        if content:
            block["content"] = content
    else:
        param += ".output"
        raise missing(param) if output is None else wrong_type(param, "a string or an array", output)
    append_blocks(turns, "user", [block], results=True)


def _local_shell_call_item(item: dict, param: str, turns: list[Turn]) -> dict:
    call_id = item.get("call_id") or item.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise missing(f"{param}.call_id") if call_id is None else wrong_type(f"{param}.call_id", "a string", call_id)
    action = required_dict(item.get("action"), f"{param}.action")
    if action.get("type", "exec") != "exec":
        raise unsupported_value(f"{param}.action.type", action.get("type"), "'exec'")
    command = action.get("command")
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        raise wrong_type(f"{param}.action.command", "an array of strings", command)
    tool_input = {key: action[key] for key in _SHELL_ACTION_KEYS if action.get(key) is not None}
    append_blocks(turns, "assistant",
                   [{"type": "tool_use", "id": tool_id(call_id), "name": LOCAL_SHELL_TOOL, "input": tool_input}])
    return {"type": "local_shell_call", "call_id": call_id, "action": _shell_action(tool_input),
            "status": "completed"}


def _local_shell_output_item(item: dict, param: str, turns: list[Turn]) -> dict:
    # The spec names the call by `id`; clients that mirror function_call_output send `call_id`.
    call_id = item.get("call_id") or item.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise missing(f"{param}.call_id") if call_id is None else wrong_type(f"{param}.call_id", "a string", call_id)
    output = item.get("output")
    if not isinstance(output, str):
        raise missing(f"{param}.output") if output is None else wrong_type(f"{param}.output", "a string", output)
    _append_result(turns, call_id, output, param)
    return {"type": "local_shell_call_output", "call_id": call_id, "output": output, "status": "completed"}


def _web_search_call_item(item: dict, param: str) -> dict:
    """Kept for `input_items` only: Anthropic takes a search back only with its encrypted results, which a
    `web_search_call` item does not carry. The answer's text, which holds what was found, stays."""
    action = item.get("action")
    if action is not None:
        required_dict(action, f"{param}.action")
    return {"type": "web_search_call", "status": item.get("status") or "completed",
            "action": action or {"type": "search"}}


def _reasoning_item(item: dict, param: str, turns: list[Turn]) -> dict:
    summary = item.get("summary")
    if summary is None:
        summary = []
    elif not isinstance(summary, list):
        raise wrong_type(f"{param}.summary", "an array", summary)
    texts = [required_str(required_dict(part, f"{param}.summary[{k}]"), "text", f"{param}.summary[{k}]",
                           allow_empty=True) for k, part in enumerate(summary)]
    encrypted = item.get("encrypted_content")
    if encrypted is not None and not isinstance(encrypted, str):
        raise wrong_type(f"{param}.encrypted_content", "a string", encrypted)
    if encrypted and encrypted.startswith(REDACTED_THINKING_PREFIX):
        append_blocks(turns, "assistant",
                       [{"type": "redacted_thinking", "data": encrypted[len(REDACTED_THINKING_PREFIX):]}])
    elif encrypted:
        append_blocks(turns, "assistant", [{"type": "thinking", "thinking": "".join(texts), "signature": encrypted}])
    return {"type": "reasoning", "summary": [{"type": "summary_text", "text": text} for text in texts],
            "encrypted_content": encrypted, "status": "completed"}


def _requested_thinking(body: dict, options: dict) -> dict | None:
    """`reasoning.effort` through the shared budget table; a `thinking` object (our chat extension) wins."""
    reasoning = body.get("reasoning")
    effort = summary = None
    if reasoning is not None:
        reasoning = required_dict(reasoning, "reasoning")
        effort = reasoning.get("effort")
        summary = reasoning.get("summary", reasoning.get("generate_summary"))
        if summary is not None and summary not in _REASONING_SUMMARIES:
            raise unsupported_value("reasoning.summary", summary, "'auto', 'concise' and 'detailed'")
    options["reasoning"] = {"effort": effort, "summary": summary}
    if body.get("thinking") is not None:
        return decode_thinking_object(body["thinking"], "thinking")
    return effort_thinking(effort, "reasoning.effort")


def _apply_sampling(body: dict, params: dict, options: dict) -> None:
    temperature = number_in_range(body.get("temperature"), "temperature", 0, 2)
    top_p = number_in_range(body.get("top_p"), "top_p", 0, 1)
    options["temperature"] = 1.0 if temperature is None else temperature
    options["top_p"] = 1.0 if top_p is None else top_p
    if "thinking" not in params:  # with thinking, Anthropic only accepts the defaults
        if temperature is not None:
            params["temperature"] = min(temperature, 1)
        if top_p is not None:
            params["top_p"] = top_p


def _apply_tools(body: dict, params: dict, options: dict) -> None:
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise wrong_type("parallel_tool_calls", "a boolean", parallel)
    choice = body.get("tool_choice")
    options["parallel_tool_calls"] = parallel is not False
    options["tool_choice"] = "auto" if choice is None else choice
    tools, echoed, calls = _decode_tools(body.get("tools"))
    options["tools"] = echoed
    if calls:
        options["tool_calls"] = calls
    # Checked even without tools: it is echoed.
    tool_choice = decode_tool_choice(choice, tools, parallel, lambda choice: _forced_name(choice, calls))
    if not tools:
        return  # tool_choice and parallel_tool_calls mean nothing without tools
    params["tools"] = tools
    if not tool_choice:
        return
    if "thinking" in params and tool_choice["type"] in ("any", "tool"):
        raise invalid(
            "Invalid 'tool_choice': forcing a tool call is not supported when reasoning is enabled; "
            "use 'auto' or 'none', or turn reasoning off.",
            "tool_choice",
        )
    params["tool_choice"] = tool_choice


def _decode_tools(tools: Any) -> tuple[list[dict], list[dict], dict[str, dict]]:
    """The Anthropic tools, the tool objects a Response echoes, and how each non-plain tool's calls come back.

    The last maps an Anthropic tool name to `{"type": "function" | "custom" | "local_shell", "name",
    "namespace"?}`; a plain function is not in it (its calls keep their name). Calls are mapped back with
    it, never by parsing a flattened name.
    """
    if tools is None:
        return [], [], {}
    if not isinstance(tools, list):
        raise wrong_type("tools", "an array", tools)
    decoded: list[dict] = []
    echoed: list[dict] = []
    calls: dict[str, dict] = {}
    for k, tool in enumerate(tools):
        param = f"tools[{k}]"
        tool = required_dict(tool, param)
        kind = tool.get("type")
        if kind == "function":
            name = function_name(tool, param)
            _add_tool(decoded, _responses_function(tool, param, name), param)
            echoed.append({"type": "function", "name": name, "description": tool.get("description"),
                           "parameters": tool.get("parameters"), "strict": tool.get("strict")})
            continue
        if kind == "namespace":
            _decode_namespace(tool, param, decoded, calls)
        elif kind == "custom":
            name = function_name(tool, param)
            _add_tool(decoded, _custom_tool(tool, param, name, name), param)
            calls[name] = {"type": "custom", "name": name}
        elif kind == "local_shell":
            _add_tool(decoded, {**_LOCAL_SHELL_DEFINITION}, param)  # a copy: no request alters the constant
            calls[LOCAL_SHELL_TOOL] = {"type": "local_shell"}
        elif kind in _WEB_SEARCH_TYPES:
            _add_tool(decoded, _web_search_tool(tool, param), param)
        elif kind is None:
            raise missing(f"{param}.type")
        elif not isinstance(kind, str):
            raise wrong_type(f"{param}.type", "a string", kind)
        elif kind in _UNSERVED_TOOLS:
            raise invalid(f"Invalid '{param}.type': {_UNSERVED_TOOLS[kind]}", f"{param}.type")
        else:
            raise unsupported_value(f"{param}.type", kind, _TOOL_TYPES)
        echoed.append(tool)
    return decoded, echoed, calls


def _add_tool(decoded: list[dict], entry: dict, param: str) -> None:
    """Anthropic wants unique tool names; a clash (also of a flattened namespace name) is the client's 400."""
    name = entry["name"]
    if any(other["name"] == name for other in decoded):
        raise invalid(f"Invalid 'tools': the tool name '{name}' is used twice.", f"{param}.name")
    decoded.append(entry)


def _responses_function(tool: dict, param: str, name: str, *, note: str = "") -> dict:
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise wrong_type(f"{param}.strict", "a boolean", strict)
    entry = function_tool(tool, param, name)
    if note:
        entry["description"] = f"{entry['description']}\n\n{note}" if entry.get("description") else note
    return entry


def _decode_namespace(tool: dict, param: str, decoded: list[dict], calls: dict[str, dict]) -> None:
    """A namespace's functions and custom tools as Anthropic tools named `<namespace>__<name>`."""
    namespace = required_str(tool, "name", param)
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise wrong_type(f"{param}.description", "a string", description)
    members = tool.get("tools")
    if not isinstance(members, list) or not members:
        param += ".tools"
        raise missing(param) if members is None else wrong_type(param, "a non-empty array", members)
    note = f"Part of the {namespace} tools" + (f": {description}" if description else ".")
    for j, member in enumerate(members):
        member_param = f"{param}.tools[{j}]"
        member = required_dict(member, member_param)
        kind = member.get("type")
        if kind != "function" and kind != "custom":
            raise unsupported_value(f"{member_param}.type", kind, "'function' and 'custom'")
        name = function_name(member, member_param)
        flat = namespaced_name(namespace, name)
        if len(flat) > _MAX_TOOL_NAME:
            raise invalid(f"Invalid '{member_param}.name': the namespace and name together are longer than "
                          f"{_MAX_TOOL_NAME - 2} characters.", f"{member_param}.name")
        if kind == "function":
            _add_tool(decoded, _responses_function(member, member_param, flat, note=note), member_param)
        else:
            _add_tool(decoded, _custom_tool(member, member_param, flat, name, note=note), member_param)
        calls[flat] = {"type": kind, "name": name, "namespace": namespace}


def namespaced_name(namespace: str, name: str) -> str:
    """The Anthropic name of a namespace member (also of a `function_call` item sent back with a namespace)."""
    return safe_id(f"{namespace}__{name}")


def _custom_tool(tool: dict, param: str, anthropic_name: str, name: str, *, note: str = "") -> dict:
    """A custom tool (`_common.tools.custom_tool`) with the Responses shape of `format`."""
    grammar = None
    fmt = tool.get("format")
    if fmt is not None:
        kind = required_dict(fmt, f"{param}.format").get("type")
        if kind == "grammar":
            grammar = grammar_of(fmt, f"{param}.format")
        elif kind != "text":
            raise unsupported_value(f"{param}.format.type", kind, "'text' and 'grammar'")
    return custom_tool(tool, param, anthropic_name, name, grammar, note)


def _web_search_tool(tool: dict, param: str) -> dict:
    """Anthropic's server web search; `search_context_size` and `external_web_access` have no equivalent."""
    entry: dict[str, Any] = {"type": WEB_SEARCH_TOOL_TYPE, "name": WEB_SEARCH_TOOL}
    filters = tool.get("filters")
    if filters is not None:
        domains = required_dict(filters, f"{param}.filters").get("allowed_domains")
        if domains is not None:
            if not isinstance(domains, list) or not all(isinstance(domain, str) and domain for domain in domains):
                raise wrong_type(f"{param}.filters.allowed_domains", "an array of domain names", domains)
            if domains:
                entry["allowed_domains"] = domains
    location = tool.get("user_location")
    if location is not None:
        location = required_dict(location, f"{param}.user_location")
        fields = {}
        for key in ("city", "region", "country", "timezone"):
            value = location.get(key)
            if value is not None and not isinstance(value, str):
                raise wrong_type(f"{param}.user_location.{key}", "a string", value)
            if value:
                fields[key] = value
        if fields:
            entry["user_location"] = {"type": "approximate", **fields}
    return entry


def _forced_name(choice: dict, calls: dict[str, dict]) -> tuple[str, str]:
    """The Anthropic tool a tool_choice object forces: a function (namespaced ones by their own name or
    their flattened one), a custom tool, or the web search."""
    kind = choice.get("type")
    if kind in _WEB_SEARCH_CHOICES:
        return WEB_SEARCH_TOOL, "tool_choice.type"
    if kind not in ("function", "custom"):
        raise unsupported_value("tool_choice.type", kind, "'function', 'custom' and 'web_search_preview'")
    name = required_str(choice, "name", "tool_choice")
    call = calls.get(name)
    if call is not None and call["type"] == kind:
        return name, "tool_choice.name"
    matches = [flat for flat, call in calls.items() if call.get("name") == name and call["type"] == kind]
    if len(matches) == 1:
        return matches[0], "tool_choice.name"
    if kind == "function" and call is None:
        return name, "tool_choice.name"  # a plain function, if there is one by that name
    raise invalid(f"Invalid 'tool_choice.name': no single {kind} tool named {show(name)} in 'tools'.",
                  "tool_choice.name")


def _apply_text(text: Any, params: dict, system: list[str], options: dict) -> None:
    """`text.format` the way openai_chat handles `response_format` (see its package docstring)."""
    if text is None:
        options["text"] = _DEFAULT_TEXT
        return
    text = required_dict(text, "text")
    echoed: dict[str, Any] = {"format": _DEFAULT_TEXT["format"]}
    verbosity = text.get("verbosity")
    if verbosity is not None:
        if verbosity not in _VERBOSITIES:
            raise unsupported_value("text.verbosity", verbosity, "'low', 'medium' and 'high'")
        echoed["verbosity"] = verbosity
    options["text"] = echoed
    fmt = text.get("format")
    if fmt is None:
        return
    fmt = required_dict(fmt, "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        echoed["format"] = fmt
        system.append(JSON_OBJECT_INSTRUCTION)
        return
    if kind != "json_schema":
        raise unsupported_value("text.format.type", kind, "'text', 'json_object' and 'json_schema'")
    # Required here, unlike chat's `json_schema.schema` (which defaults to any object).
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        param = "text.format.schema"
        raise missing(param) if schema is None else wrong_type(param, "an object", schema)
    for key in ("name", "description"):
        if fmt.get(key) is not None and not isinstance(fmt[key], str):
            raise wrong_type(f"text.format.{key}", "a string", fmt[key])
    # The spec requires `name`; a format without one is accepted and echoed with the tool's default name.
    echoed["format"] = fmt if fmt.get("name") else {**fmt, "name": DEFAULT_JSON_TOOL}
    apply_json_schema(fmt, params, system, options, "text.format")


def _hex(request_id: str) -> str:
    return request_id[4:] if request_id.startswith("req_") else safe_id(request_id)


_SHELL_ACTION_KEYS = ("command", "working_directory", "timeout_ms", "env", "user")


def _shell_action(tool_input: dict) -> dict:
    """A `local_shell_call` action from the model's input, with the types the spec requires."""
    command = tool_input.get("command")
    if isinstance(command, str):
        command = [command]
    elif not isinstance(command, list):
        command = []
    env = tool_input.get("env")
    timeout = tool_input.get("timeout_ms")
    directory = tool_input.get("working_directory")
    user = tool_input.get("user")
    return {
        "type": "exec",
        "command": [part if isinstance(part, str) else orjson.dumps(part).decode() for part in command],
        "timeout_ms": timeout if is_int(timeout) else None,
        "working_directory": directory if isinstance(directory, str) else None,
        "env": {key: value for key, value in env.items() if isinstance(value, str)} if isinstance(env, dict) else {},
        "user": user if isinstance(user, str) else None,
    }
