"""A fake OpenAI-compatible server (OpenAI, DeepSeek, vLLM, Ollama, Jina), speaking the exact wire protocol.

It is the upstream for Gatehouse's tests of its OpenAI-compatible provider: point the real `openai` SDK
(or the gateway) at it with ``base_url=http://HOST:PORT/v1``. It needs no Django and no network, answers
deterministically, and validates requests about as strictly as OpenAI, with OpenAI's error bodies, so a
translation bug in the gateway surfaces as a 400 in tests instead of passing silently. Unknown request
fields are accepted, because compatible servers each add their own.

Run it::

    python -m fakes.openai_compat --host 127.0.0.1 --port 8200 [--no-log]

It prints exactly one line, ``fake-openai listening on http://HOST:PORT`` (port 0 picks a free port and
the real one is printed). In-process, use ``build_app()`` or ``await start(host, port)``.

Endpoints
---------
``POST /v1/chat/completions`` (plain and ``"stream": true``), ``POST /v1/embeddings``,
``POST /v1/rerank`` (Jina's shape), ``GET /v1/models``, ``GET /v1/models/{id}``. They need
``Authorization: Bearer KEY``; if ``FAKE_OPENAI_API_KEY`` is set (or ``build_app(api_key=...)``) the key
must equal it. Any model id is served except those starting with ``missing-`` (404 ``model_not_found``).
Errors are ``{"error": {"message", "type", "param", "code"}}`` with an ``x-request-id`` header.

Test control (no auth): ``GET /_fake/requests[?since=SEQ]`` lists the last 1000 requests, oldest first,
each ``{"seq", "path", "body", "headers": {"authorization": bool}, "stream", "outcome", "status"}`` where
outcome is ``in_progress`` while running, then ``completed``, ``aborted`` (client went away), ``error``
(error directive / mid-stream error), ``rejected`` (auth or validation failure) or ``dropped`` (the
``drop`` directive; status null), and status is the HTTP status sent (499 if the client left during a
``delay_ms``); ``DELETE /_fake/requests`` clears it; ``GET /_fake/health`` answers ``{"ok": true}``.
With ``--no-log`` nothing is recorded.

Chat completions
----------------
``prompt_tokens`` = ceil(characters / 4) + 3 per message, where characters are those of every message's
text (string content, text and refusal parts; images, audio and files count nothing), each assistant
tool call's name plus its arguments string, and the compact JSON of each tool definition.
``completion_tokens`` = whitespace-separated words of the output (text, plus for each tool call 1 for the
name and the words of its arguments), at least 1; ``total_tokens`` is their sum.
The default reply is ``Hello from the fake OpenAI upstream. You said: <first 60 chars of the last user
text>`` (directive tags removed, whitespace collapsed). When the conversation ends with tool messages it
is ``Tool results received: <their contents joined by "; ">``. Text longer than ``max_completion_tokens``
(or ``max_tokens``) words is cut, with finish_reason ``length``.
Streams are ``data: CHUNK`` events ending with ``data: [DONE]``: a first chunk with the role, text
deltas of one to three words, per tool call a chunk with index, id, type, name and ``arguments: ""``
then argument fragments of up to 8 characters, and a last chunk with an empty delta and the
finish_reason. With ``stream_options.include_usage`` every chunk carries ``"usage": null`` and one more
chunk with ``"choices": []`` carries the usage.

Tool calls happen with the ``tool`` / ``tools=N`` directives or when tool_choice is ``required`` or names
a function; tool_choice ``none`` suppresses them and ``parallel_tool_calls: false`` limits them to one.
Their ids are ``call_<n>``, numbered on from the tool calls already in the conversation (so ids stay
unique across turns). Arguments are built from each function's ``parameters`` schema: every required
property (all if none are required) gets its enum's first value or a value by type (string "example",
integer 1, number 1.5, boolean true, array [], object {}).

Embeddings and rerank
---------------------
``POST /v1/embeddings`` takes ``input`` as a string, a list of strings, a token array or a list of token
arrays, ``encoding_format`` ``float`` (default) or ``base64`` (little-endian float32), ``dimensions``
(default 8, at most 3072) and Jina's ``task`` / ``late_chunking`` / ``truncate``. Each vector is unit-norm
and derived from SHAKE-256 of the input's UTF-8 text (of its JSON for a token array), so a shorter
``dimensions`` is a renormalized prefix of a longer one, as with OpenAI's models. Usage: ``prompt_tokens``
= ``total_tokens`` = the sum of ceil(characters / 4) per string and the length of each token array.

``POST /v1/rerank`` takes ``{model, query, documents: [str | {"text": str}], top_n?, return_documents?
(default true)}`` and answers ``{"model", "object": "list", "results": [{"index", "relevance_score",
"document": {"text"}}], "usage": {"total_tokens", "prompt_tokens"}}``, sorted by score (ties by index)
and cut to top_n; ``document`` is left out when return_documents is false. The score is the Jaccard
overlap of the lowercased word sets (``\\w+``) of query and document, in 0..1. Tokens = ceil(characters of
the query / 4) + the sum of ceil(characters of each document / 4).

Directives
----------
Tags in the text of the LAST user message, or of the trailing tool messages when the conversation ends
with them (embeddings: any input string; rerank: the query), e.g. ``[[fake:words=500]]`` or
``[[fake:tool, delay_ms=20]]``. One tag may hold several directives separated by commas or spaces, and
several tags may appear. An unknown directive is a 400, so typos fail loudly. Embeddings and rerank take
only ``delay_ms``, ``error``, ``retry_after`` and ``drop``.

``words=N``            reply with exactly N words (cut to the max tokens, finish_reason length)
``delay_ms=N``         wait N ms before answering at all (headers included)
``chunk_delay_ms=N``   streaming: wait N ms between chunks (each chunk is then its own write)
``error=STATUS``       answer 400/401/403/404/429/500/502/503/529 with an OpenAI error body
``retry_after=N``      with error=429: the retry-after value (default 1)
``midstream_error``    streaming: the role chunk and two text chunks, then ``data: {"error": {...}}``
                       (server_error) and the connection closes without ``[DONE]``; non-streaming: a 500
``tool`` / ``tools=N`` call the first N defined tools, cycling (1 for ``tool``); finish_reason tool_calls
``text_then_tool``     put a short text before the tool calls
``length``             finish_reason length
``drop``               close the connection without answering, as a crashed server would
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import math
import os
import re
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import orjson
from aiohttp import web

from fakes import serving
from fakes.serving import RequestLogControl

from fakes.anthropic import (
    DIRECTIVE_SPLIT_RE,
    DIRECTIVE_TAG_RE,
    JSON_FRAGMENT_CHARS,
    MAX_BODY_BYTES,
    REQUEST_LOG_SIZE,
    TEXT_CHUNK_RE,
    Entry,
    _client_gone,
    _finish,
    example_input,
    lorem,
)

# --------------------------------------------------------------------------------------------------
# Static data
# --------------------------------------------------------------------------------------------------

LISTED_MODELS = (
    ("gpt-4o-mini", 1721172741, "openai"),
    ("text-embedding-3-small", 1705948997, "openai"),
    ("deepseek-chat", 1735689600, "deepseek"),
    ("jina-embeddings-v3", 1726617600, "jina"),
    ("jina-reranker-v2-base-multilingual", 1718668800, "jina"),
)
MISSING_MODEL_PREFIX = "missing-"
FAKE_MODEL_CREATED = 1700000000
SYSTEM_FINGERPRINT = "fp_fake0001"

ROLES = ("system", "developer", "user", "assistant", "tool")
USER_PART_TYPES = ("text", "image_url", "input_audio", "file")
ASSISTANT_PART_TYPES = ("text", "refusal")
PART_TYPES = {"user": USER_PART_TYPES, "assistant": ASSISTANT_PART_TYPES}  # other roles: text only
TOOL_CHOICES = ("none", "auto", "required")
FUNCTION_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
WORD_RE = re.compile(r"\w+")

MAX_EMBEDDING_INPUTS = 2048
DEFAULT_DIMENSIONS = 8
MAX_DIMENSIONS = 3072

# status -> (error type, code, message); {model} is the request's model.
DIRECTIVE_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Fake invalid request (error directive)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (error directive)."),
    403: ("request_forbidden", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model `{model}` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (error directive)."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
    529: ("server_error", None, "The engine is currently overloaded, please try again later."),
}  # fmt: skip
RATE_LIMIT_REQUESTS = 500
NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)
BAD_EMBEDDING_INPUT = (
    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
)
# Fixed so that a mid-stream failure always follows exactly two text chunks, whatever the reply would be.
MIDSTREAM_DELTAS = ("Hello from the ", "fake OpenAI upstream")

# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered with OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def missing(param: str) -> ApiError:
    return invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def wrong_type(param: str, expected: str, value: Any) -> ApiError:
    return invalid(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.", param, "invalid_type"
    )


def bad_value(param: str, value: Any, allowed: tuple[str, ...]) -> ApiError:
    quoted = [f"'{a}'" for a in allowed]
    listed = " and ".join(quoted) if len(quoted) <= 2 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    return invalid(f"Invalid value: '{value}'. Supported values are: {listed}.", param, "invalid_value")


def empty_array(param: str) -> ApiError:
    return invalid(
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        param,
        "empty_array",
    )


def model_not_found(model: str) -> ApiError:
    return ApiError(404, DIRECTIVE_ERRORS[404][2].format(model=model), code="model_not_found")


def new_request_id() -> str:
    return "req_" + os.urandom(16).hex()


def error_response(exc: ApiError, request_id: str) -> web.Response:
    headers = {"x-request-id": request_id, "Content-Type": "application/json"}
    if exc.status == 429:
        retry_after = exc.retry_after if exc.retry_after is not None else 1
        headers.update(
            {
                "retry-after": str(retry_after),
                "x-ratelimit-limit-requests": str(RATE_LIMIT_REQUESTS),
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{retry_after}s",
            }
        )
    reason = "Overloaded" if exc.status == 529 else None
    return web.Response(status=exc.status, reason=reason, body=orjson.dumps(exc.body()), headers=headers)


# --------------------------------------------------------------------------------------------------
# Directives
# --------------------------------------------------------------------------------------------------

INT_DIRECTIVES = frozenset({"words", "delay_ms", "chunk_delay_ms", "error", "retry_after", "tools"})
FLAG_DIRECTIVES = frozenset({"midstream_error", "tool", "text_then_tool", "length", "drop"})
CHAT_DIRECTIVES = INT_DIRECTIVES | FLAG_DIRECTIVES
REQUEST_DIRECTIVES = frozenset({"delay_ms", "error", "retry_after", "drop"})
NO_DIRECTIVES: dict[str, int] = {}


def parse_directives(text: str, allowed: frozenset[str] = CHAT_DIRECTIVES) -> dict[str, int]:
    """Directives found in `text` as {name: int} (flags map to 1). Raises ApiError on a bad one."""
    if "[[fake:" not in text:
        return NO_DIRECTIVES
    found: dict[str, int] = {}
    for tag in DIRECTIVE_TAG_RE.findall(text):
        for item in DIRECTIVE_SPLIT_RE.split(tag.strip()):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if name in FLAG_DIRECTIVES and not sep:
                found[name] = 1
            elif name in INT_DIRECTIVES and value.isdigit():
                found[name] = int(value)
            else:
                raise invalid(f"fake directive: cannot understand {item!r}")
            if name not in allowed:
                raise invalid(f"fake directive: {name!r} does not apply to this endpoint")
    if "error" in found and found["error"] not in DIRECTIVE_ERRORS:
        raise invalid(f"fake directive: error={found['error']} is not one of {sorted(DIRECTIVE_ERRORS)}")
    return found


def directive_error(directives: dict[str, int], model: str) -> ApiError:
    status = directives["error"]
    kind, code, message = DIRECTIVE_ERRORS[status]
    return ApiError(
        status, message.format(model=model), error_type=kind, code=code, retry_after=directives.get("retry_after")
    )


# --------------------------------------------------------------------------------------------------
# Shared field checks
# --------------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _check_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise invalid("you must provide a model parameter")
    if not isinstance(model, str):
        raise wrong_type("model", "a string", model)
    if model.startswith(MISSING_MODEL_PREFIX):
        raise model_not_found(model)
    return model


def _check_positive_int(body: dict[str, Any], name: str, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise wrong_type(name, "an integer", value)
    if value < 1:
        raise invalid(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise invalid(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, but got {value} "
            "instead.",
            name,
            "integer_above_max_value",
        )
    return value


def _check_range(body: dict[str, Any], name: str, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_number(value):
        raise wrong_type(name, "a number", value)
    if value < 0:
        raise invalid(
            f"Invalid '{name}': decimal below minimum value. Expected a value >= 0, but got {value} instead.",
            name,
            "decimal_below_min_value",
        )
    if value > high:
        raise invalid(
            f"Invalid '{name}': decimal above maximum value. Expected a value <= {high:g}, but got {value} "
            "instead.",
            name,
            "decimal_above_max_value",
        )


def _check_bool(body: dict[str, Any], name: str, param: str | None = None) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise wrong_type(param or name, "a boolean", value)
    return value


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


# --------------------------------------------------------------------------------------------------
# Chat request validation
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Prompt:
    """What a valid chat request asks for, as far as generating the reply is concerned."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    prompt_tokens: int
    earlier_tool_calls: int
    user_text: str  # text of the last user message
    directive_text: str  # where directives are read: the last user text, or the trailing tool results
    tool_results: list[str] | None  # contents of the trailing tool messages, if the conversation ends so


