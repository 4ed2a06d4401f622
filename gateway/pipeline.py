"""The one request path every protocol shares.

    wire body -> codec.decode_request -> InternalRequest -> admission -> provider -> events -> codec -> wire
                                                                                       events -> Meter -> UsageEvent
                                                                                                 (gateway/metering/)

A codec is a pure package (see gateway/protocols/) that is a `Codec`: `decode_request`, `encode_response`
and `StreamEncoder`; a provider comes from gateway/providers/. The caller's key and the model come from
per-process caches; rate limits, budget and balance are one reservation (gateway/admission.py, one
Redis round trip). A new call's one database round trip is its usage row (with its conversation turn and
request log, if kept), written once at the end for every request that reached the upstream, after which
the reservation is settled to the real cost. A call that continues a stored conversation or response
makes one more before the upstream: conversations' `conversation_begin` / `response_begin` reads the
history and takes the conversation's lease.

What a row says when a call did not simply finish (`status`, `error_type`):

- the client left (gateway.handler cancels the request): `partial`, `client_left`, http_status 499 if
  nothing was sent (200 if a stream was under way). A request still open when a shutdown's grace ends
  is stopped the same way (gateway.shutdown) and recorded alike, as `server_shutdown` (503 if nothing
  was sent). It is billed what the upstream billed as far as we know it: the usage the upstream
  reported (a stream's message_start, or its whole answer if it had finished but nothing was relayed
  yet), output estimated from the text generated so far; with nothing reported (a call cancelled
  before its answer or first event) the input estimate, since the upstream had the prompt.
- the upstream failed: `error`, with the reason for a transport failure (`upstream_timeout`,
  `first_byte_timeout`, `upstream_unreachable`, `upstream_cut`: the body or stream broke off,
  `upstream_malformed`) and otherwise the error's type (`overloaded_error`, `rate_limit_error`, ...);
  billed only the output generated before the failure (estimated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from accounts.selectors import KeyPrincipal
from billing.models import UsageEvent
from common import metrics
from common.db import db_unit, json_nul_free
from conversations.services import (TurnRecord, conversation_begin, conversation_release, new_conversation_id,
                                    response_begin)

from . import affinity, routing, shutdown, tracing, url_policy
from .admission import Ticket, admission
from .core import (GatewayError, InternalRequest, ResponseContext, apply_model_limits, depth_checked, internal_error,
                   invalid, merge_tags, parse_tags_header)
from .metering.meter import CLIENT_LEFT, CLIENT_LEFT_STATUS, Meter
from .protocols import embeddings
from .protocols._common import cache_control
from .protocols._common.codec import Codec, Encoder
from .selectors import ModelEntry, model_resolve

# `x-request-id` for OpenAI clients, `request-id` where the Anthropic SDK looks for it.
REQUEST_ID_HEADERS = ("x-request-id", "request-id")
logger = logging.getLogger(__name__)

# GatewayError codes recorded as a failed row's reason instead of the error's type: they say what broke.
_TRANSPORT_REASONS = frozenset({"upstream_timeout", "first_byte_timeout", "upstream_unreachable", "upstream_cut",
                                "upstream_malformed"})


def _stopped() -> tuple[str, int]:
    """Why a request was stopped before its end, and its status if nothing was sent: its client left, or
    the shutdown cut it (gateway.shutdown)."""
    if shutdown.cutting:
        return shutdown.SERVER_SHUTDOWN, shutdown.SERVER_SHUTDOWN_STATUS
    return CLIENT_LEFT, CLIENT_LEFT_STATUS


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


# Client ids a request may carry (header -> usage row field); echoed back on the response.
TRACE_HEADERS = {"ah-trace-id": "trace_id", "ah-thread-id": "thread_id", "x-request-id": "client_request_id"}
_TRACE_ID_MAX = 128


def trace_ids(request: HttpRequest) -> dict[str, str]:
    """The client's trace, thread and request ids: printable ASCII without spaces, at most 128 characters."""
    ids = {}
    for header, field in TRACE_HEADERS.items():
        value = request.headers.get(header)
        if value is None:
            continue
        if not value or len(value) > _TRACE_ID_MAX or not (value.isascii() and value.isprintable()) or " " in value:
            raise invalid(f"The {header} header must be 1 to {_TRACE_ID_MAX} printable ASCII characters without "
                          "spaces.")
        ids[field] = value
    return ids


