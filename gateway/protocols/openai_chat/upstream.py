"""Pure translation between the gateway's internal shape (Anthropic Messages) and an OpenAI-compatible
`/v1/chat/completions` upstream (OpenAI, DeepSeek, Moonshot, vLLM, Ollama): the request it is sent, its
`chat.completion` answer and its `chat.completion.chunk` stream. Dicts in, dicts out, no I/O; the HTTP
client is `gateway.providers.openai_compat`.

Where the two APIs do not line up:

- Request: `system` becomes a leading system message. Text-only user, system and tool contents are sent
  as one string (texts joined with "\\n", as vLLM joins text parts), because DeepSeek and older servers
  take only strings there; a user content with images is an array of parts. Assistant texts are joined
  with "" (Anthropic splits one answer into several text blocks around citations). Each `tool_result`
  becomes a `tool` message (texts joined; `is_error` has no equivalent and is dropped) placed before the
  rest of its user turn, since tool messages must directly follow the assistant's `tool_calls`; images
  inside a tool result move to the user message after the tool messages (tool messages take text only).
  Documents go in as text when their source is text; PDFs and other sources are a 400.
- Anthropic's server web search (`web_search_20250305`) is dropped from `tools`: agent clients (Codex)
  declare it by default and answer fine without it, so a 400 would lock them out of these models; the
  model just cannot search (forcing it with tool_choice is a 400). Earlier searches in the history
  (`server_tool_use`, `web_search_tool_result`) are dropped too; the answer text stays. Other server
  tools are a 400 naming the tool.
- `thinking`/`redacted_thinking` blocks are dropped: these servers cannot verify Anthropic signatures.
  The `thinking` setting is dropped too: whether and how much these models reason is the model's own
  (DeepSeek's reasoner always does; OpenAI's `reasoning_effort` is rejected by non-reasoning models).
  `top_k` and `service_tier` have no OpenAI equivalent and are dropped, and so are Anthropic's beta flags
  (`betas`) and the beta fields a native client sends with them (`context_management`, `output_config`,
  `cache_control` and the like): the request is rebuilt from the fields listed here.
- `max_tokens` is sent as `max_tokens`, not `max_completion_tokens`: most compatible servers (DeepSeek,
  Moonshot, Ollama, older vLLM) only know that one. OpenAI's reasoning models (o-series) reject it.
- Streams ask for `stream_options.include_usage`, so that the usage chunk arrives after finish_reason.
- Tool call ids are made safe with the codecs' `_common.tools.tool_id` in both directions (`functions.Bash:0` from
  Moonshot becomes `functions_Bash_0_<digest>` in the tool_use block and stays that on the way back). A call
  without an id (some servers omit it) gets `toolu_<message id>_<n>`.
- Response: `reasoning_content` (DeepSeek, vLLM; `reasoning` on newer vLLM and Ollama) becomes a
  `thinking` block with `signature: ""`: clients get the reasoning, and our own requests drop thinking
  blocks again. Such a block must not reach Anthropic, which rejects unsigned thinking. Tool call
  arguments that are not a JSON object become input `{}`, as `core.MessageAccumulator` does for a
  stream's. A `refusal` is text with stop_reason `refusal`. finish_reason `stop` with tool calls (older
  Ollama) is `tool_use`, since Anthropic clients only run tools on that stop_reason. vLLM's string
  `stop_reason` (the stop sequence matched) becomes `stop_sequence`. usage: `input_tokens` excludes the
  cached prompt tokens (`prompt_tokens_details.cached_tokens`, DeepSeek's `prompt_cache_hit_tokens`,
  Moonshot's `cached_tokens`), which are `cache_read_input_tokens`.
- Usage a server does not report (no usage chunk from a server that ignores `stream_options`, or a
  missing counter) is estimated: input from the request (`core.estimate_input_tokens`, by the caller),
  output from the generated characters (`core.estimate_tokens`), so such calls are billed roughly rather
  than for free.
- Streams: message_start carries input_tokens 0 (unknown until the usage chunk); message_delta carries
  the real counters, which replace it (`core.Usage.update` keeps the latest). It is sent with the usage
  chunk, or at `[DONE]` without one. Anthropic streams one block at a time: a tool call's fragments
  are relayed as they come; the fragments of another call that arrive while the open call's arguments
  are not yet a complete JSON object (interleaved parallel calls) are held back and sent when it is.
  A stream that ends without a finish_reason is a 502, never a normal finish.
- Errors: an error object in an answer (a body without choices, a chunk's `error` after the 200) is
  raised as `UpstreamError`, not as the client's error: its text comes from the upstream, which may echo
  our credential, so the provider redacts it (`gateway.providers.errors`). An upstream 503 is overload
  (OpenAI's "engine overloaded", vLLM, DeepSeek), Anthropic's 529; a 422 (FastAPI validation, vLLM) is
  the request's fault, a 400.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core import WEB_SEARCH_TOOL_TYPE, GatewayError, estimate_tokens, invalid
from gateway.protocols._common.tools import tool_id as safe_tool_id

# ---------------------------------------------------------------------------------------------------
# Request: Anthropic Messages body -> OpenAI chat request
# ---------------------------------------------------------------------------------------------------

_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def to_openai_request(body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """The chat request for an Anthropic Messages body whose `model` is already the upstream model id."""
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(body.get("messages") or ()):
        _append_message(messages, message, i)
    request: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        request["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    if body.get("stop_sequences"):
        request["stop"] = list(body["stop_sequences"])
    tools = [_function_tool(tool, k) for k, tool in enumerate(body.get("tools") or ())
             if tool.get("type") != WEB_SEARCH_TOOL_TYPE]
    if tools:
        request["tools"] = tools
        # Both are 400s on OpenAI without tools, and mean nothing then anyway.
        _apply_tool_choice(body.get("tool_choice"), request)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        request["user"] = metadata["user_id"]
    if stream:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    return "\n".join(block.get("text") or "" for block in system or () if isinstance(block, dict))


def _append_message(out: list[dict], message: dict, i: int) -> None:
    role, content = message.get("role"), message.get("content")
    if role not in ("user", "assistant"):
        raise invalid(f"Invalid 'messages[{i}].role': expected 'user' or 'assistant'.", f"messages[{i}].role")
    if isinstance(content, str):
        out.append({"role": role, "content": content})
    elif role == "assistant":
        reply = _assistant_message(content or (), i)
        if reply is not None:  # a turn of thinking blocks only has nothing left to send
            out.append(reply)
    else:
        _append_user_turn(out, content or (), i)


def _assistant_message(content: list, i: int) -> dict | None:
    texts: list[str] = []
    calls: list[dict] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": safe_tool_id(block.get("id") or ""), "type": "function",
                          "function": {"name": block.get("name"), "arguments": arguments}})
        elif kind not in ("thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result"):
            raise _unsupported_block(kind, f"messages[{i}].content[{j}]")
    text = "".join(texts)
    if not text and not calls:
        return None
    reply: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        reply["tool_calls"] = calls
    return reply


def _append_user_turn(out: list[dict], content: list, i: int) -> None:
    tool_messages: list[dict] = []
    carried: list[dict] = []  # images from tool results
    parts: list[dict] = []
    for j, block in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        kind = block.get("type")
        if kind == "tool_result":
            text, media = _tool_result_content(block.get("content"), param)
            tool_messages.append({"role": "tool", "tool_call_id": safe_tool_id(block.get("tool_use_id") or ""),
                                  "content": text})
            carried.extend(media)
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            parts.append(_user_part(block, param))
    out.extend(tool_messages)
    parts = carried + parts
    if parts:
        out.append({"role": "user", "content": _parts_content(parts)})


def _tool_result_content(content: Any, param: str) -> tuple[str, list[dict]]:
    if content is None or isinstance(content, str):
        return content or "", []
    texts, media = [], []
    for k, block in enumerate(content):
        part = _user_part(block, f"{param}.content[{k}]")
        if part["type"] == "text":
            texts.append(part["text"])
        else:
            media.append(part)
    return "\n".join(texts), media


def _user_part(block: dict, param: str) -> dict:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _image_url(block.get("source") or {}, param)}}
    if kind == "document":
        return {"type": "text", "text": _document_text(block.get("source") or {}, param)}
    raise _unsupported_block(kind, param)


def _image_url(source: dict, param: str) -> str:
    kind = source.get("type")
    if kind == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if kind == "url":
        return source.get("url") or ""
    raise invalid(f"Invalid '{param}.source': this model takes images as base64 data or URLs only.",
                  f"{param}.source")


def _document_text(source: dict, param: str) -> str:
    kind = source.get("type")
    if kind == "text":
        return source.get("data") or ""
    content = source.get("content")
    if kind == "content" and isinstance(content, list) and all(b.get("type") == "text" for b in content):
        return "\n".join(b.get("text") or "" for b in content)
    raise invalid(f"Invalid '{param}': this model cannot take documents (PDF or file); send the text instead.",
                  param)


def _parts_content(parts: list[dict]) -> str | list[dict]:
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    return parts


def _function_tool(tool: dict, k: int) -> dict:
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise invalid(f"Invalid 'tools[{k}]': this model cannot use Anthropic's server tool '{kind}'.",
                      f"tools[{k}].type")
    function: dict[str, Any] = {"name": tool.get("name"),
                                "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _apply_tool_choice(choice: Any, request: dict) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "tool" and not any(tool["function"]["name"] == choice.get("name") for tool in request["tools"]):
        raise invalid(f"Invalid 'tool_choice': this model cannot use the tool {choice.get('name')!r}.",
                      "tool_choice")
    if kind == "tool":
        request["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif kind in _TOOL_CHOICES:
        request["tool_choice"] = _TOOL_CHOICES[kind]
    else:
        raise invalid(f"Invalid 'tool_choice.type': {kind!r}.", "tool_choice.type")
    if choice.get("disable_parallel_tool_use"):
        request["parallel_tool_calls"] = False


def _unsupported_block(kind: Any, param: str) -> GatewayError:
    return invalid(f"Invalid '{param}': this model cannot take '{kind}' content blocks.", f"{param}.type")


# ---------------------------------------------------------------------------------------------------
# Response: chat.completion -> Anthropic Message
# ---------------------------------------------------------------------------------------------------

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def from_openai_response(payload: Any, *, model: str, estimated_input_tokens: int = 0) -> dict[str, Any]:
    """The Anthropic Message for a `chat.completion` (first choice); a 502 when it is not one.

    `estimated_input_tokens` stands in for `prompt_tokens` when the server reports none.
    """
    if not isinstance(payload, dict):
        raise malformed("the answer is not a JSON object")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if payload.get("error"):
            raise error_of(payload["error"])
        raise malformed("the answer has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    message_id = _message_id(payload.get("id"))
    content: list[dict[str, Any]] = []
    reasoning = _reasoning(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _message_text(message.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
    calls = message.get("tool_calls")
    for n, call in enumerate(calls if isinstance(calls, list) else ()):
        if not isinstance(call, dict):
            continue
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        content.append({"type": "tool_use", "id": _tool_use_id(call.get("id"), message_id, n),
                        "name": function.get("name") or "", "input": _tool_input(function.get("arguments"))})
    stop_reason, stop_sequence = _stop_reason(
        choice.get("finish_reason"), used_tools=any(b["type"] == "tool_use" for b in content),
        refused=isinstance(refusal, str) and bool(refusal), matched=choice.get("stop_reason"))
    generated = sum(len(b.get("text") or b.get("thinking") or "") for b in content) + sum(
        len(orjson.dumps(b["input"])) for b in content if b["type"] == "tool_use")
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _reported_usage(payload.get("usage"), estimated_input_tokens, generated),
    }


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Anthropic's four counters for an OpenAI `usage` object (zeros when there is none)."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    cached = min(prompt, cached or _count(usage.get("prompt_cache_hit_tokens")) or _count(usage.get("cached_tokens")))
    return {
        "input_tokens": prompt - cached,
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _reported_usage(usage: Any, estimated_input_tokens: int, generated_chars: int) -> dict[str, int]:
    """The usage, with estimates for counters the server left out (see the module docstring)."""
    counters = anthropic_usage(usage)
    reported = usage if isinstance(usage, dict) else {}
    if not _is_int(reported.get("prompt_tokens")):
        counters["input_tokens"] = estimated_input_tokens
    if not _is_int(reported.get("completion_tokens")):
        counters["output_tokens"] = estimate_tokens(generated_chars)
    return counters


class UpstreamError(Exception):
    """An OpenAI error object the server answered with. Its text is the upstream's, unredacted: the
    provider turns it into the client-visible error."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # the upstream's HTTP status
        self.kind = kind
        self.message = message

    @property
    def anthropic_status(self) -> int:
        return _ANTHROPIC_STATUS.get(self.status, self.status)


