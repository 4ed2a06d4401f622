"""Reads for balances, spend and usage reports."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import Case, Count, F, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate

from common.hooks import Provider

from .buckets import bucket_floor
from .models import AttributionRollup, LedgerEntry, UsageBucket, UsageEvent, UsageRollup


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


def _is_midnight(moment: datetime) -> bool:
    moment = moment.astimezone(UTC)
    return (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0)


def _spend_since(since: datetime, group: str | None = None, **where) -> dict:
    """Cost of the usage matching `where` since `since`, per `group` (a UsageEvent/UsageRollup field) or
    in total (key None).

    From a UTC midnight (every budget period and month starts at one), the daily rollups of the days since
    plus the rows not rolled up yet, in one statement (one snapshot: a rollup batch that commits meanwhile
    is counted once), instead of the period's usage rows: a month of a busy key is a few dozen rollups
    and a minute of rows. From any other instant (an alert's hour), the rows themselves."""
    fields = ("cost_nano",) if group is None else (group, "cost_nano")
    rows = UsageEvent.objects.filter(created_at__gte=since, **where)
    if _is_midnight(since):
        rolled = UsageRollup.objects.filter(day__gte=since.astimezone(UTC).date(), **where).order_by()
        values = rolled.values_list(*fields).union(rows.filter(rolled_up_at__isnull=True).order_by()
                                                   .values_list(*fields), all=True)
    else:
        values = rows.order_by().values_list(*fields)
    spent: dict = defaultdict(int)
    for row in values:
        spent[None if group is None else row[0]] += row[-1]
    return spent


def end_user_spend_nano(api_key_id: int, end_user: str, since: datetime) -> int:
    """What one end user of a key spent since `since` (a UTC midnight: a budget period's start): its
    attribution rollups since then plus its rows not rolled up yet, in one statement, as _spend_since."""
    rolled = AttributionRollup.objects.filter(api_key_id=api_key_id, dimension="end_user", value=end_user,
                                              day__gte=since.astimezone(UTC).date()).order_by()
    tail = UsageEvent.objects.filter(api_key_id=api_key_id, end_user=end_user, created_at__gte=since,
                                     rolled_up_at__isnull=True).order_by()
    return sum(cost for (cost,) in rolled.values_list("cost_nano").union(tail.values_list("cost_nano"), all=True))


def key_spend_nano(api_key_id: int, since: datetime) -> int:
    return _spend_since(since, api_key_id=api_key_id)[None]


@dataclass(frozen=True)
class BudgetState:
    """A key's budget this period, for people: settled spend (usage rows), reserved by requests in flight,
    and whether it is used up (the gateway then refuses the key's requests with 429)."""

    budget_nano: int
    spent_nano: int
    reserved_nano: int
    period: str
    resets: datetime

    @property
    def percent(self) -> int:
        return round(self.spent_nano * 100 / self.budget_nano)

    @property
    def over(self) -> bool:
        return self.spent_nano >= self.budget_nano  # admission's rule: refused once used >= budget

    @property
    def settled_width(self) -> int:
        """Bar widths in % of the budget, capped so that both segments fit the bar."""
        return min(100, self.percent)

    @property
    def reserved_width(self) -> int:
        return min(100 - self.settled_width, round(self.reserved_nano * 100 / self.budget_nano))


# budget_in_flight_nano(key_id=, budget_period=, spent_nano=) -> what requests in flight hold reserved in
# the key's budget: the gateway's admission counters know (gateway.apps).
budget_in_flight_nano = Provider("billing.selectors.budget_in_flight_nano")


def key_budget_states(keys, now: datetime | None = None) -> dict[int, BudgetState]:
    """BudgetState of each of `keys` that has a budget: one spend query per budget period in use."""
    now = now or datetime.now(UTC)
    with_budget = [key for key in keys if key.budget_nano is not None]
    spent: dict[int, int] = {}
    bounds = {}
    for period in {key.budget_period for key in with_budget}:
        bounds[period] = budget_period_bounds(period, now)
        ids = [key.pk for key in with_budget if key.budget_period == period]
        spent |= _spend_since(bounds[period][0], "api_key_id", api_key_id__in=ids)
    states = {}
    for key in with_budget:
        settled = spent.get(key.pk) or 0
        states[key.pk] = BudgetState(
            budget_nano=key.budget_nano, spent_nano=settled, period=key.budget_period,
            reserved_nano=budget_in_flight_nano(key_id=key.pk, budget_period=key.budget_period,
                                                spent_nano=settled),
            resets=bounds[key.budget_period][1])
    return states


USAGE_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cache_creation_input_tokens",
              "cache_read_input_tokens", "web_search_requests", "cost_nano")