def echo_headers(trace: dict[str, str]) -> dict[str, str]:
    """The client's ids back on the response (its X-Request-Id replaces ours there; ours stays in request-id)."""
    return {header: trace[field] for header, field in TRACE_HEADERS.items() if field in trace}


def json_response(payload: Any, *, status: int = 200, request_id: str | None = None, headers=None) -> HttpResponse:
    response = HttpResponse(orjson.dumps(payload), status=status, content_type="application/json", headers=headers)
    if request_id:
        for header in REQUEST_ID_HEADERS:
            response.setdefault(header, request_id)  # a client's own X-Request-Id, echoed, stays
    return response


def parse_json_body(request: HttpRequest) -> Any:
    if getattr(request, "gateway_body_timed_out", False):  # gateway.handler stopped reading it
        raise GatewayError(408, f"The request body did not arrive within {settings.GATEWAY_BODY_TIMEOUT_SECONDS:g} "
                           "seconds.", code="request_timeout", type="invalid_request_error")
    declared = request.META.get("CONTENT_LENGTH")
    limit = settings.GATEWAY_MAX_BODY_BYTES
    if (declared and declared.isdigit() and int(declared) > limit) or len(request.body) > limit:
        raise GatewayError(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large",
                           type="invalid_request_error")
    if not request.body:
        raise invalid("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"We could not parse the JSON body of your request: {exc}.") from None
    # Every codec, provider SDK and schema walk behind this recurses: one check here covers them all
    # (its cost, per item and not per byte, is measured in core.nesting_exceeds). Counting brackets first
    # to skip it would cost more: ~1.8 ms per MB of image data, where the walk takes 0.01 ms.
    # NUL becomes U+FFFD after it, so the upstream answers and the store keeps the same text (PostgreSQL
    # cannot hold NUL in jsonb or text).
    return json_nul_free(request.body, depth_checked(body))


async def serve(request: HttpRequest, *, codec: Codec, endpoint: str,
                **route: Any) -> HttpResponse | StreamingHttpResponse:
    """Answer one model call in `codec`'s protocol for the key already authenticated on `request.auth`.

    `route` is what the protocol carries outside the body (Gemini's model in the URL, Anthropic beta
    flags in a header), passed on to the codec's `decode_request`.
    """
    started = time.perf_counter()
    request_id = request.gateway_request_id = new_request_id()
    principal: KeyPrincipal = request.auth
    trace = request.gateway_trace = trace_ids(request)
    ireq = codec.decode_request(parse_json_body(request), request_id=request_id, **route)
    ireq.tags = merge_tags(parse_tags_header(request.headers.get("ah-tags")), ireq.tags)
    ctx, meter = await _admitted(principal, ireq, request_id=request_id, endpoint=endpoint, started=started,
                                 trace=trace)
    if ireq.stream:
        return await _open_stream(ireq, codec.StreamEncoder(ctx), meter)
    payload = await _answer(codec, ireq, ctx, meter)
    return json_response(payload, request_id=request_id, headers={**meter.ticket.headers, **echo_headers(trace)})


async def execute(*, principal: KeyPrincipal, codec: Codec, endpoint: str, body: Any, request_id: str,
                  batch_id: str) -> dict[str, Any]:
    """One item of a batch (gateway/batches/): `serve`'s path without HTTP, answered whole (a `stream`
    the line asks for is ignored) and stored as no conversation. Its usage row carries `batch_id` and
    the batch price. Returns the answer in `codec`'s shape; refusals and failures raise as in `serve`."""
    started = time.perf_counter()
    ireq = codec.decode_request(depth_checked(body), request_id=request_id)
    ireq.stream = False
    ireq.options["store"] = False
    ctx, meter = await _admitted(principal, ireq, request_id=request_id, endpoint=endpoint, started=started,
                                 trace={}, batch_id=batch_id)
    return await _answer(codec, ireq, ctx, meter)


async def _admitted(principal: KeyPrincipal, ireq: InternalRequest, *, request_id: str, endpoint: str,
                    started: float, trace: dict[str, str], batch_id: str = "") -> tuple[ResponseContext, Meter]:
    """A decoded request checked, resolved, joined to its conversation and admitted: its Meter."""
    check_urls(ireq)
    model = await model_resolve(ireq.model, principal.allowed_models)
    turn = await _conversation_turn(principal, ireq, request_id)
    apply_model_limits(ireq.params, default_max_tokens=model.default_max_tokens,
                       max_output_tokens=model.max_output_tokens)
    ireq.thread = _thread_key(principal, model, ireq, turn, trace)
    if principal.auto_cache_control and endpoint in AUTO_CACHE_ENDPOINTS:
        ireq.params = _with_cache_breakpoints(model, ireq.params)
    ctx = ResponseContext(request_id=request_id, created=int(time.time()), model=model.name, options=ireq.options,
                          conversation_id=turn.conversation_id if turn else None)
    try:
        with tracing.span("gateway.admission"):
            ticket = await admission.admit(principal, model, ireq.params, batch=bool(batch_id),
                                           end_user=ireq.end_user)
    except GatewayError:
        if turn is not None and not turn.created:
            metrics.lease_ended()
            await _release_async(conversation_id=turn.conversation_id)
        raise
    meter = Meter(request_id=request_id, principal=principal, endpoint=endpoint, ireq=ireq, model=model,
                  ticket=ticket, turn=turn, started=started, trace=trace, batch_id=batch_id)
    return ctx, meter


async def _answer(codec: Codec, ireq: InternalRequest, ctx: ResponseContext, meter: Meter) -> dict[str, Any]:
    """The whole answer of an admitted request, recorded, in `codec`'s shape."""
    async def create(provider, upstream_model: str, target) -> dict[str, Any]:
        return await provider.create({"model": upstream_model, **ireq.params}, betas=ireq.betas)

    try:
        message, meter.deployment = await routing.call(meter.model, create, affinity=ireq.thread)
    except BaseException as exc:
        await _finish_failed(meter, exc)
        raise
    meter.usage.update(message.get("usage"))
    payload = codec.encode_response(message, ctx)
    if meter.turn is not None and payload.get("object") == "response":
        meter.turn.response_body = payload  # a Responses API answer is kept for GET and previous_response_id
    await meter.finish(UsageEvent.Status.OK, 200, content=message.get("content") or [])
    return payload


async def serve_oneshot(request: HttpRequest, *, endpoint: str, capability: str, decode, method: str) -> HttpResponse:
    """Embeddings and rerank: the same admission, routing and metering as a model call, with a body that
    is only validated (`decode`: body -> model name, upstream body, texts to estimate) and the provider's
    `method` answering in the client's own shape. Billed as input tokens at the model's input price."""
    started = time.perf_counter()
    request_id = request.gateway_request_id = new_request_id()
    trace = request.gateway_trace = trace_ids(request)
    tags = parse_tags_header(request.headers.get("ah-tags"))
    result, ticket = await _oneshot(request.auth, parse_json_body(request), endpoint=endpoint, capability=capability,
                                    decode=decode, method=method, request_id=request_id, started=started, trace=trace,
                                    tags=tags)
    return json_response(result, request_id=request_id, headers={**ticket.headers, **echo_headers(trace)})


async def execute_oneshot(*, principal: KeyPrincipal, body: Any, request_id: str, batch_id: str) -> dict[str, Any]:
    """One embeddings item of a batch, as `execute` is for model calls."""
    result, _ = await _oneshot(principal, depth_checked(body),
                               endpoint="embeddings", capability="embeddings", decode=embeddings.decode_embeddings,
                               method="embeddings", request_id=request_id, started=time.perf_counter(), trace={},
                               batch_id=batch_id)
    return result


async def _oneshot(principal: KeyPrincipal, body: Any, *, endpoint: str, capability: str, decode, method: str,
                   request_id: str, started: float, trace: dict[str, str],
                   batch_id: str = "", tags: tuple[str, ...] = ()) -> tuple[dict[str, Any], Ticket]:
    name, upstream_body, texts = decode(body)
    model = await model_resolve(name, principal.allowed_models, capability=capability)
    # The estimate counts their text.
    ticket = await admission.admit(principal, model, {"messages": texts}, batch=bool(batch_id))
    meter = Meter(request_id=request_id, principal=principal, endpoint=endpoint, ireq=InternalRequest(name, {}, tags=tags),
                  model=model, ticket=ticket, turn=None, started=started, trace=trace, batch_id=batch_id)

    async def call(provider, upstream_model: str, target) -> dict[str, Any]:
        if not hasattr(provider, method):
            raise GatewayError(400, f"The model '{name}' is served by a provider without {capability}.",
                               code="model_not_supported", param="model")
        return await getattr(provider, method)({"model": upstream_model, **upstream_body})

    try:
        result, meter.deployment = await routing.call(model, call)
    except BaseException as exc:
        await _finish_failed(meter, exc)
        raise
    meter.usage.input_tokens = embeddings.input_tokens(result)
    await meter.finish(UsageEvent.Status.OK, 200)
    return {**result, "model": model.name}, ticket


# Clients whose protocol cannot mark cache breakpoints: the gateway adds them for keys that opted in.
# Anthropic clients mark their own; Gemini's caching is a separate API (cachedContents), not a marker.
AUTO_CACHE_ENDPOINTS = frozenset({"chat.completions", "responses"})


def _with_cache_breakpoints(model: ModelEntry, params: dict[str, Any]) -> dict[str, Any]:
    """`params` with prompt-cache breakpoints (protocols/_common/cache_control) when an Anthropic deployment
    serves the model: OpenAI-compatible upstreams drop the markers. The smallest minimum of its deployments
    applies: a breakpoint under an upstream model's minimum is ignored there, never refused."""
    upstream = [d.upstream_model for d in model.deployments if any(t.config.kind == "anthropic" for t in d.targets)]
    if not upstream:
        return params
    minimum = min(cache_control.min_cacheable_tokens(name) for name in upstream)
    return cache_control.with_breakpoints(params, min_tokens=minimum)


def _thread_key(principal: KeyPrincipal, model: ModelEntry, ireq: InternalRequest, turn: TurnRecord | None,
                trace: dict[str, str]) -> str | None:
    """The request's thread for routing affinity, only where routing has a choice to make."""
    if not routing.has_choice(model):
        return None
    # A new conversation's id is not one yet: a stateless client gets a new one with every request.
    conversation = (turn.conversation_id if turn is not None and not turn.created else None) \
        or ireq.options.get("conversation_id") or ireq.options.get("conversation")
    return affinity.thread_key(tenant_id=principal.tenant_id, model=model.name, thread_id=trace.get("thread_id"),
                               conversation_id=conversation, params=ireq.params)


def check_urls(ireq: InternalRequest) -> None:
    """A 400 for a URL the upstream may not fetch (gateway.url_policy), on every protocol."""
    url_policy.check_urls(ireq.params, allowed_hosts=settings.GATEWAY_URL_ALLOWED_HOSTS,
                          allow_private=settings.GATEWAY_URL_ALLOW_PRIVATE)


# Fields that shape the answer but not the input; count_tokens refuses them.
_GENERATION_ONLY = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "metadata",
                              "service_tier"})


