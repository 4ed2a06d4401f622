"""The Anthropic provider's SDK client and its shortcuts (gateway/providers/anthropic.py): what it sends and
reads must be what the stock SDK client over httpx2 sends and reads, on a real local server."""

from __future__ import annotations

import gzip

import anthropic
import httpx2
import orjson
import pytest
from aiohttp import web

from gateway.providers import UpstreamConfig
from gateway.providers.anthropic import AnthropicProvider, _options

ANSWER = {"id": "msg_1", "type": "message", "content": [{"type": "text", "text": "hi"}]}


@pytest.fixture
async def server():
    """A local HTTP server: /v1/messages answers (gzipped when asked) and records what it got; /moved
    redirects to it; every answer sets a cookie."""
    seen: list[dict] = []

    async def messages(request: web.Request) -> web.Response:
        seen.append({"headers": dict(request.headers), "body": await request.read(), "path": request.path})
        body = orjson.dumps(ANSWER)
        headers = {"Content-Type": "application/json", "Set-Cookie": "lb=tenant-a; Path=/"}
        if request.query.get("gzip"):
            return web.Response(body=gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"})
        return web.Response(body=body, headers=headers)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/v1/messages")

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/moved", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


def stock_client(base_url: str) -> anthropic.AsyncAnthropic:
    """The SDK as it comes, on httpx2 and its vendored aiohttp adapter."""
    timeout = anthropic.Timeout(30, connect=5)
    return anthropic.AsyncAnthropic(api_key="sk-test", base_url=base_url, max_retries=0, timeout=timeout,
                                    http_client=anthropic.DefaultAioHttpClient(timeout=timeout))


def provider(base_url: str) -> AnthropicProvider:
    return AnthropicProvider.from_config(UpstreamConfig(kind="anthropic", base_url=base_url, api_key="sk-test",
                                                        timeout=30, connect_timeout=5))


async def built(client: anthropic.AsyncAnthropic, path: str, betas: tuple[str, ...]) -> tuple:
    options = await client._prepare_options(_options(path, betas, {"model": "m", "max_tokens": 1}))
    request = client._build_request(options)
    return request.method, str(request.url), request.headers.multi_items(), request.content, request.extensions


async def test_requests_are_built_as_the_stock_sdk_builds_them_the_first_time_and_every_time_after(server):
    base_url, _ = server
    ours, stock = provider(base_url).client, stock_client(base_url)
    await ours.request(httpx2.Response, _options("/v1/messages", (), {"a": 1}))
    for path, betas in [("/v1/messages", ()), ("/v1/messages", ("b1", "b2")), ("/v1/messages/count_tokens", ())]:
        expected = await built(stock, path, betas)
        assert await built(ours, path, betas) == expected
        assert await built(ours, path, betas) == expected  # from what was kept
    # two header sets (no betas, two betas), whichever the path
    assert len(ours.__dict__["_gateway_header_sets"]) == 2 and len(ours._client.__dict__["_gateway_merged"]) == 2
    await ours.close()
    await stock.close()


async def test_a_kept_header_set_is_not_changed_by_what_the_sdk_does_with_a_request(server):
    base_url, _ = server
    client = provider(base_url).client
    first = await built(client, "/v1/messages", ())
    options = await client._prepare_options(_options("/v1/messages", (), {}))
    client._build_request(options).headers["x-edited"] = "1"
    assert await built(client, "/v1/messages", ()) == first
    await client.close()


async def test_a_traced_call_carries_its_own_trace_header_and_is_not_kept(server, monkeypatch):
    base_url, _ = server
    client = provider(base_url).client
    parents = iter(["00-aaaa-01", "00-bbbb-01"])
    monkeypatch.setattr("gateway.tracing.upstream_headers", lambda: {"traceparent": next(parents)})
    a = dict((await built(client, "/v1/messages", ()))[2])
    b = dict((await built(client, "/v1/messages", ()))[2])
    assert (a["traceparent"], b["traceparent"]) == ("00-aaaa-01", "00-bbbb-01")
    assert not client.__dict__.get("_gateway_header_sets") and not client._client.__dict__.get("_gateway_merged")
    await client.close()


async def test_an_answer_is_read_whole_and_the_server_gets_what_the_stock_sdk_sends(server):
    base_url, seen = server
    p = provider(base_url)
    answer = await p.create({"model": "m", "max_tokens": 1, "messages": []})
    await p.aclose()
    stock = stock_client(base_url)
    await stock.request(httpx2.Response, _options("/v1/messages", (), {
        "model": "m", "max_tokens": 1, "messages": []}))
    assert answer == ANSWER
    ours, theirs = seen
    assert ours["body"] == theirs["body"]
    assert {k.lower(): v for k, v in ours["headers"].items()} == {k.lower(): v for k, v in theirs["headers"].items()}
    await stock.close()


async def test_a_compressed_answer_is_decoded(server):
    base_url, _ = server
    p = provider(base_url)
    response = await p.client.request(httpx2.Response,
                                      _options("/v1/messages?gzip=1", (), {}))
    assert orjson.loads(response.content) == ANSWER
    await p.aclose()


async def test_a_redirect_is_followed_as_the_sdk_configures_it(server):
    base_url, seen = server
    p = provider(base_url)
    response = await p.client.request(httpx2.Response, _options("/moved", (), {"x": 1}))
    assert response.status_code == 200 and orjson.loads(response.content) == ANSWER
    assert seen[-1]["path"] == "/v1/messages"
    await p.aclose()


async def test_upstream_cookies_are_not_sent_back_on_later_calls(server):
    """One client serves every tenant: a cookie one answer sets must not ride along on another's call."""
    base_url, seen = server
    p = provider(base_url)
    for _ in range(2):
        await p.create({"model": "m", "max_tokens": 1, "messages": []})
    assert all("Cookie" not in call["headers"] for call in seen)
    await p.aclose()