def _rollups_and_tail(rollups, *, tenant_id: int, start: date, end: date, key_ids: list[int] | None,
                      model: str | None):
    """A daily report's two sources, `start` to `end` inclusive, with the same key and model filters: the
    `rollups` (UsageRollup or AttributionRollup rows) of those days and the usage rows not rolled up yet."""
    since = datetime(start.year, start.month, start.day, tzinfo=UTC)
    until = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    rollups = rollups.filter(tenant_id=tenant_id, day__gte=start, day__lte=end)
    tail = UsageEvent.objects.filter(tenant_id=tenant_id, rolled_up_at__isnull=True, created_at__gte=since,
                                     created_at__lt=until)
    if key_ids is not None:
        rollups, tail = rollups.filter(api_key_id__in=key_ids), tail.filter(api_key_id__in=key_ids)
    if model is not None:
        rollups, tail = rollups.filter(model=model), tail.filter(model=model)
    return rollups, tail


def usage_by_day_and_model(*, tenant_id: int, start: date, end: date, key_ids: list[int] | None = None,
                           model: str | None = None, by: tuple[str, ...] = ("model",)) -> list[dict]:
    """Usage and cost per UTC day and model (or per `by`, e.g. `("api_key",)` or `("api_key", "model")`),
    `start` to `end` inclusive; `key_ids` limits the keys, `model` the model.

    The daily rollups plus the usage rows the rollup task has not counted yet (up to a minute's, by the
    index of unrolled rows), read in one statement, as `usage_buckets` does: current to the last request,
    equal to what the rows say, and a 30-day report reads a few hundred rollups instead of every row of
    the month (docs/performance.md, months of data)."""
    rollups, tail = _rollups_and_tail(UsageRollup.objects.all(), tenant_id=tenant_id, start=start, end=end,
                                      key_ids=key_ids, model=model)
    # values_list keeps the order of the names given, annotations included, so the two sides line up.
    counted = rollups.order_by().values_list("day", *by, *USAGE_SUMS)
    unrolled = tail.order_by().annotate(
        day=TruncDate("created_at", tzinfo=UTC), requests=Value(1, IntegerField()),
        errors=Case(When(status=UsageEvent.Status.ERROR, then=Value(1)), default=Value(0), output_field=IntegerField()),
    ).values_list("day", *by, *USAGE_SUMS)
    totals: dict[tuple, list[int]] = {}
    for row in counted.union(unrolled, all=True):
        group = row[:1 + len(by)]
        sums = totals.setdefault(group, [0] * len(USAGE_SUMS))
        for i, value in enumerate(row[1 + len(by):]):
            sums[i] += value
    return [{**dict(zip(("day", *by), group)), **dict(zip(USAGE_SUMS, sums))}
            for group, sums in sorted(totals.items())]


RECENT_FIELDS = ("request_id", "created_at", "api_key_id", "api_key__name", "endpoint", "model", "stream", "status",
                 "input_tokens", "output_tokens", "cost_nano", "latency_ms")


def usage_recent(*, tenant_id: int, key_ids: list[int] | None = None, model: str | None = None,
                 since: datetime | None = None, until: datetime | None = None, limit: int = 20) -> list[dict]:
    """The tenant's latest requests (in [since, until), if given), newest first."""
    rows = UsageEvent.objects.filter(tenant_id=tenant_id)
    if key_ids is not None:
        rows = rows.filter(api_key_id__in=key_ids)
    if model is not None:
        rows = rows.filter(model=model)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return list(rows.order_by("-created_at", "-id").values(*RECENT_FIELDS)[:limit])


TRACE_FIELDS = ("request_id", "created_at", "endpoint", "requested_model", "model", "provider", "upstream_model",
                "stream", "status", "http_status", "error_type", "input_tokens", "output_tokens",
                "cache_creation_input_tokens", "cache_read_input_tokens", "web_search_requests", "cost_nano",
                "latency_ms", "ttft_ms", "trace_id", "thread_id", "client_request_id")


def usage_by_trace(*, tenant_id: int, trace_id: str | None = None, thread_id: str | None = None,
                   limit: int = 1000) -> list[dict]:
    """A tenant's requests carrying a client trace or thread id, oldest first (never another tenant's)."""
    rows = UsageEvent.objects.filter(tenant_id=tenant_id)
    rows = rows.filter(trace_id=trace_id) if trace_id is not None else rows.filter(thread_id=thread_id)
    return list(rows.order_by("created_at", "id").values(*TRACE_FIELDS)[:limit])


# Endpoints whose usage is embeddings (input tokens only); every other endpoint is a model turn.
EMBEDDING_ENDPOINTS = ("embeddings", "rerank")
BUCKET_FIELDS = ("start", "key_public_id", "model", "endpoint", "requests", "errors", "input_tokens", "output_tokens",
                 "cache_creation_input_tokens", "cache_read_input_tokens", "cost_nano")


