"""OpenAI Responses codec: `POST /v1/responses` to and from the internal Anthropic Messages shape.

Pure like openai_chat, with which it shares the validation helpers, effort table and `json_schema`
strategy of gateway/protocols/_common, so that both OpenAI protocols accept, reject and translate alike:
plain dicts, one pass, no I/O, clock or randomness. Ids derive from `ResponseContext.request_id` (`req_<hex>`): the response is `resp_<hex>`
and output item n is `rs_<hex>_<n>`, `msg_<hex>_<n>` or `fc_<hex>_<n>`, so a streamed answer, its
final `response.completed` object and `encode_response` of the same message all agree.

Storage is the server's: `decode_request` puts what it needs into `InternalRequest.options` (`store`,
`metadata`, `previous_response_id`, `conversation`, `instructions`, and `input_items`, the request's
input normalised to the shape `GET /v1/responses/{id}/input_items` returns), plus the request fields
that every Response object echoes. Earlier turns (a previous response, a conversation) come in as
Anthropic messages through `history=` and are merged with the new input before translation.

Where the two APIs do not line up:

- Input items: `message` items (with or without `type`), `function_call` and `function_call_output`
  become Anthropic text, `tool_use` and `tool_result` blocks; call ids are sanitised the same way on
  both sides and tool results come first in their user turn. System and developer messages join
  `instructions` (first) in `system`. `item_reference` items and uploaded files (`file_id`) are a 400
  naming the field. The tool items of the table below are sent back the same way.
- Tools, by `type` (`tools[k].type`). Calls come back by their Anthropic tool name through
  `options["tool_calls"]` (Anthropic name -> type, name, namespace), never by parsing a name.

  | type             | sent to Claude as                     | a call comes back as                          |
  |------------------|---------------------------------------|-----------------------------------------------|
  | function         | a tool of that name                   | `function_call`                               |
  | namespace        | each member a tool `<ns>__<name>` (1) | `function_call` / `custom_tool_call` + `namespace` |
  | custom           | a tool with one string `input` (2)    | `custom_tool_call`                            |
  | local_shell      | a tool `local_shell` (3)              | `local_shell_call`                            |
  | web_search (4)   | Anthropic's `web_search_20250305` (5) | `web_search_call`, `url_citation` annotations |
  | file_search, code_interpreter, image_generation, computer*, mcp, tool_search, shell, apply_patch, |
  | programmatic_tool_calling: a 400 naming `tools[k].type` and what to do instead (6)                |

  (1) Characters outside `[a-zA-Z0-9_-]` become `_`; at most 128. Each member's description gets the
  namespace's. The call item has the member's own name, as Codex routes by name and namespace; a
  `function_call` (or `custom_tool_call`) sent back with `namespace` is flattened the same way.
  (2) The raw input, not JSON; a grammar (lark, regex) goes in the description, as Anthropic cannot
  enforce one. Streamed, `response.custom_tool_call_input.delta` carries the whole input when the call
  ends. Sent back: `custom_tool_call`, `custom_tool_call_output`.
  (3) Taking `command`, `working_directory`, `timeout_ms`, `env`; the spec has no argument deltas for
  it, so its `exec` action is empty in `output_item.added` and complete in `output_item.done`. Sent
  back: `local_shell_call`, and `local_shell_call_output` (the call named by `id` or `call_id`) or
  `function_call_output`.
  (4) Also `web_search_2025_08_26`, `web_search_preview`, `web_search_preview_2025_03_11`.
  (5) `filters.allowed_domains` and `user_location` are kept; `search_context_size` and
  `external_web_access` have no equivalent and are dropped. Each search is a `web_search_call` (action
  `search` with `query`, `queries`, `sources`; `failed` on an error result); text citing results gets
  `url_citation` annotations over that text block. A `web_search_call` sent back is kept in
  `input_items` but not sent: Anthropic takes a search back only with its encrypted results, which the
  item lacks, and the answer's text stays. A stored turn (previous_response_id, conversation) replays
  the search in full.
  (6) They run on OpenAI's side, or are typed tools Claude has no counterpart for. None is optional to
  a client that declares it, so dropping one would hide a broken setup.

  `tool_choice` may force a function (a namespace member by its own name when that is unambiguous, or
  by its flattened one), a custom tool, or `web_search_preview`; other hosted tools and
  `allowed_tools` are a 400. The echoed `tools` are the client's objects (functions normalised).
- Thinking: a thinking block becomes a `reasoning` item whose one `summary_text` part is the whole
  thinking text and whose `encrypted_content` is the block's signature (a redacted block gives
  `redacted_thinking:<data>` and no summary). Both are always returned, not only with `include`, since
  Anthropic needs them back unchanged. A `reasoning` input item with `encrypted_content` becomes that
  thinking block again; without it, it is dropped. Otherwise openai_chat's rules apply: `reasoning.effort`
  picks a budget from its table, temperature and top_p are dropped, forcing a tool is a 400, and thinking
  is switched off when the last assistant tool turn lacks its thinking block. Anthropic does not count
  thinking tokens apart: `reasoning_tokens` is 0 and they are inside `output_tokens`.
- Output items: consecutive text blocks form one `message` item with one `output_text` part; each
  `tool_use` is a call item (see the table) whose `call_id` is the Anthropic tool id; a
  `server_tool_use` and its `web_search_tool_result` are one `web_search_call`. An item is closed when
  the next one starts or the message ends, so that on a cut-off answer the last item can be marked
  `incomplete` (a cut-off search `failed`: its statuses have no `incomplete`). Block types we cannot
  render (other server tools, MCP blocks, ...) are left out, as are citations other than web search
  results. Anthropic's `usage.server_tool_use.web_search_requests` has no Responses counterpart.
- Status: stop_reason `max_tokens` or `model_context_window_exceeded` gives `incomplete` with reason
  `max_output_tokens`, `refusal` gives `incomplete` with `content_filter`; anything else `completed`.
  A failure after the 200 closes the open item as `incomplete` and ends with `response.failed`.
- `text.format` follows openai_chat's `response_format` strategy (`json_schema` as a forced tool when
  possible, whose input then comes back as the message text). `max_output_tokens` is `max_tokens`.
- No `completed_at` (it needs a clock). Fields with no Anthropic equivalent (`include`, `user`,
  `truncation`, `service_tier`, `prompt_cache_key`, ...) and unknown fields are accepted and dropped;
  `background: true` and `prompt` templates are a 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gateway.core import WEB_SEARCH_TOOL_TYPE, GatewayError, InternalRequest, ResponseContext, Usage, invalid
from gateway.protocols import openai_chat
from gateway.protocols._common.checks import (int_at_least, is_int, json_type, missing, number_in_range, optional_bool,
                                              required_dict, required_str, show, unsupported_value, wrong_type)
from gateway.protocols._common.content import (Turn, append_blocks, image_url_block, pdf_data_block, strip_prefill,
                                               text_block)
from gateway.protocols._common.structured import DEFAULT_JSON_TOOL, JSON_OBJECT_INSTRUCTION, apply_json_schema
from gateway.protocols._common.thinking import decode_thinking_object, effort_thinking, last_tool_turn_lacks_thinking
from gateway.protocols._common.tools import (custom_input, custom_tool, decode_tool_choice, function_name, function_tool,
                                             grammar_of, parse_arguments, safe_id, tool_id)

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
_INCOMPLETE_REASONS = {
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}
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


# ---------------------------------------------------------------------------------------------------
# Request: Responses body -> InternalRequest
# ---------------------------------------------------------------------------------------------------


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
    return InternalRequest(model=model, params=params, stream=stream, options=options)


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
    """`text.format` the way openai_chat handles `response_format` (see its module docstring)."""
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


# ---------------------------------------------------------------------------------------------------
# Response: Anthropic Message -> Response object
# ---------------------------------------------------------------------------------------------------


def encode_response(message: dict, ctx: ResponseContext) -> dict:
    """Render an Anthropic Message dict as a `response` object."""
    status, reason = _status(message.get("stop_reason"))
    output = _render(message, ctx, status)
    usage = Usage()
    usage.update(message.get("usage"))
    return _response_body(ctx, status, output, usage=usage, incomplete_reason=reason)


def response_to_items(message: dict, ctx: ResponseContext) -> list[dict]:
    """The output items of an Anthropic Message, with the ids `encode_response` gives them (for storage)."""
    return _render(message, ctx, _status(message.get("stop_reason"))[0])


def error_body(error: GatewayError) -> dict:
    """The OpenAI error object, the same as Chat Completions'."""
    return openai_chat.error_body(error)


