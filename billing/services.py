"""The ledger, prices, and the rollup task's work.

Usage rows are written on the request path by gateway.metering; this app rolls them up and debits them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connections, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate, TruncDay, TruncHour, TruncMinute
from django.utils import timezone

from accounts.models import Tenant
from accounts.audit import audit_record
from common.db import refresh_connections
from common.partitions import is_partitioned, month_add, month_floor, partition_drop, partitions, partitions_ensure
from common.hooks import Hook

from .buckets import DAY, HOUR, MINUTE, WIDTHS, bucket_floor
from .models import AttributionRollup, LedgerEntry, ModelPrice, UsageBucket, UsageEvent, UsageRollup

logger = logging.getLogger(__name__)


# --- Ledger ------------------------------------------------------------------------------------------

# Called with (tenant_id=, delta=) once a credit, refund or adjustment commits: the gateway's admission
# moves its cached balance by it (gateway.apps).
balance_changed = Hook()


def ledger_post(*, tenant_id: int, kind: str, amount_nano: int, reason: str, created_by=None,
                reverses: LedgerEntry | None = None) -> LedgerEntry:
    """Append an entry to the tenant's chain (see LedgerEntry). Call inside a transaction.

    The tenant row is locked, so concurrent posts for one tenant queue up instead of racing for the
    next `seq`. The gateways' cached balance moves by the amount once the transaction commits
    (balance_changed).
    """
    if not reason.strip():
        raise ValidationError("A ledger entry needs a reason.")
    Tenant.objects.select_for_update().only("pk").get(pk=tenant_id)
    last = LedgerEntry.objects.filter(tenant_id=tenant_id).order_by("-seq").values_list(
        "seq", "balance_after_nano").first() or (0, 0)
    entry = LedgerEntry.objects.create(tenant_id=tenant_id, seq=last[0] + 1, kind=kind, amount_nano=amount_nano,
                                       balance_after_nano=last[1] + amount_nano, reason=reason[:500],
                                       created_by=created_by, reverses=reverses)
    if kind != LedgerEntry.Kind.DEBIT:  # debits move usage already counted at settlement into the ledger
        transaction.on_commit(lambda: balance_changed(tenant_id=tenant_id, delta=amount_nano))
    return entry


@transaction.atomic
def credit_grant(*, tenant: Tenant, amount_nano: int, reason: str, actor=None, via: str = "system") -> LedgerEntry:
    if amount_nano <= 0:
        raise ValidationError({"amount": "A credit must be a positive amount."})
    entry = ledger_post(tenant_id=tenant.pk, kind=LedgerEntry.Kind.CREDIT, amount_nano=amount_nano, reason=reason,
                        created_by=actor)
    audit_record(action="ledger.credit", via=via, actor=actor, tenant=tenant,
                 details={"amount_nano": amount_nano, "reason": reason, "entry": entry.seq})
    return entry


def signup_credit_grant(*, user, tenant: Tenant, via: str) -> None:
    """The SIGNUP_CREDIT_NANO a new workspace starts with (accounts.services.signed_up)."""
    if settings.SIGNUP_CREDIT_NANO:
        credit_grant(tenant=tenant, amount_nano=settings.SIGNUP_CREDIT_NANO, reason="sign-up credit", actor=user,
                     via=via)


@transaction.atomic
def ledger_adjust(*, tenant: Tenant, amount_nano: int, reason: str, actor=None, via: str = "system") -> LedgerEntry:
    """An operator's correction, either sign."""
    if amount_nano == 0:
        raise ValidationError({"amount": "An adjustment cannot be zero."})
    entry = ledger_post(tenant_id=tenant.pk, kind=LedgerEntry.Kind.ADJUSTMENT, amount_nano=amount_nano,
                        reason=reason, created_by=actor)
    audit_record(action="ledger.adjust", via=via, actor=actor, tenant=tenant,
                 details={"amount_nano": amount_nano, "reason": reason, "entry": entry.seq})
    return entry


