"""Periodic billing work, run by beat (CELERY_BEAT_SCHEDULE) or, in the embedded mode, billing/scheduler.py.

Each task calls one idempotent service: acks_late means a task may run twice, and beat may queue a
run while the previous one is still going.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import alerts, payments, services, statements


@shared_task
def usage_rollup() -> int:
    # Alerts are checked here, after the rollup has debited the minute's usage: off the request path,
    # against balances and spend as the ledger has them.
    count = services.usage_rollup()
    alerts.alerts_evaluate()
    return count


@shared_task
def usage_reconcile() -> list[str]:
    # Today and one older day of the week, rotating with the hour: a bounded run (services.usage_reconcile_windows).
    drift = []
    for since, until in services.usage_reconcile_windows(now=timezone.now()):
        drift += services.usage_reconcile(since=since, until=until)
    return drift


@shared_task
def usage_partitions_maintain() -> dict:
    return services.usage_partitions_maintain()


@shared_task
def auto_recharge(tenant_id: int) -> int | None:
    payment = payments.auto_recharge_run(tenant_id=tenant_id)
    return payment.pk if payment else None


@shared_task
def auto_recharge_sweep() -> int:
    return payments.auto_recharge_sweep()


@shared_task
def statements_monthly() -> int:
    return statements.statements_generate_monthly()


@shared_task(bind=True, max_retries=None)
def alert_delivery_send(self, delivery_id: int) -> str:
    """One attempt; a failed one is retried after its backoff (doubling from ALERT_WEBHOOK_BACKOFF_SECONDS).

    In the embedded mode tasks run eagerly, where Celery's retry would run again at once: there, and
    for any retry a worker lost, `alert_deliveries_due` sends the deliveries whose next attempt is due.
    """
    status, wait = alerts.alert_delivery_attempt(delivery_id)
    if wait is not None and not self.request.is_eager:
        raise self.retry(countdown=wait)
    return status


@shared_task
def alert_deliveries_due() -> int:
    return alerts.alert_deliveries_send_due()