def _render(message: dict, ctx: ResponseContext, status: str) -> list[dict]:
    json_tool = ctx.options.get("json_tool")
    output = _Output(ctx, emit=False)
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            output.begin_text()
            output.text(block.get("text"))
            for citation in block.get("citations") or ():
                output.cite(citation)
            output.end_text()
        elif kind == "thinking":
            output.open_reasoning(None, block.get("signature"))
            output.thinking(block.get("thinking"))
        elif kind == "redacted_thinking":
            output.open_redacted(None, block.get("data"))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if json_tool is not None and block.get("name") == json_tool:
                output.text(arguments)
            else:
                output.open_call(None, block.get("id"), block.get("name"))
                output.arguments(arguments)
        elif kind == "server_tool_use" and block.get("name") == WEB_SEARCH_TOOL:
            output.open_search(None)
            output.arguments(orjson.dumps(block.get("input") or {}).decode())
            output.searching()
        elif kind == "web_search_tool_result":
            output.search_result(block)
    output.close(status)
    return output.items


def _status(stop_reason: Any) -> tuple[str, str | None]:
    reason = _INCOMPLETE_REASONS.get(stop_reason) if isinstance(stop_reason, str) else None
    return ("incomplete" if reason else "completed"), reason


def _hex(request_id: str) -> str:
    return request_id[4:] if request_id.startswith("req_") else safe_id(request_id)


