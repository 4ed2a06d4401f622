"""Running a batch: each item through the same request path as a live request (gateway.pipeline.execute:
the line's codec, admission, routing, the provider, a usage row with the batch's id, billed at the
model's batch price).

- One runner at a time: `batch_claim` takes the batch's lease with a conditional UPDATE and the runner
  renews it; a task delivered twice, or the resume sweep finding a live lease, does nothing.
- Admission decides item by item, so a batch reserves as it runs: at most BATCH_CONCURRENCY items hold
  a reservation at once, never the whole batch. A rate-limit refusal (rpm, tpm) waits its retry-after
  and tries the item again; a budget or balance refusal, or a key revoked or a tenant suspended
  meanwhile, stops the batch: the items not run are errored with that refusal and cost nothing.
- Cancelling stops new items; the ones in flight finish and are billed (both vendors do the same).
- Past `expires_at` (24 h) the items not run expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from accounts.selectors import principal_check
from common.errors import AppError
from common.db import db_unit

from .. import pipeline
from ..admission import admission
from ..core import GatewayError, internal_error, protocol_error
from ..metering.recorder import usage_recorder
from ..protocols import anthropic_messages, openai_chat, openai_responses
from . import services
from .models import Batch, BatchItem

logger = logging.getLogger(__name__)

CHUNK = 200  # pending items fetched at a time


@dataclass(frozen=True, slots=True)
class Route:
    """How an endpoint's lines run: its codec and usage endpoint name (None: embeddings, a oneshot)."""

    codec: Any
    endpoint: str


ROUTES = {
    "/v1/messages": Route(anthropic_messages, "messages"),
    "/v1/chat/completions": Route(openai_chat, "chat.completions"),
    "/v1/responses": Route(openai_responses, "responses"),
    "/v1/embeddings": Route(None, "embeddings"),
}


class _Stop(Exception):
    """The batch cannot go on: `error` is what the items not run are errored with."""

    def __init__(self, error: GatewayError) -> None:
        self.error = error


_claim = db_unit(services.batch_claim)
_renew = db_unit(services.batch_renew)
_pending = db_unit(services.batch_pending_items)
_item_finish = db_unit(services.batch_item_finish)
_state = db_unit(services.batch_runner_state)
_settle_rest = db_unit(services.batch_settle_rest)
_finalize = db_unit(services.batch_finalize)


async def batch_execute(batch_id: int) -> str:
    """Run the batch's pending items and finalize it; what happened, for the task's log."""
    runner = await _claim(batch_id)
    if runner is None:
        return "not claimed"
    try:
        outcome = await _Runner(runner).run()
    finally:
        # Before the event loop of a worker's task closes: rows written, admission counters settled.
        await usage_recorder.drain()
        await admission.drain()
    return outcome