def _content_text(content: Any, where: str, part_types: tuple[str, ...]) -> str:
    """Validate a message's content (string or list of parts); returns its text (parts joined by spaces)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise wrong_type(where, "one of a string or array of objects", content)
    if not content:
        raise empty_array(where)
    texts = []
    for k, part in enumerate(content):
        pwhere = f"{where}[{k}]"
        if not isinstance(part, dict):
            raise wrong_type(pwhere, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise missing(f"{pwhere}.type")
        if kind not in part_types:
            raise bad_value(f"{pwhere}.type", kind, part_types)
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if text is None:
                raise missing(f"{pwhere}.{kind}")
            if not isinstance(text, str):
                raise wrong_type(f"{pwhere}.{kind}", "a string", text)
            texts.append(text)
        elif not isinstance(part.get(kind), dict):
            raise missing(f"{pwhere}.{kind}")
    return " ".join(texts)


def _check_tool_calls(tool_calls: Any, where: str) -> tuple[list[str], int]:
    """Validate an assistant message's tool_calls; returns (ids, characters)."""
    if not isinstance(tool_calls, list):
        raise wrong_type(where, "an array", tool_calls)
    if not tool_calls:
        raise empty_array(where)
    ids, chars = [], 0
    for k, call in enumerate(tool_calls):
        cwhere = f"{where}[{k}]"
        if not isinstance(call, dict):
            raise wrong_type(cwhere, "an object", call)
        for field in ("id", "type", "function"):
            if call.get(field) is None:
                raise missing(f"{cwhere}.{field}")
        if not isinstance(call["id"], str):
            raise wrong_type(f"{cwhere}.id", "a string", call["id"])
        if call["type"] != "function":
            raise bad_value(f"{cwhere}.type", call["type"], ("function",))
        function = call["function"]
        if not isinstance(function, dict):
            raise wrong_type(f"{cwhere}.function", "an object", function)
        for field in ("name", "arguments"):
            value = function.get(field)
            if value is None:
                raise missing(f"{cwhere}.function.{field}")
            # A gateway that forwards arguments as an object instead of a JSON string fails here.
            if not isinstance(value, str):
                raise wrong_type(f"{cwhere}.function.{field}", "a string", value)
        ids.append(call["id"])
        chars += len(function["name"]) + len(function["arguments"])
    return ids, chars