async def count_tokens(request: HttpRequest, ireq: InternalRequest) -> int:
    """The input tokens of a decoded request, counted by its model's provider. Free, as upstream:
    no admission and no usage row, but the key's model allow-list applies."""
    check_urls(ireq)
    model = await model_resolve(ireq.model, request.auth.allowed_models)
    params = {k: v for k, v in ireq.params.items() if k not in _GENERATION_ONLY}

    async def count(provider, upstream_model: str, target) -> int:
        return await provider.count_tokens({"model": upstream_model, **params}, betas=ireq.betas)

    return (await routing.call(model, count))[0]


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _system_text(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system
    return "\n".join(block.get("text", "") for block in system if isinstance(block, dict))


_begin_async = db_unit(conversation_begin)
_response_begin_async = db_unit(response_begin)
_release_async = db_unit(conversation_release)


async def _conversation_turn(principal: KeyPrincipal, ireq: InternalRequest, request_id: str) -> TurnRecord | None:
    """Prepend the stored history the request continues; the turn to store, if any.

    A request continues a conversation (`conversation_id` in chat, `conversation` in Responses) or a
    stored response (`previous_response_id`). It is stored unless the client sends `store: false` or
    the tenant turned storage off; a new conversation gets its id now and its rows after the answer.
    In chat the request's system prompt wins over the stored one and is kept from then on; in
    Responses `instructions` apply to their own request only, as in OpenAI's API.
    """
    store = ireq.options.get("store", True) and principal.store_conversations
    conversation_id = ireq.options.get("conversation_id") or ireq.options.get("conversation")
    previous = ireq.options.get("previous_response_id")
    if conversation_id is None and previous is None and not store:
        return None
    new = [{"role": m["role"], "content": _blocks(m["content"])} for m in ireq.params.get("messages") or ()]
    system = _system_text(ireq.params.get("system"))
    turn = TurnRecord(conversation_id=conversation_id or new_conversation_id(), tenant_id=principal.tenant_id,
                      api_key_id=principal.key_id, request_id=request_id,
                      created=conversation_id is None and previous is None, next_seq=0, system=system, messages=new,
                      input_items=ireq.options.get("input_items") or [], previous_response_id=previous or "")
    if not turn.created:
        if previous is not None:
            turn.conversation_id, history = await _response_begin_async(
                tenant_id=principal.tenant_id, api_key_id=principal.key_id, response_id=previous, lease=store,
                now=datetime.now(UTC))
        else:
            history = await _begin_async(tenant_id=principal.tenant_id, conversation_id=conversation_id,
                                         lease=store, now=datetime.now(UTC))
        ireq.params["messages"] = history.messages + new
        if system is None and history.system and "instructions" not in ireq.options:
            ireq.params["system"] = history.system
        if system == history.system:
            turn.system = None  # unchanged: not stored again
        turn.next_seq = history.next_seq
        if store:
            metrics.lease_taken()
    return turn if store else None


def _reason(error: GatewayError) -> str:
    return error.code if error.code in _TRANSPORT_REASONS else error.type or ""


async def _finish_failed(meter: Meter, exc: BaseException) -> None:
    # Not only GatewayErrors: a bug or a cancellation must still settle the reservation and record the call.
    if isinstance(exc, asyncio.CancelledError):  # the client left, or the shutdown cut it (gateway.handler)
        reason, status = _stopped()
        await meter.finish(UsageEvent.Status.PARTIAL, status, reason)
        return
    error = exc if isinstance(exc, GatewayError) else internal_error()
    await meter.finish(UsageEvent.Status.ERROR, error.status, _reason(error))


async def _open_stream(ireq: InternalRequest, encoder: Encoder, meter: Meter) -> StreamingHttpResponse:
    # Wait for the upstream's first event before answering, so that failures before any output
    # (429, 529, bad request) reach the client as a proper HTTP error status rather than an SSE error,
    # and so that routing can still retry or fall back: after this, nothing is retried.
    async def open_upstream(provider, upstream_model: str, target):
        exits = contextlib.AsyncExitStack()
        try:
            batches = await exits.enter_async_context(
                provider.stream({"model": upstream_model, **ireq.params}, betas=ireq.betas))
            return exits, batches, await anext(batches)
        except StopAsyncIteration:
            await exits.aclose()
            raise GatewayError(502, "The upstream provider returned an empty stream.", type="upstream_error") from None
        except BaseException:
            await exits.aclose()
            raise

    model = meter.model
    try:
        (exits, batches, first), meter.deployment = await routing.call(
            model, open_upstream, first_byte_timeout=model.first_token_timeout, affinity=ireq.thread)
    except BaseException as exc:
        await _finish_failed(meter, exc)
        raise
    relay = _Relay(exits, batches, first, encoder, meter)
    body = relay.body()
    response = StreamingHttpResponse(
        body,
        content_type=getattr(encoder, "content_type", "text/event-stream"),  # Gemini's JSON-array stream differs
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **meter.ticket.headers,
                 **echo_headers(meter.trace)},
    )
    response.abandon = relay.abandon  # gateway.handler: the client left before the body was sent
    response.relay_body = body  # gateway.handler sends its chunks itself
    for header in REQUEST_ID_HEADERS:
        response.setdefault(header, meter.request_id)
    return response


