"""Microbenchmark of the stream encoders' per-event path: feed a 100-event Anthropic stream to each codec.

    python bench/codec_feed.py [repeats]

Prints, per codec, the best of `repeats` runs of 200 streams, as microseconds per stream and per event.
Pure CPU, no server: compare two commits on a quiet machine (each figure is a best-of, so noise from
other processes only ever makes it slower).
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.core import ResponseContext, Usage  # noqa: E402
from gateway.protocols import anthropic_messages, gemini, openai_chat, openai_responses  # noqa: E402

STREAMS = 200


def events() -> list[dict]:
    """message_start, one text block of 91 deltas, one tool call with 2 argument fragments, the end: 100 events."""
    out: list[dict] = [{"type": "message_start", "message": {"id": "msg_1", "content": [],
                                                             "usage": {"input_tokens": 10, "output_tokens": 1}}},
                       {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
    out += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"word{n} "}}
            for n in range(91)]
    out += [{"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1,
             "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
            {"type": "content_block_stop", "index": 1},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 42}}]
    out.append({"type": "message_stop"})
    assert len(out) == 100, len(out)
    return out


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    stream = events()
    usage = Usage(input_tokens=10, output_tokens=42)
    for name, codec in (("openai_chat", openai_chat), ("openai_responses", openai_responses),
                        ("gemini", gemini), ("anthropic_messages", anthropic_messages)):
        ctx = ResponseContext(request_id="req_0123456789abcdef", created=1700000000, model="claude-test",
                              options={"include_usage": True, "sse": True})

        def run() -> None:
            encoder = codec.StreamEncoder(ctx)
            feed = encoder.feed
            for event in stream:
                feed(event)
            encoder.finish(usage)

        best = min(timeit.repeat(run, number=STREAMS, repeat=repeats)) / STREAMS
        print(f"{name:20} {best * 1e6:8.1f} us/stream {best * 1e6 / len(stream):6.2f} us/event")


if __name__ == "__main__":
    main()