def _check_messages(messages: Any) -> tuple[int, int, int]:
    """Validate the conversation; returns (characters, tool calls made so far, index of the last user message)."""
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array", messages)
    if not messages:
        raise empty_array("messages")

    chars = tool_call_count = 0
    last_user = -1
    answerable: set[str] = set()  # tool_call ids of the latest assistant message with tool calls
    unanswered: dict[str, None] = {}
    asked_at = -1
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise wrong_type(where, "an object", message)
        role = message.get("role")
        if role is None:
            raise missing(f"{where}.role")
        if role not in ROLES:
            raise bad_value(f"{where}.role", role, ROLES)
        content = message.get("content")

        if role == "tool":
            if not answerable:
                raise invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            tool_call_id = message.get("tool_call_id")
            if tool_call_id is None:
                raise missing(f"{where}.tool_call_id")
            if tool_call_id not in answerable:
                raise invalid(
                    f"Invalid parameter: 'tool_call_id' of '{tool_call_id}' not found in 'tool_calls' of previous "
                    "message.",
                    f"messages.[{i}].tool_call_id",
                )
            unanswered.pop(tool_call_id, None)
        else:
            if unanswered:
                raise _unanswered(unanswered, asked_at)
            answerable = set()

        if content is None and not (role == "assistant" and message.get("tool_calls")):
            raise missing(f"{where}.content")
        if content is not None:
            chars += len(_content_text(content, f"{where}.content", PART_TYPES.get(role, ("text",))))
        if role == "assistant" and message.get("tool_calls") is not None:
            ids, call_chars = _check_tool_calls(message["tool_calls"], f"{where}.tool_calls")
            chars += call_chars
            tool_call_count += len(ids)
            answerable, unanswered, asked_at = set(ids), dict.fromkeys(ids), i
        if role == "user":
            last_user = i
    if unanswered:
        raise _unanswered(unanswered, asked_at)
    return chars, tool_call_count, last_user


