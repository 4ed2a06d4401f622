"""The Anthropic provider's SSE decoding and error mapping (no network)."""

from __future__ import annotations

import anthropic
import httpx2
import orjson
import pytest

from gateway.core import GatewayError
from gateway.providers.anthropic import AnthropicProvider, _from_sdk_error
from gateway.providers.errors import credential_register, redact, upstream_error


class FakeResponse:
    """A body of identity encoding read raw (as the provider reads one), or a compressed one that only
    `aiter_bytes` decodes."""

    def __init__(self, *chunks: bytes, encoding: str | None = None) -> None:
        self.chunks = chunks
        self.headers = httpx2.Headers({"content-encoding": encoding} if encoding else {})
        self.extensions = {}  # not made by gateway.providers.aiohttp_transport: read through httpx2

    async def aiter_raw(self):
        for chunk in self.chunks:
            yield b"compressed" if self.headers.get("content-encoding") else chunk

    async def aiter_bytes(self):
        for chunk in self.chunks:
            yield chunk


async def collect(response) -> list[list[dict]]:
    return [batch async for batch in AnthropicProvider(client=None)._events(response)]


async def test_sse_frames_split_across_chunks_and_crlf_are_decoded():
    response = FakeResponse(b'event: message_start\r\ndata: {"type":"mess', b'age_start"}\r\n\r\nevent: ping\n',
                            b'data: {"type":"ping"}\n\n')
    assert await collect(response) == [[{"type": "message_start"}], [{"type": "ping"}]]


async def test_a_crlf_split_between_reads_and_lone_cr_line_ends_are_decoded():
    response = FakeResponse(b'data: {"type":"a"}\r\n\r', b'\ndata: {"type":"b"}\r\r')
    assert await collect(response) == [[{"type": "a"}], [{"type": "b"}]]


async def test_events_that_arrive_together_form_one_batch():
    response = FakeResponse(b'data: {"type":"a"}\n\ndata: {"type":"b"}\n\ndata: {"ty', b'pe":"c"}\n\n')
    assert await collect(response) == [[{"type": "a"}, {"type": "b"}], [{"type": "c"}]]


async def test_a_compressed_body_is_read_decoded():
    response = FakeResponse(b'data: {"type":"a"}\n\n', encoding="gzip")
    assert await collect(response) == [[{"type": "a"}]]


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


# --- Upstream error text reaches clients only redacted ---------------------------------------------

ECHOED = ('{"error": {"type": "authentication_error", "message": "invalid x-api-key", "request": {"headers": '
          '{"Authorization": "Bearer sk-ant-api03-SECRETSECRET", "x-api-key": "sk-ant-api03-SECRETSECRET"}}}}')


@pytest.mark.parametrize("text", [
    "Authorization: Bearer sk-ant-api03-abcdefghijkl", "authorization=Basic dXNlcjpwYXNz", "bearer eyJhbGciOi.x.y",
    '"x-api-key": "whatever-it-is-1234"', "x-goog-api-key=AIzaSyABCDEFG", "key sk-proj-abcdefghijkl leaked",
    "gateway key sk_cdx_abcdefghijkl_ABCDEFGH", "api_key: opaque123456", ECHOED,
])
def test_credential_looking_tokens_are_redacted(text):
    redacted = redact(text)
    for secret in ("sk-ant-api03", "dXNlcjpwYXNz", "eyJhbGciOi", "whatever-it-is", "AIzaSy", "sk-proj", "sk_cdx_",
                   "opaque123456", "SECRETSECRET"):
        assert secret not in redacted
    assert "[redacted]" in redacted


def test_configured_credentials_are_redacted_whatever_their_shape(settings):
    settings.ANTHROPIC_API_KEY = "plain-operator-credential-42"
    credential_register("another-opaque-upstream-token")
    message = upstream_error(400, "invalid_request_error",
                             "echo: plain-operator-credential-42 and another-opaque-upstream-token").message
    assert "plain-operator-credential" not in message and "another-opaque" not in message
    credential_register("short")  # too short to be a credential: not a redaction of ordinary words
    assert "short" in redact("a short reason")


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 529])
def test_upstream_error_messages_are_ours_with_a_short_redacted_reason(status):
    error = upstream_error(status, "authentication_error", ECHOED * 5)
    assert "SECRETSECRET" not in error.message and "sk-ant" not in error.message
    assert len(error.message) < 400
    assert error.message.startswith("The upstream provider")


def test_an_upstream_error_type_outside_our_vocabulary_is_not_relayed():
    error = upstream_error(500, "Bearer sk-ant-api03-SECRETSECRET", "boom")
    assert "SECRET" not in error.message and "(500 api_error)" in error.message


@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_the_anthropic_provider_maps_an_echoing_upstream_error_to_a_redacted_one(status):
    request = httpx2.Request("POST", "https://upstream.invalid/v1/messages")
    response = httpx2.Response(status, request=request, content=ECHOED.encode())
    exc = anthropic.APIStatusError(ECHOED, response=response, body=orjson.loads(ECHOED))
    error = _from_sdk_error(exc)
    assert "SECRETSECRET" not in error.message and "sk-ant" not in error.message


async def test_a_mid_stream_error_event_is_redacted():
    provider = AnthropicProvider(client=None)
    event = {"type": "error", "error": {"type": "api_error", "message": "Authorization: Bearer sk-ant-api03-SECRET1"}}
    with pytest.raises(GatewayError) as caught:
        [batch async for batch in provider._events(FakeResponse(b"data: " + orjson.dumps(event) + b"\n\n"))]
    assert "SECRET1" not in caught.value.message
