"""Anthropic Messages API through the official SDK.

One long-lived AsyncAnthropic client per process on aiohttp (gateway/providers/aiohttp_transport.py)
with a connection pool. Requests go through `client.post(..., cast_to=httpx.Response)`: the SDK still owns base URL,
auth headers, timeouts, retries and error classes, but the body is parsed with orjson instead of
into pydantic models, since the gateway re-encodes it right away and the hot path cannot afford the
model construction for every event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2  # the SDK's HTTP client package
import orjson
from anthropic._models import FinalRequestOptions  # what `client.request` takes; `post` builds one per call
from django.conf import settings

from .. import tracing
from ..core import GatewayError
from . import PoolGauge, UpstreamConfig
from .aiohttp_transport import BODY_READER, AiohttpTransport
from .errors import upstream_error, upstream_reason
from .sse import SSEDecoder

_RAW = httpx2.Response  # `cast_to` this and the SDK hands back the response unparsed

def _from_sdk_error(exc: anthropic.APIError) -> GatewayError:
    if isinstance(exc, anthropic.APITimeoutError):
        return GatewayError(504, "The upstream provider timed out.", type="upstream_error", code="upstream_timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return GatewayError(502, "Could not reach the upstream provider.", type="upstream_error",
                            code="upstream_unreachable")
    if isinstance(exc, anthropic.APIStatusError):
        error = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
        retry_after = exc.response.headers.get("retry-after")
        return upstream_error(
            exc.status_code,
            str(error.get("type", "api_error")),
            str(error.get("message", exc.message)),
            int(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    return GatewayError(502, f"Upstream request failed: {upstream_reason(exc)}", type="upstream_error")


def _malformed(exc: Exception) -> GatewayError:
    return GatewayError(502, f"The upstream provider sent a malformed response: {upstream_reason(exc)}",
                        type="upstream_error", code="upstream_malformed")


def _body_chunks(response) -> AsyncIterator[bytes]:
    """The body as the network delivers it. An identity-encoded one (what the API streams) from aiohttp's
    reader itself when our transport made the response: each read through httpx2's `aiter_raw` was three
    async generator steps (aiter_raw, BoundAsyncStream, the transport's stream) and a re-chunker call
    before reaching the SSE decoder (bench/relay_cost.py's per-event count moved within its spread: kept as
    the shorter path, docs/performance.md). Else `aiter_raw`, or `aiter_bytes` for a compressed body,
    which decodes it. aiohttp's own errors are caught by `_events` like httpx2's."""
    if response.headers.get("content-encoding", "identity").lower() in ("identity", ""):
        if (reader := response.extensions.get(BODY_READER)) is not None:
            return reader.iter_any()
        return response.aiter_raw()
    return response.aiter_bytes()


# FinalRequestOptions per (path, betas), built once: `client.post` constructs one per call (pydantic
# model_construct with deep copies of the defaults; with the body below, bench/request_cost.py counts
# 2,273k -> 2,035k instructions a provider call, -10%).
# A call takes a shallow copy with its own body and headers: the SDK copies the options again before it
# sets the idempotency key and never changes a field's value in place, so the template stays as built.
_TEMPLATES: dict[tuple[str, tuple[str, ...]], FinalRequestOptions] = {}


def _options(path: str, betas: tuple[str, ...], body: dict[str, Any]) -> FinalRequestOptions:
    template = _TEMPLATES.get((path, betas))
    if template is None:
        template = _TEMPLATES[path, betas] = FinalRequestOptions.construct(
            method="post", url=path, headers={"anthropic-beta": ",".join(betas)} if betas else {})
    # The body as bytes (orjson), the client's own Content-Type: the SDK's JSON path walks the body for
    # files and dumps it with the stdlib encoder.
    update: dict[str, Any] = {"content": orjson.dumps(body)}
    if headers := tracing.upstream_headers():
        update["headers"] = {**template.headers, **headers}
    return template.model_copy(update=update)


_HEADER_SETS = 64  # header sets kept per client: a few (path, betas) pairs in practice; bounded all the same


class _HttpClient(anthropic.DefaultAioHttpClient):
    """The SDK's httpx2 client, sending straight to its transport. httpx2's `send` runs an auth flow
    generator (the SDK puts its key in the headers itself), a redirect loop, a response timer, the
    cookie jar (which would carry one tenant's upstream cookies into another's requests) and an INFO
    log line, then reads a short answer through its stream chain (bench/request_cost.py: 1,750k -> 1,633k
    instructions a provider call, -6.7%). A redirect (which the API does not send) still goes through httpx2,
    which follows it as the SDK configures, and so does a call the SDK gives auth or redirect options."""

    async def send(self, request: httpx2.Request, *, stream: bool = False, **kwargs: Any) -> httpx2.Response:
        transport = self._transport
        if kwargs or not isinstance(transport, AiohttpTransport):
            return await super().send(request, stream=stream, **kwargs)
        response = await (transport.handle_async_request(request) if stream else transport.read(request))
        if response.has_redirect_location:
            await response.aclose()
            return await super().send(request, stream=stream)
        return response

    def _merge_headers(self, headers: Any = None) -> Any:
        """The request's headers over the client's (Accept-Encoding, Connection): httpx2 copies the client's
        and sets the ~17 given ones on the copy one by one, each set scanning the list. The same set every
        call but for a trace header: kept per set (`Request` copies what it is given); 1,633k -> 1,468k
        instructions a provider call, -10%."""
        if not isinstance(headers, httpx2.Headers):
            return super()._merge_headers(headers)
        merged = self.__dict__.setdefault("_gateway_merged", {})
        if (value := merged.get(key := tuple(headers.raw))) is None:
            value = super()._merge_headers(headers)
            if len(merged) < _HEADER_SETS and "traceparent" not in headers:
                merged[key] = value
        return value


class _Client(anthropic.AsyncAnthropic):
    """The SDK's client, keeping what it derives anew for each request from settings fixed when it is
    built (bench/request_cost.py: 1,977k -> 1,752k instructions a provider call, -11%): its default
    headers (the platform, the async library sniffed, the key) and each path's URL joined to the base
    URL (two URL parses). The SDK changes neither in place: it spreads or copies them into the request's.
    """

    _gateway_urls: dict[str, httpx2.URL]
    _gateway_headers: dict[str, Any] | None = None

    @property
    def user_agent(self) -> str:
        # The SDK names the client's class in its User-Agent: the stock one's name, not this subclass's.
        return f"{anthropic.AsyncAnthropic.__name__}/Python {self._version}"

    @property
    def default_headers(self) -> dict[str, Any]:
        if (headers := self._gateway_headers) is None:
            headers = super().default_headers
            if self._platform is not None:  # known after the first request (the SDK asks in a thread)
                self._gateway_headers = headers
        return headers

    def _build_headers(self, options: FinalRequestOptions, *, retries_taken: int = 0) -> httpx2.Headers:
        """The SDK folds four layers (timeout and retry headers, the default headers, the client's custom
        ones, the call's) into new Headers for every call, ~20 case-insensitive sets. With the client's
        timeout, no idempotency header (the SDK makes a key per call but sends none to this API) and the
        default headers final, that depends on the retry count and the call's headers alone: kept per
        pair but for traced calls, and given as a copy (the SDK may edit it); 1,468k -> 1,267k instructions
        a provider call, -14%."""
        extra = options.headers or {}
        if (self._gateway_headers is None or not isinstance(options.timeout, anthropic.NotGiven)
                or (self._idempotency_header and options.idempotency_key) or "traceparent" in extra):
            return super()._build_headers(options, retries_taken=retries_taken)
        sets = self.__dict__.setdefault("_gateway_header_sets", {})
        if (headers := sets.get(key := (retries_taken, tuple(extra.items())))) is None:
            headers = super()._build_headers(options, retries_taken=retries_taken)
            if len(sets) < _HEADER_SETS:
                sets[key] = headers
        return httpx2.Headers(headers)

    def _prepare_url(self, url: str) -> httpx2.URL:
        urls = self.__dict__.setdefault("_gateway_urls", {})
        if (prepared := urls.get(url)) is None:
            prepared = super()._prepare_url(url)
            if len(urls) < 64:  # the provider's two paths; bounded in case of others
                urls[url] = prepared
        return prepared


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self.client = client
        self.pool = PoolGauge(settings.UPSTREAM_MAX_CONNECTIONS)

    @classmethod
    def from_config(cls, config: UpstreamConfig) -> AnthropicProvider:
        """The provider's own base URL and key, or else ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY."""
        limits = httpx2.Limits(max_connections=settings.UPSTREAM_MAX_CONNECTIONS,
                               max_keepalive_connections=settings.UPSTREAM_MAX_CONNECTIONS)
        http_client = _HttpClient(
            timeout=anthropic.Timeout(config.timeout, connect=config.connect_timeout), limits=limits,
            transport=AiohttpTransport(limits=limits))
        client = _Client(
            # The SDK insists on a key; without one the upstream answers 401, which we report as 502.
            api_key=config.api_key or settings.ANTHROPIC_API_KEY or "unset",
            base_url=config.base_url or settings.ANTHROPIC_BASE_URL or None,
            max_retries=0,  # retries and fallbacks are gateway/routing.py's, in one place
            http_client=http_client,
        )
        return cls(client)

    async def create(self, body: dict[str, Any], *, betas: tuple[str, ...] = ()) -> dict[str, Any]:
        return await self._post_json("/v1/messages", body, betas)

    async def count_tokens(self, body: dict[str, Any], *, betas: tuple[str, ...] = ()) -> int:
        counted = await self._post_json("/v1/messages/count_tokens", body, betas)
        tokens = counted.get("input_tokens") if isinstance(counted, dict) else None
        if not isinstance(tokens, int):
            raise _malformed(ValueError("no input_tokens in the count_tokens answer"))
        return tokens

    async def _post_json(self, path: str, body: dict[str, Any], betas: tuple[str, ...]) -> Any:
        try:
            with self.pool.held():
                response = await self.client.request(_RAW, _options(path, betas, body))
        except anthropic.APIError as exc:
            raise _from_sdk_error(exc) from exc
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise _malformed(exc) from exc

    @contextlib.asynccontextmanager
    async def stream(self, body: dict[str, Any], *,
                     betas: tuple[str, ...] = ()) -> AsyncIterator[AsyncIterator[list[dict[str, Any]]]]:
        with self.pool.held():
            try:
                response = await self.client.request(_RAW, _options("/v1/messages", betas, {**body, "stream": True}),
                                                     stream=True)
            except anthropic.APIError as exc:
                raise _from_sdk_error(exc) from exc
            try:
                yield self._events(response)
            finally:
                # Closing returns the connection (or drops it mid-body, which stops upstream generation).
                await response.aclose()

    async def _events(self, response) -> AsyncIterator[list[dict[str, Any]]]:
        """The stream's events (the `data` JSON; its `type` names the event), one list per network read,
        so that events which arrived together are relayed in one write. One generator from the read to
        the list (the SSE reading was a second one, stacked on this: one more step per read)."""
        feed = SSEDecoder(orjson.loads).feed
        try:
            async for chunk in _body_chunks(response):
                if not (batch := feed(chunk)):
                    continue
                for position, event in enumerate(batch):
                    if event.get("type") == "error":
                        if position:
                            yield batch[:position]  # what came before the error still reaches the client
                        error = event.get("error") or {}
                        kind = str(error.get("type", "api_error"))
                        status = 529 if kind == "overloaded_error" else 500
                        raise upstream_error(status, kind, str(error.get("message", "")))
                yield batch
        except anthropic.APIError as exc:
            raise _from_sdk_error(exc) from exc
        except orjson.JSONDecodeError as exc:
            raise _malformed(exc) from exc
        except (httpx2.HTTPError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise GatewayError(502, f"The upstream connection failed mid-stream: {upstream_reason(exc)}",
                               type="upstream_error", code="upstream_cut") from exc

    async def aclose(self) -> None:
        await self.client.close()