def error_of(error: Any, status: int | None = None) -> UpstreamError:
    """What an OpenAI error object says (an error body, or a chunk's `error` after the 200)."""
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code") or "api_error"
        message = error.get("message") or error.get("detail") or ""
        code = error.get("code")
        if status is None:  # mid-stream: vLLM puts the HTTP status in `code`
            status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        if code == "insufficient_quota":  # OpenAI puts it in `code` or in `type`
            kind = code
    else:
        kind, message = "api_error", error
    if not isinstance(message, str):
        message = orjson.dumps(message).decode()
    return UpstreamError(status or 500, str(kind), message)


# What an OpenAI-compatible status means in Anthropic's terms (see the module docstring).
_ANTHROPIC_STATUS = {503: 529, 422: 400}


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Mistral answers with parts
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _reasoning(message: dict) -> str:
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    return reasoning if isinstance(reasoning, str) else ""


def _tool_input(arguments: Any) -> dict:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _stop_reason(finish_reason: Any, *, used_tools: bool, refused: bool, matched: Any) -> tuple[str, str | None]:
    reason = _STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    if reason == "end_turn":
        if used_tools:
            return "tool_use", None
        if refused:
            return "refusal", None
        if isinstance(matched, str) and matched:
            return "stop_sequence", matched
    return reason, None


