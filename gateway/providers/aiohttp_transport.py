"""The SDK's HTTP transport: httpx2 requests sent on one aiohttp ClientSession.

The same thing as the SDK's vendored httpx_aiohttp adapter (`anthropic.DefaultAioHttpClient`): the same
connector settings, timeouts and exception mapping, without its per-request re-wrapping
(bench/request_cost.py: 2,035k -> 1,977k instructions a provider call, -2.8%). aiohttp was given
httpx2's `Headers` (read key by key through its Mapping interface, each access re-deriving the
encoding) and the URL as a string to parse again; a `ClientTimeout` was built per request, and every
call and chunk went through a generator-based context manager for the exception mapping. Here the
headers go as (name, value) pairs, the URL as a yarl URL kept per URL, the timeouts per value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn

import aiohttp
import httpx2
import yarl
from anthropic._vendor.httpx_aiohttp.transport import AIOHTTP_EXC_MAP

# The response extension holding aiohttp's reader of the body: a stream's reader (the Anthropic provider)
# takes its reads from it directly, not through the three async generators stacked on it (this module's
# stream, httpx2's BoundAsyncStream and aiter_raw); see gateway/providers/anthropic.py.
BODY_READER = "gatehouse.aiohttp_body"


def _mapped(exc: Exception) -> Exception | None:
    """The httpx2 exception the vendored adapter raises for an aiohttp one (the most specific match), so
    that the SDK classifies it alike: a timeout is APITimeoutError, any other APIConnectionError."""
    mapped = None
    for aiohttp_exc, httpx_exc in AIOHTTP_EXC_MAP.items():
        if isinstance(exc, aiohttp_exc) and (mapped is None or issubclass(httpx_exc, mapped)):
            mapped = httpx_exc
    return None if mapped is None else mapped(str(exc))


def _raise_mapped(exc: Exception) -> NoReturn:
    """Raise `exc` (being handled) as its httpx2 exception, or as itself when it has none."""
    if (mapped := _mapped(exc)) is None:
        raise exc
    raise mapped from exc


class _ResponseStream(httpx2.AsyncByteStream):
    CHUNK_SIZE = 1024 * 16  # as the vendored adapter reads

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(self.CHUNK_SIZE):
                yield chunk
        except Exception as exc:
            _raise_mapped(exc)

    async def aclose(self) -> None:
        # As the adapter does: the connection goes back to the pool if the body was read to its end, else
        # it is closed (which is what stops the upstream's generation when a client leaves).
        try:
            await self._response.__aexit__(None, None, None)
        except Exception as exc:
            _raise_mapped(exc)


class AiohttpTransport(httpx2.AsyncBaseTransport):
    def __init__(self, *, limits: httpx2.Limits) -> None:
        self._limits = limits
        self._ssl = httpx2.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}
        self._timeouts: dict[tuple, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Made on the first request: a ClientSession belongs to the running event loop.
        connector = aiohttp.TCPConnector(limit=self._limits.max_connections or 0,
                                         keepalive_timeout=self._limits.keepalive_expiry, ssl=self._ssl)
        self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _timeout(self, timeout: dict) -> aiohttp.ClientTimeout:
        key = (timeout.get("connect"), timeout.get("read"), timeout.get("pool"))
        if (value := self._timeouts.get(key)) is None:
            value = self._timeouts[key] = aiohttp.ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
        return value

    async def _send(self, request: httpx2.Request) -> aiohttp.ClientResponse:
        session = self._session or self._open()
        url = str(request.url)
        if (target := self._urls.get(url)) is None:
            if len(self._urls) > 64:  # paths with a query or an id: not worth keeping
                self._urls.clear()
            target = self._urls[url] = yarl.URL(url, encoded=True)
        try:
            data = request.content or None
        except httpx2.RequestNotRead:
            data = request.stream
            request.headers.pop("transfer-encoding", None)  # aiohttp chunks it itself
        try:
            return await session.request(
                request.method, target, headers=request.headers.multi_items(), data=data, allow_redirects=False,
                auto_decompress=False, compress=False, timeout=self._timeout(request.extensions.get("timeout", {})),
                server_hostname=request.extensions.get("sni_hostname"))
        except Exception as exc:
            _raise_mapped(exc)

    @staticmethod
    def _extensions(response: aiohttp.ClientResponse) -> dict:
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return extensions

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._send(request)
        extensions = self._extensions(response)
        extensions[BODY_READER] = response.content
        return httpx2.Response(status_code=response.status, headers=response.raw_headers,
                               stream=_ResponseStream(response), request=request, extensions=extensions)

    async def read(self, request: httpx2.Request) -> httpx2.Response:
        """The response with its whole body read, by aiohttp in one call: what httpx2's `aread` gets through
        its stream chain (four async generators and a re-chunker, per chunk) for a short answer. The
        Response decodes a compressed body as `aread` does."""
        response = await self._send(request)
        try:
            body = await response.read()  # aiohttp closes the connection on an error, else frees it once read
        except Exception as exc:
            _raise_mapped(exc)
        return httpx2.Response(status_code=response.status, headers=response.raw_headers, content=body,
                               request=request, extensions=self._extensions(response))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
