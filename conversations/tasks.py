"""Periodic conversation work: thin tasks over conversations.services (idempotent)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task
def conversations_expire() -> int:
    return services.conversations_expire()