def _response_id(ctx: ResponseContext) -> str:
    return "resp_" + _hex(ctx.request_id)


def _response_body(
    ctx: ResponseContext,
    status: str,
    output: list[dict],
    *,
    usage: Usage | None = None,
    incomplete_reason: str | None = None,
    error: dict | None = None,
) -> dict:
    options = ctx.options
    conversation = options.get("conversation")
    body = {
        "id": _response_id(ctx),
        "object": "response",
        "created_at": ctx.created,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": options.get("instructions"),
        "max_output_tokens": options.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": ctx.model,
        "output": output,
        "parallel_tool_calls": options.get("parallel_tool_calls", True),
        "previous_response_id": options.get("previous_response_id"),
        "reasoning": options.get("reasoning") or {"effort": None, "summary": None},
        "store": options.get("store", True),
        "temperature": options.get("temperature", 1.0),
        "text": options.get("text") or _DEFAULT_TEXT,
        "tool_choice": options.get("tool_choice", "auto"),
        "tools": options.get("tools") or [],
        "top_p": options.get("top_p", 1.0),
        "truncation": options.get("truncation") or "disabled",
        "metadata": options.get("metadata") or {},
        "conversation": {"id": conversation} if conversation else None,
    }
    if options.get("user") is not None:
        body["user"] = options["user"]
    if usage is not None:
        body["usage"] = _usage_body(usage)
    return body


def _usage_body(usage: Usage) -> dict:
    input_tokens = usage.prompt_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_input_tokens,
            "cache_write_tokens": usage.cache_creation_input_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + usage.output_tokens,
    }


def _error_object(error: GatewayError) -> dict:
    """`Response.error`, whose code is one of a fixed list."""
    if error.status == 429:
        code = "rate_limit_exceeded"
    elif 400 <= error.status < 500:
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": error.message}