def _message_id(upstream_id: Any) -> str:
    return "msg_" + (safe_tool_id(upstream_id) if isinstance(upstream_id, str) and upstream_id else "openai")


def _tool_use_id(upstream_id: Any, message_id: str, n: int) -> str:
    if isinstance(upstream_id, str) and upstream_id:
        return safe_tool_id(upstream_id)
    return f"toolu_{message_id[4:]}_{n}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> int:
    return value if _is_int(value) and value > 0 else 0


def malformed(detail: str) -> GatewayError:
    """The 502 for an answer that is not what the protocol says; `detail` is our own text or redacted."""
    return GatewayError(502, f"The upstream provider sent a malformed response: {detail}.",
                        type="upstream_error", code="upstream_malformed")


# ---------------------------------------------------------------------------------------------------
# Streaming: chat.completion.chunk -> Anthropic stream events
# ---------------------------------------------------------------------------------------------------


class _Run:
    """A text or thinking block; `pieces` holds its text while it waits behind an unfinished tool call."""

    __slots__ = ("kind", "pieces", "index")

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        self.pieces = [text]
        self.index: int | None = None


class _ToolCall:
    """One upstream tool call; `pieces` holds all its argument fragments so far."""

    __slots__ = ("upstream_id", "id", "name", "pieces", "index", "closed")

    def __init__(self, upstream_id: Any, tool_id: str, name: str) -> None:
        self.upstream_id = upstream_id
        self.id = tool_id
        self.name = name
        self.pieces: list[str] = []
        self.index: int | None = None  # the Anthropic block index, once started
        self.closed = False

    def complete(self) -> bool:
        # An object's closing brace ends it: no later fragment can belong to valid arguments.
        try:
            return isinstance(orjson.loads("".join(self.pieces)), dict)
        except orjson.JSONDecodeError:
            return False


