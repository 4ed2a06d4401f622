"""Writes of batches and files: create, cancel, delete, the runner's claim and item results, finalizing
(the result files), and expiry by retention. Sync functions: callers in async code use common.db.db_unit."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q

from accounts.selectors import KeyPrincipal, key_principal, principal_check

from common.errors import AppError

from ..core import GatewayError, protocol_error
from . import formats, storage
from .models import Batch, BatchFile, BatchItem

LEASE_SECONDS = 60  # a runner renews its lease every STATUS_CHECK_SECONDS; a dead one's lapses in a minute
WINDOW = timedelta(hours=24)  # both vendors' completion window


def _now() -> datetime:
    return datetime.now(UTC)


def new_public_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def retention() -> timedelta:
    return timedelta(days=settings.BATCH_RETENTION_DAYS)


# --- Files ---------------------------------------------------------------------------------------------


def file_create(*, principal: KeyPrincipal, filename: str, content: bytes | Any, size: int, purpose: str,
                expires_after_seconds: int | None = None) -> BatchFile:
    """Store an uploaded file (`content`: bytes or a file object) and its row."""
    public_id = new_public_id("file-")
    now = _now()
    name = storage.save(f"{principal.tenant_id}/{public_id}.jsonl", content)
    expires = now + (timedelta(seconds=expires_after_seconds) if expires_after_seconds else retention())
    return BatchFile.objects.create(public_id=public_id, tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    purpose=purpose, filename=filename[:255], bytes=size, storage_name=name,
                                    created_at=now, expires_at=expires)


def file_delete(*, file: BatchFile) -> None:
    storage.delete(file.storage_name)
    file.delete()


# --- Create --------------------------------------------------------------------------------------------


def _items(batch: Batch, lines: list[formats.Line]) -> None:
    """The batch's items; a line that cannot run is settled at once (errored, with its error)."""
    BatchItem.objects.bulk_create([
        BatchItem(batch=batch, line=line.line, custom_id=line.custom_id, body=line.body,
                  status=BatchItem.Status.PENDING if line.error is None else BatchItem.Status.ERRORED,
                  result=None if line.error is None else {"line_error": line.error})
        for line in lines], batch_size=1000)
    failed = sum(1 for line in lines if line.error is not None)
    Batch.objects.filter(pk=batch.pk).update(errored=failed)
    batch.errored = failed


@transaction.atomic
def batch_create_anthropic(*, principal: KeyPrincipal, lines: list[formats.Line]) -> Batch:
    now = _now()
    batch = Batch.objects.create(public_id=new_public_id("msgbatch_"), vendor=Batch.Vendor.ANTHROPIC,
                                 tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                 endpoint=formats.ANTHROPIC_ENDPOINT, status=Batch.Status.IN_PROGRESS,
                                 total=len(lines), created_at=now, in_progress_at=now, expires_at=now + WINDOW)
    _items(batch, lines)
    return batch


@transaction.atomic
def batch_create_openai(*, principal: KeyPrincipal, input_file: BatchFile, endpoint: str,
                        metadata: dict | None, output_expires_after: int | None) -> Batch:
    """The batch of an uploaded file; a file refused as a whole makes a `failed` batch with its errors,
    as OpenAI's validation does."""
    now = _now()
    batch = Batch(public_id=new_public_id("batch_"), vendor=Batch.Vendor.OPENAI, tenant_id=principal.tenant_id,
                  api_key_id=principal.key_id, endpoint=endpoint, input_file=input_file,
                  input_file_public_id=input_file.public_id, metadata=metadata, created_at=now, expires_at=now + WINDOW,
                  output_expires_seconds=output_expires_after)
    try:
        lines = formats.openai_lines(storage.read(input_file.storage_name), endpoint)
    except formats.BatchInputError as exc:
        batch.status, batch.errors, batch.ended_at = Batch.Status.FAILED, exc.errors, now
        batch.save()
        return batch
    batch.status, batch.total, batch.in_progress_at = Batch.Status.IN_PROGRESS, len(lines), now
    batch.save()
    _items(batch, lines)
    return batch


def batch_cancel(*, batch: Batch) -> Batch:
    """Stop a running batch: its runner finishes the items in flight, then settles the rest as cancelled."""
    now = _now()
    Batch.objects.filter(pk=batch.pk, status=Batch.Status.IN_PROGRESS).update(status=Batch.Status.CANCELLING,
                                                                              cancelling_at=now)
    batch.refresh_from_db()
    return batch


