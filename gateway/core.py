"""The gateway's internal representation, shared by every codec and provider.

The internal request is an Anthropic Messages body: Claude is the main upstream and its content blocks
are the richest, so every ingress protocol translates *into* it and every provider answers with
Anthropic-shaped messages (non-streaming) or Anthropic stream events (streaming), as plain dicts.

Pure module: no I/O, no Django imports.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from common import errors

# Fields of a Messages request body a provider may forward. Anything else is a translation bug.
ANTHROPIC_REQUEST_FIELDS = frozenset(
    {
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "service_tier",
    }
)

MIN_THINKING_BUDGET = 1024
WEB_SEARCH_TOOL_TYPE = "web_search_20250305"  # Anthropic's server web search, which codecs may declare


class GatewayError(Exception):
    """An error that ends a request with a client-visible message.

    `status` is the HTTP status; `code` and `param` follow OpenAI's error object. Each codec renders
    it in its own protocol's error shape, so raise it anywhere on the request path.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type
        self.retry_after = retry_after
        self.headers = headers or {}  # extra response headers, e.g. x-ratelimit-* on a 429

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.message!r}, code={self.code!r}, param={self.param!r})"


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, type="invalid_request_error")


# How deep JSON may nest in a request (objects and arrays; 1 for a flat object). The codecs, the SDK's
# json.dumps and the schema walks recurse, so a body nested ~1,000 deep was a RecursionError (a 500);
# real tool schemas and arguments stay well under 20 levels.
MAX_JSON_DEPTH = 64


_CONTAINERS = frozenset((dict, list))  # what orjson.loads makes of objects and arrays


