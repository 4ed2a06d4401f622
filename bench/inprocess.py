"""What the in-process benchmarks (instrumentation.py, request_cost.py, relay_cost.py) share: the child's
environment and the fake upstream, the ASGI application driven as a worker drives it, and callgrind's
counting switched by client requests.

Import it after the script has put the measured checkout on sys.path: `start_app` imports config.asgi.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

_CALLGRIND_C = """
#include <valgrind/callgrind.h>
void measure_on(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void measure_off(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void measure_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""


def callgrind_library(directory: Path) -> str:
    """Builds the client-request switches; the child gets the library's path as BENCH_CALLGRIND."""
    source, library = directory / "measure.c", directory / "measure.so"
    source.write_text(_CALLGRIND_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)], check=True)
    return str(library)


@functools.cache
def _switches(library: str):
    import ctypes

    return ctypes.CDLL(library)


def callgrind(switch: str, *args: bytes) -> None:
    """Under `--callgrind`: count the instructions of the measured part only (a client request, so that
    switching is exact: not polled, as callgrind_control's is). `measure_on`, `measure_off`, or
    `measure_dump` with a label."""
    if library := os.environ.get("BENCH_CALLGRIND"):
        getattr(_switches(library), switch)(*args)


def callgrind_dump(label: str) -> None:
    callgrind("measure_dump", label.encode())


async def start_app() -> tuple[Callable, Callable[[], Awaitable[None]]]:
    """config.asgi's application after its lifespan start-up, as granian runs it, and its shutdown."""
    import uvloop  # noqa: F401 - the loop granian runs

    from config.asgi import application

    lifespan_in: asyncio.Queue = asyncio.Queue()
    lifespan_out: asyncio.Queue = asyncio.Queue()
    life = asyncio.create_task(application({"type": "lifespan"}, lifespan_in.get, lifespan_out.put))
    await lifespan_in.put({"type": "lifespan.startup"})
    assert (await lifespan_out.get())["type"] == "lifespan.startup.complete"

    async def close() -> None:
        await lifespan_in.put({"type": "lifespan.shutdown"})
        await lifespan_out.get()
        await life

    return application, close


def poster(application, path: str, body: bytes,
           headers: list[tuple[bytes, bytes]]) -> Callable[[], Awaitable[list[dict]]]:
    """A POST of `body` to `path` through the application, as one client that never hangs up: each call
    returns the ASGI messages the application sent."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), *headers]}

    async def post() -> list[dict]:
        sent: list[dict] = []
        delivered = False

        async def receive():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await asyncio.get_running_loop().create_future()  # the client never hangs up

        async def send(message):
            sent.append(message)

        await application(dict(scope), receive, send)
        return sent

    return post


def chat_request(application, key: str, stream: bool) -> Callable[[], Awaitable[None]]:
    """The benchmarks' usual request: a short chat completion with the key, checked for a whole answer."""
    body = json.dumps({"model": "claude-sonnet-4-6", "stream": stream,
                       "messages": [{"role": "user", "content": "Hi there"}]}).encode()
    post = poster(application, "/v1/chat/completions", body, [(b"authorization", f"Bearer {key}".encode())])

    async def one() -> None:
        sent = await post()
        tail = sent[-2]["body"] if stream else sent[-1]["body"]
        if sent[0]["status"] != 200 or (stream and b"[DONE]" not in tail):
            raise RuntimeError(f"bad answer {sent[0]['status']}: {b''.join(m.get('body', b'') for m in sent)[:300]!r}")

    return one


def bench_env(args, **extra: str) -> dict[str, str]:
    """The measured child's environment: this one without the gateway's own settings, pointed at the
    scratch database (`run.database_arguments`), in production mode; `extra` on top."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "ANTHROPIC_", "METRICS_", "LOG_", "PROMETHEUS_"))}
    env.update(DATABASE_URL=f"{args.pg_url.rstrip('/')}/{args.db_name}", REDIS_URL=args.redis_url,
               ANTHROPIC_API_KEY="x", DJANGO_SETTINGS_MODULE="config.settings", DEBUG="0", LOG_LEVEL="WARNING",
               PYTHONUNBUFFERED="1", **extra)
    return env


def start_fake(env: dict[str, str], logdir: Path) -> str:
    """The fake upstream on a free port (bench/run.py's launcher), `env` pointed at it; its URL."""
    import run as bench

    port = bench.free_port(set())
    env["ANTHROPIC_BASE_URL"] = base_url = f"http://127.0.0.1:{port}"
    bench.start_fake(port, logdir)
    return base_url
