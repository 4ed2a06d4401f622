#!/usr/bin/env python
"""timeit of the providers' SSE reading: gateway.providers.sse.SSEDecoder against the two readers it
replaced (the Anthropic provider's `_sse_batches` and the OpenAI-compatible provider's framing with
`_sse_payloads`, their byte handling copied here), each decoding the JSON of every event as its provider
does. One 100-event stream per protocol, cut as the network delivers it: one event per read (a token at
a time), a few events per read, and 16 KiB reads (a burst).

    DJANGO_SETTINGS_MODULE=config.settings .venv/bin/python bench/sse_readers.py [--repeat 15] [--number 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import timeit

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gateway.providers.sse import SSEDecoder  # noqa: E402


def anthropic_stream() -> bytes:
    def event(name, data):
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    out = [event("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})]
    out += [event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": f"token {i} of it "}})
            for i in range(96)]
    out += [event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            event("message_stop", {"type": "message_stop"})]
    return out


def openai_stream() -> list[bytes]:
    def chunk(delta, finish=None):
        return b"data: " + orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                                         "model": "deepseek-chat", "choices": [
                                             {"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": f"token {i} of it "}) for i in range(97)]
    out.append(chunk({}, "stop"))
    out.append(b"data: [DONE]\n\n")
    return out


def cuts(events: list[bytes]) -> dict[str, list[bytes]]:
    raw = b"".join(events)
    return {"1/read": events,
            "3/read": [b"".join(events[i:i + 3]) for i in range(0, len(events), 3)],
            "16KiB": [raw[i:i + 16384] for i in range(0, len(raw), 16384)]}


# --- the replaced readers, their byte handling as it was -----------------------------------------------

def old_anthropic(chunks):
    buffer = b""
    for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
        events = []
        while (end := buffer.find(b"\n\n")) != -1:
            frame, buffer = buffer[:end], buffer[end + 2:]
            for line in frame.split(b"\n"):
                if line.startswith(b"data:"):
                    events.append(orjson.loads(line[5:]))


_DONE = object()


def _sse_payloads(frame):
    data = [line[5:] for line in frame.split(b"\n") if line.startswith(b"data:")]
    if not data:
        return []
    value = b"\n".join(data).strip()
    if not value:
        return []
    if value == b"[DONE]":
        return [_DONE]
    return [orjson.loads(value)]


def old_openai(chunks):
    buffer = b""
    for data in chunks:
        buffer += data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        events = []
        while (end := buffer.find(b"\n\n")) != -1:
            frame, buffer = buffer[:end], buffer[end + 2:]
            for payload in _sse_payloads(frame):
                if payload is _DONE:
                    return
                events.append(payload)


# --- the new reader, as each provider now uses it ------------------------------------------------------

def new_anthropic(chunks):
    feed = SSEDecoder(orjson.loads).feed
    for chunk in chunks:
        if events := feed(chunk):  # noqa: F841
            pass


def new_openai(chunks):
    decoder = SSEDecoder()
    for chunk in chunks:
        events = []
        for data in decoder.feed(chunk):
            value = data.strip()
            if not value:
                continue
            if value == b"[DONE]":
                return
            events.append(orjson.loads(value))


# --- the Anthropic provider's async generator as it runs, over a response that yields the cut chunks ---

class _Response:
    def __init__(self, chunks):
        self.chunks = chunks

    async def aiter_bytes(self):
        for chunk in self.chunks:
            yield chunk


async def old_sse_batches(response):
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
        events = []
        while (end := buffer.find(b"\n\n")) != -1:
            frame, buffer = buffer[:end], buffer[end + 2 :]
            for line in frame.split(b"\n"):
                if line.startswith(b"data:"):
                    events.append(orjson.loads(line[5:]))
        if events:
            yield events


def _drain(agen):
    while True:
        try:
            agen.asend(None).send(None)
        except StopIteration:
            continue
        except StopAsyncIteration:
            return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=300)
    args = parser.parse_args()
    print(f"µs per 100-event stream, best of {args.repeat} interleaved runs of {args.number}")
    for name, stream, old, new in (("anthropic", anthropic_stream(), old_anthropic, new_anthropic),
                                   ("openai", openai_stream(), old_openai, new_openai)):
        for cut, chunks in cuts(stream).items():
            crlf = [c.replace(b"\n", b"\r\n") for c in chunks]
            for label, data in ((cut, chunks), (cut + " CRLF", crlf)):
                times = {old: float("inf"), new: float("inf")}
                for _ in range(args.repeat):  # interleaved, so that the shared machine's drift hits both
                    for reader in (old, new):
                        took = timeit.Timer(lambda: reader(data), timer=time.process_time).timeit(args.number) / args.number * 1e6
                        times[reader] = min(times[reader], took)
                print(f"{name:9} {label:13} old {times[old]:7.1f}  new {times[new]:7.1f}  "
                      f"({(times[new] / times[old] - 1) * 100:+.0f}%)")
    from gateway.providers.anthropic import _sse_batches
    old, new = (lambda data: _drain(old_sse_batches(_Response(data)))), (lambda data: _drain(_sse_batches(_Response(data))))
    print("the Anthropic provider's _sse_batches, as an async generator (no event loop: nothing awaits I/O)")
    for cut, chunks in cuts(anthropic_stream()).items():
        times = {old: float("inf"), new: float("inf")}
        for _ in range(args.repeat):
            for reader in (old, new):
                took = timeit.Timer(lambda: reader(chunks), timer=time.process_time).timeit(args.number) / args.number * 1e6
                times[reader] = min(times[reader], took)
        print(f"anthropic {cut:13} old {times[old]:7.1f}  new {times[new]:7.1f}  "
              f"({(times[new] / times[old] - 1) * 100:+.0f}%)")


if __name__ == "__main__":
    main()
