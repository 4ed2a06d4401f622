"""`GET /v1/usage`: a tenant's usage and cost per UTC day and model, as JSON or CSV.

Scoped to the calling key's tenant: every key of a tenant sees the tenant's usage, and nothing else.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.http import HttpResponse

from billing.reports import csv_response, rows_payload
from billing.selectors import usage_by_day_and_model, usage_by_trace
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


_report_async = db_unit(usage_by_day_and_model)


async def usage_report(request) -> HttpResponse:
    start, end, fmt = parse_range(request)
    data = rows_payload(await _report_async(tenant_id=request.auth.tenant_id, start=start, end=end))
    if fmt == "csv":
        return csv_response(data, start, end)
    total_nano = sum(row["cost_nano"] for row in data)
    return json_response({"object": "usage", "start": start.isoformat(), "end": end.isoformat(), "data": data,
                          "total_cost_usd": usd_string(total_nano), "total_cost_nano": total_nano})


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
