"""A fake of Anthropic's Messages API, speaking the exact wire protocol.

It is the upstream for Gatehouse's tests and throughput benchmark: point the real `anthropic` SDK (or the
gateway's Anthropic provider) at it with ``ANTHROPIC_BASE_URL=http://HOST:PORT``. It needs no Django and
no network, answers deterministically, and validates requests about as strictly as the real API, so a
translation bug in the gateway surfaces as a 400 in tests instead of passing silently.

Run it::

    python -m fakes.anthropic --host 127.0.0.1 --port 8100 [--no-log]

It prints exactly one line, ``fake-anthropic listening on http://HOST:PORT`` (port 0 picks a free port
and the real one is printed). In-process, use ``build_app()`` or ``await start(host, port)``.

Endpoints
---------
``POST /v1/messages`` (plain and ``"stream": true``), ``POST /v1/messages/count_tokens``,
``GET /v1/models``, ``GET /v1/models/{id}``. They need ``x-api-key`` (or ``Authorization: Bearer``)
and ``anthropic-version``; if ``FAKE_ANTHROPIC_API_KEY`` is set the key must equal it.

Test control (no auth): ``GET /_fake/requests[?since=SEQ]`` lists the last 1000 requests, oldest first,
each ``{"seq", "path", "body", "headers": {"anthropic-version", "anthropic-beta", "x-api-key": bool,
"authorization": bool, "traceparent"}, "stream", "outcome", "status"}`` where outcome is ``in_progress`` while running,
then ``completed``, ``aborted`` (client went away), ``error`` (error directive / mid-stream error) or
``rejected`` (auth or validation failure), and status is the HTTP status sent (499 if the client left
during a ``delay_ms``); ``DELETE /_fake/requests`` clears it;
``GET /_fake/health`` answers ``{"ok": true}``. With ``--no-log`` nothing is recorded.

Answers
-------
``input_tokens`` = ceil(characters / 4) + 3 per message + 85 per image/document, where characters are
those of the system prompt, every text / tool_result / thinking text, each tool_use name plus compact
input JSON, and the compact JSON of each tool definition; count_tokens returns the same number.
``output_tokens`` = whitespace-separated words of everything generated (text, thinking, tool name plus
compact input JSON), at least 1. The default reply is ``Hello from the fake upstream. You said: <first
60 chars of the last user text>`` (directive tags removed, whitespace collapsed); when the last user
message carries tool_result blocks it is ``Tool results received: <result texts joined by "; ">``.
With structured outputs (``output_config.format`` or ``output_format`` of type ``json_schema``) the
reply is instead the compact JSON of a value built from the schema the way tool inputs are (below).
Text longer than ``max_tokens`` words is cut with stop_reason ``max_tokens``. With thinking enabled
(or adaptive) the reply starts with a fixed thinking block and a deterministic signature.

Prompt cache
------------
Like Anthropic's (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching): a request with
``cache_control`` on blocks (or at the top level: the last block) writes the prefix up to each such
breakpoint, in render order tools, system, messages; a later request with the same API key and model
reads the longest prefix written before that ends at a block boundary at most 20 blocks before one of
its breakpoints. The hash leaves the markers out, so a breakpoint that moves forward still finds the
previous write. Entries live 5 minutes (``ttl: "1h"``: an hour) from their last use; a prefix shorter
than the model's minimum (1024 tokens for Sonnet 4.6, 4096 for Opus 4.6 and Haiku 4.5) is neither
written nor read. usage then has cache_read_input_tokens (the prefix read), cache_creation_input_tokens
(the rest up to the last breakpoint) and input_tokens (what is left; the three add up to the
count_tokens value). More than 4 breakpoints, or one on an empty text block, is a 400. The clock is
``build_app(clock=...)``'s (time.monotonic by default); ``GET /_fake/cache`` lists the entries
(``{"entries": [{"key", "tokens", "expires_in"}]}``) and ``DELETE /_fake/cache`` empties it.

Directives
----------
Tags in the text of the LAST user message (its text blocks or tool_result contents), e.g.
``[[fake:words=500]]`` or ``[[fake:tool, delay_ms=20]]``. One tag may hold several directives separated
by commas or spaces, and several tags may appear. An unknown directive is a 400, so typos fail loudly.

``words=N``            reply with exactly N words (cut to max_tokens words, stop_reason max_tokens)
``delay_ms=N``         wait N ms before answering at all (headers included)
``chunk_delay_ms=N``   streaming: wait N ms between events (each event is then its own write)
``error=STATUS``       answer 400/401/403/404/413/429/500/529 with Anthropic's error body
``retry_after=N``      with error=429: the retry-after value (default 1)
``midstream_error``    streaming: message_start, ping, a text block start and two deltas, then an
                       ``event: error`` (overloaded_error); non-streaming: a 529
``tool`` / ``tools=N`` call the first N defined tools, cycling (1 for ``tool``); stop_reason tool_use
``call=NAME``          call the declared tool named NAME once (none if there is no such tool), e.g. one of
                       the tools an agent such as Claude Code declares
``text_then_tool``     put a short text block before the tool calls
``stop_sequence``      if stop_sequences were given: stop_reason stop_sequence, the first one reported
``refusal``            stop_reason refusal
``cache``              usage also reports cache_creation_input_tokens=100, cache_read_input_tokens=200
                       (``cache_write=N`` / ``cache_read=N`` set them; input_tokens stays the uncached
                       count, i.e. the count_tokens value); it replaces the prompt cache below

``web_search``         if the server tool ``web_search_20250305`` is declared: a ``server_tool_use`` block
                       (name web_search, input {"query": <the "You said" text of the default reply, or
                       "fake search">}),
                       a ``web_search_tool_result`` with two deterministic results, a plain text block and
                       a text block citing the first result (``web_search_result_location``); usage has
                       ``server_tool_use.web_search_requests`` 1. Streamed, the cited block starts with
                       ``citations: []`` and gets a ``citations_delta`` before its text. tool_choice
                       ``tool`` naming web_search does the same without the directive.

A tool call also happens when tool_choice is ``any`` or ``tool`` (the named tool); tool_choice ``none``
suppresses calls; ``disable_parallel_tool_use`` limits them to one. Only client tools are called this way
(server tools such as web_search only with their directive). Tool inputs are built from each
input_schema: every required property (all properties if none are required) gets its enum's first
value or a value by type (string "example", integer 1, number 1.5, boolean true, array [], object {}).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import math
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable, Iterator

import orjson
from aiohttp import web

from fakes import serving
from fakes.serving import RequestLogControl

# --------------------------------------------------------------------------------------------------
# Static data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    display_name: str
    created_at: str
    max_output_tokens: int
    supports_prefill: bool


MODELS: dict[str, ModelInfo] = {
    m.id: m
    for m in (
        ModelInfo("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z", 128_000, False),
        ModelInfo("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z", 128_000, True),
        ModelInfo("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", 64_000, True),
    )
}

# The fields of the API's (beta) MessageCreateParams and MessageCountTokensParams.
MESSAGE_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k", "stop_sequences",
        "stream", "tools", "tool_choice", "thinking", "metadata", "service_tier", "container",
        "mcp_servers", "output_config", "output_format", "context_management", "cache_control",
        "inference_geo", "speed", "user_profile_id",
    }
)  # fmt: skip
COUNT_TOKENS_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "output_config",
     "output_format", "context_management", "cache_control", "speed"}
)  # fmt: skip
CUSTOM_TOOL_KEYS = frozenset(
    {
        "type", "name", "description", "input_schema", "cache_control", "strict", "defer_loading",
        "eager_input_streaming", "input_examples", "allowed_callers",
    }
)  # fmt: skip
CACHE_CONTROL_KEYS = frozenset({"type", "ttl", "scope"})
CACHE_TTLS = ("5m", "1h")
OUTPUT_CONFIG_KEYS = frozenset({"effort", "format", "task_budget"})
EFFORTS = ("low", "medium", "high", "max")
JSON_FORMAT_KEYS = frozenset({"type", "schema"})
CONTEXT_MANAGEMENT_KEYS = frozenset({"edits"})

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
DIRECTIVE_ERROR_MESSAGES = {
    400: "Fake invalid request (error directive).",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of requests has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}

MAX_BODY_BYTES = 32 * 1024 * 1024
REQUEST_LOG_SIZE = 1000
RATE_LIMIT_REQUESTS = 50
IMAGE_TOKENS = 85
IMAGE_CHARS = IMAGE_TOKENS * 4  # images and documents count as this many characters of text

MESSAGE_KEYS = frozenset({"role", "content"})
BLOCK_KEYS = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "image": frozenset({"type", "source", "cache_control", "transformations"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control", "caller", "toolset_name"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control", "toolset_name"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
}
# Server-side block types are accepted without a close look: the gateway only passes them through.
OTHER_BLOCK_TYPES = frozenset(
    {
        "document", "search_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
        "code_execution_tool_result", "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result", "mcp_tool_use", "mcp_tool_result", "container_upload",
    }
)  # fmt: skip
KNOWN_BLOCK_TAGS = ", ".join(f"'{t}'" for t in sorted({*BLOCK_KEYS, *OTHER_BLOCK_TYPES}))
ASSISTANT_ONLY_BLOCKS = frozenset({"tool_use", "thinking", "redacted_thinking", "server_tool_use"})
TOOL_RESULT_CONTENT_TYPES = frozenset({"text", "image", "document", "search_result"})
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
DOCUMENT_SOURCE_TYPES = frozenset({"base64", "text", "url", "content", "file"})

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
TOOL_ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
# Versioned Anthropic-defined tools (web_search_20250305, bash_20250124, ...) carry no input_schema.
VERSIONED_TOOL_TYPE_RE = re.compile(r"^[a-z_]+_\d{8}$")
WEB_SEARCH_TYPE = "web_search_20250305"

THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
THINKING_TEXT = (
    "Let me think about this. The user wants a short answer from the fake upstream, "
    "so I will reply directly."
)
THINKING_SIGNATURE = base64.b64encode(hashlib.sha256(THINKING_TEXT.encode()).digest()).decode()
THINKING_WORDS = len(THINKING_TEXT.split())
REFUSAL_TEXT = "I can't help with that request."
# Fixed so that a mid-stream failure always follows exactly two deltas, whatever the reply would be.
MIDSTREAM_DELTAS = ("Hello from the ", "fake upstream")
LOREM = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()

# --------------------------------------------------------------------------------------------------
# Directives
# --------------------------------------------------------------------------------------------------

DIRECTIVE_TAG_RE = re.compile(r"\[\[fake:([^\]]*)\]\]")
DIRECTIVE_SPLIT_RE = re.compile(r"[\s,;]+")
INT_DIRECTIVES = frozenset(
    {"words", "delay_ms", "chunk_delay_ms", "error", "retry_after", "tools", "cache_read", "cache_write"}
)
FLAG_DIRECTIVES = frozenset(
    {"midstream_error", "tool", "text_then_tool", "stop_sequence", "refusal", "cache", "web_search"}
)
NAME_DIRECTIVES = frozenset({"call"})
NO_DIRECTIVES: dict[str, Any] = {}


def parse_directives(text: str) -> dict[str, Any]:
    """Directives found in `text` as {name: int} (flags map to 1, `call` to its tool name). Raises
    ApiError on a bad one."""
    if "[[fake:" not in text:
        return NO_DIRECTIVES
    found: dict[str, Any] = {}
    for tag in DIRECTIVE_TAG_RE.findall(text):
        for item in DIRECTIVE_SPLIT_RE.split(tag.strip()):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if name in FLAG_DIRECTIVES and not sep:
                found[name] = 1
            elif name in INT_DIRECTIVES and value.isdigit():
                found[name] = int(value)
            elif name in NAME_DIRECTIVES and TOOL_NAME_RE.match(value):
                found[name] = value
            else:
                raise invalid(f"fake directive: cannot understand {item!r}")
    if "error" in found and found["error"] not in ERROR_TYPES:
        raise invalid(f"fake directive: error={found['error']} is not one of {sorted(ERROR_TYPES)}")
    return found


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered with Anthropic's error body: status, error type and message."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


def new_request_id() -> str:
    return "req_011" + os.urandom(12).hex()


def error_response(exc: ApiError, request_id: str) -> web.Response:
    payload = {
        "type": "error",
        "error": {"type": ERROR_TYPES[exc.status], "message": exc.message},
        "request_id": request_id,
    }
    headers = {"request-id": request_id, "Content-Type": "application/json"}
    if exc.status == 429:
        retry_after = exc.retry_after if exc.retry_after is not None else 1
        reset = datetime.now(timezone.utc) + timedelta(seconds=retry_after)
        headers.update(
            {
                "retry-after": str(retry_after),
                "anthropic-ratelimit-requests-limit": str(RATE_LIMIT_REQUESTS),
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    reason = "Overloaded" if exc.status == 529 else None
    return web.Response(status=exc.status, reason=reason, body=orjson.dumps(payload), headers=headers)


# --------------------------------------------------------------------------------------------------
# Request validation
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Prompt:
    """What a valid request asks for, as far as generating the reply is concerned."""

    model: str
    max_tokens: int
    stream: bool
    thinking: bool
    tools: list[dict[str, Any]]
    tool_choice: dict[str, Any]
    stop_sequences: list[str]
    input_tokens: int
    message_count: int
    user_text: str  # top-level text of the last user message
    directive_text: str  # all text of the last user message, tool_result contents included
    tool_results: list[str] | None  # texts of the last user message's tool_result blocks, if any
    output_schema: dict[str, Any] | None = None  # structured outputs: the JSON schema the text must follow
    body: dict[str, Any] | None = None  # the request, for the prompt cache
    breakpoints: int = 0  # blocks with cache_control (a top-level one counts as one)


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _text_of(content: Any) -> str:
    """Plain text of a tool_result's content (string or list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b["text"] for b in content if b.get("type") == "text")
    return ""