class _Runner:
    def __init__(self, runner: services.RunnerState) -> None:
        self.state = runner
        self.route = ROUTES[runner.endpoint]
        self.stop: _Stop | None = None

    async def _check(self) -> None:
        """Cancel, expiry, and the key's standing, read again before each item (two indexed reads, next to
        an upstream call): a cancel or a revoked key stops the batch at the next item."""
        self.state = await _state(self.state.batch_id)

    async def _keep_lease(self) -> None:
        # Apart from the items: one slow call (up to the model's timeout) must not let the lease lapse.
        while True:
            await asyncio.sleep(services.LEASE_SECONDS / 4)
            await _renew(self.state.batch_id)

    async def run(self) -> str:
        renewer = asyncio.get_running_loop().create_task(self._keep_lease())
        try:
            await self._check()
            await self._run_items(max(1, settings.BATCH_CONCURRENCY))
            await self._check()
        finally:
            renewer.cancel()
        if self.stop is not None:
            end = "completed"
        elif self.state.status == Batch.Status.CANCELLING:
            end = "cancelled"
        elif datetime.now(UTC) >= self.state.expires_at:
            end = "expired"
        else:
            end = "completed"
        stop = None if self.stop is None else {"status": self.stop.error.status,
                                                "body": self._error_body(self.stop.error, "")}
        await _settle_rest(self.state.batch_id, kind=end, error=stop)
        await _finalize(self.state.batch_id, outcome=end)
        return end if self.stop is None else f"stopped: {self.stop.error.code or self.stop.error.type}"

    async def _run_items(self, concurrency: int) -> None:
        while not self._halted():
            items = await _pending(self.state.batch_id, CHUNK)
            if not items:
                return
            queue: asyncio.Queue = asyncio.Queue()
            for item in items:
                queue.put_nowait(item)
            await asyncio.gather(*(self._worker(queue) for _ in range(min(concurrency, len(items)))))

    def _halted(self) -> bool:
        if self.state.principal is None and self.stop is None:
            self.stop = _Stop(self.state.principal_error or internal_error())
        return (self.stop is not None or self.state.status == Batch.Status.CANCELLING
                or datetime.now(UTC) >= self.state.expires_at)

    def _error_body(self, error: GatewayError, request_id: str) -> dict[str, Any]:
        if self.state.vendor == Batch.Vendor.ANTHROPIC:
            return anthropic_messages.error_body(error, request_id or None)
        return openai_chat.error_body(error)

    async def _worker(self, queue: asyncio.Queue) -> None:
        while not queue.empty():
            await self._check()
            if self._halted():
                return
            item = queue.get_nowait()
            status, http_status, result, request_id = await self._run_item(item)
            if status is None:  # the batch stopped while this item waited: it is settled with the rest
                return
            await _item_finish(item.id, status=status, http_status=http_status, result=result,
                               request_id=request_id)

    async def _run_item(self, item: services.PendingItem):
        request_id = item_request_id(self.state.public_id, item.line)
        while True:
            try:
                payload = await self._call(item.body, request_id)
            except (GatewayError, AppError) as exc:
                error = exc if isinstance(exc, GatewayError) else protocol_error(exc)
                if error.code == "rate_limit_exceeded" and error.retry_after is not None:
                    # A batch goes at its own pace: wait for the key's window instead of failing the item.
                    await asyncio.sleep(min(error.retry_after, 60))
                    await self._check()
                    if self._halted():
                        return None, None, None, ""
                    continue
                if error.code in _STOPPING:
                    self.stop = self.stop or _Stop(error)
                    return None, None, None, ""
                return BatchItem.Status.ERRORED, error.status, self._error_body(error, request_id), request_id
            except Exception:
                logger.exception("batch %s: item on line %s failed", self.state.public_id, item.line)
                return BatchItem.Status.ERRORED, 500, self._error_body(internal_error(), request_id), request_id
            return BatchItem.Status.SUCCEEDED, 200, payload, request_id

    async def _call(self, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        principal = principal_check(self.state.principal, time.time())
        kwargs = dict(principal=principal, body=body, request_id=request_id, batch_id=self.state.public_id)
        if self.route.codec is None:
            return await pipeline.execute_oneshot(**kwargs)
        return await pipeline.execute(codec=self.route.codec, endpoint=self.route.endpoint, **kwargs)


def item_request_id(batch_id: str, line: int) -> str:
    """The same request id every time one item runs: an item in flight when its runner died runs again when
    the batch is resumed, and its second usage row is then refused by the usage rows' unique request id
    (gateway/metering), so the item is billed once. (A refused attempt writes no row, so the rate-limit
    retries above may share it too.)"""
    return "req_" + hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()[:24]


# Refusals that no later item would pass: the batch stops (the key's spend or the tenant's balance is
# used up, the key was revoked or expired, the tenant suspended).
_STOPPING = frozenset({"insufficient_quota", "revoked_api_key", "expired_api_key", "account_suspended"})


# --- Starting ------------------------------------------------------------------------------------------

_in_process: set[asyncio.Task] = set()
SWEEP_SECONDS = 60.0


def _run_here(batch_id: int) -> None:
    # In a context of its own: not the creating request's (its access line and trace span).
    task = asyncio.get_running_loop().create_task(batch_execute(batch_id), name=f"batch-{batch_id}",
                                                  context=contextvars.Context())
    _in_process.add(task)
    task.add_done_callback(_in_process.discard)


async def batch_start(batch_id: int) -> None:
    """Hand a new batch to a Celery worker, or, in the embedded mode (no broker: tasks would run eagerly,
    inside this request), to this process's event loop."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        _run_here(batch_id)
        return
    from .tasks import batch_run

    await sync_to_async(batch_run.delay, thread_sensitive=False)(batch_id)


_resumable = db_unit(services.batches_resumable)
_expire = db_unit(services.batches_expire)
EXPIRE_SECONDS = 3600.0


async def sweep() -> None:
    """The embedded mode's beat for batches (config/asgi.py): batches whose runner is gone run here, and
    files and results past their retention go, hourly."""
    expired_at = None
    while True:
        try:
            for batch_id in await _resumable():
                _run_here(batch_id)
            if expired_at is None or time.monotonic() - expired_at >= EXPIRE_SECONDS:
                expired_at = time.monotonic()
                await _expire()
        except Exception:
            logger.exception("batch sweep failed")
        await asyncio.sleep(SWEEP_SECONDS)


def start_sweeper() -> asyncio.Task:
    return asyncio.get_running_loop().create_task(sweep(), name="batch-sweeper")


async def stop_sweeper(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