def nesting_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` (parsed JSON) nests objects and arrays more than `limit` deep.

    Level by level, without recursion: one visit per item and nothing per string byte. Measured: 14 µs
    for a 3 KB chat request with tools, 1.3 ms for 4,000 messages (1.2 MB; parsing them takes 29 ms), 2.1
    ms for 100,000 embedding inputs (2.6 MB; parsing 6.3 ms), 0.01 ms for a 20 MB image. Exact `type`
    checks, not isinstance: 4x faster, and orjson only makes plain dicts and lists."""
    level = [value] if type(value) in _CONTAINERS else []
    for _ in range(limit):
        level = [child for node in level for child in (node.values() if type(node) is dict else node)
                 if type(child) in _CONTAINERS]
        if not level:
            return False
    return True


def depth_checked(value: Any, param: str | None = None) -> Any:
    """`value`, or a 400 when it nests more than MAX_JSON_DEPTH deep."""
    if nesting_exceeds(value):
        raise invalid(f"The JSON {f'in {param!r} ' if param else ''}nests more than {MAX_JSON_DEPTH} levels deep.",
                      param)
    return value


def internal_error() -> GatewayError:
    """What the client sees of a gateway bug (the details go to the log)."""
    return GatewayError(500, "The gateway had an internal error. It has been logged.", type="server_error")


def protocol_error(error: errors.AppError) -> GatewayError:
    """A domain app's refusal (common.errors) as the protocol error every API renders: the one place the
    apps' exceptions become the gateway's."""
    return GatewayError(error.status, error.message, code=error.code, param=error.param, type=error.type,
                        retry_after=error.retry_after)


def database_unavailable() -> GatewayError:
    """What a request that needs the database sees while it is unreachable (the rest keeps working)."""
    return protocol_error(errors.database_unavailable())


@dataclass(slots=True)
class InternalRequest:
    """One model call, as decoded by an ingress codec.

    `params` is an Anthropic Messages body without `model` and `stream`; `max_tokens` may be absent
    (the catalog supplies the model's default, see `apply_model_limits`). `options` carries codec-private
    settings from the request side to the response side (e.g. OpenAI `stream_options.include_usage`).
    """

    model: str
    params: dict[str, Any]
    stream: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    betas: tuple[str, ...] = ()  # Anthropic beta flags for the upstream call (native requests only)
    thread: str | None = None  # routing affinity (gateway.affinity), set by the pipeline, never by a codec
    # Attribution, stored on the usage row: the client's end user (OpenAI `user` / `safety_identifier`,
    # Anthropic `metadata.user_id`) and tags (Gemini `labels`; the AH-Tags header is added by the pipeline).
    end_user: str = ""
    tags: tuple[str, ...] = ()


# --- End users and tags ------------------------------------------------------------------------------
# Tags become rollup rows (one per tag and day, key and model), so they are bounded in number, length and
# charset; no tag holds a comma, so the usage row's comma-joined form is unambiguous.

END_USER_MAX = 256
MAX_TAGS = 16
TAG_MAX = 128  # a Gemini label key:value is up to 63 + 1 + 63
TAG_CHARS = "letters, digits and _ . : / = @ + -"
_TAG = re.compile(r"[A-Za-z0-9_.:/=@+-]{1,128}")


def end_user_value(value: Any, param: str, max_length: int = END_USER_MAX) -> str:
    """A request's end-user id at `param`: a string of at most `max_length` characters ("" when absent)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(f"Invalid type for '{param}': expected a string, but got {type(value).__name__}.", param)
    if len(value) > max_length:
        raise invalid(f"Invalid '{param}': string too long. Expected a string with maximum length {max_length}, "
                      f"but got a string with length {len(value)} instead.", param)
    return value


def openai_end_user(body: dict) -> str:
    """OpenAI's end-user id: `safety_identifier` (its replacement, at most 64 characters) wins over `user`."""
    return (end_user_value(body.get("safety_identifier"), "safety_identifier", 64)
            or end_user_value(body.get("user"), "user"))


def is_tag(value: str) -> bool:
    return _TAG.fullmatch(value) is not None


def parse_tags_header(value: str | None) -> tuple[str, ...]:
    """The `AH-Tags` header: comma-separated tags, at most MAX_TAGS, each 1-TAG_MAX characters of TAG_CHARS."""
    if value is None:
        return ()
    tags = [tag.strip() for tag in value.split(",")]
    bad = next((tag for tag in tags if not is_tag(tag)), None)
    if bad is not None or len(tags) > MAX_TAGS:
        raise invalid(f"The AH-Tags header must be a comma-separated list of at most {MAX_TAGS} tags, each 1 to "
                      f"{TAG_MAX} {TAG_CHARS}; "
                      + (f"{bad[:80]!r} is not one." if bad is not None else f"got {len(tags)} tags."), "AH-Tags")
    return tuple(dict.fromkeys(tags))


def merge_tags(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """Tags of several sources, each once in the order first seen; at most MAX_TAGS in all."""
    tags = tuple(dict.fromkeys(tag for group in groups for tag in group))
    if len(tags) > MAX_TAGS:
        raise invalid(f"A request may carry at most {MAX_TAGS} tags (AH-Tags and labels together), got {len(tags)}.",
                      "AH-Tags")
    return tags


@dataclass(slots=True)
class ResponseContext:
    """What a codec needs besides the upstream answer to render a response."""

    request_id: str
    created: int  # unix seconds
    model: str  # the model name shown to the client
    options: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None  # the stored conversation this answer belongs to


@dataclass(slots=True)
class Usage:
    """Token counts exactly as the upstream reported them (Anthropic's four counters), and the web
    searches its server tool ran (`server_tool_use.web_search_requests`, billed per search)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    web_search_requests: int = 0

    def update(self, reported: dict[str, Any] | None) -> None:
        """Take the latest value of each counter present.

        Anthropic's `message_delta.usage` is cumulative, so later values replace earlier ones and are
        never added (summing them inflated bills in other gateways).
        """
        if not reported:
            return
        for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            value = reported.get(name)
            if isinstance(value, int) and value >= 0:
                setattr(self, name, value)
        server_tools = reported.get("server_tool_use")
        searches = server_tools.get("web_search_requests") if isinstance(server_tools, dict) else None
        if isinstance(searches, int) and searches >= 0:
            self.web_search_requests = searches

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class MessageAccumulator:
    """Rebuilds the final Anthropic message content from stream events (to store a streamed turn).

    Keeps what a replay needs: text with its citations, tool_use and server_tool_use with their parsed
    input, server tool results, thinking with its signature (and redacted thinking), in block order.
    """

    __slots__ = ("blocks", "_json")

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "content_block_start":
            index = event.get("index")
            self.blocks[index] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            block = self.blocks.get(event.get("index"))
            delta = event.get("delta") or {}
            if block is None:
                return
            dtype = delta.get("type")
            if dtype == "text_delta":
                block["text"] = block.get("text", "") + (delta.get("text") or "")
            elif dtype == "input_json_delta":
                self._json.setdefault(event.get("index"), []).append(delta.get("partial_json") or "")
            elif dtype == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + (delta.get("thinking") or "")
            elif dtype == "signature_delta":
                block["signature"] = delta.get("signature") or ""
            elif dtype == "citations_delta" and delta.get("citation"):
                block["citations"] = [*(block.get("citations") or ()), delta["citation"]]

    def content(self) -> list[dict[str, Any]]:
        out = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            if block.get("type") in ("tool_use", "server_tool_use") and index in self._json:
                text = "".join(self._json[index])
                try:
                    block["input"] = json.loads(text) if text else {}
                except ValueError:
                    block["input"] = {}
            out.append(block)
        return out


def estimate_tokens(text_length: int) -> int:
    """Rough token count for text the upstream generated but never reported (a stream cut short)."""
    return math.ceil(text_length / 4)


IMAGE_TOKENS_ESTIMATE = 1600  # Anthropic's cost of a full-size image; documents are counted the same way


def estimate_input_tokens(params: dict[str, Any]) -> int:
    """A quick upper-ish estimate of a request's input tokens, to reserve budget and TPM before the call.

    Counts the text of system, messages and tools at 4 characters a token; base64 payloads (images,
    PDFs) count a fixed amount each instead of their encoded length.
    """
    chars, media = 0, 0
    stack: list[Any] = [params.get("system"), params.get("messages"), params.get("tools")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if item.get("type") == "base64" and "data" in item:
                media += 1
                continue
            stack.extend(item.values())
    return estimate_tokens(chars) + media * IMAGE_TOKENS_ESTIMATE


def apply_model_limits(params: dict[str, Any], *, default_max_tokens: int, max_output_tokens: int) -> None:
    """Fill in and check `max_tokens` (and the thinking budget) against the catalog entry, in place.

    Anthropic requires `max_tokens`; OpenAI clients usually omit it, so the model's default applies.
    With thinking on, Anthropic requires `budget_tokens < max_tokens`: a default `max_tokens` makes room
    for the budget on top of the default answer length; an explicit one that is too small shrinks the
    budget, and one that cannot hold the minimum budget is a 400 naming the field.
    """
    thinking = params.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) and thinking.get("type") == "enabled" else None
    if "max_tokens" not in params:
        wanted = default_max_tokens + (budget or 0)
        params["max_tokens"] = min(wanted, max_output_tokens)
    elif params["max_tokens"] > max_output_tokens:
        raise invalid(
            f"max_tokens is too large: {params['max_tokens']}. This model supports at most "
            f"{max_output_tokens} output tokens.",
            "max_tokens",
        )
    if budget is not None and budget >= params["max_tokens"]:
        if params["max_tokens"] <= MIN_THINKING_BUDGET:
            raise invalid(
                f"max_tokens must be greater than {MIN_THINKING_BUDGET} when reasoning is enabled.",
                "max_tokens",
            )
        thinking["budget_tokens"] = params["max_tokens"] - 1