@transaction.atomic
def ledger_reverse(*, entry: LedgerEntry, reason: str, actor=None, via: str = "system") -> LedgerEntry:
    """Undo an entry with an opposite one: a refund for a debit, an adjustment otherwise."""
    if LedgerEntry.objects.filter(reverses=entry).exists():
        raise ValidationError(f"Entry #{entry.seq} has already been reversed.")
    kind = LedgerEntry.Kind.REFUND if entry.kind == LedgerEntry.Kind.DEBIT else LedgerEntry.Kind.ADJUSTMENT
    reversal = ledger_post(tenant_id=entry.tenant_id, kind=kind, amount_nano=-entry.amount_nano,
                           reason=f"Reverses #{entry.seq}: {reason}", created_by=actor, reverses=entry)
    audit_record(action="ledger.reverse", via=via, actor=actor, tenant=entry.tenant,
                 details={"reversed": entry.seq, "entry": reversal.seq, "reason": reason})
    return reversal


@transaction.atomic
def model_price_add(*, model, effective_from: datetime, input_nano_per_mtok: int, output_nano_per_mtok: int,
                    cache_write_nano_per_mtok: int, cache_read_nano_per_mtok: int, web_search_nano: int = 0,
                    batch_discount_bp: int = 5000, actor=None, via: str = "system") -> ModelPrice:
    """A new price for a catalog model from `effective_from` on (never in the past: usage was charged)."""
    prices = dict(input_nano_per_mtok=input_nano_per_mtok, output_nano_per_mtok=output_nano_per_mtok,
                  cache_write_nano_per_mtok=cache_write_nano_per_mtok, cache_read_nano_per_mtok=cache_read_nano_per_mtok,
                  web_search_nano=web_search_nano)
    if any(value < 0 for value in prices.values()):
        raise ValidationError("Prices cannot be negative.")
    if not 0 <= batch_discount_bp <= 10_000:
        raise ValidationError({"batch_discount_bp": "A discount is 0 to 10000 basis points (0 to 100 %)."})
    if effective_from < timezone.now() - timedelta(minutes=1):
        raise ValidationError({"effective_from": "A price cannot start in the past."})
    # Checked here for a clear answer; the unique constraint (model, effective_from) still decides a race.
    if ModelPrice.objects.filter(model=model, effective_from=effective_from).exists():
        raise ValidationError({"effective_from": "This model already has a price starting at that moment."})
    price = ModelPrice.objects.create(model=model, effective_from=effective_from, batch_discount_bp=batch_discount_bp,
                                      **prices)
    audit_record(action="price.add", via=via, actor=actor,
                 details={"model": model.name, "effective_from": effective_from.isoformat(), **prices,
                          "batch_discount_bp": batch_discount_bp})
    return price


# --- Rollups and debits (Celery) ----------------------------------------------------------------------

_SUMMED = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
           "web_search_requests", "cost_nano")


def usage_rollup(*, batch_size: int = 2000) -> int:
    """Count usage not yet rolled up into the daily rollups and the minute, hour and day buckets, and
    debit its cost to the ledger.

    Each batch is one transaction that adds the events to their rollups and buckets, posts one debit per tenant,
    and marks the events with that debit: a crash anywhere rolls all three back, and a marked event
    is never counted again, so running the task twice (or in two workers: SKIP LOCKED) never double-
    counts. Returns how many events were rolled up.
    """
    total = 0
    while count := _rollup_batch(batch_size):
        total += count
        if count < batch_size:
            break
    return total


def _zero_sums() -> dict[str, int]:
    return dict.fromkeys(("requests", "errors", *_SUMMED), 0)


def _add(sums: dict[str, int], event: dict) -> None:
    sums["requests"] += 1
    sums["errors"] += event["status"] == UsageEvent.Status.ERROR
    for field in _SUMMED:
        sums[field] += event[field]