def _unanswered(unanswered: dict[str, None], asked_at: int) -> ApiError:
    return invalid(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(unanswered)}",
        f"messages.[{asked_at}].role",
    )


def _check_tools(tools: Any) -> tuple[list[dict[str, Any]], int]:
    """Validate tool definitions; returns (tools, characters)."""
    if tools is None:
        return [], 0
    if not isinstance(tools, list):
        raise wrong_type("tools", "an array", tools)
    if not tools:
        raise empty_array("tools")
    chars = 0
    for k, tool in enumerate(tools):
        where = f"tools[{k}]"
        if not isinstance(tool, dict):
            raise wrong_type(where, "an object", tool)
        if tool.get("type") is None:
            raise missing(f"{where}.type")
        if tool["type"] != "function":
            raise bad_value(f"{where}.type", tool["type"], ("function",))
        function = tool.get("function")
        if function is None:
            raise missing(f"{where}.function")
        if not isinstance(function, dict):
            raise wrong_type(f"{where}.function", "an object", function)
        name = function.get("name")
        if name is None:
            raise missing(f"{where}.function.name")
        if not isinstance(name, str) or not FUNCTION_NAME_RE.match(name):
            raise invalid(
                f"Invalid '{where}.function.name': string does not match pattern. Expected a string that matches "
                "the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
                f"{where}.function.name",
                "invalid_value",
            )
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise wrong_type(f"{where}.function.parameters", "an object", parameters)
        chars += len(orjson.dumps(tool).decode())
    return tools, chars


def _check_tool_choice(body: dict[str, Any], tools: list[dict[str, Any]]) -> str | dict[str, Any]:
    choice = body.get("tool_choice")
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise bad_value("tool_choice", choice, TOOL_CHOICES)
    elif isinstance(choice, dict):
        if choice.get("type") != "function":
            raise bad_value("tool_choice.type", choice.get("type"), ("function",))
        function = choice.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise missing("tool_choice.function.name")
    else:
        raise wrong_type("tool_choice", "one of a string or object", choice)
    if choice not in ("none", "auto") and not tools:
        raise invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            "tool_choice",
        )
    if isinstance(choice, dict) and not any(t["function"]["name"] == choice["function"]["name"] for t in tools):
        raise invalid(
            f"Invalid value for 'tool_choice': no function named '{choice['function']['name']}' was specified "
            "in the 'tools' parameter.",
            "tool_choice",
        )
    return choice


