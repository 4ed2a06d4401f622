"""GenerateContentRequest body -> InternalRequest (the rules are in the package docstring)."""

from __future__ import annotations

import base64
import binascii
import re
from functools import cache
from typing import Any

import orjson

from gateway.core import MAX_TAGS, MIN_THINKING_BUDGET, InternalRequest, invalid
from gateway.protocols._common.checks import (int_at_least, json_type, missing, number_in_range, optional_bool,
                                              required_dict, show, unsupported_value, wrong_type)
from gateway.protocols._common.content import IMAGE_MEDIA_TYPES, Turn, append_blocks, strip_prefill, text_block
from gateway.protocols._common.structured import JSON_OBJECT_INSTRUCTION, apply_json_schema
from gateway.protocols._common.thinking import EFFORT_BUDGETS, effort_thinking, last_tool_turn_lacks_thinking
from gateway.protocols._common.tools import function_name, function_tool, tool_id

_MAX_STOP_SEQUENCES = 5  # Gemini's limit
_FILES_API = "https://generativelanguage.googleapis.com/"
_UNSUPPORTED_PARTS = ("executableCode", "codeExecutionResult", "toolCall", "toolResponse")
_PART_KINDS = "'text', 'inlineData', 'fileData', 'functionCall', 'functionResponse' or 'thought'"
_ROLES = {"user": "user", "model": "assistant", "function": "user"}
_TOOL_MODES = {"AUTO": "auto", "VALIDATED": "auto", "MODE_UNSPECIFIED": "auto", "ANY": "any", "NONE": "none"}
_TO_STANDARD_BASE64 = str.maketrans("-_", "+/")
_THOUGHT_TOKEN = b"gh1t"  # + 4-byte text length + thinking text + Anthropic signature
_REDACTED_TOKEN = b"gh1r"  # + redacted_thinking data

# OpenAPI-style Schema keys google-genai may send in snake_case, and their JSON Schema names.
_SCHEMA_KEYS = {
    "any_of": "anyOf",
    "additional_properties": "additionalProperties",
    "max_items": "maxItems",
    "min_items": "minItems",
    "max_length": "maxLength",
    "min_length": "minLength",
    "max_properties": "maxProperties",
    "min_properties": "minProperties",
    "property_ordering": "propertyOrdering",
}
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "defs", "definitions")


def decode_request(
    body: Any, *, request_id: str | None = None, model: str, stream: bool = False, sse: bool = True
) -> InternalRequest:
    """Validate a parsed GenerateContentRequest and translate it; raise a 400 `GatewayError` naming the field.

    `model` and `stream` come from the URL (`:streamGenerateContent`), `sse` from `?alt=sse`.
    `request_id` is part of the codec interface; Gemini needs none.
    """
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object, but got {json_type(body)}.")
    if not model:
        raise invalid("The model name in the URL is empty.", "model")
    if _get(body, "cachedContent") is not None:
        raise invalid("Cached content ('cachedContent') is not supported; send the content in the request.",
                      "cachedContent")
    messages = _decode_contents(_get(body, "contents"))
    system = _system_texts(_get(body, "systemInstruction"))
    config = _get(body, "generationConfig")
    config = {} if config is None else required_dict(config, "generationConfig")
    # Gemini clients send their whole history: the conversation store is for the OpenAI APIs.
    options: dict[str, Any] = {"store": False, "sse": sse}

    params: dict[str, Any] = {"messages": messages}
    max_tokens = _integer(config, "maxOutputTokens", "generationConfig.", minimum=1)
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    _check_output(config)
    thinking, include_thoughts = _requested_thinking(config)
    if include_thoughts:
        options["include_thoughts"] = True
    if thinking and not last_tool_turn_lacks_thinking(messages):
        params["thinking"] = thinking
    _apply_sampling(config, params)
    _apply_tools(body, params)
    _apply_response_format(config, params, system, options)
    if system:
        params["system"] = "\n".join(system)
    return InternalRequest(model=model, params=params, stream=stream, options=options,
                           tags=_labels(_get(body, "labels")))


