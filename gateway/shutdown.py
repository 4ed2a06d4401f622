"""The worker's half of graceful shutdown: open requests and streams are cut when the grace ends.

On SIGTERM the server (granian, uvicorn) stops accepting and waits for open requests and streams to end;
the ASGI lifespan shutdown (config/asgi.py: the usage writer drained, the spool replayed) runs only once
they have. A stream that outlasts SHUTDOWN_GRACE_SECONDS is cut here, by the worker itself: each open API
request is stopped as if its client had left (gateway.handler), so its usage row is written with what
was generated so far (`partial`, `server_shutdown`), then the server's wait ends and the lifespan
shutdown runs. The server's own kill (gateway.serve: the grace plus SETTLE_SECONDS) is the backstop for a
worker that still does not exit; a process killed there could not have written its rows.

The worker's SIGTERM (granian's master passes its own on at once) is watched with a Python handler that
calls the server's on: granian registers its handler with loop.add_signal_handler, which runs from the
loop's wake-up descriptor whatever Python handler is installed; uvicorn's is the Python handler itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

SERVER_SHUTDOWN = "server_shutdown"
SERVER_SHUTDOWN_STATUS = 503
# After the grace: time for the cut requests to write their rows and the lifespan shutdown to flush.
SETTLE_SECONDS = 5
GRACE_ENV = "SHUTDOWN_GRACE_SECONDS"
DEFAULT_GRACE_SECONDS = 30

logger = logging.getLogger(__name__)

# gateway.handler's disconnect listeners of the API requests in progress: cancelling one stops its request.
open_requests: set[asyncio.Future] = set()
cutting = False  # the grace is over: requests stopped from now on were cut by the shutdown


def grace_seconds() -> int:
    value = os.environ.get(GRACE_ENV, "").strip() or str(DEFAULT_GRACE_SECONDS)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{GRACE_ENV} must be a positive integer, got {value!r}")
    return int(value)


def watch() -> None:
    """From the lifespan startup, in the worker's event loop: start the grace timer on SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (an embedded server in a test's thread)
    loop = asyncio.get_running_loop()
    grace = grace_seconds()
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return  # no server handling SIGTERM (the default kills the process): nothing to chain onto
    started = False

    def on_sigterm(signum, frame):
        nonlocal started
        if not started:
            started = True
            loop.call_soon_threadsafe(loop.call_later, grace, cut)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def cut() -> None:
    """The grace is over: stop every API request still open (each writes its usage row as it ends)."""
    global cutting
    cutting = True
    if open_requests:
        logger.warning("shutdown grace of %d s over: cutting %d open request(s)", grace_seconds(), len(open_requests))
    for listening in list(open_requests):
        listening.cancel()

