"""Idempotent POSTs: a retried request gets the first answer, and its write happens once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from common import crypto

from .models import IdempotencyRecord


class IdempotencyKeyReused(Exception):
    """The key was first sent with another request (method, path or body)."""


def idempotent_run(*, credential: str, key: str, fingerprint: str,
                   run: Callable[[], tuple[int, dict]]) -> tuple[int, dict, bool]:
    """(status, body, replayed): the stored answer for (`credential`, `key`), else `run()`'s, stored.

    The write and its record commit together: a concurrent retry with the same key waits on the
    unique index, fails, rolls its own write back and replays the winner's answer. Errors (a raise
    from `run`) are not stored, so a corrected retry with the same key is tried again.
    """
    cutoff = timezone.now() - timedelta(hours=settings.MANAGEMENT_IDEMPOTENCY_HOURS)
    record = IdempotencyRecord.objects.filter(credential=credential, key=key, created_at__gte=cutoff).first()
    if record is not None:
        return _replay(record, fingerprint)
    IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()  # expired: their keys are free again
    try:
        with transaction.atomic():
            status, body = run()
            IdempotencyRecord.objects.create(credential=credential, key=key, fingerprint=fingerprint, status=status,
                                             response_encrypted=crypto.encrypt(orjson.dumps(body).decode()))
    except IntegrityError:
        record = IdempotencyRecord.objects.filter(credential=credential, key=key).first()
        if record is None:
            raise  # the write itself broke a constraint
        return _replay(record, fingerprint)
    return status, body, False


def _replay(record: IdempotencyRecord, fingerprint: str) -> tuple[int, dict, bool]:
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused
    return record.status, orjson.loads(crypto.decrypt(record.response_encrypted)), True
