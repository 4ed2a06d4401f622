"""What every fake upstream server shares: its test-control routes and how it is started.

A fake subclasses `RequestLogControl` (it keeps its request log in `self.requests`) and exposes its
aiohttp app from a `build_app(*, log_requests, api_key)`; `start` serves that app inside a test's
event loop and `main` is its `python -m` entry point.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from aiohttp import web

_OK = orjson.dumps({"ok": True})


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


class RequestLogControl:
    """`GET /_fake/requests[?since=SEQ]`, `DELETE /_fake/requests` and `GET /_fake/health` (no auth)."""

    requests: Any  # a deque of log entries, each with its `seq`

    async def get_requests(self, request: web.Request) -> web.Response:
        since = request.query.get("since", "")
        entries = list(self.requests)
        if since.isdigit():
            entries = [e for e in entries if e["seq"] > int(since)]
        return _json(orjson.dumps(entries))

    async def clear_requests(self, request: web.Request) -> web.Response:
        self.requests.clear()
        return _json(_OK)

    async def health(self, request: web.Request) -> web.Response:
        return _json(_OK)

    def add_control_routes(self, app: web.Application, prefix: str = "/_fake") -> None:
        app.router.add_get(f"{prefix}/requests", self.get_requests)
        app.router.add_delete(f"{prefix}/requests", self.clear_requests)
        app.router.add_get(f"{prefix}/health", self.health)


async def start(build_app: Callable[..., web.Application], host: str = "127.0.0.1", port: int = 0, *,
                handler_cancellation: bool = False, **kwargs: Any) -> tuple[web.AppRunner, int]:
    """Serve `build_app(**kwargs)` on the running loop; returns (runner, bound port). Stop: runner.cleanup().

    With `handler_cancellation` a handler is cancelled when its client disconnects (aiohttp's default
    lets it run on).
    """
    runner = web.AppRunner(build_app(**kwargs), access_log=None, handle_signals=False,
                           handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    return runner, runner.addresses[0][1]


async def serve(build_app: Callable[..., web.Application], name: str, host: str, port: int, **kwargs: Any) -> None:
    """`start(build_app, host, port, **kwargs)`, announce it on stdout, and serve until SIGINT/SIGTERM."""
    runner, bound = await start(build_app, host, port, **kwargs)
    print(f"{name} listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(build_app: Callable[..., web.Application], *, name: str, module: str, description: str, default_port: int,
         argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--no-log", action="store_true", help="do not record requests for /_fake/requests")
    args = parser.parse_args(argv)
    run(serve(build_app, name, args.host, args.port, log_requests=not args.no_log))


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a server's main coroutine on uvloop when it is installed."""
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main)