def batch_delete(*, batch: Batch) -> None:
    if batch.results_name:
        storage.delete(batch.results_name)
    batch.delete()


# --- The runner ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class RunnerState:
    batch_id: int
    public_id: str
    vendor: str
    endpoint: str
    status: str
    expires_at: datetime
    principal: KeyPrincipal | None
    principal_error: GatewayError | None = None


@dataclass(slots=True)
class PendingItem:
    id: int
    line: int
    custom_id: str | None
    body: dict | None


def batch_claim(batch_id: int) -> RunnerState | None:
    """Take the batch's lease if it is running and nobody holds it (a conditional UPDATE: one winner)."""
    now = _now()
    claimed = Batch.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=batch_id,
        status__in=(Batch.Status.IN_PROGRESS, Batch.Status.CANCELLING),
    ).update(lease_until=now + timedelta(seconds=LEASE_SECONDS))
    return batch_runner_state(batch_id) if claimed else None


def batch_renew(batch_id: int) -> None:
    Batch.objects.filter(pk=batch_id).update(lease_until=_now() + timedelta(seconds=LEASE_SECONDS))


def batch_runner_state(batch_id: int) -> RunnerState:
    batch = Batch.objects.select_related("api_key").get(pk=batch_id)
    principal, error = key_principal(batch.api_key.public_id), None
    if principal is not None:
        try:
            principal_check(principal, _now().timestamp())
        except AppError as exc:
            principal, error = None, protocol_error(exc)
    return RunnerState(batch_id=batch.pk, public_id=batch.public_id, vendor=batch.vendor, endpoint=batch.endpoint,
                       status=batch.status, expires_at=batch.expires_at, principal=principal, principal_error=error)


def batch_pending_items(batch_id: int, limit: int) -> list[PendingItem]:
    rows = BatchItem.objects.filter(batch_id=batch_id, status=BatchItem.Status.PENDING).order_by("line")
    return [PendingItem(id=row.pk, line=row.line, custom_id=row.custom_id, body=row.body) for row in rows[:limit]]


_COUNTER = {BatchItem.Status.SUCCEEDED: "succeeded", BatchItem.Status.ERRORED: "errored",
            BatchItem.Status.CANCELED: "canceled", BatchItem.Status.EXPIRED: "expired"}


@transaction.atomic
def batch_item_finish(item_id: int, *, status: str, http_status: int | None, result: Any, request_id: str) -> None:
    """Record one item's outcome once (a re-run finds it no longer pending) and count it on its batch."""
    item = BatchItem.objects.filter(pk=item_id, status=BatchItem.Status.PENDING)
    batch_id = item.values_list("batch_id", flat=True).first()
    if batch_id is None or not item.update(status=status, http_status=http_status, result=result,
                                           request_id=request_id):
        return
    Batch.objects.filter(pk=batch_id).update(**{_COUNTER[status]: F(_COUNTER[status]) + 1})


@transaction.atomic
def batch_settle_rest(batch_id: int, *, kind: str, error: dict | None) -> int:
    """Every item still pending: cancelled, expired, or (a stopped batch) errored with `error`."""
    pending = BatchItem.objects.filter(batch_id=batch_id, status=BatchItem.Status.PENDING)
    if error is not None:
        count = pending.update(status=BatchItem.Status.ERRORED, http_status=error["status"], result=error["body"])
    elif kind == "cancelled":
        count = pending.update(status=BatchItem.Status.CANCELED)
    elif kind == "expired":
        count = pending.update(status=BatchItem.Status.EXPIRED)
    else:
        count = 0
    return count


# --- Finalizing ----------------------------------------------------------------------------------------


def _openai_lines(batch: Batch) -> tuple[list[dict], list[dict]]:
    """(output file lines, error file lines), in input order."""
    output, errors = [], []
    for item in batch.items.order_by("line").iterator(chunk_size=1000):
        item_id = "batch_req_" + secrets.token_hex(12)
        result = item.result if isinstance(item.result, dict) else {}
        if item.status == BatchItem.Status.SUCCEEDED:
            output.append(formats.openai_result_line(item_id=item_id, custom_id=item.custom_id, status_code=200,
                                                     request_id=item.request_id, body=item.result))
        elif "line_error" in result:
            errors.append(formats.openai_result_line(item_id=item_id, custom_id=item.custom_id, status_code=None,
                                                     request_id="", body=None, error=result["line_error"]))
        elif item.status == BatchItem.Status.ERRORED:
            errors.append(formats.openai_result_line(item_id=item_id, custom_id=item.custom_id,
                                                     status_code=item.http_status, request_id=item.request_id,
                                                     body=item.result))
        else:
            code = "batch_cancelled" if item.status == BatchItem.Status.CANCELED else "batch_expired"
            message = ("The batch was cancelled before this request ran." if code == "batch_cancelled"
                       else "The batch expired before this request ran.")
            errors.append(formats.openai_result_line(item_id=item_id, custom_id=item.custom_id, status_code=None,
                                                     request_id="", body=None,
                                                     error={"code": code, "message": message}))
    return output, errors