def _check_stream(body: dict[str, Any]) -> tuple[bool, bool]:
    """Returns (stream, include_usage)."""
    stream = bool(_check_bool(body, "stream"))
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
        )
    if not isinstance(options, dict):
        raise wrong_type("stream_options", "an object", options)
    return stream, bool(_check_bool(options, "include_usage", "stream_options.include_usage"))


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text") or p.get("refusal") or "" for p in content if p["type"] in ("text", "refusal"))
    return ""


def parse_chat(body: Any) -> Prompt:
    """Validate a chat completions body like OpenAI; raises ApiError."""
    if not isinstance(body, dict):
        raise invalid("Invalid type for body: expected a JSON object.")
    model = _check_model(body)
    messages = body.get("messages")
    chars, earlier_tool_calls, last_user = _check_messages(messages)

    n = body.get("n")
    if n is not None:
        if not _is_int(n):
            raise wrong_type("n", "an integer", n)
        if n != 1:
            raise invalid(f"Invalid 'n': this server only supports n=1, but got {n} instead.", "n", "invalid_value")
    max_tokens = _check_positive_int(body, "max_tokens")
    max_completion_tokens = _check_positive_int(body, "max_completion_tokens")
    _check_range(body, "temperature", 2)
    _check_range(body, "top_p", 1)
    stream, include_usage = _check_stream(body)

    tools, tool_chars = _check_tools(body.get("tools"))
    chars += tool_chars
    tool_choice = _check_tool_choice(body, tools)
    parallel = _check_bool(body, "parallel_tool_calls")
    if parallel is not None and not tools:
        raise invalid(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are "
            "specified.",
            "parallel_tool_calls",
        )

    trailing = list(itertools.takewhile(lambda m: m["role"] == "tool", reversed(messages)))[::-1]
    user_text = _message_text(messages[last_user]) if last_user >= 0 else ""
    tool_results = [_message_text(m) for m in trailing] or None
    return Prompt(
        model=model,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_completion_tokens if max_completion_tokens is not None else max_tokens,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel is not False,
        prompt_tokens=math.ceil(chars / 4) + 3 * len(messages),
        earlier_tool_calls=earlier_tool_calls,
        user_text=user_text,
        directive_text=" ".join(tool_results) if tool_results else user_text,
        tool_results=tool_results,
    )


# --------------------------------------------------------------------------------------------------
# Chat reply generation
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    text: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    usage: dict[str, Any]


def _tool_calls(prompt: Prompt, directives: dict[str, int]) -> list[dict[str, Any]]:
    choice = prompt.tool_choice
    if not prompt.tools or choice == "none":
        return []
    forced = choice == "required" or isinstance(choice, dict)
    if "tools" in directives:
        count = directives["tools"]
    else:
        count = 1 if directives.get("tool") or forced else 0
    if forced:
        count = max(count, 1)
    if not prompt.parallel_tool_calls:
        count = min(count, 1)
    functions = [t["function"] for t in prompt.tools]
    if isinstance(choice, dict):
        named = next(f for f in functions if f["name"] == choice["function"]["name"])
        chosen = [named] * count
    else:
        chosen = [functions[i % len(functions)] for i in range(count)]
    return [
        {
            "id": f"call_{prompt.earlier_tool_calls + i + 1}",
            "type": "function",
            # example_input reads an Anthropic tool; an OpenAI function's parameters are the same JSON schema.
            "function": {
                "name": function["name"],
                "arguments": orjson.dumps(example_input({"input_schema": function.get("parameters")})).decode(),
            },
        }
        for i, function in enumerate(chosen)
    ]


def _reply_text(prompt: Prompt, directives: dict[str, int]) -> str:
    if "words" in directives:
        return lorem(directives["words"])
    if prompt.tool_results is not None:
        return "Tool results received: " + "; ".join(prompt.tool_results)
    said = prompt.user_text
    if "[[fake:" in said:
        said = DIRECTIVE_TAG_RE.sub(" ", said)
    said = " ".join(said.split())[:60].rstrip()
    return (
        f"Hello from the fake OpenAI upstream. You said: {said}" if said else "Hello from the fake OpenAI upstream."
    )