@transaction.atomic
def _rollup_batch(batch_size: int) -> int:
    refresh_connections()
    events = list(
        UsageEvent.objects.select_for_update(skip_locked=True).filter(rolled_up_at__isnull=True).order_by("id")
        .values("id", "tenant_id", "api_key_id", "model", "endpoint", "created_at", "status", "end_user", "tags",
                *_SUMMED)[:batch_size]
    )
    if not events:
        return 0
    groups: dict[tuple, dict[str, int]] = defaultdict(_zero_sums)
    buckets: dict[tuple, dict[str, int]] = defaultdict(_zero_sums)
    attributed: dict[tuple, dict[str, int]] = defaultdict(_zero_sums)
    by_tenant: dict[int, list[dict]] = defaultdict(list)
    for event in events:
        day = event["created_at"].astimezone(UTC).date()
        _add(groups[(day, event["tenant_id"], event["api_key_id"], event["model"])], event)
        for dimension, value in _attribution(event):
            _add(attributed[(dimension, day, event["tenant_id"], event["api_key_id"], event["model"], value)], event)
        for width in WIDTHS:
            _add(buckets[(width, bucket_floor(event["created_at"], width), event["tenant_id"], event["api_key_id"],
                          event["model"], event["endpoint"])], event)
        by_tenant[event["tenant_id"]].append(event)
    # Rows are written in one order (sorted), so two overlapping runs queue up instead of deadlocking.
    for (day, tenant_id, api_key_id, model), sums in sorted(groups.items()):
        _add_to_row(UsageRollup, dict(day=day, api_key_id=api_key_id, model=model), tenant_id, sums)
    for (width, start, tenant_id, api_key_id, model, endpoint), sums in sorted(buckets.items()):
        _add_to_row(UsageBucket, dict(width=width, start=start, api_key_id=api_key_id, model=model, endpoint=endpoint),
                    tenant_id, sums)
    for (dimension, day, tenant_id, api_key_id, model, value), sums in sorted(attributed.items()):
        _add_to_row(AttributionRollup, dict(dimension=dimension, day=day, api_key_id=api_key_id, model=model,
                                            value=value), tenant_id, sums)
    now = timezone.now()
    for tenant_id, tenant_events in sorted(by_tenant.items()):
        cost = sum(event["cost_nano"] for event in tenant_events)
        entry = None
        if cost:
            entry = ledger_post(tenant_id=tenant_id, kind=LedgerEntry.Kind.DEBIT, amount_nano=-cost,
                                reason=f"Usage: {len(tenant_events)} requests, up to #{tenant_events[-1]['id']}")
        # The batch's time range too: the UPDATE then looks into the months it covers, not every partition.
        UsageEvent.objects.filter(pk__in=[event["id"] for event in tenant_events],
                                  created_at__gte=min(event["created_at"] for event in tenant_events),
                                  created_at__lte=max(event["created_at"] for event in tenant_events)).update(
            rolled_up_at=now, ledger_entry=entry)
    return len(events)


def _attribution(event: dict) -> list[tuple[str, str]]:
    """The attribution rollup rows an event adds to: its end user ("" for none) and each tag ("" for none)."""
    tags = event["tags"].split(",") if event["tags"] else [""]
    return [(AttributionRollup.Dimension.END_USER, event["end_user"]),
            *((AttributionRollup.Dimension.TAG, tag) for tag in tags)]


def _add_to_row(model, where: dict, tenant_id: int, sums: dict[str, int]) -> None:
    """Add `sums` to the row `where`, creating it if it is new. Two processes' batches (the embedded
    scheduler runs in every worker) may both find it missing: the second create then fails on the
    unique constraint, in a savepoint, once the first has committed, and adds to its row instead."""
    add = {field: F(field) + value for field, value in sums.items()}
    if model.objects.filter(**where).update(**add):
        return
    try:
        with transaction.atomic():
            model.objects.create(tenant_id=tenant_id, **where, **sums)
    except IntegrityError:
        model.objects.filter(**where).update(**add)


def usage_reconcile(*, since: datetime | None = None, until: datetime | None = None) -> list[str]:
    """Compare rollups and usage buckets with the events they count and debits with the costs they bill; log any drift.

    Returns the drift found (empty when the books agree). `since` limits the check to the days from its
    midnight, `until` (a UTC midnight) to the days before it; the hourly task checks two such windows
    (`usage_reconcile_windows`), not the whole week.
    On PostgreSQL all reads see one snapshot (REPEATABLE READ): under READ COMMITTED a rollup batch
    committing between the read of the events and the read of the rollups would look like drift.
    Inside an atomic block (tests) the caller's transaction decides. On SQLite a transaction would take
    the write lock (transaction_mode IMMEDIATE) and stall usage writes, so the reads stay separate
    there: the embedded scheduler never runs rollup and reconcile at the same time.
    """
    connection = transaction.get_connection()
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return _reconcile(since, until)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _reconcile(since, until)


RECONCILE_DAYS = 7


