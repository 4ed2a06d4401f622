"""Reads of batches and files, scoped to a tenant (another tenant's id reads as none)."""

from __future__ import annotations

from django.db.models import Q, Sum

from billing.models import UsageEvent

from . import formats
from .models import Batch, BatchFile


def file_get(*, tenant_id: int, public_id: str) -> BatchFile | None:
    return BatchFile.objects.filter(tenant_id=tenant_id, public_id=public_id).first()


def files_listed(*, tenant_id: int, purpose: str | None, limit: int, order: str,
                 after: str | None) -> tuple[list[BatchFile], bool]:
    rows = BatchFile.objects.filter(tenant_id=tenant_id)
    if purpose:
        rows = rows.filter(purpose=purpose)
    descending = order == "desc"
    if after:
        anchor = rows.filter(public_id=after).values_list("created_at", "pk").first()
        if anchor is not None:
            newer = Q(created_at__gt=anchor[0]) | Q(created_at=anchor[0], pk__gt=anchor[1])
            older = Q(created_at__lt=anchor[0]) | Q(created_at=anchor[0], pk__lt=anchor[1])
            rows = rows.filter(older if descending else newer)
    rows = rows.order_by(*(("-created_at", "-pk") if descending else ("created_at", "pk")))
    page = list(rows[:limit + 1])
    return page[:limit], len(page) > limit


def file_payload(file: BatchFile) -> dict:
    return formats.openai_file(id=file.public_id, bytes_=file.bytes, created_at=file.created_at,
                               filename=file.filename, purpose=file.purpose, expires_at=file.expires_at)


def batch_get(*, tenant_id: int, vendor: str, public_id: str) -> Batch | None:
    return (Batch.objects.filter(tenant_id=tenant_id, vendor=vendor, public_id=public_id)
            .select_related("output_file", "error_file").first())


def batches_listed(*, tenant_id: int, vendor: str, limit: int, after: str | None,
                   before: str | None) -> tuple[list[Batch], bool]:
    """Newest first; `after` an id: the page after it (older), `before`: the page before it (newer)."""
    rows = Batch.objects.filter(tenant_id=tenant_id, vendor=vendor).select_related("output_file", "error_file")
    newest_first = True
    for cursor, older in ((after, True), (before, False)):
        if not cursor:
            continue
        anchor = rows.filter(public_id=cursor).values_list("pk", flat=True).first()
        if anchor is not None:
            rows = rows.filter(pk__lt=anchor) if older else rows.filter(pk__gt=anchor)
            newest_first = older
    page = list(rows.order_by("-pk" if newest_first else "pk")[:limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    return (page if newest_first else page[::-1]), has_more


def batch_usage(batch_id: str) -> dict[str, int]:
    """Tokens and cost of a batch's usage rows (the rows are what is billed)."""
    sums = UsageEvent.objects.filter(batch_id=batch_id).aggregate(
        input=Sum("input_tokens"), cache_write=Sum("cache_creation_input_tokens"),
        cache_read=Sum("cache_read_input_tokens"), output=Sum("output_tokens"), cost=Sum("cost_nano"))
    return {key: value or 0 for key, value in sums.items()}


def batch_state(batch: Batch) -> formats.BatchState:
    usage = batch_usage(batch.public_id)
    ended = batch.ended_at
    status = batch.status
    return formats.BatchState(
        id=batch.public_id, endpoint=batch.endpoint, status=status, created_at=batch.created_at,
        expires_at=batch.expires_at, total=batch.total, succeeded=batch.succeeded, errored=batch.errored,
        canceled=batch.canceled, expired=batch.expired, input_file_id=batch.input_file_public_id,
        output_file_id=batch.output_file.public_id if batch.output_file else "",
        error_file_id=batch.error_file.public_id if batch.error_file else "",
        metadata=batch.metadata, errors=batch.errors or [], in_progress_at=batch.in_progress_at,
        finalizing_at=batch.finalizing_at, cancelling_at=batch.cancelling_at, ended_at=ended,
        completed_at=ended if status == Batch.Status.COMPLETED else None,
        failed_at=ended if status == Batch.Status.FAILED else None,
        expired_at=ended if status == Batch.Status.EXPIRED else None,
        cancelled_at=ended if status == Batch.Status.CANCELLED else None,
        archived_at=batch.archived_at,
        input_tokens=usage["input"] + usage["cache_write"] + usage["cache_read"], cached_tokens=usage["cache_read"],
        output_tokens=usage["output"],
    )
