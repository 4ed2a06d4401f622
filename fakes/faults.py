"""A fault-injection proxy: put it between the gateway and a fake upstream to make the upstream misbehave.

It forwards every request to ``--upstream`` (method, path, query, headers, body) and streams the answer
back byte for byte, unless a fault mode is set. Modes switch at run time through a control route, so one
proxy process serves a whole test session. It needs no Django.

Run it::

    python -m fakes.faults --upstream http://127.0.0.1:8100 --host 127.0.0.1 --port 8200

It prints exactly one line, ``fault-proxy listening on http://HOST:PORT`` (port 0 picks a free port). In-process, ``await start(upstream, host, port)``.

Modes
-----
``pass``              forward (the default)
``hang``              read the request, never answer; the connection stays open until the client closes it
``delay``             wait ``ms`` milliseconds (default 1000), then forward
``reset``             read the request, then close the connection abruptly (TCP RST, no response)
``garbage``           answer 200 with a body that is not what was asked for: non-JSON under
                      ``application/json``, or (for a request whose JSON body has ``"stream": true``) an
                      ``text/event-stream`` whose event data is not JSON
``midstream_close``   forward the upstream's status, headers and the first ``events`` SSE events (default 1;
                      an event ends with a blank line) or, if ``bytes`` is given, the first ``bytes`` bytes of
                      the body, then close the connection (the chunked body never terminates)
``echo_credentials``  answer error ``status`` (default 401) whose message echoes the request's
                      ``Authorization`` and ``x-api-key`` header values, as a misbehaving upstream or proxy
                      would: Anthropic's error shape, except OpenAI's for paths under ``/v1/chat/`` and
                      ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``

Each mode other than ``pass`` applies to every request until changed, or to the next ``times`` requests
(then the mode goes back to ``pass``), so a test can fail a first attempt and let its retry through.

Control (no auth, never forwarded)
----------------------------------
``PUT /_fault`` with JSON ``{"mode": "...", "ms": N, "events": N, "bytes": N, "status": N, "times": N}``
(only ``mode`` is required; unknown modes or fields are a 400) sets the mode and answers the state;
``GET /_fault`` answers the state ``{"mode": {...}, "in_flight": N, "hanging": N}``, where in_flight counts
requests the proxy is still handling (forwarding, hanging, delaying) and hanging those held by ``hang``;
``GET /_fault/requests[?since=SEQ]`` lists the last 1000 proxied requests, oldest first, each
``{"seq", "method", "path", "mode", "outcome", "status"}``, where outcome is ``in_progress``, then
``forwarded``, ``aborted`` (the client went away first, e.g. out of a hang), ``reset``, ``garbage``,
``cut`` (midstream_close), ``echoed`` or ``upstream_error`` (the upstream was unreachable: a plain 502);
``DELETE /_fault/requests`` clears it; ``GET /_fault/health`` answers ``{"ok": true}``.

A client that disconnects cancels the proxy's handler (the server runs with handler cancellation), so
its upstream request is abandoned too, as a real proxy's would be: the fake behind sees ``aborted``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import socket
import struct
import sys
from collections import deque
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from fakes import serving
from fakes.anthropic import ERROR_TYPES as ANTHROPIC_ERROR_TYPES
from fakes.openai_compat import DIRECTIVE_ERRORS as OPENAI_ERRORS
from fakes.serving import RequestLogControl

MODES = frozenset({"pass", "hang", "delay", "reset", "garbage", "midstream_close", "echo_credentials"})
PARAMS = frozenset({"ms", "events", "bytes", "status", "times"})
OPENAI_PATHS = ("/v1/chat/", "/v1/completions", "/v1/embeddings", "/v1/responses")
# Hop-by-hop headers and those aiohttp recomputes for the forwarded body (RFC 9110 section 7.6.1).
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host",
     "content-length"}
)  # fmt: skip
GARBAGE_JSON = b"<html><body>502 Bad Gateway</body></html> {\"id\": \"msg_"
GARBAGE_SSE = b"event: message_start\ndata: {this is not json\n\ndata: [garbage\n\n"
LOG_SIZE = 1000


def _forward_headers(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}


def _echo_body(path: str, status: int, authorization: str, api_key: str) -> dict[str, Any]:
    message = f"Invalid credentials: authorization={authorization!r}, x-api-key={api_key!r}"
    if path.startswith(OPENAI_PATHS):
        type_, code, _ = OPENAI_ERRORS.get(status, ("server_error", None, ""))
        return {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": "req_fault"}


def _reset(request: web.Request) -> None:
    """Close the client's connection with a TCP RST (SO_LINGER 0), not an orderly FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FaultProxy(RequestLogControl):
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode: dict[str, Any] = {"mode": "pass"}
        self.in_flight = 0
        self.hanging = 0
        self.requests: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self._seq = itertools.count(1)
        self.session: aiohttp.ClientSession | None = None

    # -- control -------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"mode": self.mode, "in_flight": self.in_flight, "hanging": self.hanging}

    async def get_state(self, request: web.Request) -> web.Response:
        return web.json_response(self._state())

    async def set_mode(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        if not isinstance(body, dict) or body.get("mode") not in MODES:
            return web.json_response({"error": f"mode must be one of {sorted(MODES)}"}, status=400)
        extra = set(body) - PARAMS - {"mode"}
        if extra or not all(type(body[k]) is int and body[k] >= (k == "times") for k in set(body) & PARAMS):
            error = f"parameters are non-negative integers ({sorted(PARAMS)}; times >= 1)"
            return web.json_response({"error": error}, status=400)
        self.mode = body
        return web.json_response(self._state())

    def _take_mode(self) -> dict[str, Any]:
        """The mode for this request; counts down `times`, back to pass when it runs out."""
        mode = self.mode
        if "times" in mode:
            self.mode = {**mode, "times": mode["times"] - 1} if mode["times"] > 1 else {"mode": "pass"}
        return mode

    # -- proxying ------------------------------------------------------------------------------

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        mode = self._take_mode()
        entry = {"seq": next(self._seq), "method": request.method, "path": request.path, "mode": mode["mode"],
                 "outcome": "in_progress", "status": None}
        self.requests.append(entry)
        self.in_flight += 1
        try:
            return await self._handle(request, mode, entry)
        except asyncio.CancelledError:  # the client went away (handler cancellation)
            if entry["outcome"] == "in_progress":
                entry["outcome"] = "aborted"
            raise
        finally:
            self.in_flight -= 1

    async def _handle(self, request: web.Request, mode: dict[str, Any], entry: dict[str, Any]) -> web.StreamResponse:
        body = await request.read()
        name = mode["mode"]
        if name == "hang":
            self.hanging += 1
            try:
                await asyncio.Event().wait()  # until the client closes and the handler is cancelled
            finally:
                self.hanging -= 1
        if name == "reset":
            entry["outcome"] = "reset"
            _reset(request)
            return web.Response()  # never sent: the transport is gone
        if name == "garbage":
            entry.update(outcome="garbage", status=200)
            if _wants_stream(body):
                return web.Response(body=GARBAGE_SSE, content_type="text/event-stream")
            return web.Response(body=GARBAGE_JSON, content_type="application/json")
        if name == "echo_credentials":
            status = mode.get("status", 401)
            entry.update(outcome="echoed", status=status)
            payload = _echo_body(request.path, status, request.headers.get("authorization", ""),
                                 request.headers.get("x-api-key", ""))
            return web.json_response(payload, status=status)
        if name == "delay":
            await asyncio.sleep(mode.get("ms", 1000) / 1000)
        return await self._forward(request, body, mode, entry)

    async def _forward(self, request: web.Request, body: bytes, mode: dict[str, Any],
                       entry: dict[str, Any]) -> web.StreamResponse:
        assert self.session is not None
        try:
            upstream = await self.session.request(request.method, self.upstream + request.path_qs,
                                                  headers=_forward_headers(request.headers), data=body)
        except aiohttp.ClientError as exc:
            entry.update(outcome="upstream_error", status=502)
            return web.Response(status=502, text=f"fault proxy: upstream unreachable: {exc}")
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                          headers=_forward_headers(upstream.headers))
            entry["status"] = upstream.status
            await response.prepare(request)
            if mode["mode"] == "midstream_close":
                await self._relay_then_cut(request, response, upstream, mode)
                entry["outcome"] = "cut"
                return response
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (OSError, aiohttp.ClientError):  # either side went away mid-body
                entry["outcome"] = "aborted"
                return response
        entry["outcome"] = "forwarded"
        return response

    @staticmethod
    async def _relay_then_cut(request: web.Request, response: web.StreamResponse,
                              upstream: aiohttp.ClientResponse, mode: dict[str, Any]) -> None:
        if "bytes" in mode:
            budget = mode["bytes"]
            while budget > 0 and (chunk := await upstream.content.read(budget)):
                await response.write(chunk)
                budget -= len(chunk)
        else:
            for _ in range(mode.get("events", 1)):
                event = await upstream.content.readuntil(b"\n\n")
                if not event:
                    break
                await response.write(event)
        # An orderly close (FIN), so what was relayed arrives; an RST may discard it in the client's buffer.
        assert request.transport is not None
        request.transport.close()


def _wants_stream(body: bytes) -> bool:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True


PROXY_KEY = web.AppKey("fault_proxy", FaultProxy)


def build_app(upstream: str) -> web.Application:
    proxy = FaultProxy(upstream)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[PROXY_KEY] = proxy

    async def session_context(app: web.Application):
        # No pool limit and no timeout: the proxy must never be the bottleneck it is testing for.
        proxy.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=None))
        yield
        await proxy.session.close()

    app.cleanup_ctx.append(session_context)
    app.router.add_get("/_fault", proxy.get_state)
    app.router.add_put("/_fault", proxy.set_mode)
    proxy.add_control_routes(app, prefix="/_fault")
    app.router.add_route("*", "/{tail:.*}", proxy.proxy)
    return app


async def start(upstream: str, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve the proxy on the running loop; returns (runner, bound port). Stop: runner.cleanup()."""
    return await serving.start(build_app, host, port, handler_cancellation=True, upstream=upstream)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="base URL to forward to, e.g. http://127.0.0.1:8100")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    args = parser.parse_args(argv)
    serving.run(serving.serve(build_app, "fault-proxy", args.host, args.port, handler_cancellation=True,
                              upstream=args.upstream))


if __name__ == "__main__":
    sys.exit(main())