def usage_buckets(*, tenant_id: int, width: str, start: datetime, end: datetime, embeddings: bool | None = None,
                  key_public_ids: list[str] | None = None, models: list[str] | None = None) -> list[dict]:
    """A tenant's usage in [start, end) (bucket boundaries of `width`), one dict per bucket, key, model and
    endpoint (BUCKET_FIELDS; `start` is the bucket's). `embeddings`: only embedding endpoints (True), only
    the others (False), all (None).

    The rolled-up buckets plus the usage rows the rollup task has not counted yet (up to a minute's, found
    by the index of unrolled rows), read in one statement: a rollup batch commits the buckets and marks its
    rows at once, and one statement sees one snapshot, so a batch committing meanwhile is counted once.
    The result is exactly what the usage rows say, as `GET /v1/usage` and the dashboard read them.
    """
    buckets = UsageBucket.objects.filter(tenant_id=tenant_id, width=width, start__gte=start, start__lt=end)
    tail = UsageEvent.objects.filter(tenant_id=tenant_id, rolled_up_at__isnull=True, created_at__gte=start,
                                     created_at__lt=end)
    if embeddings is not None:
        buckets, tail = ((rows.filter if embeddings else rows.exclude)(endpoint__in=EMBEDDING_ENDPOINTS)
                         for rows in (buckets, tail))
    if key_public_ids is not None:
        buckets, tail = (rows.filter(api_key__public_id__in=key_public_ids) for rows in (buckets, tail))
    if models is not None:
        buckets, tail = (rows.filter(model__in=models) for rows in (buckets, tail))
    summed = BUCKET_FIELDS[6:]
    counted = buckets.order_by().annotate(key_public_id=F("api_key__public_id")).values(*BUCKET_FIELDS)
    unrolled = tail.annotate(
        start=F("created_at"), key_public_id=F("api_key__public_id"), requests=Value(1, IntegerField()),
        errors=Case(When(status=UsageEvent.Status.ERROR, then=Value(1)), default=Value(0), output_field=IntegerField()),
    ).values(*BUCKET_FIELDS[:6], *summed)
    rows = list(counted.union(unrolled, all=True))
    for row in rows:
        row["start"] = bucket_floor(row["start"], width)
    return rows


def tenant_spend_nano(tenant_id: int, since: datetime) -> int:
    """Cost of the tenant's usage since `since` (billed or not yet)."""
    return _spend_since(since, tenant_id=tenant_id)[None]


ATTRIBUTION_SUMMED = ("requests", "errors", "input_tokens", "output_tokens", "cache_creation_input_tokens",
                      "cache_read_input_tokens", "web_search_requests", "cost_nano")


def usage_by_attribution(*, tenant_id: int, start: date, end: date, dimension: str, by: tuple[str, ...] = (),
                         key_ids: list[int] | None = None, model: str | None = None) -> list[dict]:
    """Usage and cost per UTC day and end user or tag (`dimension`: "end_user", "tag"), and per `by`
    ("api_key", "model"), `start` to `end` inclusive; `value` is the end user or tag, "" for none.

    From the attribution rollups plus the usage rows not rolled up yet (at most about a minute's, through the
    index of unrolled rows), in one statement as usage_buckets: a rollup batch commits its rollups and marks
    its rows at once, and one statement sees one snapshot, so a batch committing meanwhile is counted once.
    A request with several tags counts under each of them.
    """
    rolled, tail = _rollups_and_tail(AttributionRollup.objects.filter(dimension=dimension), tenant_id=tenant_id,
                                     start=start, end=end, key_ids=key_ids, model=model)
    names = ("day", "api_key_id", "model", "value", "tail", *ATTRIBUTION_SUMMED)
    counted = rolled.order_by().annotate(tail=Value(0, IntegerField())).values(*names)
    unrolled = tail.order_by().annotate(
        day=TruncDate("created_at", tzinfo=UTC), value=F("end_user" if dimension == "end_user" else "tags"),
        tail=Value(1, IntegerField()), requests=Value(1, IntegerField()),
        errors=Case(When(status=UsageEvent.Status.ERROR, then=Value(1)), default=Value(0), output_field=IntegerField()),
    ).values(*names)
    grouped: dict[tuple, dict] = {}
    fields = ("day", *("api_key" if name == "api_key" else name for name in by), "value")
    for row in counted.union(unrolled, all=True):
        values = row["value"].split(",") if row["tail"] and dimension == "tag" and row["value"] else [row["value"]]
        for value in values:
            key = (row["day"], *(row["api_key_id"] if name == "api_key" else row[name] for name in by), value)
            sums = grouped.get(key)
            if sums is None:
                sums = grouped[key] = dict(zip(fields, key)) | dict.fromkeys(ATTRIBUTION_SUMMED, 0)
            for name in ATTRIBUTION_SUMMED:
                sums[name] += row[name]
    return [grouped[key] for key in sorted(grouped, key=lambda k: tuple("" if v is None else v for v in k))]
