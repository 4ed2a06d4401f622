"""Anthropic stream events -> `chat.completion.chunk` SSE lines."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core import GatewayError, ResponseContext, Usage
from gateway.protocols._common.stream import StreamEncoderBase

from .encode import _completion_id, _finish_reason, _usage_body, error_body


# Everything after the delta, per finish_reason: chunks are assembled from pre-serialised bytes so
# that each token costs one small orjson.dumps of the delta.
_CHOICE_ENDINGS = {
    reason: b',"logprobs":null,"finish_reason":' + orjson.dumps(reason) + b"}]"
    for reason in (None, "stop", "length", "tool_calls", "content_filter")
}
_DONE = b"data: [DONE]\n\n"


class _OpenToolCall:
    """A tool_use block between its start and stop; `index` is None for the json_schema tool."""

    __slots__ = ("index", "has_arguments")

    def __init__(self, index: int | None) -> None:
        self.index = index
        self.has_arguments = False


class StreamEncoder(StreamEncoderBase):
    """Turns one upstream answer's Anthropic stream events into OpenAI `chat.completion.chunk` SSE bytes
    (b"" for ping and unknown events)."""

    __slots__ = ("_ctx", "_json_tool", "_include_usage", "_head", "_end", "_open_calls", "_tool_count")

    def __init__(self, ctx: ResponseContext) -> None:
        super().__init__()
        self._ctx = ctx
        self._json_tool = ctx.options.get("json_tool")
        self._include_usage = bool(ctx.options.get("include_usage"))
        self._head = b"".join(
            (
                b'data: {"id":',
                orjson.dumps(_completion_id(ctx)),
                b',"object":"chat.completion.chunk","created":',
                orjson.dumps(ctx.created),
                b',"model":',
                orjson.dumps(ctx.model),
                b',"conversation_id":' + orjson.dumps(ctx.conversation_id) if ctx.conversation_id else b"",
                b',"choices":[{"index":0,"delta":',
            )
        )
        self._end = b',"usage":null}\n\n' if self._include_usage else b"}\n\n"
        self._open_calls: dict[int, _OpenToolCall] = {}  # by Anthropic content block index
        self._tool_count = 0

    def on_message_start(self, event: dict) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def on_message_delta(self, event: dict) -> bytes:
        stop_reason = (event.get("delta") or {}).get("stop_reason")
        return self._chunk({}, _finish_reason(stop_reason, self._json_tool))

    def finish(self, usage: Usage) -> bytes:
        """The usage chunk (with `include_usage`) and `[DONE]`, after message_stop."""
        if self._closed:
            return b""
        self._closed = True
        if not self._include_usage:
            return _DONE
        ctx = self._ctx
        chunk = {
            "id": _completion_id(ctx),
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "choices": [],
            "usage": _usage_body(usage),
        }
        if ctx.conversation_id:
            chunk["conversation_id"] = ctx.conversation_id
        return b"data: " + orjson.dumps(chunk) + b"\n\n" + _DONE

    def fail(self, error: GatewayError) -> bytes:
        """An error after the 200: the openai SDK raises on a chunk with a top-level `error`; nothing follows."""
        if self._closed:
            return b""
        self._closed = True
        return b"data: " + orjson.dumps(error_body(error)) + b"\n\n"

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> bytes:
        return b"".join((self._head, orjson.dumps(delta), _CHOICE_ENDINGS[finish_reason], self._end))

    def on_block_delta(self, event: dict) -> bytes:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(delta.get("text"), "content")
        if kind == "input_json_delta":
            call = self._open_calls.get(event.get("index"))
            fragment = delta.get("partial_json")
            if call is None or not fragment:
                return b""
            call.has_arguments = True
            return self._arguments(call, fragment)
        if kind == "thinking_delta":
            return self._text(delta.get("thinking"), "reasoning_content")
        if kind == "signature_delta":
            return self._text(delta.get("signature"), "reasoning_signature")
        return b""

    def on_block_start(self, event: dict) -> bytes:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            return self._text(block.get("text"), "content")
        if kind == "thinking":
            return self._text(block.get("thinking"), "reasoning_content")
        if kind != "tool_use":
            return b""
        name = block.get("name")
        if self._json_tool is not None and name == self._json_tool:
            self._open_calls[event.get("index")] = _OpenToolCall(None)
            return b""
        index = self._tool_count
        self._tool_count += 1
        self._open_calls[event.get("index")] = _OpenToolCall(index)
        call = {"index": index, "id": block.get("id"), "type": "function", "function": {"name": name, "arguments": ""}}
        return self._chunk({"tool_calls": [call]})

    def on_block_stop(self, event: dict) -> bytes:
        call = self._open_calls.pop(event.get("index"), None)
        if call is None or call.has_arguments:
            return b""
        return self._arguments(call, "{}")

    def _arguments(self, call: _OpenToolCall, fragment: str) -> bytes:
        if call.index is None:
            return self._chunk({"content": fragment})
        return self._chunk({"tool_calls": [{"index": call.index, "function": {"arguments": fragment}}]})

    def _text(self, text: Any, key: str) -> bytes:
        return self._chunk({key: text}) if text else b""