class _Output:
    """The output items of one answer, built block by block; with `emit`, also their SSE events.

    One code path for both renderings, so a stream and `encode_response` give the same items. The last
    item stays open until the next one starts or `close` is called with the final status.
    """

    __slots__ = ("items", "_hex", "_emit", "_calls", "_chunks", "_sequence", "_open", "_index", "_pieces", "_part",
                 "_signature", "_length", "_text_start", "_citations", "_annotations", "_failed")

    def __init__(self, ctx: ResponseContext, *, emit: bool) -> None:
        self.items: list[dict] = []
        self._hex = _hex(ctx.request_id)
        self._emit = emit
        self._calls: dict[str, dict] = ctx.options.get("tool_calls") or {}
        self._chunks: list[bytes] = []
        self._sequence = 0
        self._open: dict | None = None
        self._index: Any = None  # the Anthropic block index of an open reasoning item, call or search
        self._pieces: list[str] = []  # text, arguments or thinking of the open item
        self._part = False  # whether the open reasoning item has its summary part yet
        self._signature: str | None = None
        self._length = 0  # characters of the open message's text
        self._text_start = 0  # where the current text block starts in it
        self._citations: list[dict] = []  # of the current text block
        self._annotations: list[dict] = []  # of the open message
        self._failed = False  # the open web search failed

    def event(self, kind: str, payload: dict) -> None:
        if not self._emit:
            return
        payload["sequence_number"] = self._sequence
        self._sequence += 1
        self._chunks.append(b"".join((b"event: ", kind.encode(), b"\ndata: ", orjson.dumps(payload), b"\n\n")))

    def flush(self) -> bytes:
        chunks = b"".join(self._chunks)
        self._chunks.clear()
        return chunks

    def open_index(self) -> Any:
        return self._index

    def open_type(self) -> str | None:
        return None if self._open is None else self._open["type"]

    # -- opening items --

    def _add(self, kind: str, fields: dict, index: Any) -> None:
        self.close("completed")
        item = {"id": f"{_ID_PREFIXES[kind]}_{self._hex}_{len(self.items)}", "type": kind, **fields}
        self.items.append(item)
        self._open, self._index = item, index
        if self._emit:
            self.event("response.output_item.added", {"type": "response.output_item.added",
                                                      "output_index": len(self.items) - 1, "item": item})

    def _item_event(self, kind: str, fields: dict) -> None:
        self.event(kind, {"type": kind, "item_id": self._open["id"], "output_index": len(self.items) - 1, **fields})

    def open_reasoning(self, index: Any, signature: Any) -> None:
        self._add("reasoning", {"summary": [], "encrypted_content": None, "status": "in_progress"}, index)
        self._signature = signature or None

    def open_redacted(self, index: Any, data: Any) -> None:
        self.open_reasoning(index, REDACTED_THINKING_PREFIX + (data or ""))

    def open_call(self, index: Any, call_id: Any, name: Any) -> None:
        """The item for a tool_use block: what the client declared decides its type (see `_decode_tools`)."""
        call = self._calls.get(name) if isinstance(name, str) else None
        kind = "function" if call is None else call["type"]
        fields: dict[str, Any] = {"status": "in_progress", "call_id": call_id}
        if call is not None and "namespace" in call:
            fields["namespace"] = call["namespace"]
        if kind == "local_shell":
            # Its action is only known once the input is complete: a valid empty one until then.
            self._add("local_shell_call", {**fields, "action": _shell_action({})}, index)
        elif kind == "custom":
            self._add("custom_tool_call", {**fields, "name": call["name"], "input": ""}, index)
        else:
            self._add("function_call", {**fields, "name": name if call is None else call["name"], "arguments": ""},
                      index)

    def open_search(self, index: Any) -> None:
        """A web search server_tool_use block: a `web_search_call` (the only server tool we declare)."""
        self._add("web_search_call", {"status": "in_progress", "action": {"type": "search"}}, index)
        self._item_event("response.web_search_call.in_progress", {})

    # -- content --

    def begin_text(self) -> None:
        """A text block starts: its citations will cover its text."""
        self._text_start = self._length if self.open_type() == "message" else 0
        self._citations = []

    def text(self, piece: Any) -> None:
        """Text for the message item, opened on the first non-empty piece; consecutive text blocks share it."""
        if not piece:
            return
        if self.open_type() != "message":
            self._add("message", {"status": "in_progress", "role": "assistant", "content": []}, None)
            self._item_event("response.content_part.added", {"content_index": 0, "part": _output_text("")})
        self._pieces.append(piece)
        self._length += len(piece)
        self._item_event("response.output_text.delta", {"content_index": 0, "delta": piece, "logprobs": []})

    def cite(self, citation: Any) -> None:
        if isinstance(citation, dict) and citation.get("type") == "web_search_result_location" and citation.get("url"):
            self._citations.append(citation)

    def end_text(self) -> None:
        """A text block ends: its web search citations become `url_citation` annotations over its text."""
        citations, self._citations = self._citations, []
        if self.open_type() != "message" or self._length == self._text_start:
            return
        for citation in citations:
            annotation = {"type": "url_citation", "url": citation["url"], "title": citation.get("title") or "",
                          "start_index": self._text_start, "end_index": self._length}
            self._item_event("response.output_text.annotation.added",
                             {"content_index": 0, "annotation_index": len(self._annotations),
                              "annotation": annotation})
            self._annotations.append(annotation)

    def arguments(self, fragment: Any) -> None:
        """Input JSON of the open call or search; only a function call streams it as it comes."""
        kind = self.open_type()
        if not fragment or kind not in _CALL_ITEMS:
            return
        self._pieces.append(fragment)
        if kind == "function_call":
            self._item_event("response.function_call_arguments.delta", {"delta": fragment})

    def searching(self) -> None:
        """The search's query is complete (its server_tool_use block ended)."""
        if self.open_type() != "web_search_call":
            return
        query = _parsed_input(self._pieces).get("query")
        if isinstance(query, str):
            self._open["action"] = {"type": "search", "query": query, "queries": [query]}
        self._item_event("response.web_search_call.searching", {})

    def search_result(self, block: dict) -> None:
        """A web_search_tool_result block ends the search it answers; an error content means it failed."""
        if self.open_type() != "web_search_call":
            return
        content = block.get("content")
        if isinstance(content, list):
            self._open["action"]["sources"] = [{"type": "url", "url": result["url"]} for result in content
                                               if isinstance(result, dict) and result.get("url")]
        else:
            self._failed = True
        self.close("completed")

    def thinking(self, piece: Any) -> None:
        if not piece or self.open_type() != "reasoning":
            return
        if not self._part:
            self._part = True
            self._item_event("response.reasoning_summary_part.added",
                             {"summary_index": 0, "part": {"type": "summary_text", "text": ""}})
        self._pieces.append(piece)
        self._item_event("response.reasoning_summary_text.delta", {"summary_index": 0, "delta": piece})

    def signature(self, signature: Any) -> None:
        if signature and self.open_type() == "reasoning":
            self._signature = signature

    # -- closing --

    def close(self, status: str) -> None:
        """Finish the open item, if any, with `status` ("completed" or "incomplete")."""
        item = self._open
        if item is None:
            return
        content = "".join(self._pieces)
        kind = item["type"]
        if kind == "message":
            part = _output_text(content, self._annotations)
            self._item_event("response.output_text.done", {"content_index": 0, "text": content, "logprobs": []})
            self._item_event("response.content_part.done", {"content_index": 0, "part": part})
            item["content"] = [part]
        elif kind == "function_call":
            if not content:  # a tool without input: its deltas must still add up to the final arguments
                content = "{}"
                self._item_event("response.function_call_arguments.delta", {"delta": content})
            self._item_event("response.function_call_arguments.done", {"name": item["name"], "arguments": content})
            item["arguments"] = content
        elif kind == "custom_tool_call":
            raw = custom_input(_parsed_input(self._pieces))
            if raw:
                self._item_event("response.custom_tool_call_input.delta", {"delta": raw})
            self._item_event("response.custom_tool_call_input.done", {"input": raw})
            item["input"] = raw
        elif kind == "local_shell_call":
            item["action"] = _shell_action(_parsed_input(self._pieces))
        elif kind == "web_search_call":
            # Its statuses have no `incomplete`: a search cut off before its results did not complete.
            status = "failed" if self._failed or status != "completed" else "completed"
            if status == "completed":
                self._item_event("response.web_search_call.completed", {})
        else:
            if self._part:
                part = {"type": "summary_text", "text": content}
                self._item_event("response.reasoning_summary_text.done", {"summary_index": 0, "text": content})
                self._item_event("response.reasoning_summary_part.done", {"summary_index": 0, "part": part})
                item["summary"] = [part]
            item["encrypted_content"] = self._signature
        item["status"] = status
        if self._emit:
            self.event("response.output_item.done", {"type": "response.output_item.done",
                                                     "output_index": len(self.items) - 1, "item": item})
        self._open, self._index, self._pieces, self._part, self._signature = None, None, [], False, None
        self._length, self._annotations, self._failed = 0, [], False


