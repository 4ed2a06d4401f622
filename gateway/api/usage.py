"""`GET /v1/usage`: a tenant's usage and cost per UTC day and model (or `group_by` key, end user, tag), as
JSON or CSV, with cache tokens and the cache hit ratio on every row.

Scoped to the calling key's tenant: every key of a tenant sees the tenant's usage, and nothing else.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.http import HttpResponse

from accounts.models import ApiKey
from billing.reports import COLUMNS, cache_hit_ratio, csv_response, rows_payload
from billing.selectors import usage_by_attribution, usage_by_day_and_model, usage_by_trace
from common.db import db_unit
from common.money import usd_string
from conversations.selectors import request_logs_get

from ..core import invalid
from ..pipeline import json_response

MAX_DAYS = 366


def _date(request, name: str, default: date) -> date:
    value = request.GET.get(name)
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid(f"{name} must be a date as YYYY-MM-DD, got {value!r}.", name) from None


def parse_range(request) -> tuple[date, date, str]:
    today = datetime.now(UTC).date()
    end = _date(request, "end", today)
    start = _date(request, "start", end - timedelta(days=29))
    if start > end:
        raise invalid("start must not be after end.", "start")
    if (end - start).days >= MAX_DAYS:
        raise invalid(f"The date range is too long: at most {MAX_DAYS} days.", "start")
    fmt = request.GET.get("format", "json")
    if fmt not in ("json", "csv"):
        raise invalid("format must be json or csv.", "format")
    return start, end, fmt


GROUPS = ("model", "key", "end_user", "tag")
_SUMMED = ("requests", "errors", "input_tokens", "output_tokens", "cache_creation_input_tokens",
           "cache_read_input_tokens", "web_search_requests", "cost_nano")


def parse_group_by(request) -> tuple[str, ...]:
    """`group_by=a,b` or `group_by=a&group_by=b`, of GROUPS; default per model. End users and tags are
    separate rollups: one of them at a time."""
    asked = [item.strip() for value in request.GET.getlist("group_by") for item in value.split(",") if item.strip()]
    for item in asked:
        if item not in GROUPS:
            raise invalid(f"group_by: {item!r} is not supported; use any of {', '.join(GROUPS)}.", "group_by")
    if "end_user" in asked and "tag" in asked:
        raise invalid("group_by: end_user and tag cannot be combined; ask for one at a time.", "group_by")
    return tuple(group for group in GROUPS if group in asked) or ("model",)


def _report(*, tenant_id: int, start: date, end: date, group_by: tuple[str, ...]) -> list[dict]:
    """Rows per day and `group_by`: end users and tags from their rollups, the rest per day and model or key."""
    by = tuple("api_key" if group == "key" else group for group in group_by if group in ("model", "key"))
    dimension = next((group for group in group_by if group in ("end_user", "tag")), None)
    if dimension is None:
        rows = usage_by_day_and_model(tenant_id=tenant_id, start=start, end=end, by=by)
    else:
        rows = usage_by_attribution(tenant_id=tenant_id, start=start, end=end, dimension=dimension, by=by)
        for row in rows:
            row[dimension] = row.pop("value") or None
    if "api_key" in by:
        public = dict(ApiKey.objects.filter(tenant_id=tenant_id).values_list("pk", "public_id"))
        for row in rows:
            row["key_id"] = public.get(row.pop("api_key"), "")
    return rows


_report_async = db_unit(_report)


async def usage_report(request) -> HttpResponse:
    start, end, fmt = parse_range(request)
    group_by = parse_group_by(request)
    data = rows_payload(await _report_async(tenant_id=request.auth.tenant_id, start=start, end=end, group_by=group_by))
    if fmt == "csv":
        groups = tuple("key_id" if group == "key" else group for group in ("key", "model", "end_user", "tag")
                       if group in group_by)
        return csv_response(data, start, end, columns=("date", *groups, *COLUMNS[2:], "cache_hit_ratio"))
    totals = {name: sum(row[name] for row in data) for name in _SUMMED}
    return json_response({"object": "usage", "start": start.isoformat(), "end": end.isoformat(),
                          "group_by": list(group_by), "data": data,
                          "total_cost_usd": usd_string(totals["cost_nano"]), "total_cost_nano": totals["cost_nano"],
                          "total_cache_creation_input_tokens": totals["cache_creation_input_tokens"],
                          "total_cache_read_input_tokens": totals["cache_read_input_tokens"],
                          "cache_hit_ratio": cache_hit_ratio(totals)})


_by_trace_async = db_unit(usage_by_trace)
_logs_async = db_unit(request_logs_get)


async def trace_report(principal, *, trace_id: str | None = None, thread_id: str | None = None) -> dict:
    """`GET /v1/traces/{id}` and `/v1/threads/{id}`: the tenant's requests with that id, each with its model,
    tokens, cost, latency and status; prompt and answer only where the tenant keeps request logs."""
    rows = await _by_trace_async(tenant_id=principal.tenant_id, trace_id=trace_id, thread_id=thread_id)
    logs = await _logs_async(tenant_id=principal.tenant_id, request_ids=[row["request_id"] for row in rows])
    totals = {name: sum(row[name] for row in rows) for name in ("input_tokens", "output_tokens", "latency_ms")}
    cost = usd_string(sum(row["cost_nano"] for row in rows))
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
        row["cost_usd"] = usd_string(row.pop("cost_nano"))
        if row["request_id"] in logs:  # only requests of a tenant that keeps request logs
            row["request"], row["response"] = logs[row["request_id"]]
    return {"object": "list", "trace_id": trace_id, "thread_id": thread_id, "data": rows,
            "total": {"requests": len(rows), **totals, "cost_usd": cost}}
