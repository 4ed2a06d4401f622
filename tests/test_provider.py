"""The Anthropic provider's SSE decoding and error mapping (no network)."""

from __future__ import annotations

import pytest

from gateway.core import GatewayError
from gateway.providers.anthropic import AnthropicProvider, _sse_batches
from gateway.providers.errors import upstream_error


class FakeResponse:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def aiter_bytes(self):
        for chunk in self.chunks:
            yield chunk


async def collect(response) -> list[list[dict]]:
    return [batch async for batch in _sse_batches(response)]


async def test_sse_frames_split_across_chunks_and_crlf_are_decoded():
    response = FakeResponse(b'event: message_start\r\ndata: {"type":"mess', b'age_start"}\r\n\r\nevent: ping\n',
                            b'data: {"type":"ping"}\n\n')
    assert await collect(response) == [[{"type": "message_start"}], [{"type": "ping"}]]


async def test_events_that_arrive_together_form_one_batch():
    response = FakeResponse(b'data: {"type":"a"}\n\ndata: {"type":"b"}\n\ndata: {"ty', b'pe":"c"}\n\n')
    assert await collect(response) == [[{"type": "a"}, {"type": "b"}], [{"type": "c"}]]


async def test_an_error_event_mid_stream_becomes_a_gateway_error_after_what_came_before():
    provider = AnthropicProvider(client=None)
    response = FakeResponse(b'data: {"type":"content_block_delta"}\n\n'
                            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    received = []
    with pytest.raises(GatewayError) as caught:
        async for batch in provider._events(response):
            received.append(batch)
    assert received == [[{"type": "content_block_delta"}]]
    assert (caught.value.status, caught.value.type) == (503, "overloaded_error")


async def test_a_corrupt_event_is_a_502_not_a_crash():
    provider = AnthropicProvider(client=None)
    with pytest.raises(GatewayError) as caught:
        [event async for event in provider._events(FakeResponse(b"data: {not json\n\n"))]
    assert caught.value.status == 502


@pytest.mark.parametrize(
    "upstream, client_status, code",
    [(400, 400, None), (401, 502, None), (403, 502, None), (404, 404, "model_not_found"), (413, 413, None),
     (429, 429, "rate_limit_exceeded"), (500, 502, None), (529, 503, "upstream_overloaded")],
)
def test_upstream_statuses_map_to_meaningful_client_statuses(upstream, client_status, code):
    error = upstream_error(upstream, "some_error", "details", retry_after=3 if upstream == 429 else None)
    assert (error.status, error.code) == (client_status, code)