def build_reply(prompt: Prompt, directives: dict[str, int]) -> Reply:
    text: str | None = None
    finish_reason = "stop"
    calls = _tool_calls(prompt, directives)
    if calls:
        if directives.get("text_then_tool"):
            names = ", ".join(dict.fromkeys(c["function"]["name"] for c in calls))
            text = f"I'll use the {names} tool."
        finish_reason = "tool_calls"
    else:
        text = _reply_text(prompt, directives)
        words = text.split()
        if prompt.max_tokens is not None and len(words) > prompt.max_tokens:
            text = " ".join(words[: prompt.max_tokens])
            finish_reason = "length"
    if directives.get("length"):
        finish_reason = "length"

    completion = len(text.split()) if text else 0
    completion += sum(1 + len(c["function"]["arguments"].split()) for c in calls)
    completion = max(1, completion)
    usage = {
        "prompt_tokens": prompt.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    return Reply(text, calls, finish_reason, usage)


def new_completion_id() -> str:
    return "chatcmpl-" + os.urandom(15).hex()


def completion_body(prompt: Prompt, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": prompt.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
        "usage": reply.usage,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


# --------------------------------------------------------------------------------------------------
# Server-sent events
# --------------------------------------------------------------------------------------------------


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"
MIDSTREAM_ERROR_EVENT = sse(
    {"error": {"message": DIRECTIVE_ERRORS[500][2], "type": "server_error", "param": None, "code": None}}
)


class ChunkWriter:
    """Builds the chunks of one streamed completion: same id, created, model and fingerprint throughout."""

    def __init__(self, prompt: Prompt) -> None:
        self.head = {
            "id": new_completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": prompt.model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        # OpenAI adds "usage": null to every chunk only when the final usage chunk was asked for.
        self.tail = {"usage": None} if prompt.include_usage else {}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**self.head, "choices": [choice], **self.tail})

    def usage(self, usage: dict[str, Any]) -> bytes:
        return sse({**self.head, "choices": [], "usage": usage})


def stream_events(prompt: Prompt, reply: Reply) -> Iterator[bytes]:
    writer = ChunkWriter(prompt)
    yield writer.chunk({"role": "assistant", "content": "" if reply.text is not None else None, "refusal": None})
    for piece in TEXT_CHUNK_RE.findall(reply.text or ""):
        yield writer.chunk({"content": piece})
    for index, call in enumerate(reply.tool_calls):
        function = call["function"]
        start = {"name": function["name"], "arguments": ""}
        yield writer.chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function", "function": start}]})
        arguments = function["arguments"]
        for i in range(0, len(arguments), JSON_FRAGMENT_CHARS):
            piece = arguments[i : i + JSON_FRAGMENT_CHARS]
            yield writer.chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield writer.chunk({}, reply.finish_reason)
    if prompt.include_usage:
        yield writer.usage(reply.usage)
    yield DONE_EVENT


def midstream_error_events(prompt: Prompt) -> Iterator[bytes]:
    writer = ChunkWriter(prompt)
    yield writer.chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in MIDSTREAM_DELTAS:
        yield writer.chunk({"content": piece})
    yield MIDSTREAM_ERROR_EVENT


# --------------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    inputs: list[str | list[int]]
    base64: bool
    dimensions: int
    directive_text: str


def _is_token_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(t) and t >= 0 for t in value)


def _check_embedding_input(value: Any) -> list[str | list[int]]:
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        inputs: list[Any] = [value]
    elif _is_token_array(value):
        inputs = [value]
    elif isinstance(value, list) and value:
        inputs = value
        if not (all(isinstance(v, str) for v in inputs) or all(_is_token_array(v) for v in inputs)):
            raise invalid(BAD_EMBEDDING_INPUT)
    else:
        raise invalid(BAD_EMBEDDING_INPUT)
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise invalid(
            f"Invalid 'input': array too long. Expected an array with maximum length {MAX_EMBEDDING_INPUTS}, "
            f"but got an array with length {len(inputs)} instead.",
            "input",
            "array_above_max_length",
        )
    if any(v == "" for v in inputs):
        raise invalid(BAD_EMBEDDING_INPUT)
    return inputs


def parse_embeddings(body: Any) -> EmbeddingRequest:
    """Validate an embeddings body like OpenAI (plus Jina's extras); raises ApiError."""
    if not isinstance(body, dict):
        raise invalid("Invalid type for body: expected a JSON object.")
    model = _check_model(body)
    inputs = _check_embedding_input(body.get("input"))
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise bad_value("encoding_format", encoding, ("float", "base64"))
    dimensions = _check_positive_int(body, "dimensions", MAX_DIMENSIONS)
    if body.get("task") is not None and not isinstance(body["task"], str):
        raise wrong_type("task", "a string", body["task"])
    _check_bool(body, "late_chunking")
    _check_bool(body, "truncate")
    return EmbeddingRequest(
        model=model,
        inputs=inputs,
        base64=encoding == "base64",
        dimensions=dimensions or DEFAULT_DIMENSIONS,
        directive_text=" ".join(v for v in inputs if isinstance(v, str)),
    )


def embedding_vector(item: str | list[int], dimensions: int) -> bytes:
    """The unit-norm vector of `item` as little-endian float32 bytes."""
    seed = item.encode() if isinstance(item, str) else orjson.dumps(item)
    words = struct.unpack(f"<{dimensions}I", hashlib.shake_256(seed).digest(4 * dimensions))
    values = [w / 2**31 - 1.0 for w in words]  # uniform in [-1, 1)
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return struct.pack(f"<{dimensions}f", *(v / norm for v in values))