def usage_reconcile_windows(*, now: datetime) -> list[tuple[datetime, datetime | None]]:
    """What one hourly reconciliation checks: today (from midnight on), where a rollup's drift shows first,
    and one of the RECONCILE_DAYS days before it, a different one each hour (`now.hour` modulo 7), so each of
    them is checked three or four times a day. The week grouped every hour was 97 s at 1 million rows a
    week and grew with the traffic; two days of rows are at most 2/8 of it (docs/performance.md, "Months
    of data"). `(since, until)` pairs for `usage_reconcile`, until None for "up to now"."""
    today = _midnight(now)
    older = today - timedelta(days=1 + now.astimezone(UTC).hour % RECONCILE_DAYS)
    return [(today, None), (older, older + timedelta(days=1))]


_TRUNCS = {MINUTE: TruncMinute, HOUR: TruncHour, DAY: TruncDay}


def _counts_drift(label: str, events, rows, key_fields: tuple[str, ...]) -> list[str]:
    """Where `rows` (rollups or buckets, as dicts) differ from the sums of the `events` they count."""
    counted = {
        tuple(row.pop(field) for field in key_fields): row
        for row in events.values(*key_fields)
        .annotate(requests=Count("id"), errors=Count("id", filter=Q(status=UsageEvent.Status.ERROR)),
                  **{field: Sum(field) for field in _SUMMED})
    }
    drift = []
    for row in rows:
        key = tuple(row[field] for field in key_fields)
        expected = counted.pop(key, None)
        actual = {field: row[field] for field in ("requests", "errors", *_SUMMED)}
        if expected != actual:
            drift.append(f"{label} {key}: events say {expected}, {label} says {actual}")
    return drift + [f"{label} {key} missing for {row['requests']} events" for key, row in counted.items()]


def _attribution_drift(events, since: datetime | None, until: datetime | None = None) -> list[str]:
    """The attribution rollups against the events: grouped per day, key, model, end user and tags in SQL,
    the tags split here (their combinations are few)."""
    rollups = _days(AttributionRollup.objects.all(), since, until)
    expected: dict[tuple, dict[str, int]] = defaultdict(_zero_sums)
    grouped = (events.annotate(day=TruncDate("created_at", tzinfo=UTC))
               .values("day", "api_key_id", "model", "end_user", "tags")
               .annotate(requests=Count("id"), errors=Count("id", filter=Q(status=UsageEvent.Status.ERROR)),
                         **{field: Sum(field) for field in _SUMMED}))
    for group in grouped:
        for dimension, value in _attribution(group):
            sums = expected[(dimension, group["day"], group["api_key_id"], group["model"], value)]
            for field in sums:
                sums[field] += group[field]
    drift = []
    for row in rollups.values():
        key = (row["dimension"], row["day"], row["api_key_id"], row["model"], row["value"])
        actual = {field: row[field] for field in ("requests", "errors", *_SUMMED)}
        counted = expected.pop(key, None)
        if counted != actual:
            drift.append(f"attribution rollup {key}: events say {counted}, attribution rollup says {actual}")
    return drift + [f"attribution rollup {key} missing for {row['requests']} events" for key, row in expected.items()]


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _days(rollups, since: datetime | None, until: datetime | None):
    """Daily rollups (UsageRollup, AttributionRollup) of the reconciliation's window: its days from
    `since`'s, before `until`'s."""
    if since is not None:
        rollups = rollups.filter(day__gte=since.astimezone(UTC).date())
    if until is not None:
        rollups = rollups.filter(day__lt=until.astimezone(UTC).date())
    return rollups


