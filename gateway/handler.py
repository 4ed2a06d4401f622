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
- The disconnect listener for non-streaming responses. A client that hangs up while we wait for the
  upstream no longer cancels the request: the upstream call completes and is billed, as it was paid
  for. Streams still listen, so a hang-up cancels the relay, which closes the upstream stream and
  settles the usage as partial (gateway.pipeline).
"""

from __future__ import annotations

import asyncio
import io

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

from .pipeline import REQUEST_ID_HEADERS, new_request_id


class ApiHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope, receive, send):
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
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is not None:
                request.gateway_body_timed_out = timed_out
            response = error_response if request is None else await self.run_get_response(request)
            request_id = new_request_id()  # every API response carries one, not only model calls'
            for header in REQUEST_ID_HEADERS:
                response.setdefault(header, request_id)
            if response.streaming:
                await self._send_stream(response, receive, send)
            else:
                await self.send_response(response, send)
            response.close()
        finally:
            body_file.close()

    async def _send_stream(self, response, receive, send):
        sending = asyncio.create_task(self.send_response(response, send))
        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        await asyncio.wait((sending, listening), return_when=asyncio.FIRST_COMPLETED)
        for task in (listening, sending):
            if not task.done():
                task.cancel()
            try:
                await task
            except (asyncio.CancelledError, RequestAborted):
                pass
