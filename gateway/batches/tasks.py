"""Batch work for Celery: run a batch, resume the ones whose runner died, expire by retention. Thin and
idempotent: a batch is claimed by its lease (gateway/batches/services.batch_claim), so a task delivered
twice runs it once."""

from __future__ import annotations

import asyncio

from celery import shared_task
from . import services


@shared_task
def batch_run(batch_id: int) -> str:
    return asyncio.run(_run(batch_id))


async def _run(batch_id: int) -> str:
    from ..providers import close_providers
    from .executor import batch_execute

    try:
        return await batch_execute(batch_id)
    finally:
        await close_providers()  # the upstream clients of this task's event loop, which closes now


@shared_task
def batches_resume() -> int:
    ids = services.batches_resumable()
    for batch_id in ids:
        batch_run.delay(batch_id)
    return len(ids)


@shared_task
def batches_expire() -> int:
    return services.batches_expire()
