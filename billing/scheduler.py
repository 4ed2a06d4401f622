"""Beat for the embedded mode: CELERY_BEAT_SCHEDULE run inside the gateway process.

Without Redis there is no broker and no beat, so config/asgi.py starts `start()` at lifespan startup
(only when tasks run eagerly) and `stop()`s it at shutdown. The entries and their crontabs are the same
ones beat reads, checked the way beat checks them (`schedule.is_due(last_run_at)`).

Tasks run one at a time on one dedicated thread: never on the event loop, never two billing writers
at once on SQLite, and the thread keeps its database connection between runs. Each ASGI worker
process runs its own scheduler; that only repeats idempotent work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from celery.schedules import maybe_schedule
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils.module_loading import import_string

from common.db import UNREACHABLE
from common.outage import db_unavailable

logger = logging.getLogger(__name__)

# The clock is read again at least this often, so a suspended machine or a clock change is noticed.
MAX_SLEEP_SECONDS = 60.0


def _apply(task_name: str) -> Any:
    # What Celery's Django fixup does around a task in a worker: no connection left broken or stale.
    close_old_connections()
    try:
        return import_string(task_name).apply(throw=True).result
    finally:
        close_old_connections()


class Scheduler:
    def __init__(self, schedule: dict[str, dict] | None = None) -> None:
        entries = settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule
        self.entries = {name: (entry["task"], maybe_schedule(entry["schedule"])) for name, entry in entries.items()}
        # As beat without a stored state: the first run of each entry is its next slot from now.
        self.last_run: dict[str, datetime] = {name: when.now() for name, (_, when) in self.entries.items()}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="billing-scheduler")
        self._run_in_thread = sync_to_async(_apply, thread_sensitive=False, executor=self._executor)

    async def tick(self) -> float:
        """Run the entries that are due, in order; return the seconds until the next one is."""
        wait = MAX_SLEEP_SECONDS
        for name, (task_name, when) in self.entries.items():
            due, remaining = when.is_due(self.last_run[name])
            if due:
                # Marked before running: a failing task waits for its next slot rather than being retried
                # in a tight loop (it is idempotent, so the next slot catches up).
                self.last_run[name] = when.now()
                await self.run_task(name, task_name)
                remaining = when.is_due(self.last_run[name])[1]
            wait = min(wait, remaining)
        return max(wait, 0.1)

    async def run_task(self, name: str, task_name: str) -> None:
        try:
            result = await self._run_in_thread(task_name)
        except UNREACHABLE as exc:
            # Every task needs the database: during an outage each due one would log a traceback a
            # minute; the outage's one line per interval says it instead (the next slot catches up).
            db_unavailable.failed(exc)
        except Exception:
            logger.exception("scheduled task %s (%s) failed", name, task_name)
        else:
            logger.info("scheduled task %s (%s) done: %r", name, task_name, result)

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(await self.tick())
        finally:
            self.close()

    def close(self, *, wait: bool = False) -> None:
        # A task still running when we are cancelled finishes on its thread: each unit of billing work is
        # one transaction, so letting it end (or dying with the process) never leaves it half-written.
        self._executor.submit(connections.close_all)
        self._executor.shutdown(wait=wait)


def start() -> asyncio.Task:
    return asyncio.get_running_loop().create_task(Scheduler().run(), name="billing-scheduler")


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
