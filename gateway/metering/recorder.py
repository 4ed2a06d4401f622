"""Usage recording: durable before the response completes, one database round trip per batch.

Requests append their row and wait for it to be committed. A single flush task per event loop
writes everything pending in one INSERT ... ON CONFLICT DO NOTHING (gateway/metering/writes.py), so
under load many requests share one round trip and one sync/async thread hop (group commit), while a
lone request is written at once. The flush runs in its own task, so a request cancelled by a client
hang-up still gets its row.
"""

from __future__ import annotations

import asyncio
import logging
import time

from asgiref.sync import sync_to_async

from billing.autorecharge import recharge_watcher
from billing.live import usage_notifier
from common import metrics

from .spool import spool_append
from .writes import UsageRecord, usage_events_write

logger = logging.getLogger(__name__)


_write_async = sync_to_async(usage_events_write, thread_sensitive=True)
_spool_async = sync_to_async(spool_append, thread_sensitive=True)


class UsageRecorder:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[UsageRecord, object, object, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def record(self, record: UsageRecord, turn=None, log: dict | None = None) -> None:
        """Return once the row (and the request's conversation turn and log, if any) is committed.

        Never raises: what the database cannot take now waits in the spool, a row it refuses is logged.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): state of the old one is unusable
            self._loop, self._pending, self._flusher = loop, [], None
        done = loop.create_future()
        self._pending.append((record, turn, log, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        # Shielded: a client hang-up cancels the request, not the write it is waiting for.
        await asyncio.shield(done)

    async def drain(self) -> None:
        """Wait for every row handed over so far to be written (or spooled): the last act at shutdown."""
        if self._loop is asyncio.get_running_loop() and self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            metrics.usage_queue(len(batch))  # per batch, not per request: it is on every request's path
            started = time.perf_counter()
            records = [record for record, _, _, _ in batch]
            turns = [turn for _, turn, _, _ in batch if turn is not None]
            logs = [log for _, _, log, _ in batch if log is not None]
            try:
                unwritten = await _write_async(records, turns, logs)
            except Exception:
                # Not a database error (those are handled inside): the whole batch waits in the spool.
                logger.exception("usage rows could not be written; spooled")
                unwritten = [*records, *turns, *logs]
            if unwritten:
                await _spool_async(unwritten)
            metrics.usage_flushed(started, waiting=len(self._pending))
            for _, _, _, done in batch:
                if not done.done():
                    done.set_result(None)
            tenants = {record.tenant_id for record, _, _, _ in batch}
            usage_notifier.notify(tenants)
            recharge_watcher.notify(tenants)


usage_recorder = UsageRecorder()
