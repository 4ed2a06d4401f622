"""Anthropic Messages API through the official SDK.

One long-lived AsyncAnthropic client per process with the SDK's aiohttp transport and a connection
pool. Requests go through `client.post(..., cast_to=httpx.Response)`: the SDK still owns base URL,
auth headers, timeouts, retries and error classes, but the body is parsed with orjson instead of
into pydantic models, since the gateway re-encodes it right away and the hot path cannot afford the
model construction for every event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2  # the SDK's HTTP client package
import orjson
from django.conf import settings

from ..core import GatewayError

_RAW = httpx2.Response  # `cast_to` this and the SDK hands back the response unparsed

# What the client sees for each upstream failure: the upstream's own 4xx explanations pass through,
# while our credentials or the upstream's health are the operator's problem (5xx), not the client's.
_STATUS_MAP = {
    400: (400, "invalid_request_error"),
    401: (502, "upstream_error"),
    403: (502, "upstream_error"),
    404: (404, "invalid_request_error"),
    413: (413, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    529: (503, "overloaded_error"),
}


def upstream_error(status: int, error_type: str, message: str, retry_after: int | None = None) -> GatewayError:
    client_status, kind = _STATUS_MAP.get(status, (502, "upstream_error"))
    if client_status == 502:
        message = f"The upstream provider failed ({status} {error_type}): {message}"
    elif status == 529:
        message = "The upstream provider is overloaded. Please retry shortly."
    code = {429: "rate_limit_exceeded", 529: "upstream_overloaded", 404: "model_not_found"}.get(status)
    return GatewayError(client_status, message, code=code, type=kind, retry_after=retry_after)


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
    return GatewayError(502, f"Upstream request failed: {exc}", type="upstream_error")


def _malformed(exc: Exception) -> GatewayError:
    return GatewayError(502, f"The upstream provider sent a malformed response: {exc}", type="upstream_error")


async def _sse_batches(response) -> AsyncIterator[list[dict[str, Any]]]:
    """Decode SSE frames into event dicts (the `data` JSON; its `type` names the event), one list per
    network read, so that events which arrived together can be relayed in one write."""
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


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self.client = client

    @classmethod
    def from_settings(cls) -> AnthropicProvider:
        http_client = anthropic.DefaultAioHttpClient(
            timeout=anthropic.Timeout(settings.UPSTREAM_TIMEOUT_SECONDS, connect=settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS),
            limits=httpx2.Limits(
                max_connections=settings.UPSTREAM_MAX_CONNECTIONS,
                max_keepalive_connections=settings.UPSTREAM_MAX_CONNECTIONS,
            ),
        )
        client = anthropic.AsyncAnthropic(
            # The SDK insists on a key; without one the upstream answers 401, which we report as 502.
            api_key=settings.ANTHROPIC_API_KEY or "unset",
            base_url=settings.ANTHROPIC_BASE_URL or None,
            max_retries=settings.UPSTREAM_MAX_RETRIES,
            http_client=http_client,
        )
        return cls(client)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post("/v1/messages", body=body, cast_to=_RAW)
        except anthropic.APIError as exc:
            raise _from_sdk_error(exc) from exc
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise _malformed(exc) from exc

    @contextlib.asynccontextmanager
    async def stream(self, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[list[dict[str, Any]]]]:
        try:
            response = await self.client.post("/v1/messages", body={**body, "stream": True}, cast_to=_RAW, stream=True)
        except anthropic.APIError as exc:
            raise _from_sdk_error(exc) from exc
        try:
            yield self._events(response)
        finally:
            # Closing returns the connection (or drops it mid-body, which stops upstream generation).
            await response.aclose()

    async def _events(self, response) -> AsyncIterator[list[dict[str, Any]]]:
        try:
            async for batch in _sse_batches(response):
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
        except (httpx2.HTTPError, OSError, TimeoutError) as exc:
            raise GatewayError(502, f"The upstream connection failed mid-stream: {exc}", type="upstream_error") from exc

    async def aclose(self) -> None:
        await self.client.close()
