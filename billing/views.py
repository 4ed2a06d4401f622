"""The dashboard's usage page: spend and tokens per day, by model and by key, balance and budgets,
the latest requests (refreshed live over a WebSocket, see billing/consumers.py), and a CSV export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.shortcuts import render

from accounts.dashboard import dashboard_view, is_manager, visible_keys

from .charts import stacked_bars
from .money import format_usd
from .reports import csv_response, rows_payload
from .selectors import budget_period_bounds, key_spend_nano, tenant_available_nano, usage_by_day_and_model, usage_recent

DAYS = 30


def _scope(request) -> list[int] | None:
    """Managers see the tenant's usage; members only their own keys'."""
    return None if is_manager(request.membership) else list(visible_keys(request).values_list("pk", flat=True))


def _window():
    end = datetime.now(UTC).date()
    return end - timedelta(days=DAYS - 1), end


def _series(rows: list[dict], by: str, names: dict, days: list, value) -> dict[str, list[int]]:
    index = {day: i for i, day in enumerate(days)}
    series: dict[str, list[int]] = {}
    for row in rows:
        series.setdefault(str(names.get(row[by], row[by])), [0] * len(days))[index[row["day"]]] += value(row)
    return series


def _totals(rows: list[dict], by: str, names: dict) -> list[dict]:
    totals: dict = {}
    for row in rows:
        name = str(names.get(row[by], row[by]))
        total = totals.setdefault(name, {"name": name, "requests": 0, "tokens": 0, "cost_nano": 0})
        total["requests"] += row["requests"]
        total["tokens"] += row["input_tokens"] + row["output_tokens"]
        total["cost_nano"] += row["cost_nano"]
    return sorted(totals.values(), key=lambda t: -t["cost_nano"])


def _budgets(request) -> list[dict]:
    now = datetime.now(UTC)
    budgets = []
    for key in visible_keys(request).filter(budget_nano__isnull=False, revoked_at__isnull=True):
        since, until = budget_period_bounds(key.budget_period, now)
        spent = key_spend_nano(key.pk, since)
        budgets.append({"key": key, "spent": spent, "percent": min(100, round(spent * 100 / key.budget_nano)),
                        "resets": until})
    return budgets


def usage_context(request) -> dict:
    start, end = _window()
    days = [start + timedelta(days=i) for i in range(DAYS)]
    key_ids = _scope(request)
    key_names = dict(visible_keys(request).values_list("pk", "name"))
    by_model = usage_by_day_and_model(tenant_id=request.tenant.pk, start=start, end=end, key_ids=key_ids)
    by_key = usage_by_day_and_model(tenant_id=request.tenant.pk, start=start, end=end, key_ids=key_ids, by="api_key")
    cost_bars, cost_legend, cost_top = stacked_bars(days, _series(by_model, "model", {}, days, lambda r: r["cost_nano"]),
                                                    fmt=format_usd)
    token_bars, token_legend, token_top = stacked_bars(
        days, _series(by_key, "api_key", key_names, days, lambda r: r["input_tokens"] + r["output_tokens"]),
        fmt=lambda n: f"{n:,} tokens")
    return {
        "section": "usage", "start": start, "end": end,
        "cost_chart": {"bars": cost_bars, "legend": cost_legend, "top": cost_top},
        "token_chart": {"bars": token_bars, "legend": token_legend, "top": token_top},
        "by_model": _totals(by_model, "model", {}), "by_key": _totals(by_key, "api_key", key_names),
        "total_cost": sum(row["cost_nano"] for row in by_model),
        "total_requests": sum(row["requests"] for row in by_model),
        "available": tenant_available_nano(request.tenant.pk) if is_manager(request.membership) else None,
        "budgets": _budgets(request),
        "recent": usage_recent(tenant_id=request.tenant.pk, key_ids=key_ids),
    }


@dashboard_view()
def usage(request):
    template = "dashboard/_usage_live.html" if request.GET.get("fragment") else "dashboard/usage.html"
    return render(request, template, usage_context(request))


@dashboard_view()
def usage_csv(request):
    start, end = _window()
    rows = usage_by_day_and_model(tenant_id=request.tenant.pk, start=start, end=end, key_ids=_scope(request))
    return csv_response(rows_payload(rows), start, end)
