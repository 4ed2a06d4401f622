"""Prompt-cache breakpoints for clients whose protocol cannot mark them (OpenAI chat and Responses).

Anthropic caches a request's prefix up to each block marked `cache_control` (render order: tools,
system, messages) and bills a later request that repeats it at a tenth of the input price, a write
at 1.25 times (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching). Its rules that
shape this module:

- at most 4 blocks may carry `cache_control` in one request (more is a 400);
- a prefix shorter than the model's minimum is not cached (no error, the marker is simply ignored);
- a hit is looked for at the block boundaries up to about 20 blocks before each breakpoint, so a
  breakpoint that moves forward with the conversation still finds the prefix the previous turn wrote,
  as long as the turn added fewer blocks than that.

`with_breakpoints` adds, within those rules: one breakpoint after the system prompt and tools (the
part every turn of a thread repeats), one on the last stable turn (the message before the newest user
message: the previous turns' whole history), and, when a turn added more blocks than the lookback
reaches, one on the previous turn's stable message, which the previous request wrote exactly.
Pure: no Django, no I/O; the request's dicts are copied where marked, never changed (the stored
conversation shares its blocks with the request).
"""

from __future__ import annotations

import math
from typing import Any

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
EPHEMERAL = {"type": "ephemeral"}
# Blocks Anthropic takes `cache_control` on; thinking blocks refuse it, server results are not ours to mark.
MARKABLE = frozenset({"text", "image", "document", "tool_use", "tool_result", "search_result"})
_IMAGE_CHARS = 1600 * 4  # core.IMAGE_TOKENS_ESTIMATE, in characters

# Minimum cacheable prompt length per model family (Anthropic's prompt-caching docs), longest prefix first.
_MINIMUMS = (
    ("claude-opus-4-5", 4096), ("claude-opus-4-6", 4096), ("claude-opus-4-7", 4096),
    ("claude-haiku-4-5", 4096), ("claude-3-5-haiku", 2048), ("claude-3-haiku", 2048),
)  # fmt: skip
DEFAULT_MINIMUM = 1024  # Sonnet 4.x and 3.7, Opus 4 and 4.1


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix `model` caches; unknown models get Sonnet's 1024."""
    for prefix, minimum in _MINIMUMS:
        if model.startswith(prefix):
            return minimum
    return DEFAULT_MINIMUM


def count_breakpoints(params: dict[str, Any]) -> int:
    """Blocks already carrying `cache_control` (tools, system, message blocks and tool_result contents)."""
    count = sum(1 for tool in params.get("tools") or () if isinstance(tool, dict) and "cache_control" in tool)
    system = params.get("system")
    if isinstance(system, list):
        count += sum(1 for block in system if isinstance(block, dict) and "cache_control" in block)
    for message in params.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict):
                continue
            count += "cache_control" in block
            inner = block.get("content")
            if isinstance(inner, list):
                count += sum(1 for item in inner if isinstance(item, dict) and "cache_control" in item)
    return count


def _chars(value: Any) -> int:
    """Characters of text in `value` (strings anywhere in it), base64 media at a fixed amount each."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if item.get("type") == "base64" and "data" in item:
                total += _IMAGE_CHARS
                continue
            stack.extend(item.values())
    return total


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _markable(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") not in MARKABLE or "cache_control" in block:
        return False
    return block["type"] != "text" or bool(block.get("text"))  # an empty text block refuses it


def _blocks(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content if isinstance(content, list) else []


def _mark_message(message: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of `message` with its last markable block marked; None when it has none."""
    blocks = _blocks(message)
    for index in range(len(blocks) - 1, -1, -1):
        if _markable(blocks[index]):
            marked = [*blocks[:index], {**blocks[index], "cache_control": dict(EPHEMERAL)}, *blocks[index + 1:]]
            return {**message, "content": marked}
    return None


def _user_turns(messages: list[Any]) -> list[int]:
    return [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]


def with_breakpoints(params: dict[str, Any], *, min_tokens: int) -> dict[str, Any]:
    """`params` (an Anthropic Messages body) with cache breakpoints added; `params` itself if none fit."""
    if "cache_control" in params:  # the client asked for Anthropic's automatic caching already
        return params
    budget = MAX_BREAKPOINTS - count_breakpoints(params)
    tools, system = params.get("tools") or [], params.get("system")
    messages = params.get("messages") or []
    head_chars = _chars(tools) + _chars(system)

    def cacheable(through: int) -> bool:  # the prefix through messages[through] is long enough
        return _tokens(head_chars + sum(_chars(m.get("content")) for m in messages[:through + 1])) >= min_tokens

    # In order of value: the head every turn repeats, the whole history, the bridge to the last turn's write.
    head_open = ((isinstance(system, str) and bool(system)) or (isinstance(system, list) and bool(system)
                 and _markable(system[-1])) or (not system and bool(tools) and isinstance(tools[-1], dict)
                                                and "cache_control" not in tools[-1]))
    wanted: list[int] = [-1] if head_open and _tokens(head_chars) >= min_tokens else []
    users = _user_turns(messages)
    stable = users[-1] - 1 if users else -1
    if stable >= 0 and cacheable(stable):
        wanted.append(stable)
        previous = users[-2] - 1 if len(users) >= 2 else -1
        between = sum(len(_blocks(m)) for m in messages[previous + 1:stable + 1])
        if previous >= 0 and between > LOOKBACK_BLOCKS and cacheable(previous):
            wanted.append(previous)
    out = dict(params)
    changed = False
    for place in wanted[:max(budget, 0)]:
        if place >= 0:
            marked = _mark_message(messages[place])
            if marked is not None:
                if not changed or out["messages"] is messages:
                    out["messages"] = list(messages)
                out["messages"][place] = marked
                changed = True
        elif isinstance(system, str) and system:
            out["system"] = [{"type": "text", "text": system, "cache_control": dict(EPHEMERAL)}]
            changed = True
        elif isinstance(system, list) and system and _markable(system[-1]):
            out["system"] = [*system[:-1], {**system[-1], "cache_control": dict(EPHEMERAL)}]
            changed = True
        elif not system and tools and isinstance(tools[-1], dict) and "cache_control" not in tools[-1]:
            out["tools"] = [*tools[:-1], {**tools[-1], "cache_control": dict(EPHEMERAL)}]
            changed = True
    return out if changed else params
