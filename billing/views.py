"""The dashboard's usage page: spend and tokens per day, by model and by key, over a chosen date range and
optionally one key and one model; balance and budgets; the latest requests (refreshed live over a
WebSocket, see billing/consumers.py); and a CSV export of the same selection."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.http import HttpResponse
from django.shortcuts import render

from accounts import catalog
from accounts.dashboard import dashboard_view, is_manager, visible_keys
from common.money import format_usd

from .charts import stacked_bars
from .forms import UsageFilterForm
from .reports import DASHBOARD_COLUMNS, csv_response, rows_payload
from .reports import cache_hit_ratio
from .selectors import (key_budget_states, tenant_available_nano, usage_by_attribution, usage_by_day_and_model,
                        usage_recent)


def _filters(request) -> UsageFilterForm:
    keys = list(visible_keys(request).order_by("name", "pk").values_list("pk", "name"))
    models = catalog.model_names()
    return UsageFilterForm(request.GET, keys=keys, models=models, today=datetime.now(UTC).date())


def _selection(request, form: UsageFilterForm) -> dict:
    """The selectors' arguments for what the form chose. Members see only their own keys' usage (the
    form offers only those keys, so a crafted key id is a form error, never another member's figures)."""
    start, end = form.window()
    chosen = form.cleaned_data if form.is_valid() else {}
    key_ids = None if is_manager(request.membership) else list(visible_keys(request).values_list("pk", flat=True))
    if chosen.get("key") is not None:
        key_ids = [chosen["key"]]
    return {"tenant_id": request.tenant.pk, "start": start, "end": end, "key_ids": key_ids,
            "model": chosen.get("model") or None}


def _series(rows: list[dict], by: str, names: dict, days: list, value) -> dict[str, list[int]]:
    index = {day: i for i, day in enumerate(days)}
    series: dict[str, list[int]] = {}
    for row in rows:
        series.setdefault(str(names.get(row[by], row[by])), [0] * len(days))[index[row["day"]]] += value(row)
    return series


def _add(total: dict, row: dict) -> None:
    total["requests"] += row["requests"]
    total["tokens"] += row["input_tokens"] + row["output_tokens"]
    total["cost_nano"] += row["cost_nano"]
    for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        total[name] = total.get(name, 0) + row[name]


def _totals(rows: list[dict], by: str, names: dict) -> list[dict]:
    totals: dict = {}
    for row in rows:
        name = str(names.get(row[by], row[by]))
        _add(totals.setdefault(name, {"name": name, "requests": 0, "tokens": 0, "cost_nano": 0}), row)
    for total in totals.values():
        total["cache_hit_ratio"] = cache_hit_ratio(total)
    return sorted(totals.values(), key=lambda t: -t["cost_nano"])


ATTRIBUTION_SHOWN = 20  # rows per table; the rest are counted under it


def _attribution(selection: dict, dimension: str) -> dict:
    """Spend per end user or tag over the selection, largest first (from the attribution rollups)."""
    rows = usage_by_attribution(**selection, dimension=dimension)
    totals = _totals(rows, "value", {})
    return {"rows": totals[:ATTRIBUTION_SHOWN], "more": max(0, len(totals) - ATTRIBUTION_SHOWN)}


def _per_day(rows: list[dict], days: list[date]) -> list[dict]:
    """Every day of the range with its figures (zero days too), for the table under the charts."""
    per_day = {day: {"day": day, "requests": 0, "tokens": 0, "cost_nano": 0} for day in days}
    for row in rows:
        _add(per_day[row["day"]], row)
    return list(per_day.values())


def _short_tokens(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 10**6 else f"{n / 1e3:.1f}k" if n >= 10**4 else f"{n:,}"


def _budgets(request) -> list[dict]:
    """The visible keys with a budget and their state: the same bar as the keys page (settled, reserved,
    over budget past 100 %)."""
    keys = list(visible_keys(request).filter(budget_nano__isnull=False, revoked_at__isnull=True))
    states = key_budget_states(keys)
    return [{"key": key, "budget": states[key.pk]} for key in keys]


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def usage_context(request, form: UsageFilterForm) -> dict:
    selection = _selection(request, form)
    start, end = selection["start"], selection["end"]
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    key_names = dict(visible_keys(request).values_list("pk", "name"))
    by_model = usage_by_day_and_model(**selection)
    by_key = usage_by_day_and_model(**selection, by=("api_key",))
    cost_chart = stacked_bars(days, _series(by_model, "model", {}, days, lambda r: r["cost_nano"]), fmt=format_usd)
    token_chart = stacked_bars(
        days, _series(by_key, "api_key", key_names, days, lambda r: r["input_tokens"] + r["output_tokens"]),
        fmt=lambda n: f"{n:,} tokens", short_fmt=_short_tokens)
    return {
        "section": "usage", "form": form, "start": start, "end": end, "days": len(days),
        "filtered": any(request.GET.get(name) for name in form.fields),
        "query": request.GET.urlencode(),
        "cost_chart": cost_chart, "token_chart": token_chart, "per_day": _per_day(by_model, days),
        "by_model": _totals(by_model, "model", {}), "by_key": _totals(by_key, "api_key", key_names),
        "total_cost": sum(row["cost_nano"] for row in by_model),
        "total_requests": sum(row["requests"] for row in by_model),
        "available": tenant_available_nano(request.tenant.pk) if is_manager(request.membership) else None,
        "budgets": _budgets(request),
        "attribution_tables": [
            ("By end user", "End user", _attribution(selection, "end_user"), "no end user", "by-end-user"),
            ("By tag", "Tag", _attribution(selection, "tag"), "untagged", "by-tag")],
        "recent": usage_recent(tenant_id=request.tenant.pk, key_ids=selection["key_ids"], model=selection["model"],
                               since=_day_start(start), until=_day_start(end + timedelta(days=1))),
    }


@dashboard_view()
def usage(request):
    form = _filters(request)
    template = "dashboard/_usage_live.html" if request.GET.get("fragment") else "dashboard/usage.html"
    return render(request, template, usage_context(request, form), status=200 if form.is_valid() else 400)


@dashboard_view()
def usage_csv(request):
    """One row per day, key and model of the selection, with the key's name and public id."""
    form = _filters(request)
    if not form.is_valid():
        errors = "; ".join(message for messages in form.errors.values() for message in messages)
        return HttpResponse(f"Invalid range or filter: {errors}\n", status=400, content_type="text/plain")
    selection = _selection(request, form)
    rows = usage_by_day_and_model(**selection, by=("api_key", "model"))
    keys = {pk: (name, public_id) for pk, name, public_id in visible_keys(request).values_list("pk", "name", "public_id")}
    for row in rows:
        row["key"], row["key_id"] = keys.get(row["api_key"], ("", ""))
    return csv_response(rows_payload(rows), selection["start"], selection["end"], columns=DASHBOARD_COLUMNS)