_DELTA_KEYS = {"text": ("text_delta", "text"), "thinking": ("thinking_delta", "thinking"),
               "tool_use": ("input_json_delta", "partial_json")}
_EMPTY_BLOCKS = {"text": {"type": "text", "text": ""},
                 "thinking": {"type": "thinking", "thinking": "", "signature": ""}}


class StreamTranslator:
    """Turns one answer's `chat.completion.chunk` objects into Anthropic stream events.

    `feed` takes each chunk and `finish` the end of the stream (`[DONE]` or the connection's end); both
    return the events to relay. Only one block is open at a time, with contiguous indices from 0.
    """

    def __init__(self, *, model: str, estimated_input_tokens: int = 0) -> None:
        self._model = model
        self._estimated_input_tokens = estimated_input_tokens
        self._message_id = ""
        self._started = False
        self._ended = False
        self._next_index = 0
        self._open: _Run | _ToolCall | None = None
        self._queue: list[_Run | _ToolCall] = []  # blocks waiting for the open tool call's arguments to end
        self._calls: dict[int, _ToolCall] = {}  # by the upstream's tool call index
        self._call_count = 0
        self._finish_reason: str | None = None
        self._matched: Any = None
        self._refused = False
        self._usage: dict | None = None
        self._chars = 0

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if self._ended:
            return []
        if chunk.get("error"):
            raise error_of(chunk["error"])
        out: list[dict[str, Any]] = []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        if not self._started:
            self._start_message(chunk, out)
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            self._on_choice(choices[0], out)
        elif self._finish_reason is not None and isinstance(usage, dict):
            self._end(out)  # the include_usage chunk, which comes last
        return out

    def finish(self) -> list[dict[str, Any]]:
        if self._ended:
            return []
        if self._finish_reason is None:
            raise GatewayError(502, "The upstream stream ended before the message was complete.",
                               type="upstream_error")
        out: list[dict[str, Any]] = []
        self._end(out)
        return out

    def _start_message(self, chunk: dict, out: list) -> None:
        self._started = True
        self._message_id = _message_id(chunk.get("id"))
        input_tokens = anthropic_usage(self._usage)["input_tokens"] if self._usage else 0
        out.append({"type": "message_start", "message": {
            "id": self._message_id, "type": "message", "role": "assistant", "model": self._model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 0}}})

    def _on_choice(self, choice: dict, out: list) -> None:
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        reasoning = _reasoning(delta)
        if reasoning:
            self._add_text("thinking", reasoning, out)
        text = _message_text(delta.get("content"))
        if text:
            self._add_text("text", text, out)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refused = True
            self._add_text("text", refusal, out)
        calls = delta.get("tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list) else ()):
            if isinstance(call, dict):
                self._on_tool_call(call, position, out)
        finish_reason = choice.get("finish_reason")
        if isinstance(finish_reason, str) and finish_reason:
            self._finish_reason = finish_reason
            self._matched = choice.get("stop_reason")

    def _on_tool_call(self, delta: dict, position: int, out: list) -> None:
        key = delta.get("index") if isinstance(delta.get("index"), int) else position
        function = delta.get("function") if isinstance(delta.get("function"), dict) else {}
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = orjson.dumps(arguments).decode()
        arguments = arguments if isinstance(arguments, str) else ""
        upstream_id = delta.get("id")
        call = self._calls.get(key)
        # Some servers send every call whole at index 0: a new id at a known index is a new call.
        if call is None or (upstream_id and call.upstream_id and upstream_id != call.upstream_id):
            tool_id = _tool_use_id(upstream_id, self._message_id, self._call_count)
            call = self._calls[key] = _ToolCall(upstream_id, tool_id, function.get("name") or "")
            self._call_count += 1
            if arguments:
                call.pieces.append(arguments)
                self._chars += len(arguments)
            self._queue.append(call)
            self._advance(out)
        elif arguments:
            self._chars += len(arguments)
            call.pieces.append(arguments)
            if call is self._open:
                out.append(self._delta(call, arguments))
                if self._queue:
                    self._advance(out)
            # A queued call sends its pieces when it starts; a closed one already held a whole JSON
            # object, so anything after it is whitespace or a server bug, and is dropped.

    def _add_text(self, kind: str, text: str, out: list) -> None:
        self._chars += len(text)
        current = self._open
        if isinstance(current, _Run) and current.kind == kind:  # nothing is ever queued behind a run
            out.append(self._delta(current, text))
            return
        last = self._queue[-1] if self._queue else None
        if isinstance(last, _Run) and last.kind == kind:
            last.pieces.append(text)
            return
        self._queue.append(_Run(kind, text))
        self._advance(out)

    def _advance(self, out: list) -> None:
        """Start queued blocks for as long as the open one may be closed."""
        while self._queue and (self._open is None or isinstance(self._open, _Run) or self._open.complete()):
            self._close_open(out)
            self._begin(self._queue.pop(0), out)

    def _begin(self, block: _Run | _ToolCall, out: list) -> None:
        block.index = self._next_index
        self._next_index += 1
        if isinstance(block, _ToolCall):
            content_block = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
        else:
            content_block = dict(_EMPTY_BLOCKS[block.kind])
        out.append({"type": "content_block_start", "index": block.index, "content_block": content_block})
        held = "".join(block.pieces)
        if isinstance(block, _Run):
            block.pieces = []
        if held:
            out.append(self._delta(block, held))
        self._open = block

    def _close_open(self, out: list) -> None:
        if self._open is not None:
            out.append({"type": "content_block_stop", "index": self._open.index})
            if isinstance(self._open, _ToolCall):
                self._open.closed = True
            self._open = None

    @staticmethod
    def _delta(block: _Run | _ToolCall, piece: str) -> dict:
        delta_type, key = _DELTA_KEYS["tool_use" if isinstance(block, _ToolCall) else block.kind]
        return {"type": "content_block_delta", "index": block.index, "delta": {"type": delta_type, key: piece}}

    def _end(self, out: list) -> None:
        self._ended = True
        self._close_open(out)
        while self._queue:
            self._begin(self._queue.pop(0), out)
            self._close_open(out)
        stop_reason, stop_sequence = _stop_reason(self._finish_reason, used_tools=self._call_count > 0,
                                                  refused=self._refused, matched=self._matched)
        usage = _reported_usage(self._usage, self._estimated_input_tokens, self._chars)
        out.append({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": usage})
        out.append({"type": "message_stop"})
