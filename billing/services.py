"""Usage recording: durable before the response completes, one database round trip per batch.

Requests append their row and wait for it to be committed. A single flush task per event loop
writes everything pending in one INSERT ... ON CONFLICT DO NOTHING, so under load many requests share
one round trip and one sync/async thread hop (group commit), while a lone request is written at once.
The flush runs in its own task, so a request cancelled by a client hang-up still gets its row.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import DatabaseError

from config.db import refresh_connections

from .models import UsageEvent

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    tenant_id: int
    api_key_id: int
    endpoint: str
    requested_model: str
    model: str
    upstream_model: str
    stream: bool
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    status: str
    http_status: int
    error_type: str
    latency_ms: int
    ttft_ms: int | None
    created_at: datetime


def usage_events_write(records: list[UsageRecord]) -> None:
    """Insert the rows; a request id already written is skipped, so a retried write never double-bills."""
    rows = [UsageEvent(**asdict(record)) for record in records]
    try:
        refresh_connections()
        UsageEvent.objects.bulk_create(rows, ignore_conflicts=True)
    except DatabaseError:
        # A connection broken since the last request (database restart): reconnect and try once more.
        refresh_connections()
        UsageEvent.objects.bulk_create(rows, ignore_conflicts=True)


_write_async = sync_to_async(usage_events_write, thread_sensitive=True)


class UsageRecorder:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[UsageRecord, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def record(self, record: UsageRecord) -> None:
        """Return once the row is committed. Failures are logged with the row, never raised."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): state of the old one is unusable
            self._loop, self._pending, self._flusher = loop, [], None
        done = loop.create_future()
        self._pending.append((record, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        # Shielded: a client hang-up cancels the request, not the write it is waiting for.
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await _write_async([record for record, _ in batch])
            except Exception:
                # Never lost silently: the rows go to the log, from where they can be replayed.
                logger.exception("usage rows could not be written: %s", [asdict(record) for record, _ in batch])
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


usage_recorder = UsageRecorder()
