"""The OpenAI-compatible upstream provider: the HTTP client against a small aiohttp server in the test's
own event loop, and what the client sees of the error objects the upstream answers with."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.core import GatewayError, estimate_input_tokens
from gateway.protocols.openai_chat.upstream import StreamTranslator, from_openai_response, to_openai_request
from gateway.providers import PROVIDERS, UpstreamConfig, close_providers, get_provider
from gateway.providers.openai_compat import JinaProvider, OpenAICompatProvider, client_errors
from tests.support.openai_upstream import MODEL, USAGE, check_grammar, chunk, completion

# --- error objects in answers --------------------------------------------------------------------------


def test_error_payloads_and_answers_without_choices_are_gateway_errors():
    with pytest.raises(GatewayError) as caught, client_errors():
        from_openai_response({"error": {"message": "bad", "type": "server_error"}}, model=MODEL)
    assert caught.value.status == 502  # no status given: an upstream failure
    with pytest.raises(GatewayError) as caught, client_errors():  # vLLM gives the status as `code`
        from_openai_response({"error": {"message": "bad", "type": "BadRequestError", "code": 400}}, model=MODEL)
    assert (caught.value.status, caught.value.message[-6:]) == (400, "): bad")
    for payload in ({"id": "x", "choices": []}, [], {"choices": ["x"]}):
        with pytest.raises(GatewayError) as caught, client_errors():
            from_openai_response(payload, model=MODEL)
        assert caught.value.status == 502


def test_an_error_chunk_raises_the_upstream_error():
    translator = StreamTranslator(model=MODEL)
    translator.feed(chunk({"content": "partial"}))
    with pytest.raises(GatewayError) as caught, client_errors():
        translator.feed({"error": {"message": "The server is overloaded", "type": "server_error", "code": 503}})
    assert (caught.value.status, caught.value.type) == (503, "overloaded_error")
    with pytest.raises(GatewayError) as caught, client_errors():
        StreamTranslator(model=MODEL).feed({"error": {"message": "boom", "type": "server_error"}})
    assert caught.value.status == 502
    assert "boom" in caught.value.message


# --- HTTP ------------------------------------------------------------------------------------------------


class Upstream:
    """A tiny OpenAI-compatible server; each test sets `reply` (an aiohttp handler)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        self.reply = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers), await request.json()))
        return await self.reply(request)


@pytest.fixture
async def upstream():
    fake = Upstream()
    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("/v1"))
    yield fake
    await server.close()


@pytest.fixture
async def provider(upstream):
    instance = OpenAICompatProvider.from_config(UpstreamConfig(
        kind="openai", base_url=upstream.url + "/", api_key="sk-test", connect_timeout=2, first_token_timeout=1.0,
        timeout=10))
    yield instance
    await instance.aclose()


def sse(*items) -> bytes:
    return b"".join(b"data: " + (item if isinstance(item, bytes) else orjson.dumps(item)) + b"\n\n" for item in items)


def replying(status=200, body=None, *, headers=None, delay=0.0):
    async def reply(request):
        await asyncio.sleep(delay)
        return web.Response(status=status, body=orjson.dumps(body) if not isinstance(body, bytes) else body,
                            content_type="application/json", headers=headers)
    return reply