def _anthropic_lines(batch: Batch) -> list[dict]:
    lines = []
    for item in batch.items.order_by("line").iterator(chunk_size=1000):
        result = item.result if isinstance(item.result, dict) else {}
        if item.status == BatchItem.Status.ERRORED and "line_error" in result:
            payload = {"type": "error", "error": result["line_error"]}
        else:
            payload = item.result
        lines.append(formats.anthropic_result_line(custom_id=item.custom_id or "", kind=item.status,
                                                   payload=payload))
    return lines


def _output_file(batch: Batch, lines: list[dict], suffix: str, now: datetime) -> BatchFile | None:
    if not lines:
        return None
    public_id = new_public_id("file-")
    content = formats.jsonl(lines)
    name = storage.save(f"{batch.tenant_id}/{public_id}.jsonl", content)
    keep = timedelta(seconds=batch.output_expires_seconds) if batch.output_expires_seconds else retention()
    return BatchFile.objects.create(public_id=public_id, tenant_id=batch.tenant_id, api_key_id=batch.api_key_id,
                                    purpose=BatchFile.Purpose.BATCH_OUTPUT, filename=f"{batch.public_id}_{suffix}.jsonl",
                                    bytes=len(content), storage_name=name, created_at=now, expires_at=now + keep)


def batch_finalize(batch_id: int, *, outcome: str) -> Batch | None:
    """Count the items, write the result files and end the batch (`outcome`: completed, cancelled,
    expired). Once: an ended batch is left as it is."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(
            pk=batch_id, status__in=(Batch.Status.IN_PROGRESS, Batch.Status.CANCELLING)).first()
        if batch is None:
            return None
        counts = dict(batch.items.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
        for status, name in _COUNTER.items():
            setattr(batch, name, counts.get(status, 0))
        now = _now()
        if batch.vendor == Batch.Vendor.OPENAI:
            output, errors = _openai_lines(batch)
            batch.output_file = _output_file(batch, output, "output", now)
            batch.error_file = _output_file(batch, errors, "error", now)
        else:
            batch.results_name = storage.save(f"{batch.tenant_id}/{batch.public_id}_results.jsonl",
                                              formats.jsonl(_anthropic_lines(batch)))
        batch.status = {"cancelled": Batch.Status.CANCELLED, "expired": Batch.Status.EXPIRED}.get(
            outcome, Batch.Status.CANCELLED if batch.status == Batch.Status.CANCELLING else Batch.Status.COMPLETED)
        batch.finalizing_at = batch.finalizing_at or now
        batch.ended_at, batch.lease_until = now, None
        batch.save()
    return batch


# --- Retention -----------------------------------------------------------------------------------------


def batches_expire(*, now: datetime | None = None) -> int:
    """Files past their expiry, and the items and results of batches ended longer ago than the retention
    (BATCH_RETENTION_DAYS): prompts and answers are not kept for ever. The batch row stays (archived)."""
    now = now or _now()
    removed = 0
    for file in BatchFile.objects.filter(expires_at__lte=now).iterator():
        file_delete(file=file)
        removed += 1
    for batch in Batch.objects.filter(ended_at__lte=now - retention(), archived_at__isnull=True).iterator():
        with transaction.atomic():
            if batch.results_name:
                storage.delete(batch.results_name)
            batch.items.all().delete()
            Batch.objects.filter(pk=batch.pk).update(archived_at=now, results_name="")
        removed += 1
    return removed


def batches_resumable(*, now: datetime | None = None) -> list[int]:
    """Batches running without a live runner (a worker died, a process restarted)."""
    now = now or _now()
    return list(Batch.objects.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now),
                                     status__in=(Batch.Status.IN_PROGRESS, Batch.Status.CANCELLING))
                .values_list("pk", flat=True)[:100])