class _Relay:
    """A stream's body: the upstream's events encoded for the client, and the usage row once it ends.

    If the client hangs up, gateway.handler cancels or closes the body generator and its `finally` closes
    the upstream stream and settles what was generated so far (`partial`, `client_left`). A client that
    left before the body was ever iterated gets `abandon()` instead: the generator, never started,
    cannot run its `finally`.
    """

    __slots__ = ("exits", "batches", "first", "encoder", "meter", "started")

    def __init__(self, exits, batches, first: list[dict[str, Any]], encoder: Encoder, meter: Meter) -> None:
        self.exits, self.batches, self.first, self.encoder, self.meter = exits, batches, first, encoder, meter
        self.started = False

    async def abandon(self) -> None:
        """Nothing was relayed: close the upstream stream and record what the upstream billed so far."""
        if self.started:
            return
        self.started = True
        for event in self.first:
            self.meter.observe(event)
        reason, status = _stopped()
        try:
            await self.exits.aclose()
        finally:
            await self.meter.finish(UsageEvent.Status.PARTIAL, status, reason)

    async def body(self):
        self.started = True
        meter, encoder = self.meter, self.encoder
        status, http_status, error_type = UsageEvent.Status.PARTIAL, 200, CLIENT_LEFT
        recorded = False
        metrics.stream_opened(meter.endpoint)
        try:
            # Bound once: the loop runs per event (bench/relay_cost.py).
            observe, feed, batches = meter.observe, encoder.feed, self.batches
            finished = False
            batch = self.first
            while batch is not None:
                out = []
                for event in batch:
                    observe(event)
                    out.append(feed(event))
                    if event.get("type") == "message_stop":
                        finished, status, error_type = True, UsageEvent.Status.OK, ""
                        out.append(encoder.finish(meter.usage))
                        if meter.turn is not None and getattr(encoder, "response", None) is not None:
                            meter.turn.response_body = encoder.response  # a Responses API answer, kept
                if finished and not recorded:
                    # Recorded before the client sees the end: its next request finds this turn.
                    recorded = True
                    await meter.finish(status, http_status)
                if data := b"".join(out):
                    yield data
                batch = await anext(batches, None)
            if not finished:
                raise GatewayError(502, "The upstream stream ended before the message was complete.",
                                   type="upstream_error", code="upstream_cut")
        except GatewayError as exc:
            status, http_status, error_type = UsageEvent.Status.ERROR, exc.status, _reason(exc)
            yield encoder.fail(exc)
        except Exception:
            # A bug must not look like a normal finish to the client: end with an error chunk.
            logger.exception("stream relay failed for %s", meter.request_id)
            status, http_status, error_type = UsageEvent.Status.ERROR, 500, "server_error"
            yield encoder.fail(internal_error())
        finally:
            metrics.stream_closed(meter.endpoint)
            if error_type == CLIENT_LEFT:
                error_type = _stopped()[0]
            await self.exits.aclose()
            if not recorded:
                await meter.finish(status, http_status, error_type)
