"""Reads for balances, spend and usage reports."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, TruncDate

from .models import LedgerEntry, UsageEvent


def tenant_balance_nano(tenant_id: int) -> int:
    """The ledger balance: the last entry's running balance (= the sum of all entries, see LedgerEntry)."""
    last = (LedgerEntry.objects.filter(tenant_id=tenant_id).order_by("-seq")
            .values_list("balance_after_nano", flat=True).first())
    return last or 0


def tenant_unbilled_cost_nano(tenant_id: int) -> int:
    """Cost of usage not yet posted to the ledger by the rollup task."""
    return UsageEvent.objects.filter(tenant_id=tenant_id, rolled_up_at__isnull=True).aggregate(
        total=Coalesce(Sum("cost_nano"), 0))["total"]


def tenant_available_nano(tenant_id: int) -> int:
    """What the tenant can still spend before its credit limit: balance minus usage not yet debited."""
    return tenant_balance_nano(tenant_id) - tenant_unbilled_cost_nano(tenant_id)


def budget_period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC day or calendar month containing `now`."""
    now = now.astimezone(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def key_spend_nano(api_key_id: int, since: datetime) -> int:
    return UsageEvent.objects.filter(api_key_id=api_key_id, created_at__gte=since).aggregate(
        total=Coalesce(Sum("cost_nano"), 0))["total"]


def usage_by_day_and_model(*, tenant_id: int, start: date, end: date, key_ids: list[int] | None = None,
                           by: str = "model") -> list[dict]:
    """Usage and cost per UTC day and model (or `by="api_key"`: per key), `start` to `end` inclusive, from
    the usage rows themselves (not the rollups, which lag by up to a minute); `key_ids` limits the keys."""
    since = datetime(start.year, start.month, start.day, tzinfo=UTC)
    until = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    rows = UsageEvent.objects.filter(tenant_id=tenant_id, created_at__gte=since, created_at__lt=until)
    if key_ids is not None:
        rows = rows.filter(api_key_id__in=key_ids)
    return list(
        rows.annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", by)
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(status=UsageEvent.Status.ERROR)),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cache_creation_input_tokens=Sum("cache_creation_input_tokens"),
            cache_read_input_tokens=Sum("cache_read_input_tokens"),
            cost_nano=Sum("cost_nano"),
        )
        .order_by("day", by)
    )


RECENT_FIELDS = ("request_id", "created_at", "api_key_id", "api_key__name", "endpoint", "model", "stream", "status",
                 "input_tokens", "output_tokens", "cost_nano", "latency_ms")


def usage_recent(*, tenant_id: int, key_ids: list[int] | None = None, limit: int = 20) -> list[dict]:
    """The tenant's latest requests, newest first."""
    rows = UsageEvent.objects.filter(tenant_id=tenant_id)
    if key_ids is not None:
        rows = rows.filter(api_key_id__in=key_ids)
    return list(rows.order_by("-created_at", "-id").values(*RECENT_FIELDS)[:limit])


TRACE_FIELDS = ("request_id", "created_at", "endpoint", "requested_model", "model", "provider", "upstream_model",
                "stream", "status", "http_status", "error_type", "input_tokens", "output_tokens",
                "cache_creation_input_tokens", "cache_read_input_tokens", "cost_nano", "latency_ms", "ttft_ms",
                "trace_id", "thread_id", "client_request_id")


def usage_by_trace(*, tenant_id: int, trace_id: str | None = None, thread_id: str | None = None,
                   limit: int = 1000) -> list[dict]:
    """A tenant's requests carrying a client trace or thread id, oldest first (never another tenant's)."""
    rows = UsageEvent.objects.filter(tenant_id=tenant_id)
    rows = rows.filter(trace_id=trace_id) if trace_id is not None else rows.filter(thread_id=thread_id)
    return list(rows.order_by("created_at", "id").values(*TRACE_FIELDS)[:limit])
