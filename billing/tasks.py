"""Periodic billing work, run by beat (CELERY_BEAT_SCHEDULE) or, in the embedded mode, billing/scheduler.py.

Each task calls one idempotent service: acks_late means a task may run twice, and beat may queue a
run while the previous one is still going.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from . import payments, services

RECONCILE_WINDOW = timedelta(days=7)


@shared_task
def usage_rollup() -> int:
    return services.usage_rollup()


@shared_task
def usage_reconcile() -> list[str]:
    return services.usage_reconcile(since=timezone.now() - RECONCILE_WINDOW)


@shared_task
def budget_periods_reset() -> int:
    return services.budget_periods_reset()


@shared_task
def auto_recharge(tenant_id: int) -> int | None:
    payment = payments.auto_recharge_run(tenant_id=tenant_id)
    return payment.pk if payment else None


@shared_task
def auto_recharge_sweep() -> int:
    return payments.auto_recharge_sweep()
