"""Failures that repeat on every request (a database outage) logged as one line per interval, not one
traceback per request: under load a 10 s outage made 42 MB of logs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

INTERVAL_SECONDS = 10.0


class FailureLog:
    def __init__(self, logger: logging.Logger, what: str, interval: float = INTERVAL_SECONDS, *,
                 count: Callable[[], None] | None = None) -> None:
        self.logger, self.what, self.interval, self.count = logger, what, interval, count
        self._count, self._next = 0, 0.0
        self._lock = threading.Lock()  # called from the event loop and from the database threads

    def failed(self, exc: BaseException | None = None) -> None:
        if self.count is not None:
            self.count()  # every failure, where the log line summarises an interval
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now < self._next:
                return
            count, self._count, self._next = self._count, 0, now + self.interval
        detail = str(exc).strip().splitlines()[:1] if exc is not None else []
        self.logger.warning("%s (%d failures in the last %g s)%s", self.what, count, self.interval,
                            "".join(f": {line}" for line in detail))


def _database_error() -> None:
    from common import metrics  # lazily: it reads the settings at import, this module must not

    metrics.database_error()


db_unavailable = FailureLog(logging.getLogger("gatehouse.database"), "database unavailable", count=_database_error)