def _reconcile(since: datetime | None, until: datetime | None = None) -> list[str]:
    drift: list[str] = []
    events = UsageEvent.objects.filter(rolled_up_at__isnull=False)
    rollups = _days(UsageRollup.objects.all(), since, until)
    buckets = UsageBucket.objects.all()
    if since is not None:  # the window starts at a midnight: it holds whole buckets of every width
        events = events.filter(created_at__gte=_midnight(since))
        buckets = buckets.filter(start__gte=_midnight(since))
    if until is not None:
        events = events.filter(created_at__lt=_midnight(until))
        buckets = buckets.filter(start__lt=_midnight(until))
    drift += _counts_drift("rollup", events.annotate(day=TruncDate("created_at", tzinfo=UTC)),
                           rollups.values(), ("day", "api_key_id", "model"))
    for width, trunc in _TRUNCS.items():
        drift += _counts_drift(f"{width} bucket", events.annotate(start=trunc("created_at", tzinfo=UTC)),
                               buckets.filter(width=width).values(), ("start", "api_key_id", "model", "endpoint"))

    drift += _attribution_drift(events, since, until)

    debits = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.DEBIT)
    if since is not None:
        debits = debits.filter(created_at__gte=since)
    if until is not None:
        debits = debits.filter(created_at__lt=until)
    # A debit's events may be older than the window (a worker that was down bills late): sum them all.
    billed = dict(UsageEvent.objects.filter(ledger_entry__in=debits).values_list("ledger_entry_id")
                  .annotate(Sum("cost_nano")))
    for entry_id, amount in debits.values_list("id", "amount_nano"):
        if billed.get(entry_id, 0) != -amount:
            drift.append(f"debit {entry_id}: {-amount} billed for events costing {billed.get(entry_id, 0)}")
    unbilled = events.filter(ledger_entry__isnull=True, cost_nano__gt=0).count()
    if unbilled:
        drift.append(f"{unbilled} rolled-up events with a cost have no debit")
    for line in drift:
        logger.error("billing drift: %s", line)
    return drift


# --- Partitions (Celery) -------------------------------------------------------------------------------

USAGE_TABLE = UsageEvent._meta.db_table


def usage_partitions_ensure(*, now: datetime | None = None, using: str = "default") -> list[str]:
    """Create the usage table's monthly partitions from this month to USAGE_PARTITIONS_AHEAD months ahead
    (PostgreSQL; nothing to do on SQLite's plain table). Returns the partitions created."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    this_month = month_floor(now or timezone.now())
    # One transaction: a month whose rows wait in the DEFAULT partition is moved and attached at once.
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if not is_partitioned(cursor, USAGE_TABLE):
            return []
        return partitions_ensure(cursor, USAGE_TABLE, first=this_month,
                                 last=month_add(this_month, settings.USAGE_PARTITIONS_AHEAD))


def usage_partitions_maintain(*, now: datetime | None = None) -> dict:
    """The hourly housekeeping of the partitioned usage table: months ahead created, request-id claims older
    than USAGE_CLAIM_HOURS dropped (billing migration 0010 says why that window suffices), and, with
    USAGE_RETENTION_DAYS set, whole months older than the retention dropped, once every row in them is
    rolled up and debited. A month holding a row not billed yet (a spooled row replayed late) is kept and
    logged: usage rows are the only record of what the rollup still has to bill.

    Each step is short: a DETACH waits at most `lock_timeout` for the table (queries in flight hold it),
    then gives up until the next run rather than queue the request path's INSERTs behind it.
    """
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        return {}
    now = now or timezone.now()
    created = usage_partitions_ensure(now=now)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_usageclaim WHERE claimed_at < %s",
                       [now - timedelta(hours=settings.USAGE_CLAIM_HOURS)])
        claims = cursor.rowcount
    dropped, kept = [], []
    if settings.USAGE_RETENTION_DAYS:
        horizon = (now - timedelta(days=settings.USAGE_RETENTION_DAYS)).astimezone(UTC).date()
        with connection.cursor() as cursor:
            old = [p for p in partitions(cursor, USAGE_TABLE) if p.month is not None and p.end <= horizon]
        for partition in old:
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '2s'")
                    # Locked first: no late row can land in the month between the check and the drop.
                    cursor.execute(f'LOCK TABLE "{partition.name}" IN ACCESS EXCLUSIVE MODE')
                    cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{partition.name}" WHERE rolled_up_at IS NULL '
                                   "OR (ledger_entry_id IS NULL AND cost_nano > 0))")
                    if cursor.fetchone()[0]:
                        kept.append(partition.name)
                        logger.warning("usage partition %s is past retention but holds rows not billed yet: kept",
                                       partition.name)
                        continue
                    partition_drop(cursor, USAGE_TABLE, partition)
                    dropped.append(partition.name)
            except OperationalError as exc:  # lock_timeout: the next run tries again
                logger.warning("usage partition %s not dropped this time: %s", partition.name, exc)
    return {"created": created, "claims_expired": claims, "dropped": dropped, "kept": kept}
