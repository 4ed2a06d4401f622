"""Anthropic Message -> Response object and its output items (shared with the stream)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core import GatewayError, ResponseContext, Usage
from gateway.protocols import openai_chat
from gateway.protocols._common.tools import custom_input

from .decode import _DEFAULT_TEXT, _ID_PREFIXES, REDACTED_THINKING_PREFIX, WEB_SEARCH_TOOL, _hex, _shell_action

_INCOMPLETE_REASONS = {
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}


def encode_response(message: dict, ctx: ResponseContext) -> dict:
    """Render an Anthropic Message dict as a `response` object."""
    status, reason = _status(message.get("stop_reason"))
    output = _render(message, ctx, status)
    usage = Usage()
    usage.update(message.get("usage"))
    return _response_body(ctx, status, output, usage=usage, incomplete_reason=reason)


def response_to_items(message: dict, ctx: ResponseContext) -> list[dict]:
    """The output items of an Anthropic Message, with the ids `encode_response` gives them (for storage)."""
    return _render(message, ctx, _status(message.get("stop_reason"))[0])


def error_body(error: GatewayError) -> dict:
    """The OpenAI error object, the same as Chat Completions'."""
    return openai_chat.error_body(error)


def _render(message: dict, ctx: ResponseContext, status: str) -> list[dict]:
    json_tool = ctx.options.get("json_tool")
    output = _Output(ctx, emit=False)
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            output.begin_text()
            output.text(block.get("text"))
            for citation in block.get("citations") or ():
                output.cite(citation)
            output.end_text()
        elif kind == "thinking":
            output.open_reasoning(None, block.get("signature"))
            output.thinking(block.get("thinking"))
        elif kind == "redacted_thinking":
            output.open_redacted(None, block.get("data"))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if json_tool is not None and block.get("name") == json_tool:
                output.text(arguments)
            else:
                output.open_call(None, block.get("id"), block.get("name"))
                output.arguments(arguments)
        elif kind == "server_tool_use" and block.get("name") == WEB_SEARCH_TOOL:
            output.open_search(None)
            output.arguments(orjson.dumps(block.get("input") or {}).decode())
            output.searching()
        elif kind == "web_search_tool_result":
            output.search_result(block)
    output.close(status)
    return output.items


def _status(stop_reason: Any) -> tuple[str, str | None]:
    reason = _INCOMPLETE_REASONS.get(stop_reason) if isinstance(stop_reason, str) else None
    return ("incomplete" if reason else "completed"), reason


def _response_id(ctx: ResponseContext) -> str:
    return "resp_" + _hex(ctx.request_id)


def _response_body(
    ctx: ResponseContext,
    status: str,
    output: list[dict],
    *,
    usage: Usage | None = None,
    incomplete_reason: str | None = None,
    error: dict | None = None,
) -> dict:
    options = ctx.options
    conversation = options.get("conversation")
    body = {
        "id": _response_id(ctx),
        "object": "response",
        "created_at": ctx.created,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": options.get("instructions"),
        "max_output_tokens": options.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": ctx.model,
        "output": output,
        "parallel_tool_calls": options.get("parallel_tool_calls", True),
        "previous_response_id": options.get("previous_response_id"),
        "reasoning": options.get("reasoning") or {"effort": None, "summary": None},
        "store": options.get("store", True),
        "temperature": options.get("temperature", 1.0),
        "text": options.get("text") or _DEFAULT_TEXT,
        "tool_choice": options.get("tool_choice", "auto"),
        "tools": options.get("tools") or [],
        "top_p": options.get("top_p", 1.0),
        "truncation": options.get("truncation") or "disabled",
        "metadata": options.get("metadata") or {},
        "conversation": {"id": conversation} if conversation else None,
    }
    if options.get("user") is not None:
        body["user"] = options["user"]
    if usage is not None:
        body["usage"] = _usage_body(usage)
    return body


def _usage_body(usage: Usage) -> dict:
    input_tokens = usage.prompt_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_input_tokens,
            "cache_write_tokens": usage.cache_creation_input_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + usage.output_tokens,
    }


def _error_object(error: GatewayError) -> dict:
    """`Response.error`, whose code is one of a fixed list."""
    if error.status == 429:
        code = "rate_limit_exceeded"
    elif 400 <= error.status < 500:
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": error.message}


