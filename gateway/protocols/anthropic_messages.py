"""Anthropic Messages codec: `POST /v1/messages` (and `/anthropic/v1/messages`) in its own wire format.

The internal representation *is* a Messages body, so this codec checks the shape our own code relies
on and otherwise passes the request through untouched: content blocks, `cache_control` breakpoints,
documents, citations, thinking blocks and their signatures, `tool_choice` and `metadata` reach the
upstream exactly as sent, and the upstream's answer comes back exactly as it gave it, with `model`
shown as the catalog name. Deeper validation (block fields, thinking rules) is the upstream's: its
400s come back in this protocol's error shape. Pure module: no I/O, clock or randomness.

- Fields: every top-level field but `model` and `stream` is forwarded, so fields the API gains
  (`output_config`, `container`, `inference_geo`, ...) work without a gateway release; an unknown
  one gets the upstream's own 400. The fields the gateway reads are type-checked here.
- `anthropic-beta` flags reach the upstream as sent unless the operator blocks one (the API checks);
  a provider that is not Anthropic drops them (it has no such header).
- `max_tokens` is required, as it is upstream (the OpenAI codecs fill in the catalog default instead).
- Nothing is stored server-side: native clients send their whole history with every request.
- Streams keep Anthropic's grammar: each event is relayed with its `event:` line equal to its `type`,
  in upstream order (contiguous block indices, `message_delta` then `message_stop`; `ping` kept). A
  failure after the 200 is an `event: error` with Anthropic's error object, as the API sends it.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core import GatewayError, InternalRequest, ResponseContext, Usage, end_user_value, invalid
from gateway.protocols._common.stream import StreamEncoderBase

_ROLES = ("user", "assistant")

# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


# ---------------------------------------------------------------------------------------------------
# Request
# ---------------------------------------------------------------------------------------------------


def decode_request(body: Any, *, request_id: str | None = None, betas: tuple[str, ...] = ()) -> InternalRequest:
    """Check a Messages body and pass it through; `betas` are the request's beta flags."""
    body = _checked(body)
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise invalid("max_tokens: Field required", "max_tokens")
    if not _is_int(max_tokens) or max_tokens < 1:
        raise invalid("max_tokens: Input should be an integer greater than or equal to 1", "max_tokens")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream: Input should be a valid boolean", "stream")
    _check_sampling(body)
    for name in ("metadata", "tool_choice", "thinking"):
        if name in body and not isinstance(body[name], dict):
            raise invalid(f"{name}: Input should be a valid dictionary", name)
    stop = body.get("stop_sequences")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise invalid("stop_sequences: Input should be a valid list of strings", "stop_sequences")
    params = {key: value for key, value in body.items() if key not in ("model", "stream")}
    end_user = end_user_value((body.get("metadata") or {}).get("user_id"), "metadata.user_id")
    return InternalRequest(model=body["model"], params=params, stream=stream, options={"store": False},
                           end_user=end_user,
                           betas=betas)


def decode_count_request(body: Any, *, betas: tuple[str, ...] = ()) -> InternalRequest:
    """A `count_tokens` body: the fields of a Messages request that contribute to its input."""
    body = _checked(body)
    params = {key: value for key, value in body.items() if key != "model"}
    return InternalRequest(model=body["model"], params=params, betas=betas)


def _checked(body: Any) -> dict:
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise invalid("model: Field required", "model")
    if not isinstance(model, str) or not model:
        raise invalid("model: Input should be a non-empty string", "model")
    _check_messages(body.get("messages"))
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise invalid("system: Input should be a valid string or a list of text blocks", "system")
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise invalid("tools: Input should be a valid list of tool objects", "tools")
    return body


def _check_messages(messages: Any) -> None:
    """The shape the gateway itself reads (token estimate, history); block details are the upstream's."""
    if messages is None:
        raise invalid("messages: Field required", "messages")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list", "messages")
    if not messages:
        raise invalid("messages: at least one message is required", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages.{i}: Input should be a valid dictionary", f"messages.{i}")
        if message.get("role") not in _ROLES:
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'", f"messages.{i}.role")
        content = message.get("content")
        if not isinstance(content, str) and not (
            isinstance(content, list) and all(isinstance(block, dict) for block in content)
        ):
            raise invalid(f"messages.{i}.content: Input should be a valid string or list of content blocks",
                          f"messages.{i}.content")


def _check_sampling(body: dict) -> None:
    for name, low, high in (("temperature", 0, 1), ("top_p", 0, 1)):
        value = body.get(name)
        if value is not None and (not _is_number(value) or not low <= value <= high):
            raise invalid(f"{name}: Input should be a number between {low} and {high}", name)
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise invalid("top_k: Input should be a non-negative integer", "top_k")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------------
# Response and errors
# ---------------------------------------------------------------------------------------------------


def encode_response(message: dict, ctx: ResponseContext) -> dict:
    """The upstream's Message as it is, named by the catalog model the client asked for."""
    return {**message, "model": ctx.model}


def error_status(error: GatewayError) -> int:
    """The status an Anthropic client expects: an overloaded upstream is Anthropic's own 529."""
    return 529 if error.code == "upstream_overloaded" else error.status


def error_body(error: GatewayError, request_id: str | None = None) -> dict:
    """Anthropic's error object (`request_id` as the API sends it; absent inside a stream)."""
    if error.code == "insufficient_quota":
        kind = "billing_error"
    else:
        status = error_status(error)
        kind = _ERROR_TYPES.get(status, "api_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": error.message}}
    if request_id:
        body["request_id"] = request_id
    return body


# ---------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------


class StreamEncoder(StreamEncoderBase):
    """Relays Anthropic stream events as Anthropic SSE, renaming the model in `message_start`."""

    __slots__ = ("_model",)

    def __init__(self, ctx: ResponseContext) -> None:
        super().__init__()
        self._model = ctx.model

    def on_message_start(self, event: dict) -> bytes:
        return _sse("message_start", {**event, "message": {**(event.get("message") or {}), "model": self._model}})

    def on_message_stop(self, event: dict) -> bytes:
        self._closed = True
        return _sse("message_stop", event)

    def on_other(self, event: dict) -> bytes:
        # Every event, ping and new types too, as the upstream sent it (`_sse` inlined: the per-event path).
        return b"event: " + str(event.get("type")).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    def finish(self, usage: Usage) -> bytes:
        return b""  # message_stop, relayed by feed, is the end of an Anthropic stream

    def fail(self, error: GatewayError) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        return _sse("error", error_body(error))


def _sse(kind: Any, event: dict) -> bytes:
    return b"event: " + str(kind).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
