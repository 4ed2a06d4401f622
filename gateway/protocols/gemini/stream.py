"""Anthropic stream events -> GenerateContentResponse chunks (SSE or one JSON array)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core import GatewayError, ResponseContext, Usage
from gateway.protocols._common.stream import StreamEncoderBase

from .decode import _thought_signature
from .encode import _finish_reason, _usage_metadata, error_body


_PARTS_OPEN = b'{"candidates":[{"content":{"role":"model","parts":['
_THOUGHT_TEXT = b'{"thought":true,"text":'


class _Block:
    """A content block between its start and stop: what Gemini needs whole (calls, signatures)."""

    __slots__ = ("kind", "pieces", "block")

    def __init__(self, kind: str, block: dict) -> None:
        self.kind = kind  # "text", "thinking", "call" or "json"
        self.pieces: list[str] = []  # arguments fragments or thinking text
        self.block = block


class StreamEncoder(StreamEncoderBase):
    """Turns one upstream answer's Anthropic stream events into GenerateContentResponse chunks (b"" for
    ping and unknown events).

    With `options["sse"]` each chunk is an SSE `data:` event, otherwise the stream is one JSON array.
    """

    __slots__ = ("_ctx", "_sse", "_include_thoughts", "_json_tool", "_sep", "_end", "_tail", "_blocks",
                 "_stop_reason", "content_type")

    def __init__(self, ctx: ResponseContext) -> None:
        super().__init__()
        self._ctx = ctx
        self._sse = bool(ctx.options.get("sse", True))
        self.content_type = "text/event-stream" if self._sse else "application/json"
        self._include_thoughts = bool(ctx.options.get("include_thoughts"))
        self._json_tool = ctx.options.get("json_tool")
        # Framing: an SSE event, or an array element (its separator changes after the first chunk).
        self._sep = b"data: " if self._sse else b"["
        self._end = b"\r\n\r\n" if self._sse else b""
        # Everything after the parts, the same on every chunk but the last: one orjson.dumps per token.
        self._tail = b"".join((b']},"index":0}],"modelVersion":', orjson.dumps(ctx.model),
                               b',"responseId":', orjson.dumps(ctx.request_id), b"}", self._end))
        self._blocks: dict[Any, _Block] = {}  # by Anthropic content block index
        self._stop_reason: Any = None

    def on_message_delta(self, event: dict) -> bytes:
        self._stop_reason = (event.get("delta") or {}).get("stop_reason")
        return b""

    def finish(self, usage: Usage) -> bytes:
        """The last chunk, with finishReason and usageMetadata (and the array's end), after message_stop."""
        if self._closed:
            return b""
        self._closed = True
        ctx = self._ctx
        chunk = {
            # An empty text part: the SDK's chat rejects a chunk without parts, and "" adds no text.
            "candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                            "finishReason": _finish_reason(self._stop_reason), "index": 0}],
            "usageMetadata": _usage_metadata(usage),
            "modelVersion": ctx.model,
            "responseId": ctx.request_id,
        }
        return self._frame(orjson.dumps(chunk)) + (b"" if self._sse else b"]")

    def fail(self, error: GatewayError) -> bytes:
        """An error after the 200: google-genai raises on a chunk that is an `error` object; nothing follows."""
        if self._closed:
            return b""
        self._closed = True
        return self._frame(orjson.dumps(error_body(error))) + (b"" if self._sse else b"]")

    def _frame(self, body: bytes) -> bytes:
        sep = self._sep
        if not self._sse:
            self._sep = b",\r\n"
        return b"".join((sep, body, self._end))

    def _part(self, part: bytes) -> bytes:
        """A chunk whose candidate holds the one serialised `part`."""
        sep = self._sep
        if not self._sse:
            self._sep = b",\r\n"
        return b"".join((sep, _PARTS_OPEN, part, self._tail))

    def _text(self, text: Any) -> bytes:
        return self._part(b'{"text":' + orjson.dumps(text) + b"}") if text else b""

    def _thought(self, text: Any) -> bytes:
        return self._part(_THOUGHT_TEXT + orjson.dumps(text) + b"}") if text and self._include_thoughts else b""

    def on_block_start(self, event: dict) -> bytes:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            self._blocks[event.get("index")] = _Block("text", block)
            return self._text(block.get("text"))
        if kind == "tool_use":
            json_answer = self._json_tool is not None and block.get("name") == self._json_tool
            self._blocks[event.get("index")] = _Block("json" if json_answer else "call", block)
            return b""
        if kind == "thinking" or kind == "redacted_thinking":
            state = self._blocks[event.get("index")] = _Block("thinking", dict(block))
            if block.get("thinking"):
                state.pieces.append(block["thinking"])
                return self._thought(block["thinking"])
        return b""

    def on_block_delta(self, event: dict) -> bytes:
        state = self._blocks.get(event.get("index"))
        if state is None:
            return b""
        delta = event.get("delta") or {}
        kind = state.kind
        if kind == "text":
            return self._text(delta.get("text"))
        if kind == "json":
            fragment = delta.get("partial_json")
            if fragment:
                state.pieces.append(fragment)
            return self._text(fragment)
        if kind == "call":
            fragment = delta.get("partial_json")
            if fragment:
                state.pieces.append(fragment)
            return b""
        # thinking
        if delta.get("type") == "signature_delta":
            state.block["signature"] = delta.get("signature")
            return b""
        text = delta.get("thinking")
        if text:
            state.pieces.append(text)
        return self._thought(text)

    def on_block_stop(self, event: dict) -> bytes:
        state = self._blocks.pop(event.get("index"), None)
        if state is None:
            return b""
        kind = state.kind
        if kind == "call":
            arguments = "".join(state.pieces)
            try:
                args = orjson.loads(arguments) if arguments else {}
            except orjson.JSONDecodeError:
                args = {}
            block = state.block
            call = {"id": block.get("id"), "name": block.get("name"), "args": args}
            return self._part(orjson.dumps({"functionCall": call}))
        if kind == "json":
            return b"" if state.pieces else self._text("{}")  # the forced json tool called without input
        if kind == "thinking":
            block = state.block
            block["thinking"] = "".join(state.pieces)
            signature = _thought_signature(block)
            if signature is None:
                return b""
            return self._part(orjson.dumps({"text": "", "thought": True, "thoughtSignature": signature}))
        return b""
