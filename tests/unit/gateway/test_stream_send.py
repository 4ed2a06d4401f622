"""gateway.handler sends a relayed stream's chunks to the ASGI send itself (not through Django's
send_response): the same messages, and the body closed when the client leaves."""

from __future__ import annotations

import asyncio

from django.http import StreamingHttpResponse

from gateway.handler import _send_stream


async def test_a_stream_is_sent_as_djangos_send_response_sends_it():
    async def body():
        yield b"data: one\n\n"
        yield b"data: two\n\n"

    chunks = body()
    response = StreamingHttpResponse(chunks, content_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    response.set_cookie("seen", "1")
    sent = []

    async def send(message):
        sent.append(message)

    await _send_stream(response, chunks, send)
    start = sent[0]
    assert (start["type"], start["status"]) == ("http.response.start", 200)
    assert (b"Content-Type", b"text/event-stream") in start["headers"]
    assert (b"Cache-Control", b"no-cache") in start["headers"]
    assert any(name == b"Set-Cookie" and value.startswith(b"seen=1") for name, value in start["headers"])
    assert sent[1:] == [{"type": "http.response.body", "body": b"data: one\n\n", "more_body": True},
                        {"type": "http.response.body", "body": b"data: two\n\n", "more_body": True},
                        {"type": "http.response.body"}]


async def test_a_client_leaving_mid_stream_closes_the_body():
    closed = asyncio.Event()
    second_sent = asyncio.Event()

    async def body():
        try:
            yield b"first"
            yield b"second"
            await asyncio.Event().wait()  # the upstream has nothing more yet
        finally:
            closed.set()  # where the pipeline settles the usage row

    async def send(message):
        if message.get("body") == b"second":
            second_sent.set()

    chunks = body()
    task = asyncio.create_task(_send_stream(StreamingHttpResponse(chunks), chunks, send))
    await second_sent.wait()
    task.cancel()  # as gateway.handler cancels the send when the client disconnects
    await asyncio.gather(task, return_exceptions=True)
    assert closed.is_set()