_CALL_ITEMS = ("function_call", "custom_tool_call", "local_shell_call", "web_search_call")
_SHELL_ACTION_KEYS = ("command", "working_directory", "timeout_ms", "env", "user")


def _parsed_input(pieces: list[str]) -> dict:
    """A tool input streamed as JSON fragments; {} when it is not a JSON object (a cut-off stream)."""
    try:
        value = orjson.loads("".join(pieces)) if pieces else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


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


def _output_text(text: str, annotations: list[dict] | None = None) -> dict:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}


# ---------------------------------------------------------------------------------------------------
# Streaming: Anthropic stream events -> Responses SSE events
# ---------------------------------------------------------------------------------------------------


class StreamEncoder:
    """Turns one upstream answer's Anthropic stream events into Responses API SSE events.

    `response.created` and `response.in_progress` come before anything else, `sequence_number` counts
    from 0, and the stream ends with exactly one of `response.completed`, `response.incomplete` or
    `response.failed`, carrying the whole Response; `response` holds that object afterwards (for storage).
    """

    __slots__ = ("_ctx", "_output", "_json_tool", "_kinds", "_json_empty", "_stop_reason", "_started", "_closed",
                 "response")

    def __init__(self, ctx: ResponseContext) -> None:
        self._ctx = ctx
        self._output = _Output(ctx, emit=True)
        self._json_tool = ctx.options.get("json_tool")
        self._kinds: dict[Any, str] = {}  # Anthropic block index -> "text", "json", "call" or "thinking"
        self._json_empty = False
        self._stop_reason: Any = None
        self._started = False
        self._closed = False
        self.response: dict | None = None

    def feed(self, event: dict) -> bytes:
        """Zero or more SSE events for one Anthropic event (b"" for ping and unknown events)."""
        if self._closed:
            return b""
        if not self._started:
            self._start()
        kind = event.get("type")
        if kind == "content_block_delta":
            self._on_delta(event)
        elif kind == "content_block_start":
            self._on_block_start(event)
        elif kind == "content_block_stop":
            self._on_block_stop(event)
        elif kind == "message_delta":
            self._stop_reason = (event.get("delta") or {}).get("stop_reason")
        return self._output.flush()

    def finish(self, usage: Usage) -> bytes:
        """`response.completed` or `response.incomplete` with the whole Response, after message_stop."""
        if self._closed:
            return b""
        self._closed = True
        if not self._started:
            self._start()
        status, reason = _status(self._stop_reason)
        self._output.close(status)
        self.response = _response_body(self._ctx, status, self._output.items, usage=usage, incomplete_reason=reason)
        self._lifecycle("response.completed" if status == "completed" else "response.incomplete")
        return self._output.flush()

    def fail(self, error: GatewayError) -> bytes:
        """An error after the 200: the open item ends `incomplete`, then `response.failed`; nothing follows."""
        if self._closed:
            return b""
        self._closed = True
        if not self._started:
            self._start()
        self._output.close("incomplete")
        self.response = _response_body(self._ctx, "failed", self._output.items, error=_error_object(error))
        self._lifecycle("response.failed")
        return self._output.flush()

    def _start(self) -> None:
        self._started = True
        self.response = _response_body(self._ctx, "in_progress", [])
        self._lifecycle("response.created")
        self._lifecycle("response.in_progress")

    def _lifecycle(self, kind: str) -> None:
        self._output.event(kind, {"type": kind, "response": self.response})

    def _on_block_start(self, event: dict) -> None:
        block = event.get("content_block") or {}
        index = event.get("index")
        kind = block.get("type")
        output = self._output
        if kind == "text":
            self._kinds[index] = "text"
            output.begin_text()
            output.text(block.get("text"))
            for citation in block.get("citations") or ():
                output.cite(citation)
        elif kind == "thinking":
            self._kinds[index] = "thinking"
            output.open_reasoning(index, block.get("signature"))
            output.thinking(block.get("thinking"))
        elif kind == "redacted_thinking":
            self._kinds[index] = "thinking"
            output.open_redacted(index, block.get("data"))
        elif kind == "tool_use":
            if self._json_tool is not None and block.get("name") == self._json_tool:
                self._kinds[index] = "json"
                self._json_empty = True
            else:
                self._kinds[index] = "call"
                output.open_call(index, block.get("id"), block.get("name"))
        elif kind == "server_tool_use" and block.get("name") == WEB_SEARCH_TOOL:
            self._kinds[index] = "search"
            output.open_search(index)
        elif kind == "web_search_tool_result":
            output.search_result(block)

    def _on_delta(self, event: dict) -> None:
        index = event.get("index")
        kind = self._kinds.get(index)
        delta = event.get("delta") or {}
        delta_type = delta.get("type")
        output = self._output
        if kind == "text" and delta_type == "text_delta":
            output.text(delta.get("text"))
        elif kind == "text" and delta_type == "citations_delta":
            output.cite(delta.get("citation"))
        elif kind == "json" and delta_type == "input_json_delta":
            fragment = delta.get("partial_json")
            if fragment:
                self._json_empty = False
                output.text(fragment)
        elif output.open_index() != index:
            return  # a delta for a block we left out or already closed
        elif delta_type == "input_json_delta":
            output.arguments(delta.get("partial_json"))
        elif delta_type == "thinking_delta":
            output.thinking(delta.get("thinking"))
        elif delta_type == "signature_delta":
            output.signature(delta.get("signature"))

    def _on_block_stop(self, event: dict) -> None:
        index = event.get("index")
        kind = self._kinds.pop(index, None)
        if kind == "json" and self._json_empty:
            self._output.text("{}")  # the forced json tool called without input: still a JSON answer
        elif kind == "text":
            self._output.end_text()
        elif kind == "search" and self._output.open_index() == index:
            self._output.searching()
