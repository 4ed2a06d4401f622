"""A Django ASGI handler for the API paths: the URLconf and views, without the per-request overhead
that Django's general-purpose handler pays for sync code.

What it leaves out, and why that is safe here:

- The middleware stack. Under ASGI every MiddlewareMixin runs process_request/process_response through
  sync_to_async: two thread hops per middleware per request. The API needs none of sessions, CSRF,
  messages or clickjacking headers.
- The per-request ThreadSensitiveContext. Django gives each request a fresh executor thread for its
  sync code, so every request opened a new database connection (thread-local) and started and joined
  a thread. Here sync units (key and catalog lookups, the usage writer) share asgiref's one
  process-wide sync thread, with one persistent connection. Each unit calls close_old_connections
  itself, which is also why the request_started/finished receivers are skipped for this handler
  (GatewayConfig.ready scopes them to Django's own handlers).

What it adds: a client that disconnects cancels its request at any point, not only while a stream is
relayed. Waiting for an upstream that hangs must not outlive the client: the cancellation closes the
upstream call, so its pooled connection is freed (a hung upstream otherwise holds every connection
until UPSTREAM_TIMEOUT_SECONDS), and gateway.pipeline records the call as `client_left`. A streaming
response whose client left before its body was sent is given up through its `abandon` coroutine
(the body generator, never started, could not settle it itself). At the end of a shutdown's grace
(gateway.shutdown) every request still open is stopped the same way; one cut before its answer gets a
503.
"""

from __future__ import annotations

import asyncio
import contextlib
import io

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import get_resolver, set_script_prefix, set_urlconf

from . import observability, shutdown, tracing
from .pipeline import REQUEST_ID_HEADERS, json_response, new_request_id


class ApiHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    # A path that resolves without captured arguments resolves to the same match every time; Django's
    # resolver walks the URLconf's includes and ninja's routers for it on every request, trying each
    # pattern before the match (~18 resolve() calls for /v1/chat/completions). Kept per resolver, so a
    # test's ROOT_URLCONF override (which clears get_resolver's cache) gets a fresh one.
    _static_matches: dict = {}

    def resolve_request(self, request):
        urlconf = getattr(request, "urlconf", None)
        key = (get_resolver(urlconf), request.path_info)
        if (match := self._static_matches.get(key)) is None:
            match = super().resolve_request(request)
            if not match.args and not match.captured_kwargs and len(self._static_matches) < 256:
                self._static_matches[key] = match
            return match
        if urlconf is not None:
            set_urlconf(urlconf)
        request.resolver_match = match
        return match

    async def __call__(self, scope, receive, send):
        with tracing.request_span(scope):
            await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        timed_out = False
        try:
            # The whole body, not each chunk: a client trickling a byte at a time must not hold a
            # connection (and its buffer) open for ever. The request goes on without its body and
            # pipeline.parse_json_body answers 408 in the protocol's shape.
            async with asyncio.timeout(settings.GATEWAY_BODY_TIMEOUT_SECONDS):
                body_file = await self.read_body(receive)
        except RequestAborted:
            return
        except TimeoutError:
            body_file, timed_out = io.BytesIO(), True
        # A body cut off by the timeout leaves its rest unread: nothing after it can be told apart from
        # a hang-up, so that request (answered 408) is not listened to.
        listening = (asyncio.get_running_loop().create_future() if timed_out
                     else asyncio.create_task(self.listen_for_disconnect(receive)))
        # The shutdown's end of grace cancels `listening`: the request stops as if its client had left.
        shutdown.open_requests.add(listening)
        if shutdown.cutting:
            listening.cancel()
        access = observability.request_started()
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                response = error_response
            else:
                request.gateway_body_timed_out = timed_out
                if (response := await _until_disconnect(self.run_get_response(request), listening)) is None:
                    # The client left, or the shutdown cut the request; the view, cancelled, recorded
                    # what the call cost.
                    if shutdown.cutting:
                        await self.send_response(_shutting_down(request), send)
                    return
            request_id = new_request_id()  # every API response carries one, not only model calls'
            for header in REQUEST_ID_HEADERS:
                response.setdefault(header, request_id)
            if not response.streaming:
                await self.send_response(response, send)
            elif listening.done():
                if (abandon := getattr(response, "abandon", None)) is not None:
                    await abandon()
            elif (body := getattr(response, "relay_body", None)) is not None:  # gateway.pipeline's streams
                await _until_disconnect(_send_stream(response, body, send), listening)
            else:
                await _until_disconnect(self.send_response(response, send), listening)
            response.close()
            observability.request_finished(access, request, response)
        finally:
            shutdown.open_requests.discard(listening)
            if not listening.done():
                listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                await listening
            body_file.close()


async def _send_stream(response, body, send) -> None:
    """A relayed stream's body, each chunk straight to the ASGI send. Django's `send_response` goes through
    the response's own wrapper (a `make_bytes` call and an async generator step) and `chunk_bytes` (a
    generator) for every chunk: three steps per relayed event that a body of bytes does not need
    (bench/relay_cost.py). The ASGI server splits a large body itself. Closed by `aclosing` as Django's
    is, so a client that leaves runs the body's `finally` (the usage row)."""
    headers = [(header.encode("ascii"), value.encode("latin1")) for header, value in response.items()]
    headers += [(b"Set-Cookie", c.output(header="").encode("ascii").strip()) for c in response.cookies.values()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    async with contextlib.aclosing(body):
        async for chunk in body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body"})


def _shutting_down(request):
    """A request cut by the shutdown before its answer: a 503, which the SDKs retry (on another worker).
    The body is an error in both the OpenAI and the Anthropic shape."""
    return json_response({"type": "error", "error": {
        "type": "api_error", "code": shutdown.SERVER_SHUTDOWN, "message": "The gateway is shutting down: retry the "
        "request."}}, status=shutdown.SERVER_SHUTDOWN_STATUS,
        request_id=getattr(request, "gateway_request_id", None) or new_request_id())


async def _until_disconnect(work, listening: asyncio.Task):
    """Run `work` until it finishes (its result) or the client disconnects (None: `work` is cancelled)."""
    task = asyncio.ensure_future(work)
    await asyncio.wait((task, listening), return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, RequestAborted):
        await task
    return None