def streaming(*parts: bytes, pause=0.0, first_delay=0.0, abort=False):
    async def reply(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(first_delay)
        for part in parts:
            await response.write(part)
            await asyncio.sleep(pause)
        if abort:
            request.transport.close()
            return response
        await response.write_eof()
        return response
    return reply


BODY = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
STREAM = [
    sse(chunk({"role": "assistant", "content": ""})),
    sse(chunk({"content": "Hello"}), chunk({"content": " there"})),
    sse(chunk({}, "stop")),
    sse(chunk(choices=False, usage=USAGE), b"[DONE]"),
]


async def collect(provider, body=BODY) -> list[list[dict]]:
    async with provider.stream(body) as batches:
        return [batch async for batch in batches]


def test_both_providers_are_registered():
    assert PROVIDERS["openai"] == "gateway.providers.openai_compat.OpenAICompatProvider"
    assert PROVIDERS["jina"] == "gateway.providers.openai_compat.JinaProvider"
    assert OpenAICompatProvider(base_url="").base_url == "https://api.openai.com/v1"
    assert JinaProvider().base_url == "https://api.jina.ai/v1"


async def test_create_posts_the_translated_request_and_translates_the_answer(upstream, provider):
    upstream.reply = replying(body=completion({"content": "Hi!"}))
    message = await provider.create(BODY, betas=("some-beta",))
    assert message["content"] == [{"type": "text", "text": "Hi!"}]
    assert message["usage"]["input_tokens"] == 10
    path, headers, sent = upstream.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert sent == to_openai_request(BODY, stream=False)


async def test_stream_yields_grammatical_events_per_network_read(upstream, provider):
    upstream.reply = streaming(*STREAM, pause=0.02)
    batches = await collect(provider)
    assert len(batches) > 1
    events = [event for batch in batches for event in batch]
    assert check_grammar(events) == [{"type": "text", "text": "Hello there"}]
    assert events[-2]["usage"]["output_tokens"] == 9
    assert upstream.requests[0][2]["stream_options"] == {"include_usage": True}


async def test_sse_frames_split_across_reads_and_crlf_are_decoded(upstream, provider):
    raw = b"".join(STREAM).replace(b"\n", b"\r\n")
    upstream.reply = streaming(b": keep-alive\r\n\r\n", *[raw[i:i + 7] for i in range(0, len(raw), 7)], pause=0.001)
    events = [event for batch in await collect(provider) for event in batch]
    assert check_grammar(events) == [{"type": "text", "text": "Hello there"}]


@pytest.mark.parametrize("status, body, headers, expected", [
    (429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
     {"retry-after": "7"}, (429, "rate_limit_exceeded", 7)),
    (429, {"error": {"message": "Slow down", "type": "rate_limit"}}, {"retry-after-ms": "1500"},
     (429, "rate_limit_exceeded", 2)),
    (429, {"error": {"message": "You exceeded your quota", "type": "insufficient_quota"}}, {}, (502, None, None)),
    (503, {"error": {"message": "The engine is currently overloaded"}}, {"retry-after": "3"},
     (503, "upstream_overloaded", 3)),
    (500, {"error": {"message": "oops", "type": "server_error"}}, {}, (502, None, None)),
    (401, {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}, {}, (502, None, None)),
    (400, {"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}}, {}, (400, None, None)),
    (422, {"detail": [{"loc": ["body", "x"], "msg": "bad"}]}, {}, (400, None, None)),
    (404, {"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404},
     {}, (404, "model_not_found", None)),
])
async def test_error_statuses_map_to_client_errors(upstream, provider, status, body, headers, expected):
    upstream.reply = replying(status, body, headers=headers)
    for call in (provider.create(BODY), collect(provider)):
        with pytest.raises(GatewayError) as caught:
            await call
        assert (caught.value.status, caught.value.code, caught.value.retry_after) == expected
    if status == 400:
        assert caught.value.message.endswith(": max_tokens is too large")


async def test_a_non_json_error_body_still_maps(upstream, provider):
    upstream.reply = replying(502, b"<html>Bad gateway</html>")
    with pytest.raises(GatewayError) as caught:
        await provider.create(BODY)
    assert caught.value.status == 502
    assert "Bad gateway" in caught.value.message


async def test_connection_refused_is_upstream_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAICompatProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="k")
    try:
        for call in (provider.create(BODY), collect(provider), provider.embeddings({"model": "e", "input": "x"})):
            with pytest.raises(GatewayError) as caught:
                await call
            assert (caught.value.status, caught.value.code) == (502, "upstream_unreachable")
    finally:
        await provider.aclose()


async def test_slow_headers_time_out_with_first_token_timeout(upstream):
    provider = OpenAICompatProvider(base_url=upstream.url, first_token_timeout=0.2)
    upstream.reply = replying(body=completion({"content": "late"}), delay=1.0)
    try:
        for call in (provider.create(BODY), collect(provider)):
            with pytest.raises(GatewayError) as caught:
                await call
            assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")
    finally:
        await provider.aclose()


async def test_a_slow_first_chunk_times_out_but_slow_later_chunks_do_not(upstream):
    provider = OpenAICompatProvider(base_url=upstream.url, first_token_timeout=0.3)
    try:
        upstream.reply = streaming(*STREAM, first_delay=1.0)
        with pytest.raises(GatewayError) as caught:
            await collect(provider)
        assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")
        upstream.reply = streaming(*STREAM, pause=0.4)
        check_grammar([event for batch in await collect(provider) for event in batch])
    finally:
        await provider.aclose()


async def test_the_whole_request_timeout_applies_to_streams(upstream):
    provider = OpenAICompatProvider(base_url=upstream.url, timeout=0.5)
    upstream.reply = streaming(*STREAM, pause=0.3)
    try:
        with pytest.raises(GatewayError) as caught:
            await collect(provider)
        assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")
    finally:
        await provider.aclose()


async def test_a_stream_closed_early_is_an_error_after_what_came_before(upstream, provider):
    upstream.reply = streaming(*STREAM[:2], pause=0.02)
    received = []
    with pytest.raises(GatewayError) as caught:
        async with provider.stream(BODY) as batches:
            async for batch in batches:
                received += batch
    assert caught.value.status == 502
    assert [e["type"] for e in received][:1] == ["message_start"]
    assert "message_stop" not in [e["type"] for e in received]


async def test_a_dropped_connection_mid_stream_is_a_502(upstream, provider):
    upstream.reply = streaming(*STREAM[:2], b"data: {\"id\":", pause=0.02, abort=True)
    with pytest.raises(GatewayError) as caught:
        await collect(provider)
    assert caught.value.status == 502


async def test_an_error_chunk_mid_stream_ends_the_stream_with_that_error(upstream, provider):
    error = {"error": {"message": "Internal error while generating", "type": "server_error"}}
    upstream.reply = streaming(STREAM[0], sse(chunk({"content": "partial"}), error))
    received = []
    with pytest.raises(GatewayError) as caught:
        async with provider.stream(BODY) as batches:
            async for batch in batches:
                received += batch
    assert caught.value.status == 502 and "Internal error while generating" in caught.value.message
    assert [e["type"] for e in received] == ["message_start", "content_block_start", "content_block_delta"]


async def test_a_malformed_chunk_is_a_502(upstream, provider):
    upstream.reply = streaming(STREAM[0], b"data: {not json\n\n")
    with pytest.raises(GatewayError) as caught:
        await collect(provider)
    assert caught.value.status == 502 and "malformed" in caught.value.message
    upstream.reply = replying(body=b"{not json")
    with pytest.raises(GatewayError) as caught:
        await provider.create(BODY)
    assert caught.value.status == 502 and "malformed" in caught.value.message


async def test_a_json_error_instead_of_a_stream_is_that_error(upstream, provider):
    upstream.reply = replying(200, {"error": {"message": "model is loading", "type": "server_error", "code": 503}})
    with pytest.raises(GatewayError) as caught:
        await collect(provider)
    assert caught.value.status == 503


async def test_leaving_the_stream_early_closes_the_upstream_connection(upstream, provider):
    disconnected = asyncio.Event()

    async def endless(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(STREAM[0])
            for _ in range(1000):
                await asyncio.sleep(0.01)
                await response.write(sse(chunk({"content": "more "})))
        except BaseException:
            disconnected.set()
            raise
        return response

    upstream.reply = endless
    async with provider.stream(BODY) as batches:
        await anext(batches)
        await anext(batches)
    await asyncio.wait_for(disconnected.wait(), 3)


async def test_count_tokens_is_an_estimate_without_a_request(upstream, provider):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 400}]}
    assert await provider.count_tokens(body) == estimate_input_tokens(body) > 100
    assert upstream.requests == []


async def test_embeddings_and_rerank_pass_through(upstream, provider):
    embedded = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    upstream.reply = replying(body=embedded)
    request = {"model": "text-embedding-3-small", "input": ["hello"], "encoding_format": "float"}
    assert await provider.embeddings(request) == embedded
    reranked = {"model": "jina-reranker-v2", "usage": {"total_tokens": 12},
                "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}
    upstream.reply = replying(body=reranked)
    rerank_request = {"model": "jina-reranker-v2", "query": "q", "documents": ["a", "b"], "top_n": 2}
    assert await provider.rerank(rerank_request) == reranked
    assert [(path, sent) for path, _, sent in upstream.requests] == [
        ("/v1/embeddings", request), ("/v1/rerank", rerank_request)]


async def test_jina_serves_embeddings_and_rerank_only(upstream):
    provider = JinaProvider.from_config(UpstreamConfig(kind="jina", base_url=upstream.url, api_key="jina_x"))
    try:
        for call in (provider.create(BODY), collect(provider)):
            with pytest.raises(GatewayError) as caught:
                await call
            assert caught.value.status == 400 and "embeddings and rerank only" in caught.value.message
        upstream.reply = replying(body={"results": []})
        assert await provider.rerank({"model": "r", "query": "q", "documents": []}) == {"results": []}
        assert upstream.requests[0][1]["Authorization"] == "Bearer jina_x"
    finally:
        await provider.aclose()


def echoing_credentials(status):
    """An upstream (or proxy) that puts the request's Authorization header in its error body."""
    async def reply(request):
        echoed = request.headers.get("Authorization", "")
        return web.Response(status=status, content_type="application/json", body=orjson.dumps(
            {"error": {"message": f"Invalid header Authorization: {echoed} (got {echoed.split()[-1]})",
                       "type": "invalid_request_error"}}))
    return reply


@pytest.mark.parametrize("status", [400, 401, 429, 500])
async def test_an_upstream_echoing_the_credential_never_shows_it_to_the_client(upstream, status):
    instance = get_provider(UpstreamConfig(kind="openai", base_url=upstream.url + "/",
                                           api_key="opaque-operator-token-9f8e7d"))
    upstream.reply = echoing_credentials(status)
    try:
        for call in (instance.create(BODY), collect(instance)):
            with pytest.raises(GatewayError) as caught:
                await call
            assert "opaque-operator-token" not in caught.value.message
            assert "invalid_request_error" in caught.value.message  # the upstream's reason, redacted
    finally:
        await close_providers()
