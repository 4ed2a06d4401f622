"""Any OpenAI-compatible `/v1/chat/completions` server as an upstream (OpenAI, DeepSeek, Moonshot, vLLM,
Ollama), plus its `/embeddings` and `/rerank` endpoints.

This is the HTTP client, one aiohttp session per provider instance; what is sent and how the answers
read is the pure translation in `gateway.protocols.openai_chat.upstream`. `base_url` is the server's API
root including `/v1`.

- Usage a server does not report is estimated (see protocols.openai_chat.upstream); the input estimate is
  `core.estimate_input_tokens` of the request.
- Errors: the translation's `UpstreamError` and the error statuses are mapped here, with the upstream's
  text redacted (`errors.upstream_error`); a 429 `insufficient_quota` is our account's problem, a 502
  rather than a 429 the client would retry.
- Embeddings (OpenAI shape) and rerank (Jina shape: vLLM and Jina serve `/rerank`) pass through as is;
  the caller puts the upstream model id in `model`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
from django.conf import settings

from .. import tracing
from ..core import GatewayError, estimate_input_tokens, invalid
from ..protocols.openai_chat.upstream import (
    StreamTranslator,
    UpstreamError,
    error_of,
    from_openai_response,
    malformed,
    to_openai_request,
)
from . import PoolGauge, UpstreamConfig
from .errors import upstream_error, upstream_reason
from .sse import SSEDecoder


def client_error(exc: UpstreamError) -> GatewayError:
    """What the client sees of an error object the upstream answered with."""
    if exc.kind == "insufficient_quota":
        return GatewayError(502, f"The upstream provider failed ({exc.status} insufficient_quota): "
                            f"{upstream_reason(exc.message)}", type="upstream_error")
    return upstream_error(exc.anthropic_status, exc.kind, exc.message)


@contextlib.contextmanager
def client_errors() -> Iterator[None]:
    """Around the translation: its `UpstreamError` becomes the client-visible error."""
    try:
        yield
    except UpstreamError as exc:
        raise client_error(exc) from None


def _malformed(detail: str) -> GatewayError:
    return malformed(upstream_reason(detail))


def _retry_after(headers) -> int | None:
    milliseconds = headers.get("retry-after-ms")
    seconds = headers.get("retry-after")
    try:
        if milliseconds:
            return max(1, math.ceil(float(milliseconds) / 1000))
        if seconds:
            return max(0, math.ceil(float(seconds)))
    except ValueError:  # an HTTP date: rare enough to leave to the client's own backoff
        pass
    return None


def _status_error(status: int, raw: bytes, headers) -> GatewayError:
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        payload = raw.decode(errors="replace")[:500] or "(no body)"
    if isinstance(payload, dict):
        error = payload.get("error") or payload  # vLLM and FastAPI servers put the fields at the top
    else:
        error = payload
    result = client_error(error_of(error, status))
    if result.status == 429 or status in (503, 529):
        result.retry_after = _retry_after(headers)
    return result


def _timed_out() -> GatewayError:
    return GatewayError(504, "The upstream provider timed out.", type="upstream_error", code="upstream_timeout")


def _unreachable(exc: Exception) -> GatewayError:
    return GatewayError(502, f"Could not reach the upstream provider: {upstream_reason(exc)}", type="upstream_error",
                        code="upstream_unreachable")


def _broken(exc: Exception) -> GatewayError:
    return GatewayError(502, f"The upstream connection failed mid-stream: {upstream_reason(exc)}",
                        type="upstream_error", code="upstream_cut")


_NOT_CHAT = "This model serves embeddings and rerank only; it cannot answer messages or chat completions."


class OpenAICompatProvider:
    name = "openai"
    default_base_url = "https://api.openai.com/v1"

    def __init__(self, *, base_url: str = "", api_key: str = "", connect_timeout: float = 10.0,
                 first_token_timeout: float | None = None, timeout: float = 600.0,
                 max_connections: int = 512) -> None:
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.api_key = api_key
        self.connect_timeout = connect_timeout
        self.first_token_timeout = first_token_timeout
        self.timeout = timeout
        self.max_connections = max_connections
        self.pool = PoolGauge(max_connections)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, config: UpstreamConfig) -> OpenAICompatProvider:
        return cls(base_url=config.base_url, api_key=config.api_key, connect_timeout=config.connect_timeout,
                   first_token_timeout=config.first_token_timeout, timeout=config.timeout,
                   max_connections=settings.UPSTREAM_MAX_CONNECTIONS)

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None or self._session.closed:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self.api_key:  # local servers (Ollama, vLLM) often run without one
                headers["Authorization"] = f"Bearer {self.api_key}"
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                # sock_connect rather than connect: waiting for a free pooled connection is not the upstream's fault.
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=self.connect_timeout),
                headers=headers,
            )
        return self._session

    def _deadline(self) -> float | None:
        if self.first_token_timeout is None:
            return None
        return asyncio.get_running_loop().time() + self.first_token_timeout

    async def _post(self, path: str, payload: dict[str, Any], deadline: float | None) -> aiohttp.ClientResponse:
        """The response head of a POST, raising the client-visible error for a failure status."""
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client().post(self.base_url + path, data=orjson.dumps(payload),
                                                   headers=tracing.upstream_headers() or None)
        except TimeoutError:
            raise _timed_out() from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(exc) from exc
        if response.status >= 400:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, OSError, TimeoutError):
                raw = b""
            finally:
                response.release()
            raise _status_error(response.status, raw, response.headers)
        return response

    async def _post_json(self, path: str, payload: dict[str, Any]) -> Any:
        with self.pool.held():
            response = await self._post(path, payload, self._deadline())
            try:
                raw = await response.read()
            except TimeoutError:
                raise _timed_out() from None
            except (aiohttp.ClientError, OSError) as exc:
                raise _broken(exc) from exc
            finally:
                response.release()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _malformed(str(exc)) from None

    async def create(self, body: dict[str, Any], *, betas: tuple[str, ...] = ()) -> dict[str, Any]:
        payload = await self._post_json("/chat/completions", to_openai_request(body, stream=False))
        with client_errors():
            return from_openai_response(payload, model=body.get("model") or "",
                                        estimated_input_tokens=estimate_input_tokens(body))

    @contextlib.asynccontextmanager
    async def stream(self, body: dict[str, Any], *,
                     betas: tuple[str, ...] = ()) -> AsyncIterator[AsyncIterator[list[dict[str, Any]]]]:
        with self.pool.held():
            async with self._stream(body) as batches:
                yield batches

    @contextlib.asynccontextmanager
    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[list[dict[str, Any]]]]:
        request = to_openai_request(body, stream=True)
        deadline = self._deadline()
        response = await self._post("/chat/completions", request, deadline)
        if response.content_type == "application/json":  # not a stream: an error, or a server ignoring `stream`
            try:
                payload = await response.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise _broken(exc) from exc
            finally:
                response.release()
            try:
                error = orjson.loads(payload)
            except orjson.JSONDecodeError:
                error = None
            if isinstance(error, dict) and error.get("error"):
                raise client_error(error_of(error["error"]))
            raise _malformed("a JSON body instead of an event stream")
        translator = StreamTranslator(model=body.get("model") or "", estimated_input_tokens=estimate_input_tokens(body))
        state = {"done": False}
        batches = self._batches(response, translator, deadline, state)
        try:
            yield batches
        finally:
            await batches.aclose()
            if state["done"]:
                response.release()  # back to the pool
            else:
                response.close()  # drops the connection, which stops generation upstream

    async def _batches(self, response: aiohttp.ClientResponse, translator: StreamTranslator,
                       deadline: float | None, state: dict) -> AsyncIterator[list[dict[str, Any]]]:
        """One list of events per network read, so that events which arrived together go out in one write."""
        decoder = SSEDecoder()
        waiting = True  # for the first chunk, which the first-token deadline also covers
        while True:
            try:
                if waiting:
                    async with asyncio.timeout_at(deadline):
                        data = await response.content.readany()
                else:
                    data = await response.content.readany()
            except TimeoutError:
                raise _timed_out() from None
            except (aiohttp.ClientError, OSError) as exc:
                raise _broken(exc) from exc
            if not data:
                break
            events: list[dict[str, Any]] = []
            try:
                for value in decoder.feed(data):
                    value = value.strip()
                    if not value:
                        continue
                    if value == b"[DONE]":
                        events += translator.finish()
                        state["done"] = True
                        break
                    payload = orjson.loads(value)
                    if not isinstance(payload, dict):
                        raise _malformed("a stream chunk is not a JSON object")
                    events += translator.feed(payload)
            except (GatewayError, UpstreamError, orjson.JSONDecodeError) as exc:
                if events:
                    yield events  # what came before the failure still reaches the client
                if isinstance(exc, orjson.JSONDecodeError):
                    raise _malformed(str(exc)) from None
                if isinstance(exc, UpstreamError):
                    raise client_error(exc) from None
                raise
            if events:
                waiting = False
                yield events
            if state["done"]:
                return
        if events := translator.finish():  # the connection ended without [DONE]
            yield events
        state["done"] = True

    async def count_tokens(self, body: dict[str, Any], *, betas: tuple[str, ...] = ()) -> int:
        # These servers have no counting endpoint.
        return estimate_input_tokens(body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._object(await self._post_json("/embeddings", body))

    async def rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._object(await self._post_json("/rerank", body))

    @staticmethod
    def _object(payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise _malformed("the answer is not a JSON object")
        return payload

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class JinaProvider(OpenAICompatProvider):
    """Jina AI's embeddings and rerank API (OpenAI-shaped embeddings, Jina-shaped rerank)."""

    name = "jina"
    default_base_url = "https://api.jina.ai/v1"

    async def create(self, body: dict[str, Any], *, betas: tuple[str, ...] = ()) -> dict[str, Any]:
        raise invalid(_NOT_CHAT, "model")

    @contextlib.asynccontextmanager
    async def stream(self, body: dict[str, Any], *,
                     betas: tuple[str, ...] = ()) -> AsyncIterator[AsyncIterator[list[dict[str, Any]]]]:
        raise invalid(_NOT_CHAT, "model")
        yield  # an async generator, so that entering the context raises

    async def count_tokens(self, body: dict[str, Any], *, betas: tuple[str, ...] = ()) -> int:
        raise invalid(_NOT_CHAT, "model")
