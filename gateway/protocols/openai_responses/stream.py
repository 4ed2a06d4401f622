"""Anthropic stream events -> Responses SSE events."""

from __future__ import annotations

from typing import Any

from gateway.core import GatewayError, ResponseContext, Usage
from gateway.protocols._common.stream import StreamEncoderBase

from .decode import WEB_SEARCH_TOOL
from .encode import _Output, _error_object, _response_body, _status


class StreamEncoder(StreamEncoderBase):
    """Turns one upstream answer's Anthropic stream events into Responses API SSE events.

    `response.created` and `response.in_progress` come before anything else, `sequence_number` counts
    from 0, and the stream ends with exactly one of `response.completed`, `response.incomplete` or
    `response.failed`, carrying the whole Response; `response` holds that object afterwards (for storage).
    """

    __slots__ = ("_ctx", "_output", "_json_tool", "_kinds", "_json_empty", "_stop_reason", "response")

    def __init__(self, ctx: ResponseContext) -> None:
        super().__init__()
        self._ctx = ctx
        self._output = _Output(ctx, emit=True)
        self._json_tool = ctx.options.get("json_tool")
        self._kinds: dict[Any, str] = {}  # Anthropic block index -> "text", "json", "call" or "thinking"
        self._json_empty = False
        self._stop_reason: Any = None
        # The two lifecycle events wait in the output until the first feed, finish or fail flushes them.
        self.response: dict = _response_body(ctx, "in_progress", [])
        self._lifecycle("response.created")
        self._lifecycle("response.in_progress")

    def on_message_delta(self, event: dict) -> bytes:
        self._stop_reason = (event.get("delta") or {}).get("stop_reason")
        return self._output.flush()

    def on_other(self, event: dict) -> bytes:
        return self._output.flush()  # the lifecycle events, on the first event

    def finish(self, usage: Usage) -> bytes:
        """`response.completed` or `response.incomplete` with the whole Response, after message_stop."""
        if self._closed:
            return b""
        self._closed = True
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
        self._output.close("incomplete")
        self.response = _response_body(self._ctx, "failed", self._output.items, error=_error_object(error))
        self._lifecycle("response.failed")
        return self._output.flush()

    def _lifecycle(self, kind: str) -> None:
        self._output.event(kind, {"type": kind, "response": self.response})

    def on_block_start(self, event: dict) -> bytes:
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
        return output.flush()

    def on_block_delta(self, event: dict) -> bytes:
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
            pass  # a delta for a block we left out or already closed
        elif delta_type == "input_json_delta":
            output.arguments(delta.get("partial_json"))
        elif delta_type == "thinking_delta":
            output.thinking(delta.get("thinking"))
        elif delta_type == "signature_delta":
            output.signature(delta.get("signature"))
        return output.flush()

    def on_block_stop(self, event: dict) -> bytes:
        index = event.get("index")
        kind = self._kinds.pop(index, None)
        if kind == "json" and self._json_empty:
            self._output.text("{}")  # the forced json tool called without input: still a JSON answer
        elif kind == "text":
            self._output.end_text()
        elif kind == "search" and self._output.open_index() == index:
            self._output.searching()
        return self._output.flush()
