"""OpenAI-compatible upstream answers and stream chunks, and a check of the Anthropic stream grammar the
translation must produce, for the translation's and the provider's tests."""

from __future__ import annotations

import re

MODEL = "deepseek-chat"
SAFE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def completion(message: dict, finish_reason="stop", usage=None, **choice) -> dict:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason,
                     **choice}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def chunk(delta=None, finish_reason=None, *, usage=None, choices=True, **choice) -> dict:
    body = {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason, **choice}]
            if choices else []}
    if usage is not None:
        body["usage"] = usage
    return body


USAGE = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29, "prompt_tokens_details": {"cached_tokens": 4}}
_DELTA_TYPES = {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}
_DELTA_KEYS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


def check_grammar(events: list[dict]) -> list[dict]:
    """Assert Anthropic's stream grammar; the blocks with their concatenated deltas (`partial_json` raw)."""
    assert events[0]["type"] == "message_start"
    assert isinstance(events[0]["message"]["usage"]["input_tokens"], int)
    assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
    assert events[-2]["delta"]["stop_reason"] in ("end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal")
    assert isinstance(events[-2]["usage"]["output_tokens"], int)
    blocks: list[dict] = []
    open_index = None
    for event in events[1:-2]:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None, "a block started before the previous one stopped"
            assert event["index"] == len(blocks)
            open_index = event["index"]
            block = dict(event["content_block"])
            if block["type"] == "tool_use":
                assert SAFE_ID.match(block["id"]) and block["input"] == {}
                block["partial_json"] = ""
            blocks.append(block)
        elif kind == "content_block_delta":
            assert event["index"] == open_index
            block, delta = blocks[open_index], event["delta"]
            assert delta["type"] == _DELTA_TYPES[block["type"]]
            key = _DELTA_KEYS[delta["type"]]
            assert delta[key]
            block[key] += delta[key]
        else:
            assert kind == "content_block_stop" and event["index"] == open_index
            open_index = None
    assert open_index is None
    return blocks
