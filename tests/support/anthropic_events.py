"""Anthropic messages and stream events as an upstream sends them, for the codec tests' encoders, and a
strict parser of an Anthropic SSE body."""

from __future__ import annotations

import json
from typing import Any


def anthropic_message(content, stop_reason="end_turn", **usage):
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def block_start(index, block):
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index, delta):
    return {"type": "content_block_delta", "index": index, "delta": delta}


def text_delta(index, value):
    return block_delta(index, {"type": "text_delta", "text": value})


def json_delta(index, fragment):
    return block_delta(index, {"type": "input_json_delta", "partial_json": fragment})


def block_stop(index):
    return {"type": "content_block_stop", "index": index}


def message_start():
    message = {"id": "msg_1", "content": [], "usage": {"input_tokens": 10, "output_tokens": 1}}
    return {"type": "message_start", "message": message}


def message_end(stop_reason):
    return [
        {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 42}},
        {"type": "message_stop"},
    ]


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse an SSE body strictly: every event is exactly `event: T` + `data: JSON` with T == data.type."""
    text = raw.decode()
    assert text.endswith("\n\n")
    events = []
    for chunk in text[:-2].split("\n\n"):
        event_line, data_line = chunk.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: "), chunk
        name, data = event_line[len("event: ") :], json.loads(data_line[len("data: ") :])
        assert data["type"] == name
        events.append((name, data))
    return events
