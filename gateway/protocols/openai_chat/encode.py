"""Anthropic Message -> `chat.completion`, and the OpenAI error object."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core import GatewayError, ResponseContext, Usage
from gateway.protocols._common.tools import custom_input

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


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