def _check_text(text: Any, where: str) -> int:
    if not isinstance(text, str):
        raise invalid(f"{where}.text: Input should be a valid string")
    if not text:
        raise invalid("messages: text content blocks must be non-empty")
    if text.isspace():
        raise invalid("messages: text content blocks must contain non-whitespace text")
    return len(text)


def _check_extra_keys(block: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in block:
        if key not in allowed:
            raise invalid(f"{where}.{block['type']}.{key}: Extra inputs are not permitted")


def _check_image(block: dict[str, Any], where: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{where}.image.source: Field required")
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") not in IMAGE_MEDIA_TYPES:
            raise invalid(
                f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                "'image/gif' or 'image/webp'"
            )
        if not isinstance(source.get("data"), str) or not source["data"]:
            raise invalid(f"{where}.image.source.base64.data: Field required")
    elif kind == "url":
        if not isinstance(source.get("url"), str) or not source["url"]:
            raise invalid(f"{where}.image.source.url.url: Field required")
    else:
        raise invalid(
            f"{where}.image.source: Input tag '{kind}' found using 'type' does not match any of the "
            "expected tags: 'base64', 'url'"
        )


def _check_block(block: Any, where: str, role: str) -> int:
    """Validate one message content block; returns the characters it contributes to input_tokens."""
    if not isinstance(block, dict):
        raise invalid(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    allowed = BLOCK_KEYS.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        if kind in OTHER_BLOCK_TYPES:
            if kind == "document":
                source = block.get("source")
                if not isinstance(source, dict) or source.get("type") not in DOCUMENT_SOURCE_TYPES:
                    raise invalid(f"{where}.document.source: Input should be a valid document source")
                return IMAGE_CHARS
            return 0
        raise invalid(
            f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            f"{KNOWN_BLOCK_TAGS}"
        )
    _check_extra_keys(block, allowed, where)
    _check_cache_control(block.get("cache_control"), f"{where}.{kind}.cache_control")
    if role == "user" and kind in ASSISTANT_ONLY_BLOCKS:
        raise invalid(f"{where}: `{kind}` blocks can only be in `assistant` messages")
    if role == "assistant" and kind == "tool_result":
        raise invalid(f"{where}: `tool_result` blocks can only be in `user` messages")

    if kind == "text":
        if "cache_control" in block and block.get("text") == "":
            raise invalid(f"{where}.text: cache_control cannot be set for empty text blocks")
        return _check_text(block.get("text"), where)
    if kind == "image":
        _check_image(block, where)
        return IMAGE_CHARS
    if kind == "tool_use":
        tool_id, name, tool_input = block.get("id"), block.get("name"), block.get("input")
        if not isinstance(tool_id, str) or not TOOL_ID_RE.match(tool_id):
            raise invalid(f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(name, str) or not name:
            raise invalid(f"{where}.tool_use.name: Field required")
        if not isinstance(tool_input, dict):
            raise invalid(f"{where}.tool_use.input: Input should be a valid dictionary")
        return len(name) + len(orjson.dumps(tool_input))
    if kind == "tool_result":
        tool_use_id = block.get("tool_use_id")
        if not isinstance(tool_use_id, str) or not TOOL_ID_RE.match(tool_use_id):
            raise invalid(f"{where}.tool_result.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if "is_error" in block and not isinstance(block["is_error"], bool):
            raise invalid(f"{where}.tool_result.is_error: Input should be a valid boolean")
        content = block.get("content", "")
        if isinstance(content, str):
            return len(content)
        if not isinstance(content, list):
            raise invalid(f"{where}.tool_result.content: Input should be a valid string or list")
        chars = 0
        for k, item in enumerate(content):
            inner = f"{where}.tool_result.content.{k}"
            if not isinstance(item, dict) or item.get("type") not in TOOL_RESULT_CONTENT_TYPES:
                raise invalid(
                    f"{inner}: Input tag '{item.get('type') if isinstance(item, dict) else item}' found "
                    "using 'type' does not match any of the expected tags: 'document', 'image', "
                    "'search_result', 'text'"
                )
            if item["type"] == "text":
                chars += _check_text(item.get("text"), inner)
            elif item["type"] == "image":
                _check_image(item, inner)
                chars += IMAGE_CHARS
        return chars
    if kind == "thinking":
        if not isinstance(block.get("thinking"), str):
            raise invalid(f"{where}.thinking.thinking: Field required")
        if not isinstance(block.get("signature"), str) or not block["signature"]:
            raise invalid(f"{where}.thinking.signature: Field required")
        return len(block["thinking"])
    # redacted_thinking
    if not isinstance(block.get("data"), str) or not block["data"]:
        raise invalid(f"{where}.redacted_thinking.data: Field required")
    return 0


def _check_messages(messages: Any) -> tuple[int, int]:
    """Validate the conversation; returns (characters, index of the last user message)."""
    if messages is None:
        raise invalid("messages: Field required")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")

    chars = 0
    last_user = -1
    last = len(messages) - 1
    seen_tool_ids: set[str] = set()
    pending_tool_ids: dict[str, None] = {}  # tool_use ids of the previous assistant message, in order
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise invalid(f"{where}: Input should be a valid dictionary")
        for key in message:
            if key not in MESSAGE_KEYS:
                raise invalid(f"{where}.{key}: Extra inputs are not permitted")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise invalid(f"{where}.content: Field required")
        content = message["content"]
        may_be_empty = i == last and role == "assistant"

        if isinstance(content, str):
            if not content and not may_be_empty:
                raise invalid(
                    f"{where}: all messages must have non-empty content except for the optional final "
                    "assistant message"
                )
            if content and content.isspace() and not may_be_empty:
                raise invalid("messages: text content blocks must contain non-whitespace text")
            chars += len(content)
            blocks: list[Any] = []
        elif isinstance(content, list):
            if not content and not may_be_empty:
                raise invalid(
                    f"{where}: all messages must have non-empty content except for the optional final "
                    "assistant message"
                )
            blocks = content
        else:
            raise invalid(f"{where}.content: Input should be a valid string or list")

        tool_use_ids: dict[str, None] = {}
        answered: set[str] = set()
        other_seen = False
        for j, block in enumerate(blocks):
            bwhere = f"{where}.content.{j}"
            chars += _check_block(block, bwhere, role)
            kind = block["type"]
            if kind == "tool_use":
                if block["id"] in seen_tool_ids:
                    raise invalid(f"{bwhere}: `tool_use` ids must be unique")
                seen_tool_ids.add(block["id"])
                tool_use_ids[block["id"]] = None
            elif kind == "tool_result":
                if other_seen:
                    raise invalid(
                        f"{bwhere}: tool_result blocks must come first in the user message content, "
                        "before any text or other blocks"
                    )
                if not pending_tool_ids:
                    raise invalid(
                        f"{bwhere}: tool_result block(s) provided when previous message does not contain "
                        "tool_use"
                    )
                if block["tool_use_id"] not in pending_tool_ids:
                    raise invalid(
                        f"{bwhere}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )
                answered.add(block["tool_use_id"])
            else:
                other_seen = True

        if pending_tool_ids:
            missing = [tid for tid in pending_tool_ids if tid not in answered]
            if missing:
                raise invalid(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message."
                )
        pending_tool_ids = tool_use_ids
        if role == "user":
            last_user = i
    return chars, last_user


def _check_system(system: Any) -> int:
    if system is None or isinstance(system, str):
        return len(system or "")
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or a list of text blocks")
    chars = 0
    for k, block in enumerate(system):
        where = f"system.{k}"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"{where}.type: Input should be 'text'")
        _check_extra_keys(block, BLOCK_KEYS["text"], where)
        _check_cache_control(block.get("cache_control"), f"{where}.text.cache_control")
        chars += _check_text(block.get("text"), where)
    return chars


def _check_tools(tools: Any) -> tuple[list[dict[str, Any]], int]:
    """Validate tool definitions; returns (tools, characters)."""
    if tools is None:
        return [], 0
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    names: set[str] = set()
    chars = 0
    for k, tool in enumerate(tools):
        where = f"tools.{k}"
        if not isinstance(tool, dict):
            raise invalid(f"{where}: Input should be a valid dictionary")
        kind = tool.get("type")
        name = tool.get("name")
        if kind is None or kind == "custom":
            if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
                raise invalid(f"{where}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            schema = tool.get("input_schema")
            if schema is None:
                raise invalid(f"{where}.custom.input_schema: Field required")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise invalid(f"{where}.custom.input_schema.type: Input should be 'object'")
            _check_custom_tool(tool, f"{where}.custom")
        elif not isinstance(kind, str) or not VERSIONED_TOOL_TYPE_RE.match(kind):
            raise invalid(f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected tags")
        elif not isinstance(name, str) or not name:
            raise invalid(f"{where}.{kind}.name: Field required")
        _check_cache_control(tool.get("cache_control"), f"{where}.{kind or 'custom'}.cache_control")
        if name in names:
            raise invalid("tools: Tool names must be unique.")
        names.add(name)
        chars += len(orjson.dumps(tool))
    return tools, chars


def _check_fields(value: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in value:
        if key not in allowed:
            raise invalid(f"{where}.{key}: Extra inputs are not permitted")


def _check_tagged(value: Any, tag: str, allowed: frozenset[str], where: str) -> bool:
    """Whether `value` is set; if it is, it must be an object of type `tag` with only `allowed` keys."""
    if value is None:
        return False
    if not isinstance(value, dict) or value.get("type") != tag:
        raise invalid(f"{where}.type: Input should be '{tag}'")
    _check_fields(value, allowed, where)
    return True


def _check_custom_tool(tool: dict[str, Any], where: str) -> None:
    _check_fields(tool, CUSTOM_TOOL_KEYS, where)
    if "description" in tool and not isinstance(tool["description"], str):
        raise invalid(f"{where}.description: Input should be a valid string")
    for key in ("strict", "defer_loading"):
        if key in tool and not isinstance(tool[key], bool):
            raise invalid(f"{where}.{key}: Input should be a valid boolean")
    if tool.get("eager_input_streaming") is not None and not isinstance(tool["eager_input_streaming"], bool):
        raise invalid(f"{where}.eager_input_streaming: Input should be a valid boolean")
    examples = tool.get("input_examples")
    if examples is not None and (not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples)):
        raise invalid(f"{where}.input_examples: Input should be a valid list of dictionaries")


def _check_cache_control(cache_control: Any, where: str) -> None:
    """A cache breakpoint: `{"type": "ephemeral"}` with an optional `ttl` (5m, 1h) and `scope`."""
    if not _check_tagged(cache_control, "ephemeral", CACHE_CONTROL_KEYS, where):
        return
    if "ttl" in cache_control and cache_control["ttl"] not in CACHE_TTLS:
        raise invalid(f"{where}.ttl: Input should be '5m' or '1h'")
    if "scope" in cache_control and not isinstance(cache_control["scope"], str):
        raise invalid(f"{where}.scope: Input should be a valid string")


def _check_json_format(output_format: Any, where: str) -> None:
    """Structured outputs: `{"type": "json_schema", "schema": {...}}`."""
    if not _check_tagged(output_format, "json_schema", JSON_FORMAT_KEYS, where):
        return
    if not isinstance(output_format.get("schema"), dict):
        raise invalid(f"{where}.schema: Input should be a valid dictionary")


def _check_output_config(output_config: Any) -> None:
    if output_config is None:
        return
    if not isinstance(output_config, dict):
        raise invalid("output_config: Input should be a valid dictionary")
    _check_fields(output_config, OUTPUT_CONFIG_KEYS, "output_config")
    effort = output_config.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise invalid("output_config.effort: Input should be 'low', 'medium', 'high' or 'max'")
    _check_json_format(output_config.get("format"), "output_config.format")
    budget = output_config.get("task_budget")
    if budget is not None and not isinstance(budget, dict):
        raise invalid("output_config.task_budget: Input should be a valid dictionary")


def _check_context_management(context_management: Any) -> None:
    """`{"edits": [...]}`, each edit a versioned strategy (clear_tool_uses_20250919, compact_20260112, ...)."""
    if context_management is None:
        return
    if not isinstance(context_management, dict):
        raise invalid("context_management: Input should be a valid dictionary")
    _check_fields(context_management, CONTEXT_MANAGEMENT_KEYS, "context_management")
    edits = context_management.get("edits", [])
    if not isinstance(edits, list):
        raise invalid("context_management.edits: Input should be a valid list")
    for k, edit in enumerate(edits):
        kind = edit.get("type") if isinstance(edit, dict) else None
        if not isinstance(kind, str) or not VERSIONED_TOOL_TYPE_RE.match(kind):
            raise invalid(
                f"context_management.edits.{k}: Input tag '{kind}' found using 'type' does not match any of the "
                "expected tags"
            )


def _check_tool_choice(tool_choice: Any, tools: list[dict[str, Any]]) -> dict[str, Any]:
    if tool_choice is None:
        return {}
    if not isinstance(tool_choice, dict):
        raise invalid("tool_choice: Input should be a valid dictionary")
    kind = tool_choice.get("type")
    if kind not in ("auto", "any", "tool", "none"):
        raise invalid(
            f"tool_choice: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            "'auto', 'any', 'tool', 'none'"
        )
    if kind in ("any", "tool") and not tools:
        raise invalid("tool_choice: tool_choice.type may only be specified while providing tools")
    if kind == "tool" and not any(t.get("name") == tool_choice.get("name") for t in tools):
        raise invalid(f"tool_choice.tool.name: Tool '{tool_choice.get('name')}' not found in tools")
    dptu = tool_choice.get("disable_parallel_tool_use")
    if dptu is not None and not isinstance(dptu, bool):
        raise invalid(f"tool_choice.{kind}.disable_parallel_tool_use: Input should be a valid boolean")
    return tool_choice


def _check_thinking(thinking: Any, max_tokens: int | None) -> bool:
    """Validate the thinking config; returns whether thinking is on."""
    if thinking is None:
        return False
    if not isinstance(thinking, dict):
        raise invalid("thinking: Input should be a valid dictionary")
    kind = thinking.get("type")
    if kind == "disabled":
        return False
    if kind == "adaptive":
        return True
    if kind != "enabled":
        raise invalid(
            f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            "'adaptive', 'disabled', 'enabled'"
        )
    budget = thinking.get("budget_tokens")
    if budget is None:
        raise invalid("thinking.enabled.budget_tokens: Field required")
    if type(budget) is not int:
        raise invalid("thinking.enabled.budget_tokens: Input should be a valid integer")
    if budget < 1024:
        raise invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if max_tokens is not None and budget >= max_tokens:
        raise invalid(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation "
            f"at {THINKING_DOCS}#max-tokens-and-context-window-size"
        )
    return True


def _check_thinking_rules(body: dict[str, Any], tool_choice: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        raise invalid(
            f"`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation "
            f"at {THINKING_DOCS}#feature-compatibility"
        )
    if body.get("top_k") is not None:
        raise invalid(
            f"`top_k` must be unset when thinking is enabled. Please consult our documentation at "
            f"{THINKING_DOCS}#feature-compatibility"
        )
    if tool_choice.get("type") in ("any", "tool"):
        raise invalid("Thinking may not be enabled when tool_choice forces tool use.")
    messages = body["messages"]
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message["role"] != "assistant":
            continue
        content = message["content"]
        if isinstance(content, list) and any(b["type"] == "tool_use" for b in content):
            first = content[0]["type"]
            if first not in ("thinking", "redacted_thinking"):
                raise invalid(
                    f"messages.{i}.content.0.type: Expected thinking or redacted_thinking, but found "
                    f"{first}. When thinking is enabled, a final assistant message must start with a "
                    "thinking block (preceding the lastmost set of tool_use and tool_result blocks). We "
                    "recommend you include thinking blocks from previous turns. To avoid this requirement, "
                    f"disable thinking. Please consult our documentation at {THINKING_DOCS}"
                )
        return


def _check_prefill(final: dict[str, Any], model: ModelInfo) -> None:
    if not model.supports_prefill:
        raise invalid(
            "This model does not support assistant message prefill. The conversation must end with a user "
            "message."
        )
    content = final["content"]
    if isinstance(content, list):
        texts = [b["text"] for b in content if b["type"] == "text"]
        content = texts[-1] if texts else ""
    if content and content[-1].isspace():
        raise invalid("messages: final assistant content cannot end with trailing whitespace")


def _check_sampling(body: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise invalid(f"{name}: Input should be a valid number")
        if not 0 <= value <= 1:
            raise invalid(f"{name}: Input should be less than or equal to 1 and greater than or equal to 0")
    top_k = body.get("top_k")
    if top_k is not None and (type(top_k) is not int or top_k < 0):
        raise invalid("top_k: Input should be a valid non-negative integer")
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid("stop_sequences: Input should be a valid list of strings")
        if any(not s.strip() for s in stops):
            raise invalid("stop_sequences: Each stop sequence must contain non-whitespace")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise invalid("metadata: Input should be a valid dictionary")
        for key in metadata:
            if key != "user_id":
                raise invalid(f"metadata.{key}: Extra inputs are not permitted")
    tier = body.get("service_tier")
    if tier is not None and tier not in ("auto", "standard_only"):
        raise invalid("service_tier: Input should be 'auto' or 'standard_only'")
    speed = body.get("speed")
    if speed is not None and speed not in ("standard", "fast"):
        raise invalid("speed: Input should be 'standard' or 'fast'")


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The structured-output schema: `output_config.format`, or the older beta's `output_format`."""
    output_config = body.get("output_config")
    fmt = (output_config.get("format") if isinstance(output_config, dict) else None) or body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    return None


def parse_request(body: Any, *, count_only: bool = False) -> Prompt:
    """Validate a Messages (or count_tokens) body like the real API; raises ApiError."""
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    allowed = COUNT_TOKENS_FIELDS if count_only else MESSAGE_FIELDS
    for key in body:
        if key not in allowed:
            raise invalid(f"{key}: Extra inputs are not permitted")

    model_id = body.get("model")
    if model_id is None:
        raise invalid("model: Field required")
    if not isinstance(model_id, str):
        raise invalid("model: Input should be a valid string")
    model = MODELS.get(model_id)
    if model is None:
        raise ApiError(404, f"model: {model_id}")

    max_tokens = body.get("max_tokens")
    if not count_only:
        if max_tokens is None:
            raise invalid("max_tokens: Field required")
        if type(max_tokens) is not int:
            raise invalid("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise invalid("max_tokens: Input should be greater than or equal to 1")
        if max_tokens > model.max_output_tokens:
            raise invalid(
                f"max_tokens: {max_tokens} > {model.max_output_tokens}, which is the maximum allowed number "
                f"of output tokens for {model_id}"
            )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream: Input should be a valid boolean")
    _check_sampling(body)

    messages = body.get("messages")
    chars, last_user = _check_messages(messages)
    chars += _check_system(body.get("system"))
    tools, tool_chars = _check_tools(body.get("tools"))
    chars += tool_chars
    tool_choice = _check_tool_choice(body.get("tool_choice"), tools)
    thinking = _check_thinking(body.get("thinking"), max_tokens)
    _check_output_config(body.get("output_config"))
    _check_json_format(body.get("output_format"), "output_format")
    _check_context_management(body.get("context_management"))
    _check_cache_control(body.get("cache_control"), "cache_control")
    breakpoints = _count_breakpoints(body)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise invalid(f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
                      f"Found {breakpoints}.")
    if thinking:
        _check_thinking_rules(body, tool_choice)
    if messages[-1]["role"] == "assistant":
        _check_prefill(messages[-1], model)

    user_text = directive_text = ""
    tool_results: list[str] | None = None
    if last_user >= 0:
        content = messages[last_user]["content"]
        if isinstance(content, str):
            user_text = directive_text = content
        else:
            texts = [b["text"] for b in content if b["type"] == "text"]
            results = [_text_of(b.get("content")) for b in content if b["type"] == "tool_result"]
            user_text = " ".join(texts)
            directive_text = " ".join(texts + results) if results else user_text
            tool_results = results or None

    return Prompt(
        model=model_id,
        max_tokens=max_tokens or 0,
        stream=bool(stream),
        thinking=thinking,
        tools=tools,
        tool_choice=tool_choice,
        stop_sequences=body.get("stop_sequences") or [],
        input_tokens=math.ceil(chars / 4) + 3 * len(messages),
        message_count=len(messages),
        user_text=user_text,
        directive_text=directive_text,
        tool_results=tool_results,
        output_schema=_output_schema(body),
        body=body,
        breakpoints=breakpoints,
    )


# --------------------------------------------------------------------------------------------------
# Prompt cache
# --------------------------------------------------------------------------------------------------

CACHE_TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
CACHE_LOOKBACK_BLOCKS = 20
MAX_CACHE_BREAKPOINTS = 4
# The shortest prefix each model caches (Anthropic's prompt-caching docs).
CACHE_MINIMUM_TOKENS = {"claude-opus-4-6": 4096, "claude-sonnet-4-6": 1024, "claude-haiku-4-5": 4096}
CACHE_MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class Position:
    """A block boundary of the prompt: the hash and tokens of everything up to it, and its breakpoint."""

    digest: str
    tokens: int
    cache_control: dict[str, Any] | None


def _unmarked(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def prefix_positions(body: dict[str, Any]) -> list[Position]:
    """Every block of a validated request in render order (tools, system, messages' content).

    Tokens are counted as input_tokens is (characters / 4, 3 per message); the hash covers the model, the
    roles and each block without its cache_control."""
    digest = hashlib.sha256(str(body.get("model")).encode())
    positions: list[Position] = []
    chars = messages = 0

    def add(block: Any, block_chars: int) -> None:
        nonlocal chars
        digest.update(orjson.dumps(_unmarked(block), option=orjson.OPT_SORT_KEYS))
        chars += block_chars
        marker = block.get("cache_control") if isinstance(block, dict) else None
        positions.append(Position(digest.copy().hexdigest(), math.ceil(chars / 4) + 3 * messages, marker))

    for tool in body.get("tools") or ():
        add(tool, len(orjson.dumps(tool)))
    system = body.get("system")
    for block in [{"type": "text", "text": system}] if isinstance(system, str) and system else system or ():
        add(block, len(block.get("text", "")))
    for message in body.get("messages") or ():
        messages += 1
        digest.update(b"\x00" + message["role"].encode())
        content = message["content"]
        if isinstance(content, str):
            add({"type": "text", "text": content}, len(content))
            continue
        for block in content:
            add(block, _check_block(block, "", message["role"]))
    return positions


def _count_breakpoints(body: dict[str, Any]) -> int:
    """Blocks of a validated request that carry cache_control; a top-level one (automatic caching) counts."""
    count = int(body.get("cache_control") is not None)
    blocks = [*(body.get("tools") or ()), *(body["system"] if isinstance(body.get("system"), list) else ())]
    for message in body.get("messages") or ():
        if isinstance(message["content"], list):
            blocks.extend(message["content"])
    return count + sum("cache_control" in block for block in blocks)


def cache_breakpoints(positions: list[Position], top_level: Any) -> list[int]:
    """Indices of the breakpoints; a top-level cache_control is one on the last block."""
    marked = [i for i, position in enumerate(positions) if position.cache_control is not None]
    if top_level is not None and positions and (not marked or marked[-1] != len(positions) - 1):
        marked.append(len(positions) - 1)
    return marked


class PromptCache:
    """(API key, prefix hash) -> (expiry, ttl), the way Anthropic's cache behaves for one organisation."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.entries: dict[tuple[str, str], tuple[float, float, int]] = {}

    def clear(self) -> None:
        self.entries.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [{"key": key[0][-4:], "prefix": key[1][:16], "tokens": tokens, "expires_in": round(expiry - now, 3)}
                for key, (expiry, _, tokens) in self.entries.items() if expiry > now]

    def _alive(self, key: tuple[str, str], now: float) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry[0] > now

    def use(self, api_key: str, prompt: Prompt) -> tuple[int, int] | None:
        """(tokens read, tokens written) for this request, or None if it asks for no caching."""
        body = prompt.body or {}
        if not prompt.breakpoints:  # the common case stays cheap: no hashing
            return None
        positions = prefix_positions(body)
        breakpoints = cache_breakpoints(positions, body.get("cache_control"))
        if not breakpoints:
            return None
        now = self.clock()
        minimum = CACHE_MINIMUM_TOKENS.get(prompt.model, 1024)
        top = body.get("cache_control") if isinstance(body.get("cache_control"), dict) else {}
        def ttl_of(b: int) -> float:
            return CACHE_TTL_SECONDS.get((positions[b].cache_control or top).get("ttl", "5m"), 300.0)

        hit = found_by = -1
        for b in breakpoints:
            for p in range(b, max(b - CACHE_LOOKBACK_BLOCKS, 0) - 1, -1):
                if p <= hit:
                    break
                if positions[p].tokens >= minimum and self._alive((api_key, positions[p].digest), now):
                    hit, found_by = p, b
                    break
        read = positions[hit].tokens if hit >= 0 else 0
        if hit >= 0:  # a read renews the entry, for the longer of its lifetime and the breakpoint's
            _, ttl, tokens = self.entries[(api_key, positions[hit].digest)]
            ttl = max(ttl, ttl_of(found_by))
            self.entries[(api_key, positions[hit].digest)] = (now + ttl, ttl, tokens)
        written = 0
        for b in breakpoints:
            position = positions[b]
            if position.tokens < minimum or b <= hit:
                continue
            self.entries[(api_key, position.digest)] = (now + ttl_of(b), ttl_of(b), position.tokens)
            written = max(written, position.tokens - read)
        if len(self.entries) > CACHE_MAX_ENTRIES:
            self.entries = {k: v for k, v in self.entries.items() if v[0] > now}
        return read, written


# --------------------------------------------------------------------------------------------------
# Reply generation
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    blocks: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any]


@lru_cache(maxsize=128)
def lorem(n: int) -> str:
    return " ".join(itertools.islice(itertools.cycle(LOREM), n))


def example_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "example"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}, "null": None}.get(
        kind, "example"
    )


def example_input(tool: dict[str, Any]) -> dict[str, Any]:
    schema = tool.get("input_schema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return {}
    required = schema.get("required")
    names = required if isinstance(required, list) and required else list(properties)
    return {name: example_value(properties.get(name)) for name in names}


def _client_tools(prompt: Prompt) -> list[dict[str, Any]]:
    return [tool for tool in prompt.tools if tool.get("type") in (None, "custom")]


def _web_search_tool(prompt: Prompt, directives: dict[str, Any]) -> dict[str, Any] | None:
    """The declared web search tool, when this reply is to use it."""
    choice = prompt.tool_choice
    if choice.get("type") == "none":
        return None
    tool = next((t for t in prompt.tools if t.get("type") == WEB_SEARCH_TYPE), None)
    if tool is None:
        return None
    forced = choice.get("type") == "tool" and choice.get("name") == tool.get("name")
    return tool if forced or directives.get("web_search") else None


def _tool_calls(prompt: Prompt, directives: dict[str, Any]) -> list[dict[str, Any]]:
    choice = prompt.tool_choice
    kind = choice.get("type")
    tools = _client_tools(prompt)
    if not tools or kind == "none":
        return []
    if "tools" in directives:
        count = directives["tools"]
    else:
        count = 1 if directives.get("tool") or kind in ("any", "tool") else 0
    if kind in ("any", "tool"):
        count = max(count, 1)
    if choice.get("disable_parallel_tool_use"):
        count = min(count, 1)
    if "call" in directives and kind != "tool":
        chosen = [t for t in tools if t.get("name") == directives["call"]][:1]
    elif kind == "tool":
        named = next((t for t in tools if t.get("name") == choice["name"]), None)
        if named is None:  # a server tool was forced
            return []
        chosen = [named] * count
    else:
        chosen = [tools[i % len(tools)] for i in range(count)]
    calls = []
    for i, tool in enumerate(chosen):
        seed = f"{prompt.message_count}\0{prompt.directive_text}\0{i}\0{tool['name']}".encode()
        tool_id = "toolu_01" + hashlib.blake2b(seed, digest_size=11).hexdigest()
        calls.append({"type": "tool_use", "id": tool_id, "name": tool["name"], "input": example_input(tool)})
    return calls


def _reply_text(prompt: Prompt, directives: dict[str, Any]) -> str:
    if "words" in directives:
        return lorem(min(directives["words"], prompt.max_tokens))
    if directives.get("refusal"):
        return REFUSAL_TEXT
    if prompt.output_schema is not None:
        schema = prompt.output_schema
        value = example_input({"input_schema": schema}) if schema.get("properties") else example_value(schema)
        return orjson.dumps(value).decode()
    if prompt.tool_results is not None:
        return "Tool results received: " + "; ".join(prompt.tool_results)
    said = _said(prompt)
    return f"Hello from the fake upstream. You said: {said}" if said else "Hello from the fake upstream."


def _said(prompt: Prompt) -> str:
    """The first 60 characters of the last user text, directive tags removed and whitespace collapsed."""
    said = prompt.user_text
    if "[[fake:" in said:
        said = DIRECTIVE_TAG_RE.sub(" ", said)
    return " ".join(said.split())[:60].rstrip()


def _web_search_blocks(prompt: Prompt, tool: dict[str, Any]) -> list[dict[str, Any]]:
    """One search and an answer citing it, in Anthropic's shapes; results on the allowed domain if any."""
    query = _said(prompt) or "fake search"
    digest = hashlib.blake2b(f"{prompt.message_count}\0{query}".encode(), digest_size=11).hexdigest()
    domains = tool.get("allowed_domains") or ["example.com"]
    results = [
        {
            "type": "web_search_result",
            "url": f"https://{domains[0]}/fake-search/{n}",
            "title": f"Fake result {n} for {query}",
            "encrypted_content": base64.b64encode(f"result {n} {digest}".encode()).decode(),
            "page_age": "January 1, 2026",
        }
        for n in (1, 2)
    ]
    cited = f"The first result says {query} is well documented."
    citation = {
        "type": "web_search_result_location",
        "url": results[0]["url"],
        "title": results[0]["title"],
        "encrypted_index": base64.b64encode(f"index 1 {digest}".encode()).decode(),
        "cited_text": f"Everything about {query}.",
    }
    return [
        {"type": "server_tool_use", "id": "srvtoolu_01" + digest, "name": "web_search", "input": {"query": query}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01" + digest, "content": results},
        {"type": "text", "text": "Here is what I found. "},
        {"type": "text", "text": cited, "citations": [citation]},
    ]


def _output_words(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for block in blocks:
        kind = block["type"]
        if kind == "text":
            total += len(block["text"].split())
        elif kind == "thinking":
            total += THINKING_WORDS
        elif kind != "web_search_tool_result":  # search results are input, not generated
            total += 1 + len(orjson.dumps(block["input"]).split())
    return max(1, total)


def build_reply(prompt: Prompt, directives: dict[str, Any]) -> Reply:
    blocks: list[dict[str, Any]] = []
    if prompt.thinking:
        blocks.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE})
    stop_reason, stop_sequence = "end_turn", None

    calls = _tool_calls(prompt, directives)
    search = None if calls else _web_search_tool(prompt, directives)
    if search is not None:
        blocks.extend(_web_search_blocks(prompt, search))
    elif calls:
        if directives.get("text_then_tool"):
            names = ", ".join(dict.fromkeys(c["name"] for c in calls))
            blocks.append({"type": "text", "text": f"I'll use the {names} tool."})
        blocks.extend(calls)
        stop_reason = "tool_use"
    else:
        text = _reply_text(prompt, directives)
        budget = prompt.max_tokens - (THINKING_WORDS if prompt.thinking else 0)
        words = text.split()
        if len(words) > budget or directives.get("words", 0) > budget:
            text = " ".join(words[: max(budget, 0)])
            stop_reason = "max_tokens"
        elif directives.get("refusal"):
            stop_reason = "refusal"
        elif directives.get("stop_sequence") and prompt.stop_sequences:
            stop_reason, stop_sequence = "stop_sequence", prompt.stop_sequences[0]
        if text:
            blocks.append({"type": "text", "text": text})

    cached = directives.get("cache") or "cache_read" in directives or "cache_write" in directives
    usage = {
        "input_tokens": prompt.input_tokens,
        "cache_creation_input_tokens": directives.get("cache_write", 100) if cached else 0,
        "cache_read_input_tokens": directives.get("cache_read", 200) if cached else 0,
        "output_tokens": _output_words(blocks),
    }
    if search is not None:
        usage["server_tool_use"] = {"web_search_requests": 1}
    return Reply(blocks, stop_reason, stop_sequence, usage)


def new_message_id() -> str:
    return "msg_01" + os.urandom(11).hex()


# --------------------------------------------------------------------------------------------------
# Server-sent events
# --------------------------------------------------------------------------------------------------

TEXT_CHUNK_RE = re.compile(r"\s+|(?:\S+\s*){1,3}")
JSON_FRAGMENT_CHARS = 8


def sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


PING_EVENT = sse({"type": "ping"})
MESSAGE_STOP_EVENT = sse({"type": "message_stop"})
MIDSTREAM_ERROR_EVENT = sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


@lru_cache(maxsize=64)
def block_stop_event(index: int) -> bytes:
    return sse({"type": "content_block_stop", "index": index})


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return sse({"type": "content_block_delta", "index": index, "delta": delta})


def _message_start(message_id: str, model: str, usage: dict[str, Any]) -> bytes:
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**{k: v for k, v in usage.items() if k != "server_tool_use"}, "output_tokens": 1},
    }
    return sse({"type": "message_start", "message": message})


def stream_events(message_id: str, prompt: Prompt, reply: Reply) -> Iterator[bytes]:
    yield _message_start(message_id, prompt.model, reply.usage)
    yield PING_EVENT
    for index, block in enumerate(reply.blocks):
        kind = block["type"]
        if kind == "text":
            start = {"type": "text", "text": ""}
            if "citations" in block:
                start["citations"] = []
            yield sse({"type": "content_block_start", "index": index, "content_block": start})
            for citation in block.get("citations", ()):
                yield _delta(index, {"type": "citations_delta", "citation": citation})
            for piece in TEXT_CHUNK_RE.findall(block["text"]):
                yield _delta(index, {"type": "text_delta", "text": piece})
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            yield sse({"type": "content_block_start", "index": index, "content_block": start})
            for piece in TEXT_CHUNK_RE.findall(block["thinking"]):
                yield _delta(index, {"type": "thinking_delta", "thinking": piece})
            yield _delta(index, {"type": "signature_delta", "signature": block["signature"]})
        elif kind == "web_search_tool_result":
            yield sse({"type": "content_block_start", "index": index, "content_block": block})
        else:
            start = {"type": kind, "id": block["id"], "name": block["name"], "input": {}}
            yield sse({"type": "content_block_start", "index": index, "content_block": start})
            # Like the real API, an empty input streams as a single empty fragment, not "{}".
            partial = orjson.dumps(block["input"]).decode() if block["input"] else ""
            pieces = [partial[i : i + JSON_FRAGMENT_CHARS] for i in range(0, len(partial), JSON_FRAGMENT_CHARS)]
            for piece in pieces or [""]:
                yield _delta(index, {"type": "input_json_delta", "partial_json": piece})
        yield block_stop_event(index)
    yield sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
            # Cumulative, all four counters (and server tool counts), as the real API sends today:
            # clients (LangChain) read the input counts from here rather than from message_start.
            "usage": reply.usage,
        }
    )
    yield MESSAGE_STOP_EVENT


def midstream_error_events(message_id: str, prompt: Prompt, reply: Reply) -> Iterator[bytes]:
    yield _message_start(message_id, prompt.model, reply.usage)
    yield PING_EVENT
    yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    for piece in MIDSTREAM_DELTAS:
        yield _delta(0, {"type": "text_delta", "text": piece})
    yield MIDSTREAM_ERROR_EVENT


# --------------------------------------------------------------------------------------------------
# HTTP handlers
# --------------------------------------------------------------------------------------------------

Entry = dict[str, Any]


def _models_payload() -> dict[str, Any]:
    data = [
        {"type": "model", "id": m.id, "display_name": m.display_name, "created_at": m.created_at}
        for m in sorted(MODELS.values(), key=lambda m: m.created_at, reverse=True)
    ]
    return {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}


MODELS_BODY = orjson.dumps(_models_payload())
MODEL_BODIES = {m["id"]: orjson.dumps(m) for m in _models_payload()["data"]}


def json_response(body: bytes, request_id: str | None = None) -> web.Response:
    headers = {"request-id": request_id or new_request_id(), "Content-Type": "application/json"}
    return web.Response(body=body, headers=headers)


def _finish(entry: Entry | None, outcome: str, status: int) -> None:
    if entry is not None:
        entry["outcome"] = outcome
        entry["status"] = status


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class FakeAnthropic(RequestLogControl):
    """Handlers plus the state they share: the request log and the expected API key."""

    def __init__(self, *, log_requests: bool = True, api_key: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log_requests = log_requests
        self.api_key = api_key
        self.requests: deque[Entry] = deque(maxlen=REQUEST_LOG_SIZE)
        self._seq = itertools.count(1)
        self.cache = PromptCache(clock)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _record(self, request: web.Request) -> Entry | None:
        if not self.log_requests:
            return None
        headers = request.headers
        entry = {
            "seq": next(self._seq),
            "path": request.path,
            "body": None,
            "headers": {
                "anthropic-version": headers.get("anthropic-version"),
                "anthropic-beta": headers.get("anthropic-beta"),
                "x-api-key": bool(headers.get("x-api-key")),
                "authorization": bool(headers.get("authorization")),
                "traceparent": headers.get("traceparent"),
            },
            "stream": False,
            "outcome": "in_progress",
            "status": None,
        }
        self.requests.append(entry)
        return entry

    def _authorize(self, request: web.Request) -> str:
        """The request's API key, once it is acceptable."""
        headers = request.headers
        key = headers.get("x-api-key")
        if not key:
            authorization = headers.get("authorization", "")
            if authorization[:7].lower() == "bearer ":
                key = authorization[7:].strip()
        if not key:
            raise ApiError(401, "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            raise ApiError(401, "invalid x-api-key")
        if not headers.get("anthropic-version"):
            raise ApiError(400, "anthropic-version: header is required")
        return key

    async def _read_json(self, request: web.Request, entry: Entry | None) -> Any:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "Request exceeds the maximum allowed number of bytes.") from None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if entry is not None:
                entry["body"] = raw.decode(errors="replace")
            raise invalid(
                "There was an error parsing the body of your request. Please check that the body is valid JSON."
            ) from None
        if entry is not None:
            entry["body"] = body
            if isinstance(body, dict):
                entry["stream"] = body.get("stream") is True
        return body

    @staticmethod
    def _reject(exc: ApiError, entry: Entry | None, request_id: str, outcome: str = "rejected") -> web.Response:
        _finish(entry, outcome, exc.status)
        return error_response(exc, request_id)

    # -- API -----------------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        entry = self._record(request)
        request_id = new_request_id()
        try:
            api_key = self._authorize(request)
            prompt = parse_request(await self._read_json(request, entry))
            directives = parse_directives(prompt.directive_text)
        except ApiError as exc:
            return self._reject(exc, entry, request_id)

        if directives:
            if directives.get("delay_ms"):
                await asyncio.sleep(directives["delay_ms"] / 1000)
                if _client_gone(request):
                    _finish(entry, "aborted", 499)
                    return web.Response(status=499)
            if "error" in directives:
                status = directives["error"]
                exc = ApiError(status, DIRECTIVE_ERROR_MESSAGES[status], retry_after=directives.get("retry_after"))
                return self._reject(exc, entry, request_id, outcome="error")
            if directives.get("midstream_error") and not prompt.stream:
                return self._reject(ApiError(529, "Overloaded"), entry, request_id, outcome="error")

        reply = build_reply(prompt, directives)
        cached = None if _CACHE_DIRECTIVES & directives.keys() else self.cache.use(api_key, prompt)
        if cached is not None:
            read, written = cached
            reply.usage.update(input_tokens=max(prompt.input_tokens - read - written, 0),
                               cache_creation_input_tokens=written, cache_read_input_tokens=read)
        if prompt.stream:
            return await self._stream(request, request_id, prompt, reply, directives, entry)
        message = {
            "id": new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": prompt.model,
            "content": reply.blocks,
            "stop_reason": reply.stop_reason,
            "stop_sequence": reply.stop_sequence,
            "usage": reply.usage,
        }
        _finish(entry, "completed", 200)
        return json_response(orjson.dumps(message), request_id)

    async def _stream(
        self,
        request: web.Request,
        request_id: str,
        prompt: Prompt,
        reply: Reply,
        directives: dict[str, Any],
        entry: Entry | None,
    ) -> web.StreamResponse:
        failing = bool(directives.get("midstream_error"))
        events = (midstream_error_events if failing else stream_events)(new_message_id(), prompt, reply)
        response = web.StreamResponse(
            headers={"request-id": request_id, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
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

    async def count_tokens(self, request: web.Request) -> web.Response:
        entry = self._record(request)
        request_id = new_request_id()
        try:
            self._authorize(request)
            prompt = parse_request(await self._read_json(request, entry), count_only=True)
        except ApiError as exc:
            return self._reject(exc, entry, request_id)
        _finish(entry, "completed", 200)
        return json_response(orjson.dumps({"input_tokens": prompt.input_tokens}), request_id)

    async def list_models(self, request: web.Request) -> web.Response:
        return self._model_response(request, MODELS_BODY)

    async def get_model(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        body = MODEL_BODIES.get(model_id)
        return self._model_response(request, body, missing=model_id)

    def _model_response(self, request: web.Request, body: bytes | None, missing: str = "") -> web.Response:
        entry = self._record(request)
        request_id = new_request_id()
        try:
            self._authorize(request)
            if body is None:
                raise ApiError(404, f"model: {missing}")
        except ApiError as exc:
            return self._reject(exc, entry, request_id)
        _finish(entry, "completed", 200)
        return json_response(body, request_id)

    async def not_found(self, request: web.Request) -> web.Response:
        return error_response(ApiError(404, "Not Found"), new_request_id())


    async def cache_state(self, request: web.Request) -> web.Response:
        return web.json_response({"entries": self.cache.snapshot()})

    async def cache_clear(self, request: web.Request) -> web.Response:
        self.cache.clear()
        return web.json_response({"ok": True})


_CACHE_DIRECTIVES = frozenset({"cache", "cache_read", "cache_write"})
FAKE_KEY = web.AppKey("fake_anthropic", FakeAnthropic)


def build_app(*, log_requests: bool = True, api_key: str | None = None,
              clock: Callable[[], float] = time.monotonic) -> web.Application:
    """The fake as an aiohttp app. `api_key` defaults to $FAKE_ANTHROPIC_API_KEY (unset: any key works);
    `clock` (seconds) times the prompt cache's entries."""
    if api_key is None:
        api_key = os.environ.get("FAKE_ANTHROPIC_API_KEY") or None
    fake = FakeAnthropic(log_requests=log_requests, api_key=api_key, clock=clock)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[FAKE_KEY] = fake
    app.router.add_post("/v1/messages", fake.messages)
    app.router.add_post("/v1/messages/count_tokens", fake.count_tokens)
    app.router.add_get("/v1/models", fake.list_models)
    app.router.add_get("/v1/models/{model_id}", fake.get_model)
    fake.add_control_routes(app)
    app.router.add_get("/_fake/cache", fake.cache_state)
    app.router.add_delete("/_fake/cache", fake.cache_clear)
    app.router.add_route("*", "/{tail:.*}", fake.not_found)
    return app


async def start(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> tuple[web.AppRunner, int]:
    """Serve `build_app(**kwargs)` on the running loop; returns (runner, bound port). Stop: runner.cleanup()."""
    return await serving.start(build_app, host, port, **kwargs)


def main(argv: list[str] | None = None) -> None:
    serving.main(build_app, name="fake-anthropic", module="fakes.anthropic",
                 description=__doc__.splitlines()[0], default_port=8100, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