_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def _labels(labels: Any) -> tuple[str, ...]:
    """`labels` (Vertex AI's billing labels) as tags `key:value` (`key` for an empty value). Google's rules,
    ASCII only (tags are ASCII): keys 1-63 lowercase letters, digits, _ and -, starting with a letter;
    values up to 63 of the same; at most MAX_TAGS labels (Google allows 64)."""
    if labels is None:
        return ()
    labels = required_dict(labels, "labels")
    if len(labels) > MAX_TAGS:
        raise invalid(f"Invalid 'labels': at most {MAX_TAGS} labels are allowed, got {len(labels)}.", "labels")
    tags = []
    for key, value in labels.items():
        if not isinstance(value, str):
            raise invalid(f"Invalid 'labels.{key[:63]}': expected a string.", f"labels.{key[:63]}")
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise invalid(f"Invalid label {key[:63]!r}: keys are 1 to 63 and values 0 to 63 lowercase letters, digits, "
                          "underscores and dashes, and keys start with a letter.", f"labels.{key[:63]}")
        tags.append(f"{key}:{value}" if value else key)
    return tuple(tags)


@cache
def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda match: "_" + match.group().lower(), name)


def _get(container: dict, key: str) -> Any:
    """A field under its camelCase name, else its snake_case one."""
    value = container.get(key)
    return container.get(_snake(key)) if value is None else value


def _string(container: dict, key: str, parent: str, *, required: bool = True) -> str | None:
    value = _get(container, key)
    param = f"{parent}.{key}"
    if value is None or value == "":
        if required:
            raise missing(param)
        return None
    if not isinstance(value, str):
        raise wrong_type(param, "a string", value)
    return value


def _bool(container: dict, key: str, parent: str) -> bool:
    return optional_bool(_get(container, key), parent + key)