class _Output:
    """The output items of one answer, built block by block; with `emit`, also their SSE events.

    One code path for both renderings, so a stream and `encode_response` give the same items. The last
    item stays open until the next one starts or `close` is called with the final status.
    """

    __slots__ = ("items", "_hex", "_emit", "_calls", "_chunks", "_sequence", "_open", "_index", "_pieces", "_part",
                 "_signature", "_length", "_text_start", "_citations", "_annotations", "_failed")

    def __init__(self, ctx: ResponseContext, *, emit: bool) -> None:
        self.items: list[dict] = []
        self._hex = _hex(ctx.request_id)
        self._emit = emit
        self._calls: dict[str, dict] = ctx.options.get("tool_calls") or {}
        self._chunks: list[bytes] = []
        self._sequence = 0
        self._open: dict | None = None
        self._index: Any = None  # the Anthropic block index of an open reasoning item, call or search
        self._pieces: list[str] = []  # text, arguments or thinking of the open item
        self._part = False  # whether the open reasoning item has its summary part yet
        self._signature: str | None = None
        self._length = 0  # characters of the open message's text
        self._text_start = 0  # where the current text block starts in it
        self._citations: list[dict] = []  # of the current text block
        self._annotations: list[dict] = []  # of the open message
        self._failed = False  # the open web search failed

    def event(self, kind: str, payload: dict) -> None:
        if not self._emit:
            return
        payload["sequence_number"] = self._sequence
        self._sequence += 1
        self._chunks.append(b"".join((b"event: ", kind.encode(), b"\ndata: ", orjson.dumps(payload), b"\n\n")))

    def flush(self) -> bytes:
        chunks = b"".join(self._chunks)
        self._chunks.clear()
        return chunks

    def open_index(self) -> Any:
        return self._index

    def open_type(self) -> str | None:
        return None if self._open is None else self._open["type"]

    # -- opening items --

    def _add(self, kind: str, fields: dict, index: Any) -> None:
        self.close("completed")
        item = {"id": f"{_ID_PREFIXES[kind]}_{self._hex}_{len(self.items)}", "type": kind, **fields}
        self.items.append(item)
        self._open, self._index = item, index
        if self._emit:
            self.event("response.output_item.added", {"type": "response.output_item.added",
                                                      "output_index": len(self.items) - 1, "item": item})

    def _item_event(self, kind: str, fields: dict) -> None:
        self.event(kind, {"type": kind, "item_id": self._open["id"], "output_index": len(self.items) - 1, **fields})

    def open_reasoning(self, index: Any, signature: Any) -> None:
        self._add("reasoning", {"summary": [], "encrypted_content": None, "status": "in_progress"}, index)
        self._signature = signature or None

    def open_redacted(self, index: Any, data: Any) -> None:
        self.open_reasoning(index, REDACTED_THINKING_PREFIX + (data or ""))

    def open_call(self, index: Any, call_id: Any, name: Any) -> None:
        """The item for a tool_use block: what the client declared decides its type (see `_decode_tools`)."""
        call = self._calls.get(name) if isinstance(name, str) else None
        kind = "function" if call is None else call["type"]
        fields: dict[str, Any] = {"status": "in_progress", "call_id": call_id}
        if call is not None and "namespace" in call:
            fields["namespace"] = call["namespace"]
        if kind == "local_shell":
            # Its action is only known once the input is complete: a valid empty one until then.
            self._add("local_shell_call", {**fields, "action": _shell_action({})}, index)
        elif kind == "custom":
            self._add("custom_tool_call", {**fields, "name": call["name"], "input": ""}, index)
        else:
            self._add("function_call", {**fields, "name": name if call is None else call["name"], "arguments": ""},
                      index)

    def open_search(self, index: Any) -> None:
        """A web search server_tool_use block: a `web_search_call` (the only server tool we declare)."""
        self._add("web_search_call", {"status": "in_progress", "action": {"type": "search"}}, index)
        self._item_event("response.web_search_call.in_progress", {})

    # -- content --

    def begin_text(self) -> None:
        """A text block starts: its citations will cover its text."""
        self._text_start = self._length if self.open_type() == "message" else 0
        self._citations = []

    def text(self, piece: Any) -> None:
        """Text for the message item, opened on the first non-empty piece; consecutive text blocks share it."""
        if not piece:
            return
        if self.open_type() != "message":
            self._add("message", {"status": "in_progress", "role": "assistant", "content": []}, None)
            self._item_event("response.content_part.added", {"content_index": 0, "part": _output_text("")})
        self._pieces.append(piece)
        self._length += len(piece)
        self._item_event("response.output_text.delta", {"content_index": 0, "delta": piece, "logprobs": []})

    def cite(self, citation: Any) -> None:
        if isinstance(citation, dict) and citation.get("type") == "web_search_result_location" and citation.get("url"):
            self._citations.append(citation)

    def end_text(self) -> None:
        """A text block ends: its web search citations become `url_citation` annotations over its text."""
        citations, self._citations = self._citations, []
        if self.open_type() != "message" or self._length == self._text_start:
            return
        for citation in citations:
            annotation = {"type": "url_citation", "url": citation["url"], "title": citation.get("title") or "",
                          "start_index": self._text_start, "end_index": self._length}
            self._item_event("response.output_text.annotation.added",
                             {"content_index": 0, "annotation_index": len(self._annotations),
                              "annotation": annotation})
            self._annotations.append(annotation)

    def arguments(self, fragment: Any) -> None:
        """Input JSON of the open call or search; only a function call streams it as it comes."""
        kind = self.open_type()
        if not fragment or kind not in _CALL_ITEMS:
            return
        self._pieces.append(fragment)
        if kind == "function_call":
            self._item_event("response.function_call_arguments.delta", {"delta": fragment})

    def searching(self) -> None:
        """The search's query is complete (its server_tool_use block ended)."""
        if self.open_type() != "web_search_call":
            return
        query = _parsed_input(self._pieces).get("query")
        if isinstance(query, str):
            self._open["action"] = {"type": "search", "query": query, "queries": [query]}
        self._item_event("response.web_search_call.searching", {})

    def search_result(self, block: dict) -> None:
        """A web_search_tool_result block ends the search it answers; an error content means it failed."""
        if self.open_type() != "web_search_call":
            return
        content = block.get("content")
        if isinstance(content, list):
            self._open["action"]["sources"] = [{"type": "url", "url": result["url"]} for result in content
                                               if isinstance(result, dict) and result.get("url")]
        else:
            self._failed = True
        self.close("completed")

    def thinking(self, piece: Any) -> None:
        if not piece or self.open_type() != "reasoning":
            return
        if not self._part:
            self._part = True
            self._item_event("response.reasoning_summary_part.added",
                             {"summary_index": 0, "part": {"type": "summary_text", "text": ""}})
        self._pieces.append(piece)
        self._item_event("response.reasoning_summary_text.delta", {"summary_index": 0, "delta": piece})

    def signature(self, signature: Any) -> None:
        if signature and self.open_type() == "reasoning":
            self._signature = signature

    # -- closing --

    def close(self, status: str) -> None:
        """Finish the open item, if any, with `status` ("completed" or "incomplete")."""
        item = self._open
        if item is None:
            return
        content = "".join(self._pieces)
        kind = item["type"]
        if kind == "message":
            part = _output_text(content, self._annotations)
            self._item_event("response.output_text.done", {"content_index": 0, "text": content, "logprobs": []})
            self._item_event("response.content_part.done", {"content_index": 0, "part": part})
            item["content"] = [part]
        elif kind == "function_call":
            if not content:  # a tool without input: its deltas must still add up to the final arguments
                content = "{}"
                self._item_event("response.function_call_arguments.delta", {"delta": content})
            self._item_event("response.function_call_arguments.done", {"name": item["name"], "arguments": content})
            item["arguments"] = content
        elif kind == "custom_tool_call":
            raw = custom_input(_parsed_input(self._pieces))
            if raw:
                self._item_event("response.custom_tool_call_input.delta", {"delta": raw})
            self._item_event("response.custom_tool_call_input.done", {"input": raw})
            item["input"] = raw
        elif kind == "local_shell_call":
            item["action"] = _shell_action(_parsed_input(self._pieces))
        elif kind == "web_search_call":
            # Its statuses have no `incomplete`: a search cut off before its results did not complete.
            status = "failed" if self._failed or status != "completed" else "completed"
            if status == "completed":
                self._item_event("response.web_search_call.completed", {})
        else:
            if self._part:
                part = {"type": "summary_text", "text": content}
                self._item_event("response.reasoning_summary_text.done", {"summary_index": 0, "text": content})
                self._item_event("response.reasoning_summary_part.done", {"summary_index": 0, "part": part})
                item["summary"] = [part]
            item["encrypted_content"] = self._signature
        item["status"] = status
        if self._emit:
            self.event("response.output_item.done", {"type": "response.output_item.done",
                                                     "output_index": len(self.items) - 1, "item": item})
        self._open, self._index, self._pieces, self._part, self._signature = None, None, [], False, None
        self._length, self._annotations, self._failed = 0, [], False


_CALL_ITEMS = ("function_call", "custom_tool_call", "local_shell_call", "web_search_call")


def _parsed_input(pieces: list[str]) -> dict:
    """A tool input streamed as JSON fragments; {} when it is not a JSON object (a cut-off stream)."""
    try:
        value = orjson.loads("".join(pieces)) if pieces else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _output_text(text: str, annotations: list[dict] | None = None) -> dict:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}
