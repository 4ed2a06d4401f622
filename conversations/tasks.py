"""Periodic conversation work: thin tasks over conversations.services (idempotent)."""

from __future__ import annotations

from celery import shared_task

from common import metrics

from . import services


@shared_task
def conversations_expire() -> int:
    deleted = services.conversations_expire()
    metrics.conversations_expired(deleted)
    return deleted


@shared_task
def request_log_partitions_maintain() -> dict:
    return services.request_log_partitions_maintain()