def embeddings_body(request: EmbeddingRequest) -> dict[str, Any]:
    data = []
    for index, item in enumerate(request.inputs):
        packed = embedding_vector(item, request.dimensions)
        # Floats are sent as the float32 values themselves, so both encodings decode to identical numbers.
        embedding: Any = (
            base64.b64encode(packed).decode()
            if request.base64
            else list(struct.unpack(f"<{request.dimensions}f", packed))
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(_tokens(v) if isinstance(v, str) else len(v) for v in request.inputs)
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --------------------------------------------------------------------------------------------------
# Rerank
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RerankRequest:
    model: str
    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool


def parse_rerank(body: Any) -> RerankRequest:
    """Validate a Jina-style rerank body; raises ApiError (in OpenAI's error shape, like the rest)."""
    if not isinstance(body, dict):
        raise invalid("Invalid type for body: expected a JSON object.")
    model = _check_model(body)
    query = body.get("query")
    if query is None:
        raise missing("query")
    if not isinstance(query, str):
        raise wrong_type("query", "a string", query)
    documents = body.get("documents")
    if documents is None:
        raise missing("documents")
    if not isinstance(documents, list):
        raise wrong_type("documents", "an array", documents)
    if not documents:
        raise empty_array("documents")
    texts = []
    for k, document in enumerate(documents):
        if isinstance(document, dict):
            document = document.get("text")
        if not isinstance(document, str):
            raise wrong_type(f"documents[{k}]", 'a string or an object with a string "text"', documents[k])
        texts.append(document)
    top_n = _check_positive_int(body, "top_n")
    return_documents = _check_bool(body, "return_documents")
    return RerankRequest(model, query, texts, top_n, return_documents is not False)


def relevance(query: str, document: str) -> float:
    """Jaccard overlap of the two texts' lowercased word sets."""
    asked, offered = set(WORD_RE.findall(query.lower())), set(WORD_RE.findall(document.lower()))
    union = asked | offered
    return len(asked & offered) / len(union) if union else 0.0


def rerank_body(request: RerankRequest) -> dict[str, Any]:
    scored = sorted(
        ((relevance(request.query, text), index) for index, text in enumerate(request.documents)),
        key=lambda pair: (-pair[0], pair[1]),
    )
    results = []
    for score, index in scored[: request.top_n]:
        result: dict[str, Any] = {"index": index, "relevance_score": score}
        if request.return_documents:
            result["document"] = {"text": request.documents[index]}
        results.append(result)
    tokens = _tokens(request.query) + sum(_tokens(text) for text in request.documents)
    return {
        "model": request.model,
        "object": "list",
        "results": results,
        "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
    }


# --------------------------------------------------------------------------------------------------
# HTTP handlers
# --------------------------------------------------------------------------------------------------


def _model_object(model_id: str, created: int = FAKE_MODEL_CREATED, owned_by: str = "fake") -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


MODELS_BODY = orjson.dumps({"object": "list", "data": [_model_object(*m) for m in LISTED_MODELS]})
MODEL_OBJECTS = {m[0]: _model_object(*m) for m in LISTED_MODELS}


def json_response(body: bytes, request_id: str | None = None) -> web.Response:
    headers = {"x-request-id": request_id or new_request_id(), "Content-Type": "application/json"}
    return web.Response(body=body, headers=headers)


class FakeOpenAI(RequestLogControl):
    """Handlers plus the state they share: the request log and the expected API key."""

    def __init__(self, *, log_requests: bool = True, api_key: str | None = None) -> None:
        self.log_requests = log_requests
        self.api_key = api_key
        self.requests: deque[Entry] = deque(maxlen=REQUEST_LOG_SIZE)
        self._seq = itertools.count(1)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _record(self, request: web.Request) -> Entry | None:
        if not self.log_requests:
            return None
        entry = {
            "seq": next(self._seq),
            "path": request.path,
            "body": None,
            "headers": {"authorization": bool(request.headers.get("authorization"))},
            "stream": False,
            "outcome": "in_progress",
            "status": None,
        }
        self.requests.append(entry)
        return entry

    def _authorize(self, request: web.Request) -> None:
        authorization = request.headers.get("authorization", "")
        key = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
        if not key:
            raise ApiError(401, NO_KEY_MESSAGE)
        if self.api_key is not None and key != self.api_key:
            shown = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
            raise ApiError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    async def _read_json(self, request: web.Request, entry: Entry | None) -> Any:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "Request body too large.") from None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if entry is not None:
                entry["body"] = raw.decode(errors="replace")
            raise invalid(BAD_JSON_MESSAGE) from None
        if entry is not None:
            entry["body"] = body
            if isinstance(body, dict):
                entry["stream"] = body.get("stream") is True
        return body

    @staticmethod
    def _reject(exc: ApiError, entry: Entry | None, request_id: str, outcome: str = "rejected") -> web.Response:
        _finish(entry, outcome, exc.status)
        return error_response(exc, request_id)

    async def _request_directives(
        self, request: web.Request, directives: dict[str, int], model: str, entry: Entry | None, request_id: str
    ) -> web.Response | None:
        """Apply delay_ms, drop and error; returns the response that ends the request, if one does."""
        if directives.get("delay_ms"):
            await asyncio.sleep(directives["delay_ms"] / 1000)
            if _client_gone(request):
                _finish(entry, "aborted", 499)
                return web.Response(status=499)
        if directives.get("drop"):
            if entry is not None:
                entry["outcome"] = "dropped"  # status stays null: nothing was sent
            # aiohttp then fails to write the response into the closed transport and moves on quietly.
            request.transport.close()
            return web.Response()
        if "error" in directives:
            return self._reject(directive_error(directives, model), entry, request_id, outcome="error")
        return None

    # -- API -----------------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        entry = self._record(request)
        request_id = new_request_id()
        try:
            self._authorize(request)
            prompt = parse_chat(await self._read_json(request, entry))
            directives = parse_directives(prompt.directive_text)
        except ApiError as exc:
            return self._reject(exc, entry, request_id)

        if directives:
            ended = await self._request_directives(request, directives, prompt.model, entry, request_id)
            if ended is not None:
                return ended
            if directives.get("midstream_error") and not prompt.stream:
                exc = directive_error({"error": 500}, prompt.model)
                return self._reject(exc, entry, request_id, outcome="error")

        reply = build_reply(prompt, directives)
        if prompt.stream:
            return await self._stream(request, request_id, prompt, reply, directives, entry)
        _finish(entry, "completed", 200)
        return json_response(orjson.dumps(completion_body(prompt, reply)), request_id)

    async def _stream(
        self,
        request: web.Request,
        request_id: str,
        prompt: Prompt,
        reply: Reply,
        directives: dict[str, int],
        entry: Entry | None,
    ) -> web.StreamResponse:
        failing = bool(directives.get("midstream_error"))
        events = midstream_error_events(prompt) if failing else stream_events(prompt, reply)
        response = web.StreamResponse(
            headers={"x-request-id": request_id, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        if failing:
            response.force_close()
        chunk_delay = directives.get("chunk_delay_ms", 0) / 1000
        try:
            await response.prepare(request)
            if chunk_delay:
                for i, event in enumerate(events):
                    if i:
                        await asyncio.sleep(chunk_delay)
                    await response.write(event)
            else:
                await response.write(b"".join(events))
            await response.write_eof()
        except OSError:  # aiohttp raises ClientConnectionResetError once the client has gone
            _finish(entry, "aborted", 200)
            return response
        except asyncio.CancelledError:  # only when the server runs with handler_cancellation=True
            _finish(entry, "aborted", 200)
            raise
        _finish(entry, "error" if failing else "completed", 200)
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        return await self._one_shot(request, parse_embeddings, lambda parsed: parsed.directive_text, embeddings_body)

    async def rerank(self, request: web.Request) -> web.Response:
        return await self._one_shot(request, parse_rerank, lambda parsed: parsed.query, rerank_body)

    async def _one_shot(self, request: web.Request, parse: Callable, directive_text: Callable,
                        answer: Callable) -> web.Response:
        """A non-streaming endpoint: validate, obey the request-level directives, answer."""
        entry = self._record(request)
        request_id = new_request_id()
        try:
            self._authorize(request)
            parsed = parse(await self._read_json(request, entry))
            directives = parse_directives(directive_text(parsed), REQUEST_DIRECTIVES)
        except ApiError as exc:
            return self._reject(exc, entry, request_id)
        if directives:
            ended = await self._request_directives(request, directives, parsed.model, entry, request_id)
            if ended is not None:
                return ended
        _finish(entry, "completed", 200)
        return json_response(orjson.dumps(answer(parsed)), request_id)

    async def list_models(self, request: web.Request) -> web.Response:
        return self._model_response(request, lambda: MODELS_BODY)

    async def get_model(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]

        def body() -> bytes:
            if model_id.startswith(MISSING_MODEL_PREFIX):
                raise model_not_found(model_id)
            return orjson.dumps(MODEL_OBJECTS.get(model_id) or _model_object(model_id))

        return self._model_response(request, body)

    def _model_response(self, request: web.Request, body: Callable[[], bytes]) -> web.Response:
        entry = self._record(request)
        request_id = new_request_id()
        try:
            self._authorize(request)
            payload = body()
        except ApiError as exc:
            return self._reject(exc, entry, request_id)
        _finish(entry, "completed", 200)
        return json_response(payload, request_id)

    async def not_found(self, request: web.Request) -> web.Response:
        exc = ApiError(404, f"Invalid URL ({request.method} {request.path})")
        return error_response(exc, new_request_id())


FAKE_KEY = web.AppKey("fake_openai", FakeOpenAI)


def build_app(*, log_requests: bool = True, api_key: str | None = None) -> web.Application:
    """The fake as an aiohttp app. `api_key` defaults to $FAKE_OPENAI_API_KEY (unset: any key works)."""
    if api_key is None:
        api_key = os.environ.get("FAKE_OPENAI_API_KEY") or None
    fake = FakeOpenAI(log_requests=log_requests, api_key=api_key)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[FAKE_KEY] = fake
    app.router.add_post("/v1/chat/completions", fake.chat_completions)
    app.router.add_post("/v1/embeddings", fake.embeddings)
    app.router.add_post("/v1/rerank", fake.rerank)
    app.router.add_get("/v1/models", fake.list_models)
    app.router.add_get("/v1/models/{model_id:.+}", fake.get_model)
    fake.add_control_routes(app)
    app.router.add_route("*", "/{tail:.*}", fake.not_found)
    return app


async def start(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> tuple[web.AppRunner, int]:
    """Serve `build_app(**kwargs)` on the running loop; returns (runner, bound port). Stop: runner.cleanup()."""
    return await serving.start(build_app, host, port, **kwargs)


def main(argv: list[str] | None = None) -> None:
    serving.main(build_app, name="fake-openai", module="fakes.openai_compat",
                 description=__doc__.splitlines()[0], default_port=8200, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