def _integer(container: dict, key: str, parent: str, *, minimum: int) -> int | None:
    """An integer field; google-genai sends some (topK) as floats like 40.0."""
    value = _get(container, key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return int_at_least(value, parent + key, minimum)


def _number(config: dict, key: str, low: int, high: int) -> int | float | None:
    return number_in_range(_get(config, key), "generationConfig." + key, low, high)


def _list(value: Any, param: str) -> list:
    if not isinstance(value, list):
        raise missing(param) if value is None else wrong_type(param, "an array", value)
    return value


# -- contents ---------------------------------------------------------------------------------------


class _Call:
    """A functionCall of the last model turn that no functionResponse has answered yet."""

    __slots__ = ("id", "given", "name", "param")

    def __init__(self, call_id: str, given: str | None, name: str, param: str) -> None:
        self.id = call_id
        self.given = given  # the client's id, as sent: two ids may only differ in what tool_id replaces
        self.name = name
        self.param = param


class _Result:
    """A tool_result block waiting for the id of the call it answers."""

    __slots__ = ("block", "given", "name", "param")

    def __init__(self, block: dict, given: str | None, name: str, param: str) -> None:
        self.block = block
        self.given = given
        self.name = name
        self.param = param


class _Contents:
    """The Anthropic turns being built from `contents`, with the tool call pairing state."""

    __slots__ = ("turns", "pending", "results", "used_ids")

    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.pending: list[_Call] = []  # the calls of the last model turn
        self.results: list[_Result] = []  # the results of the user turn after it
        self.used_ids: set[str] = set()

    def add_model(self, blocks: list[dict], calls: list[_Call]) -> None:
        if not blocks:
            return
        if self.turns and self.turns[-1].role == "user":
            self.settle()
        self.pending.extend(calls)
        _extend(self.turns, "assistant", blocks)

    def add_user(self, results: list[dict], blocks: list[dict]) -> None:
        append_blocks(self.turns, "user", results, results=True)
        _extend(self.turns, "user", blocks)

    def tool_id(self, given: str | None, i: int, j: int) -> str:
        """Anthropic needs unique ids matching ^[a-zA-Z0-9_-]+$; Gemini's are optional."""
        call_id = given or f"call_{i}_{j}"
        while call_id in self.used_ids:
            call_id += "_"
        self.used_ids.add(call_id)
        return call_id

    def settle(self) -> None:
        """Pair the results of the user turn that just ended with the calls of the model turn before it:
        by id where both have one, the others by name in call order; every call must be answered."""
        pending = self.pending
        by_name = []
        for result in self.results:
            call = next((c for c in pending if c.given == result.given), None) if result.given else None
            if call is None:
                by_name.append(result)
            else:
                pending.remove(call)
                result.block["tool_use_id"] = call.id
        for result in by_name:
            # A result with an id of its own can still answer a call that came without one.
            call = next((c for c in pending if c.name == result.name and not (result.given and c.given)), None)
            if call is None:
                shown = f"{show(result.name)} (id {show(result.given)})" if result.given else show(result.name)
                raise invalid(
                    f"Invalid '{result.param}': the functionResponse {shown} answers no unanswered functionCall "
                    "of the preceding model turn.",
                    result.param,
                )
            pending.remove(call)
            result.block["tool_use_id"] = call.id
        if pending:
            call = pending[0]
            raise invalid(
                f"Invalid '{call.param}': the functionCall {show(call.name)} has no functionResponse in the "
                "next user turn. Answer every function call of a model turn in the turn that follows it.",
                call.param,
            )
        self.results = []

    def messages(self) -> list[dict]:
        """The Anthropic messages. Anthropic rejects whitespace-only text blocks: such a text run is
        dropped, a turn left empty goes and its neighbours merge; a prefill loses its trailing whitespace."""
        turns: list[Turn] = []
        for turn in self.turns:
            append_blocks(turns, turn.role, turn.results, results=True)
            _extend(turns, turn.role, [b for b in turn.blocks if b["type"] != "text" or not b["text"].isspace()])
        strip_prefill(turns)
        return [turn.as_message() for turn in turns]


def _decode_contents(contents: Any) -> list[dict]:
    state = _Contents()
    for i, content in enumerate(_list(contents, "contents")):
        param = f"contents[{i}]"
        content = required_dict(content, param)
        role = _get(content, "role") or "user"
        if not isinstance(role, str) or role not in _ROLES:
            raise unsupported_value(f"{param}.role", role, "'user' and 'model'")
        parts = _get(content, "parts")
        parts = [] if parts is None else _list(parts, f"{param}.parts")
        if _ROLES[role] == "assistant":
            _model_parts(state, parts, i)
        else:
            _user_parts(state, parts, i)
    if state.turns and state.turns[-1].role == "user":
        state.settle()
    messages = state.messages()
    if not messages:
        raise invalid("Invalid 'contents': at least one content with a non-empty part is required.", "contents")
    return messages


def _extend(turns: list[Turn], role: str, blocks: list[dict]) -> None:
    """Append to the turn of `role`, joining adjacent model texts: the SDK's chat history holds a streamed
    answer as one content per chunk, and a chunk may be only whitespace, which Anthropic rejects as a block."""
    if blocks and role == "assistant" and turns and turns[-1].role == role:
        last = turns[-1].blocks
        if last and last[-1]["type"] == "text" and blocks[0]["type"] == "text":
            last[-1] = text_block(last[-1]["text"] + blocks[0]["text"])
            blocks = blocks[1:]
    append_blocks(turns, role, blocks)


def _push_text(blocks: list[dict], text: str) -> None:
    if blocks and blocks[-1]["type"] == "text":
        blocks[-1] = text_block(blocks[-1]["text"] + text)
    else:
        blocks.append(text_block(text))


def _part(parts: list, i: int, j: int) -> dict:
    return required_dict(parts[j], f"contents[{i}].parts[{j}]")


def _model_parts(state: _Contents, parts: list, i: int) -> None:
    blocks: list[dict] = []
    calls: list[_Call] = []
    for j in range(len(parts)):
        part = _part(parts, i, j)
        param = f"contents[{i}].parts[{j}]"
        signature = _get(part, "thoughtSignature")
        if signature is not None:
            if not isinstance(signature, str):
                raise wrong_type(f"{param}.thoughtSignature", "a string", signature)
            thought = _thought_block(signature)
            if thought is not None:
                blocks.append(thought)
        if _bool(part, "thought", param + "."):
            continue  # the thinking itself, if any, came back in the signature
        text = _get(part, "text")
        if text is not None:
            if not isinstance(text, str):
                raise wrong_type(f"{param}.text", "a string", text)
            if text:
                _push_text(blocks, text)
            continue
        call = _get(part, "functionCall")
        if call is not None:
            param += ".functionCall"
            call = required_dict(call, param)
            name = _string(call, "name", param)
            given = _string(call, "id", param, required=False)
            args = _get(call, "args")
            if args is None:
                args = {}
            elif not isinstance(args, dict):
                raise wrong_type(f"{param}.args", "an object", args)
            call_id = state.tool_id(tool_id(given) if given else None, i, j)
            blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
            calls.append(_Call(call_id, given, name, param))
            continue
        if _get(part, "inlineData") is not None or _get(part, "fileData") is not None:
            raise invalid("Model turns can only hold text, thought and functionCall parts.", param)
        if _get(part, "functionResponse") is not None:
            raise invalid("A functionResponse belongs in a user turn (role 'user').", f"{param}.functionResponse")
        _check_no_data(part, param, signature)
    state.add_model(blocks, calls)


def _user_parts(state: _Contents, parts: list, i: int) -> None:
    results: list[dict] = []
    blocks: list[dict] = []
    for j in range(len(parts)):
        part = _part(parts, i, j)
        param = f"contents[{i}].parts[{j}]"
        if _get(part, "thought") is True:
            continue
        text = _get(part, "text")
        if text is not None:
            if not isinstance(text, str):
                raise wrong_type(f"{param}.text", "a string", text)
            if text and not text.isspace():  # Anthropic rejects whitespace-only text
                blocks.append(text_block(text))
            continue
        data = _get(part, "inlineData")
        if data is not None:
            blocks.append(_inline_block(data, f"{param}.inlineData"))
            continue
        data = _get(part, "fileData")
        if data is not None:
            blocks.append(_file_block(data, f"{param}.fileData"))
            continue
        response = _get(part, "functionResponse")
        if response is not None:
            results.append(_tool_result_block(state, response, f"{param}.functionResponse"))
            continue
        if _get(part, "functionCall") is not None:
            raise invalid("A functionCall belongs in a model turn (role 'model').", f"{param}.functionCall")
        _check_no_data(part, param, _get(part, "thoughtSignature"))
    state.add_user(results, blocks)


def _check_no_data(part: dict, param: str, signature: Any) -> None:
    """A part with none of the fields we translate: a 400 unless it only carried a thought signature."""
    for key in _UNSUPPORTED_PARTS:
        if _get(part, key) is not None:
            raise invalid(f"'{key}' parts are not supported.", f"{param}.{key}")
    if signature is None:
        raise invalid(f"Invalid '{param}': a part must have one of {_PART_KINDS}.", param)


def _tool_result_block(state: _Contents, response: Any, param: str) -> dict:
    response = required_dict(response, param)
    name = _string(response, "name", param)
    given = _string(response, "id", param, required=False)
    payload = required_dict(_get(response, "response"), f"{param}.response")
    text = orjson.dumps(payload).decode()
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": None, "content": text}  # set by settle()
    state.results.append(_Result(block, given, name, param))
    media = _get(response, "parts")
    if media:  # Gemini 3's multimodal function responses
        content = [text_block(text)]
        for k, part in enumerate(_list(media, f"{param}.parts")):
            part_param = f"{param}.parts[{k}]"
            part = required_dict(part, part_param)
            if _get(part, "inlineData") is not None:
                content.append(_inline_block(_get(part, "inlineData"), f"{part_param}.inlineData"))
            elif _get(part, "fileData") is not None:
                content.append(_file_block(_get(part, "fileData"), f"{part_param}.fileData"))
            else:
                raise invalid(f"Invalid '{part_param}': expected 'inlineData' or 'fileData'.", part_param)
        block["content"] = content
    # Gemini's convention: "output" for the result, "error" for a failure.
    if "error" in payload and "output" not in payload:
        block["is_error"] = True
    return block


def _media_type(data: dict, param: str) -> str:
    media_type = _string(data, "mimeType", param).strip().lower()
    if media_type == "image/jpg":
        media_type = "image/jpeg"
    if media_type not in IMAGE_MEDIA_TYPES and media_type != "application/pdf":
        raise invalid(
            f"Invalid '{param}.mimeType': unsupported type {show(media_type)}. Supported types are image/jpeg, "
            "image/png, image/gif, image/webp and application/pdf.",
            f"{param}.mimeType",
        )
    return media_type


def _inline_block(data: Any, param: str) -> dict:
    data = required_dict(data, param)
    media_type = _media_type(data, param)
    payload = _string(data, "data", param)
    if "-" in payload or "_" in payload:  # google-genai encodes bytes in the URL-safe alphabet
        payload = payload.translate(_TO_STANDARD_BASE64)
    kind = "document" if media_type == "application/pdf" else "image"
    return {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": payload}}


def _file_block(data: Any, param: str) -> dict:
    data = required_dict(data, param)
    uri = _string(data, "fileUri", param)
    if uri.startswith(_FILES_API):
        raise invalid("Files uploaded with the Files API are not supported; send them as 'inlineData'.",
                      f"{param}.fileUri")
    # Passed on for upstream to fetch: downloading it here would be an SSRF hole and add latency.
    if not uri[:8].lower() == "https://":
        raise invalid(f"Invalid '{param}.fileUri': expected an https URL.", f"{param}.fileUri")
    media_type = _media_type(data, param)
    return {"type": "document" if media_type == "application/pdf" else "image", "source": {"type": "url", "url": uri}}


def _system_texts(instruction: Any) -> list[str]:
    if instruction is None:
        return []
    if isinstance(instruction, str):
        return [instruction] if instruction else []
    param = "systemInstruction"
    parts = _get(required_dict(instruction, param), "parts")
    texts = []
    for j, part in enumerate([] if parts is None else _list(parts, f"{param}.parts")):
        part_param = f"{param}.parts[{j}]"
        text = _get(required_dict(part, part_param), "text")
        if not isinstance(text, str):
            raise invalid(f"Invalid '{part_param}': the system instruction can only hold text parts.", part_param)
        if text:
            texts.append(text)
    return texts


# -- thought signatures ------------------------------------------------------------------------------


def _thought_signature(block: dict) -> str | None:
    """The token that carries a thinking or redacted_thinking block through a Gemini client."""
    if block.get("type") == "thinking":
        signature = block.get("signature")
        if not signature:
            return None
        text = (block.get("thinking") or "").encode()
        payload = b"".join((_THOUGHT_TOKEN, len(text).to_bytes(4, "big"), text, signature.encode()))
    else:
        data = block.get("data")
        if not data:
            return None
        payload = _REDACTED_TOKEN + data.encode()
    return base64.b64encode(payload).decode("ascii")


def _thought_block(signature: str) -> dict | None:
    """The block a token of ours carries; None for anything else (e.g. Gemini's own signatures)."""
    # google-genai holds the signature as bytes and sends it back in the URL-safe alphabet.
    text = signature.translate(_TO_STANDARD_BASE64) + "=" * (-len(signature) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
        if raw[:4] == _THOUGHT_TOKEN and len(raw) >= 8:
            end = 8 + int.from_bytes(raw[4:8], "big")
            if len(raw) > end:
                return {"type": "thinking", "thinking": raw[8:end].decode(), "signature": raw[end:].decode()}
        elif raw[:4] == _REDACTED_TOKEN and len(raw) > 4:
            return {"type": "redacted_thinking", "data": raw[4:].decode()}
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        pass
    return None


# -- generation config -------------------------------------------------------------------------------


def _check_output(config: dict) -> None:
    count = _integer(config, "candidateCount", "generationConfig.", minimum=1)
    if count is not None and count != 1:
        raise invalid(f"Invalid 'generationConfig.candidateCount': only one candidate per request is supported, "
                      f"got {count}.", "generationConfig.candidateCount")
    modalities = _get(config, "responseModalities")
    param = "generationConfig.responseModalities"
    for k, modality in enumerate([] if modalities is None else _list(modalities, param)):
        if not isinstance(modality, str) or modality.upper() != "TEXT":
            raise unsupported_value(f"{param}[{k}]", modality, "'TEXT'")


def _requested_thinking(config: dict) -> tuple[dict | None, bool]:
    """Anthropic's thinking for `thinkingConfig`, and whether the thoughts are to be shown."""
    thinking_config = _get(config, "thinkingConfig")
    if thinking_config is None:
        return None, False
    parent = "generationConfig.thinkingConfig"
    thinking_config = required_dict(thinking_config, parent)
    include = _bool(thinking_config, "includeThoughts", parent + ".")
    level = _get(thinking_config, "thinkingLevel")
    budget = _get(thinking_config, "thinkingBudget")
    if level is not None:
        if budget is not None:
            raise invalid("Set either 'thinkingBudget' or 'thinkingLevel', not both.", f"{parent}.thinkingLevel")
        if not isinstance(level, str):
            raise wrong_type(f"{parent}.thinkingLevel", "a string", level)
        level = level.lower()
        if level == "thinking_level_unspecified":
            level = "medium"
        if level not in EFFORT_BUDGETS:
            raise unsupported_value(f"{parent}.thinkingLevel", level.upper(),
                                     "'MINIMAL', 'LOW', 'MEDIUM', 'HIGH' and 'XHIGH'")
        return effort_thinking(level, f"{parent}.thinkingLevel"), include
    budget = _integer(thinking_config, "thinkingBudget", parent + ".", minimum=-1)
    if budget is None:
        # Asking to see thoughts means thinking on, as on Gemini's thinking models.
        return (effort_thinking("medium", parent) if include else None), include
    if budget == 0:
        return None, include
    if budget == -1:  # dynamic
        return effort_thinking("medium", parent), include
    return {"type": "enabled", "budget_tokens": max(budget, MIN_THINKING_BUDGET)}, include


def _apply_sampling(config: dict, params: dict) -> None:
    temperature = _number(config, "temperature", 0, 2)
    top_p = _number(config, "topP", 0, 1)
    top_k = _integer(config, "topK", "generationConfig.", minimum=1)
    if "thinking" not in params:  # with thinking, Anthropic only accepts the defaults
        if temperature is not None:
            params["temperature"] = min(temperature, 1)
        if top_p is not None:
            params["top_p"] = top_p
        if top_k is not None:
            params["top_k"] = top_k
    stop_sequences = _stop_sequences(_get(config, "stopSequences"))
    if stop_sequences:
        params["stop_sequences"] = stop_sequences


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    param = "generationConfig.stopSequences"
    stop = _list(stop, param)
    if len(stop) > _MAX_STOP_SEQUENCES:
        raise invalid(f"Invalid '{param}': at most {_MAX_STOP_SEQUENCES} sequences are allowed, got {len(stop)}.",
                      param)
    for k, sequence in enumerate(stop):
        if not isinstance(sequence, str):
            raise wrong_type(f"{param}[{k}]", "a string", sequence)
    return [sequence for sequence in stop if sequence.strip()]  # Anthropic rejects whitespace-only ones


def _apply_response_format(config: dict, params: dict, system: list[str], options: dict) -> None:
    """`responseMimeType` and the response schemas, the way openai_chat handles `response_format`."""
    mime_type = _get(config, "responseMimeType")
    if mime_type is not None and mime_type not in ("text/plain", "application/json"):
        raise unsupported_value("generationConfig.responseMimeType", mime_type, "'text/plain' and 'application/json'")
    json_schema = _get(config, "responseJsonSchema")
    schema = _get(config, "responseSchema")
    if json_schema is not None and schema is not None:
        raise invalid("Set either 'responseSchema' or 'responseJsonSchema', not both.",
                      "generationConfig.responseJsonSchema")
    if json_schema is not None:
        schema = required_dict(json_schema, "generationConfig.responseJsonSchema")
    elif schema is not None:
        schema = _json_schema(required_dict(schema, "generationConfig.responseSchema"))
    if schema is not None:
        apply_json_schema({"schema": schema}, params, system, options, "generationConfig")
    elif mime_type == "application/json":
        system.append(JSON_OBJECT_INSTRUCTION)


def _json_schema(schema: Any) -> Any:
    """JSON Schema for Gemini's OpenAPI-style Schema: lower-case types, `nullable`, camelCase keys."""
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        key = _SCHEMA_KEYS.get(key, key)
        if key == "type" and isinstance(value, str):
            if value.upper() == "TYPE_UNSPECIFIED":
                continue
            value = value.lower()
        elif key == "type" and isinstance(value, list):
            value = [kind.lower() if isinstance(kind, str) else kind for kind in value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            value = {name: _json_schema(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            value = [_json_schema(sub) for sub in value]
        elif key in ("items", "additionalProperties", "not"):
            value = _json_schema(value)
        converted[key] = value
    if converted.pop("nullable", None) is True and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


# -- tools -------------------------------------------------------------------------------------------


def _apply_tools(body: dict, params: dict) -> None:
    tools = _decode_tools(_get(body, "tools"))
    mode, allowed = _function_calling_config(_get(body, "toolConfig"))
    if not tools:
        return  # the tool config means nothing without tools
    if allowed and mode != "none":
        param = "toolConfig.functionCallingConfig.allowedFunctionNames"
        names = {tool["name"] for tool in tools}
        for k, name in enumerate(allowed):
            if name not in names:
                raise invalid(f"Invalid '{param}[{k}]': no function named {show(name)} is declared.",
                              f"{param}[{k}]")
        tools = [tool for tool in tools if tool["name"] in allowed]
    params["tools"] = tools
    if mode is None:
        return
    if mode == "any" and allowed and len(tools) == 1:
        choice = {"type": "tool", "name": tools[0]["name"]}
    else:
        choice = {"type": mode}
    if "thinking" in params and choice["type"] in ("any", "tool"):
        raise invalid(
            "Invalid 'toolConfig.functionCallingConfig.mode': forcing a function call (ANY) is not supported "
            "when thinking is enabled; use AUTO, or set thinkingBudget to 0.",
            "toolConfig.functionCallingConfig.mode",
        )
    params["tool_choice"] = choice


def _decode_tools(tools: Any) -> list[dict]:
    if tools is None:
        return []
    decoded: list[dict] = []
    for k, tool in enumerate(_list(tools, "tools")):
        param = f"tools[{k}]"
        tool = required_dict(tool, param)
        for key, value in tool.items():
            if value is not None and key not in ("functionDeclarations", "function_declarations"):
                raise invalid(f"Only function tools ('functionDeclarations') are supported, not {show(key)}.",
                              f"{param}.{key}")
        declarations = _get(tool, "functionDeclarations")
        for m, declaration in enumerate(
            [] if declarations is None else _list(declarations, f"{param}.functionDeclarations")
        ):
            decoded.append(_function_declaration(declaration, f"{param}.functionDeclarations[{m}]", decoded))
    return decoded


def _function_declaration(declaration: Any, param: str, decoded: list[dict]) -> dict:
    declaration = required_dict(declaration, param)
    name = function_name({"name": _get(declaration, "name")}, param)
    if any(tool["name"] == name for tool in decoded):
        raise invalid(f"Invalid 'tools': the function name {show(name)} is declared twice.", f"{param}.name")
    key = "parametersJsonSchema"
    schema = _get(declaration, key)
    if schema is not None:
        schema = required_dict(schema, f"{param}.{key}")
    else:
        key = "parameters"
        schema = _get(declaration, key)
        if schema is not None:
            schema = _json_schema(required_dict(schema, f"{param}.{key}"))
    if schema is not None and schema.get("type") != "object":  # Anthropic's input_schema must be an object
        raise invalid(f"Invalid '{param}.{key}': the schema must describe an object (type OBJECT).", f"{param}.{key}")
    return function_tool({"parameters": schema, "description": _get(declaration, "description")}, param, name)


def _function_calling_config(tool_config: Any) -> tuple[str | None, list[str]]:
    if tool_config is None:
        return None, []
    config = _get(required_dict(tool_config, "toolConfig"), "functionCallingConfig")
    if config is None:
        return None, []
    param = "toolConfig.functionCallingConfig"
    config = required_dict(config, param)
    mode = _get(config, "mode")
    if mode is not None:
        if not isinstance(mode, str) or mode.upper() not in _TOOL_MODES:
            raise unsupported_value(f"{param}.mode", mode, "'AUTO', 'ANY', 'NONE' and 'VALIDATED'")
        mode = _TOOL_MODES[mode.upper()]
    allowed = _get(config, "allowedFunctionNames")
    allowed = [] if allowed is None else _list(allowed, f"{param}.allowedFunctionNames")
    for k, name in enumerate(allowed):
        if not isinstance(name, str):
            raise wrong_type(f"{param}.allowedFunctionNames[{k}]", "a string", name)
    return mode, allowed
