"""Anthropic Message -> GenerateContentResponse, and Google's error object."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core import GatewayError, ResponseContext, Usage

from .decode import _thought_signature

_FINISH_REASONS = {
    "max_tokens": "MAX_TOKENS",
    "model_context_window_exceeded": "MAX_TOKENS",
    "refusal": "SAFETY",
}
_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}


def encode_response(message: dict, ctx: ResponseContext) -> dict:
    """Render an Anthropic Message dict as a GenerateContentResponse."""
    json_tool = ctx.options.get("json_tool")
    include_thoughts = bool(ctx.options.get("include_thoughts"))
    parts: list[dict] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            if block.get("text"):
                parts.append({"text": block["text"]})
        elif kind == "tool_use":
            args = block.get("input") or {}
            if json_tool is not None and block.get("name") == json_tool:
                parts.append({"text": orjson.dumps(args).decode()})
            else:
                parts.append({"functionCall": {"id": block.get("id"), "name": block.get("name"), "args": args}})
        elif kind == "thinking" or kind == "redacted_thinking":
            signature = _thought_signature(block)
            if signature is not None:
                text = (block.get("thinking") or "") if include_thoughts else ""
                parts.append({"text": text, "thought": True, "thoughtSignature": signature})
    usage = Usage()
    usage.update(message.get("usage"))
    candidate = {
        "content": {"role": "model", "parts": parts or [{"text": ""}]},
        "finishReason": _finish_reason(message.get("stop_reason")),
        "index": 0,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": _usage_metadata(usage),
        "modelVersion": ctx.model,
        "responseId": ctx.request_id,
    }


def error_body(error: GatewayError) -> dict:
    """Google's error object: the HTTP status as `code` and its canonical gRPC status name."""
    status = _STATUSES.get(error.status)
    if status is None:
        status = "INTERNAL" if error.status >= 500 else "FAILED_PRECONDITION"
    return {"error": {"code": error.status, "message": error.message, "status": status}}


def _finish_reason(stop_reason: Any) -> str:
    return _FINISH_REASONS.get(stop_reason, "STOP") if isinstance(stop_reason, str) else "STOP"


def _usage_metadata(usage: Usage) -> dict:
    prompt_tokens = usage.prompt_tokens
    metadata = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": prompt_tokens + usage.output_tokens,
    }
    if usage.cache_read_input_tokens:
        metadata["cachedContentTokenCount"] = usage.cache_read_input_tokens
    return metadata
