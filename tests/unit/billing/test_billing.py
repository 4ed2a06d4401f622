"""Money, the ledger and its database invariant, the rollup/debit task, reconciliation, the schedulers.

Most tests run inside a test transaction. Those whose work happens on another connection (a thread of
the embedded scheduler, a process killed mid-rollup) commit their rows instead, under tenants with
unique slugs, and delete what can be deleted afterwards (ledger entries cannot: that is the point).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import AuditEntry
from accounts.services import api_key_issue, tenant_create
from billing import scheduler, services, tasks
from billing.models import LedgerEntry, UsageEvent, UsageRollup
from common.money import format_usd, usage_cost_nano, usd_string, usd_to_nano
from billing.selectors import budget_period_bounds, key_budget_states, key_spend_nano, tenant_balance_nano
from billing.services import (
    credit_grant,
    ledger_adjust,
    ledger_post,
    ledger_reverse,
    usage_reconcile,
    usage_reconcile_windows,
    usage_rollup,
)
from gateway.metering.writes import UsageRecord, usage_events_write
from tests.support.env import ROOT, database_url_for_current_connection, requires_postgres

USD = 10**9
SONNET, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"


def customer(prefix: str, **key_settings):
    tenant = tenant_create(slug=f"{prefix}-{uuid.uuid4().hex[:10]}")
    return tenant, api_key_issue(tenant=tenant, name=f"{prefix} key", **key_settings).api_key


def event(api_key, *, cost: int, status: str = "ok", model: str = SONNET, at: datetime | None = None,
          input_tokens: int = 100, output_tokens: int = 50, cache_write: int = 0, cache_read: int = 0) -> UsageEvent:
    return UsageEvent.objects.create(
        request_id=f"req_{uuid.uuid4().hex}", tenant_id=api_key.tenant_id, api_key=api_key, endpoint="messages",
        requested_model=model, model=model, upstream_model=model, stream=status == "partial",
        input_tokens=input_tokens, output_tokens=output_tokens, cache_creation_input_tokens=cache_write,
        cache_read_input_tokens=cache_read, cost_nano=cost, status=status,
        http_status=500 if status == "error" else 200, error_type="api_error" if status == "error" else "",
        latency_ms=12, created_at=at or timezone.now(),
    )


def ledger_sum(tenant) -> int:
    return LedgerEntry.objects.filter(tenant=tenant).aggregate(total=Sum("amount_nano"))["total"] or 0


def cost_of(tenant) -> int:
    return UsageEvent.objects.filter(tenant=tenant).aggregate(total=Sum("cost_nano"))["total"] or 0


def rollups_of(*tenants) -> dict[tuple, dict]:
    return {(r.day, r.api_key_id, r.model): dict(requests=r.requests, errors=r.errors, input=r.input_tokens,
                                                 output=r.output_tokens, cost=r.cost_nano)
            for r in UsageRollup.objects.filter(tenant__in=tenants)}


def crash_when_debiting(tenant_id: int, before=None):
    """A ledger_post that dies when the batch reaches `tenant_id`'s debit, after `before()` looked around."""

    def ledger_post_or_crash(**kwargs):
        if kwargs["tenant_id"] == tenant_id:
            if before:
                before()
            raise OSError("worker died")
        return ledger_post(**kwargs)

    return ledger_post_or_crash


def assert_books_agree(tenant, *, credited: int) -> None:
    """Everything the tenant used is rolled up and billed exactly once, and the chain holds."""
    events = UsageEvent.objects.filter(tenant=tenant)
    assert not events.filter(rolled_up_at__isnull=True).exists()
    assert not events.filter(cost_nano__gt=0, ledger_entry__isnull=True).exists()
    assert ledger_sum(tenant) == credited - cost_of(tenant) == tenant_balance_nano(tenant.pk)
    for debit in LedgerEntry.objects.filter(tenant=tenant, kind=LedgerEntry.Kind.DEBIT):
        assert -debit.amount_nano == debit.usage_events.aggregate(total=Sum("cost_nano"))["total"]
    rolled = UsageRollup.objects.filter(tenant=tenant).aggregate(requests=Sum("requests"), cost=Sum("cost_nano"))
    assert (rolled["requests"] or 0, rolled["cost"] or 0) == (events.count(), cost_of(tenant))
    seqs = list(LedgerEntry.objects.filter(tenant=tenant).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


# --- Money ---------------------------------------------------------------------------------------------


def test_usd_amounts_parse_exactly_to_nano():
    assert usd_to_nano("12.50") == 12_500_000_000
    assert usd_to_nano(" 0.000000001 ") == 1
    assert usd_to_nano(3) == 3 * USD
    assert usd_to_nano(Decimal("-1.25")) == -1_250_000_000
    assert usd_to_nano("0.1") + usd_to_nano("0.2") == usd_to_nano("0.3")  # no float in sight


@pytest.mark.parametrize("value", ["0.0000000001", "abc", "", "NaN", "Infinity", "1e-10"])
def test_usd_amounts_that_are_not_exact_nano_are_refused(value):
    with pytest.raises(ValueError):
        usd_to_nano(value)


def test_usage_cost_rounds_half_up_once_on_the_total():
    prices = dict(input_price=500_000, output_price=500_000, cache_write_price=0, cache_read_price=0)
    # 0.5 + 0.5 nano: rounding each part would bill 2.
    assert usage_cost_nano(input_tokens=1, output_tokens=1, cache_write_tokens=0, cache_read_tokens=0, **prices) == 1
    assert usage_cost_nano(input_tokens=1, output_tokens=0, cache_write_tokens=0, cache_read_tokens=0, **prices) == 1
    half_even_would_say_2 = dict(input_price=2_500_000, output_price=0, cache_write_price=0, cache_read_price=0)
    assert usage_cost_nano(input_tokens=1, output_tokens=0, cache_write_tokens=0, cache_read_tokens=0,
                           **half_even_would_say_2) == 3
    below_half = dict(input_price=499_999, output_price=0, cache_write_price=0, cache_read_price=0)
    assert usage_cost_nano(input_tokens=1, output_tokens=0, cache_write_tokens=0, cache_read_tokens=0,
                           **below_half) == 0
    sonnet = dict(input_price=3 * USD, output_price=15 * USD, cache_write_price=3_750_000_000,
                  cache_read_price=300_000_000)
    assert usage_cost_nano(input_tokens=1000, output_tokens=500, cache_write_tokens=2000, cache_read_tokens=10_000,
                           **sonnet) == 3_000_000 + 7_500_000 + 7_500_000 + 3_000_000


def test_amounts_format_for_people_and_machines():
    assert format_usd(12_345_000_000) == "$12.35"  # half up
    assert format_usd(-5_000_000) == "-$0.01"
    assert format_usd(1) == "$0.000000001"  # a tiny charge does not show as $0.00
    assert usd_string(123_000) == "0.000123"
    assert usd_string(0) == "0.0"
    assert usd_string(-2 * USD) == "-2.0"


# --- Ledger --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_balance_is_the_sum_of_entries_and_the_last_running_balance():
    tenant, _ = customer("chain")
    credit_grant(tenant=tenant, amount_nano=10 * USD, reason="welcome credit")
    ledger_adjust(tenant=tenant, amount_nano=-3 * USD, reason="goodwill overpaid")
    with transaction.atomic():
        debit = ledger_post(tenant_id=tenant.pk, kind=LedgerEntry.Kind.DEBIT, amount_nano=-2 * USD, reason="usage")
    ledger_reverse(entry=debit, reason="outage refund")

    entries = list(LedgerEntry.objects.filter(tenant=tenant).order_by("seq"))
    assert [(e.seq, e.kind, e.amount_nano) for e in entries] == [
        (1, "credit", 10 * USD), (2, "adjustment", -3 * USD), (3, "debit", -2 * USD), (4, "refund", 2 * USD)]
    assert [e.balance_after_nano for e in entries] == [10 * USD, 7 * USD, 5 * USD, 7 * USD]
    assert tenant_balance_nano(tenant.pk) == ledger_sum(tenant) == 7 * USD


def _insert_entry(tenant_id: int, seq: int, amount: int, balance_after: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_ledgerentry"
            " (tenant_id, seq, kind, amount_nano, balance_after_nano, reason, created_at)"
            " VALUES (%s, %s, 'adjustment', %s, %s, 'raw', %s)",
            [tenant_id, seq, amount, balance_after, timezone.now()])


@pytest.mark.django_db
def test_database_refuses_to_update_or_delete_ledger_entries():
    tenant, _ = customer("appendonly")
    entry = credit_grant(tenant=tenant, amount_nano=5 * USD, reason="credit")
    statements = [
        ("UPDATE billing_ledgerentry SET amount_nano = %s, balance_after_nano = %s WHERE id = %s",
         [USD, USD, entry.pk]),
        ("UPDATE billing_ledgerentry SET reason = %s WHERE id = %s", ["edited", entry.pk]),
        ("DELETE FROM billing_ledgerentry WHERE id = %s", [entry.pk]),
    ]
    for sql, params in statements:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()
    entry.refresh_from_db()
    assert (entry.amount_nano, entry.reason, ledger_sum(tenant)) == (5 * USD, "credit", 5 * USD)


@pytest.mark.django_db
def test_database_refuses_an_entry_that_breaks_the_chain():
    tenant, _ = customer("brokenchain")
    credit_grant(tenant=tenant, amount_nano=5 * USD, reason="credit")
    for seq, amount, balance_after in [(3, USD, 6 * USD),  # skips a seq
                                       (1, USD, 6 * USD),  # repeats one
                                       (2, USD, 9 * USD)]:  # balance is not previous + amount
        with pytest.raises(DatabaseError), transaction.atomic():
            _insert_entry(tenant.pk, seq, amount, balance_after)
    _insert_entry(tenant.pk, 2, USD, 6 * USD)  # the one entry that follows is accepted, raw or not
    assert tenant_balance_nano(tenant.pk) == ledger_sum(tenant) == 6 * USD


@pytest.mark.django_db
def test_a_credit_needs_a_reason_and_a_positive_amount():
    tenant, _ = customer("credit")
    for amount, reason in [(USD, "   "), (0, "promo"), (-USD, "promo")]:
        with pytest.raises(ValidationError):
            credit_grant(tenant=tenant, amount_nano=amount, reason=reason)
    assert not LedgerEntry.objects.filter(tenant=tenant).exists()
    assert not AuditEntry.objects.filter(tenant=tenant, action__startswith="ledger.").exists()


@pytest.mark.django_db
def test_credits_and_adjustments_write_their_audit_row(admin_user):
    tenant, _ = customer("audit")
    credit = credit_grant(tenant=tenant, amount_nano=20 * USD, reason="annual prepay", actor=admin_user, via="admin")
    adjust = ledger_adjust(tenant=tenant, amount_nano=-USD, reason="double-billed batch", actor=admin_user,
                           via="admin")
    assert (credit.created_by, adjust.created_by) == (admin_user, admin_user)
    audits = list(AuditEntry.objects.filter(tenant=tenant, action__startswith="ledger.").order_by("id"))
    assert [(a.action, a.via, a.actor, a.details) for a in audits] == [
        ("ledger.credit", "admin", admin_user, {"amount_nano": 20 * USD, "reason": "annual prepay", "entry": 1}),
        ("ledger.adjust", "admin", admin_user, {"amount_nano": -USD, "reason": "double-billed batch", "entry": 2}),
    ]


@pytest.mark.django_db
def test_adjustments_take_either_sign_but_not_zero_nor_an_empty_reason():
    tenant, _ = customer("adjust")
    assert ledger_adjust(tenant=tenant, amount_nano=USD, reason="up").amount_nano == USD
    assert ledger_adjust(tenant=tenant, amount_nano=-2 * USD, reason="down").amount_nano == -2 * USD
    for amount, reason in [(0, "nothing"), (USD, "")]:
        with pytest.raises(ValidationError):
            ledger_adjust(tenant=tenant, amount_nano=amount, reason=reason)
    assert tenant_balance_nano(tenant.pk) == -USD


@pytest.mark.django_db
def test_a_reversal_is_a_new_opposite_entry_refund_for_a_debit():
    tenant, _ = customer("reverse")
    credit = credit_grant(tenant=tenant, amount_nano=4 * USD, reason="promo")
    with transaction.atomic():
        debit = ledger_post(tenant_id=tenant.pk, kind=LedgerEntry.Kind.DEBIT, amount_nano=-USD, reason="usage")
    refund = ledger_reverse(entry=debit, reason="bad answers")
    clawback = ledger_reverse(entry=credit, reason="granted by mistake")
    assert (refund.kind, refund.amount_nano, refund.reason) == ("refund", USD, "Reverses #2: bad answers")
    assert (clawback.kind, clawback.amount_nano) == ("adjustment", -4 * USD)
    assert LedgerEntry.objects.filter(tenant=tenant).count() == 4  # the originals stay
    assert tenant_balance_nano(tenant.pk) == 0
    assert AuditEntry.objects.filter(tenant=tenant, action="ledger.reverse").count() == 2
    assert refund.reverses == debit and debit.reversed_by == refund
    with pytest.raises(ValidationError, match="already been reversed"):
        ledger_reverse(entry=debit, reason="twice")
    with pytest.raises(IntegrityError), transaction.atomic():  # the database holds it too
        ledger_post(tenant_id=tenant.pk, kind="refund", amount_nano=USD, reason="sneaky", reverses=debit)


@pytest.mark.django_db
def test_gateways_hear_of_credits_on_commit_but_not_of_debits(monkeypatch, django_capture_on_commit_callbacks):
    from gateway.admission import admission

    heard = []
    monkeypatch.setattr(admission, "balance_changed", lambda tenant_id, delta: heard.append((tenant_id, delta)))
    tenant, key = customer("heard")
    with django_capture_on_commit_callbacks(execute=True):
        credit_grant(tenant=tenant, amount_nano=3 * USD, reason="credit")
        event(key, cost=USD)
        usage_rollup()  # the debit: usage the gateways counted when the request settled
    assert heard == [(tenant.pk, 3 * USD)]


# --- Rollup and debits ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rollup_counts_ok_partial_and_error_events_per_utc_day_key_and_model():
    tenant, key = customer("rollup")
    key2 = api_key_issue(tenant=tenant, name="second").api_key
    late = datetime(2025, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC)
    early = datetime(2025, 3, 2, tzinfo=UTC)
    event(key, cost=100, at=late)
    event(key, cost=40, status="partial", at=late, input_tokens=100, output_tokens=7)  # a cut stream
    event(key, cost=0, status="error", at=late, input_tokens=0, output_tokens=0)
    event(key, cost=30, status="error", at=early - timedelta(hours=3), input_tokens=100, output_tokens=0)
    event(key, cost=100, at=early)
    event(key, cost=9, model=HAIKU, at=early)
    event(key2, cost=100, at=early)
    # 02:00 in UTC+3 is still March 1st in UTC: days are UTC days whatever the offset of the timestamp.
    event(key2, cost=5, at=datetime(2025, 3, 2, 2, tzinfo=timezone.get_fixed_timezone(180)))

    assert usage_rollup() >= 8
    mar1, mar2 = date(2025, 3, 1), date(2025, 3, 2)
    assert rollups_of(tenant) == {
        (mar1, key.pk, SONNET): dict(requests=4, errors=2, input=300, output=57, cost=170),
        (mar2, key.pk, SONNET): dict(requests=1, errors=0, input=100, output=50, cost=100),
        (mar2, key.pk, HAIKU): dict(requests=1, errors=0, input=100, output=50, cost=9),
        (mar2, key2.pk, SONNET): dict(requests=1, errors=0, input=100, output=50, cost=100),
        (mar1, key2.pk, SONNET): dict(requests=1, errors=0, input=100, output=50, cost=5),
    }
    assert_books_agree(tenant, credited=0)


@pytest.mark.django_db
def test_rollup_run_twice_counts_once_and_later_events_add_to_the_same_rollup():
    tenant, key = customer("twice")
    credit_grant(tenant=tenant, amount_nano=USD, reason="credit")
    for cost in (10, 20, 30):
        event(key, cost=cost)
    usage_rollup()
    first = rollups_of(tenant)
    assert usage_rollup() == 0 and tasks.usage_rollup.apply().get() == 0
    assert rollups_of(tenant) == first
    assert LedgerEntry.objects.filter(tenant=tenant, kind="debit").count() == 1

    event(key, cost=40)
    usage_rollup()
    [(day_key, sums)] = rollups_of(tenant).items()
    assert (sums["requests"], sums["cost"]) == (4, 100)
    assert LedgerEntry.objects.filter(tenant=tenant, kind="debit").count() == 2
    assert_books_agree(tenant, credited=USD)


@pytest.mark.django_db
def test_each_event_carries_the_debit_that_billed_it():
    alice, alice_key = customer("carry-a")
    bob, bob_key = customer("carry-b")
    charged = [event(alice_key, cost=7), event(alice_key, cost=0, status="error"), event(alice_key, cost=3)]
    free = [event(bob_key, cost=0, status="error")]
    usage_rollup(batch_size=2)  # more batches than one: one debit per tenant and batch

    for row in charged + free:
        row.refresh_from_db()
        assert row.rolled_up_at is not None
    debits = LedgerEntry.objects.filter(tenant=alice, kind="debit")
    assert sorted(-d.amount_nano for d in debits) == sorted(
        d.usage_events.aggregate(total=Sum("cost_nano"))["total"] for d in debits)
    assert {row.ledger_entry_id for row in charged} <= set(debits.values_list("pk", flat=True))
    assert free[0].ledger_entry is None and not LedgerEntry.objects.filter(tenant=bob).exists()
    assert_books_agree(alice, credited=0)


@pytest.mark.django_db
def test_batches_roll_up_everything_pending(monkeypatch):
    tenant, key = customer("batches")
    for n in range(7):
        event(key, cost=n + 1)
    batches = []
    real_batch = services._rollup_batch

    def counted_batch(size):
        batches.append(real_batch(size))
        return batches[-1]

    monkeypatch.setattr(services, "_rollup_batch", counted_batch)
    usage_rollup(batch_size=3)
    assert len(batches) >= 3 and set(batches[:-1]) == {3} and batches[-1] < 3
    assert_books_agree(tenant, credited=0)


@pytest.mark.django_db
def test_a_crash_after_the_rollups_are_written_commits_nothing_and_the_rerun_counts_once(monkeypatch):
    alice, alice_key = customer("crash-a")
    bob, bob_key = customer("crash-b")
    credit_grant(tenant=alice, amount_nano=USD, reason="credit")
    for key, cost in [(alice_key, 11), (alice_key, 22), (bob_key, 33)]:
        event(key, cost=cost)
    seen = {}

    def look_around():
        seen["rollups"] = rollups_of(alice, bob)
        seen["alice debits"] = LedgerEntry.objects.filter(tenant=alice, kind="debit").count()

    monkeypatch.setattr(services, "ledger_post", crash_when_debiting(bob.pk, look_around))
    with pytest.raises(OSError):
        usage_rollup()
    assert len(seen["rollups"]) == 2 and seen["alice debits"] == 1  # the crash came after all of that...
    assert rollups_of(alice, bob) == {}  # ...and none of it was committed
    assert not LedgerEntry.objects.filter(kind="debit", tenant__in=[alice, bob]).exists()
    assert not UsageEvent.objects.filter(tenant__in=[alice, bob], rolled_up_at__isnull=False).exists()

    monkeypatch.setattr(services, "ledger_post", ledger_post)
    usage_rollup()
    usage_rollup()
    assert rollups_of(alice, bob) == seen["rollups"]
    assert_books_agree(alice, credited=USD)
    assert_books_agree(bob, credited=0)


@pytest.mark.django_db
def test_ledger_sum_equals_billed_usage_after_streams_cut_streams_errors_and_task_retries(monkeypatch):
    """The service-level version of the end-to-end acceptance test: events as the gateway writes them."""
    alice, alice_key = customer("mixed-a", budget_nano=USD, budget_period="day")
    bob, bob_key = customer("mixed-b")
    credit_grant(tenant=alice, amount_nano=5 * USD, reason="prepaid")
    credit_grant(tenant=bob, amount_nano=2 * USD, reason="prepaid")
    ledger_adjust(tenant=bob, amount_nano=-USD // 2, reason="correction")
    credited = {alice.pk: 5 * USD, bob.pk: 2 * USD - USD // 2}
    sent: dict[str, UsageRecord] = {}

    def send(key, n, status, output_tokens, stream):
        cost = usage_cost_nano(input_tokens=1200, output_tokens=output_tokens, cache_write_tokens=0,
                               cache_read_tokens=300, input_price=3 * USD, output_price=15 * USD,
                               cache_write_price=0, cache_read_price=300_000_000) if status != "error" else 0
        record = UsageRecord(
            request_id=f"req_{key.pk}_{n}", tenant_id=key.tenant_id, api_key_id=key.pk, endpoint="chat.completions",
            requested_model="gpt-4o", model=SONNET, upstream_model=SONNET, stream=stream, input_tokens=1200,
            output_tokens=output_tokens, cache_creation_input_tokens=0, cache_read_input_tokens=300, cost_nano=cost,
            price_id=None, status=status, http_status=502 if status == "error" else 200,
            error_type="overloaded_error" if status == "error" else "", latency_ms=40,
            ttft_ms=5 if stream else None, created_at=timezone.now())
        sent.setdefault(record.request_id, record)
        return record

    for round_ in range(4):
        records = []
        for n in range(round_ * 10, round_ * 10 + 10):
            key = alice_key if n % 3 else bob_key
            kind = n % 5
            records.append(send(key, n, "ok", 200 + n, stream=False) if kind == 0 else
                           send(key, n, "ok", 300 + n, stream=True) if kind == 1 else
                           send(key, n, "partial", n, stream=True) if kind == 2 else  # client hung up
                           send(key, n, "error", 0, stream=bool(n % 2)))
        usage_events_write(records)
        usage_events_write(records[:3])  # the write retried: request ids are unique, no second bill
        if round_ == 1:  # a run that dies in the middle of a batch, then its retry
            monkeypatch.setattr(services, "ledger_post", crash_when_debiting(bob.pk))
            with pytest.raises(OSError):
                tasks.usage_rollup.apply(throw=True)
            monkeypatch.setattr(services, "ledger_post", ledger_post)
        tasks.usage_rollup.apply(throw=True)
        if round_ % 2:
            tasks.usage_rollup.apply(throw=True)  # beat queued it again before the first run finished

    expected_cost = {alice.pk: 0, bob.pk: 0}
    for record in sent.values():
        expected_cost[record.tenant_id] += record.cost_nano
    assert UsageEvent.objects.filter(tenant__in=[alice, bob]).count() == len(sent) == 40
    assert set(UsageEvent.objects.filter(tenant__in=[alice, bob]).values_list("status", flat=True)) == {
        "ok", "partial", "error"}
    for tenant in (alice, bob):
        assert ledger_sum(tenant) == credited[tenant.pk] - expected_cost[tenant.pk] == tenant_balance_nano(tenant.pk)
        assert_books_agree(tenant, credited=credited[tenant.pk])
    assert tasks.usage_reconcile.apply().get() == []


# --- Reconcile -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reconcile_finds_no_drift_in_clean_books():
    tenant, key = customer("clean")
    event(key, cost=10)
    event(key, cost=0, status="error")
    event(key, cost=5, at=timezone.now() - timedelta(days=1))
    usage_rollup()
    assert usage_reconcile() == []
    assert usage_reconcile(since=timezone.now() - timedelta(days=7)) == []
    assert usage_reconcile(since=timezone.now() - timedelta(days=7)) == []


@pytest.mark.django_db
def test_reconcile_window_does_not_cut_a_debit_that_billed_events_from_before_it():
    tenant, key = customer("window")
    event(key, cost=10)
    event(key, cost=5, at=timezone.now() - timedelta(days=8))  # e.g. the worker was down; billed only now
    usage_rollup()
    assert usage_reconcile(since=timezone.now() - timedelta(days=7)) == []


def test_the_hourly_reconciliation_checks_today_and_each_older_day_of_the_week_in_turn():
    now = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
    midnight = datetime(2026, 3, 10, tzinfo=UTC)
    older = set()
    for hour in range(24):
        (today, until), (since, before) = usage_reconcile_windows(now=now + timedelta(hours=hour))
        assert (today, until) == (midnight, None) and before == since + timedelta(days=1)
        older.add(since)
    assert older == {midnight - timedelta(days=days) for days in range(1, 8)}  # the week, every day of it


@pytest.mark.django_db
def test_a_drift_in_an_older_day_is_found_by_the_run_whose_turn_it_is():
    tenant, key = customer("rotating")
    event(key, cost=10)
    old = event(key, cost=20, at=timezone.now() - timedelta(days=3))
    usage_rollup()
    UsageRollup.objects.filter(api_key=key, day=old.created_at.date()).update(requests=F("requests") + 1)
    found = {}
    for hour in range(7):
        now = timezone.now().replace(hour=hour)
        found[hour] = [line for since, until in usage_reconcile_windows(now=now)
                       for line in usage_reconcile(since=since, until=until)]
    days_back = (timezone.now().date() - old.created_at.date()).days
    assert [hour for hour, drift in found.items() if drift] == [(days_back - 1) % 7]
    assert "'requests': 2" in found[(days_back - 1) % 7][0]


@pytest.mark.django_db
def test_reconcile_reports_a_tampered_rollup(caplog):
    tenant, key = customer("tamper")
    event(key, cost=10)
    event(key, cost=20)
    usage_rollup()
    UsageRollup.objects.filter(api_key=key).update(requests=F("requests") + 1)  # rollups are not append-only

    with caplog.at_level(logging.ERROR, logger="billing.services"):
        drift = tasks.usage_reconcile.apply().get()
    assert len(drift) == 1 and f"{key.pk}, '{SONNET}')" in drift[0] and "'requests': 3" in drift[0]
    assert any("billing drift" in message for message in caplog.messages)


@pytest.mark.django_db
def test_reconcile_reports_events_and_debits_that_disagree():
    tenant, key = customer("unbilled")
    rows = [event(key, cost=10), event(key, cost=20)]
    usage_rollup()
    UsageEvent.objects.filter(pk=rows[0].pk).update(ledger_entry=None)  # as if its debit had been lost
    drift = usage_reconcile()
    debit = LedgerEntry.objects.get(tenant=tenant, kind="debit")
    assert f"debit {debit.pk}: 30 billed for events costing 20" in drift
    assert "1 rolled-up events with a cost have no debit" in drift


# --- Tasks, schedules and budget periods ---------------------------------------------------------------


def test_beat_schedule_runs_rollup_every_minute_reconcile_hourly_statements_monthly_in_utc(
        monkeypatch):
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {name: entry["task"] for name, entry in schedule.items()} == {
        "usage-rollup": "billing.tasks.usage_rollup", "usage-reconcile": "billing.tasks.usage_reconcile",
        "auto-recharge-sweep": "billing.tasks.auto_recharge_sweep",
        "conversations-expire": "conversations.tasks.conversations_expire",
        "statements-monthly": "billing.tasks.statements_monthly",
        "alert-deliveries-due": "billing.tasks.alert_deliveries_due",
        "usage-partitions": "billing.tasks.usage_partitions_maintain",
        "request-log-partitions": "conversations.tasks.request_log_partitions_maintain"}
    for entry in schedule.values():
        assert import_string(entry["task"]).name == entry["task"]  # the registered task, not a typo
        assert isinstance(entry["schedule"], crontab)
    assert settings.CELERY_TIMEZONE == "UTC"

    def runs(name: str, start: datetime, hours: int) -> list[str]:
        """When beat would send the entry, polling every minute from `start` on."""
        when, clock, times = schedule[name]["schedule"], [start], []
        monkeypatch.setattr(when, "nowfun", lambda: clock[0])
        last = start
        while clock[0] < start + timedelta(hours=hours):
            clock[0] += timedelta(minutes=1)
            if when.is_due(last)[0]:
                last = clock[0]
                times.append(clock[0].strftime("%d %H:%M"))
        return times

    start = datetime(2025, 3, 1, 23, 0, 30, tzinfo=UTC)
    assert len(runs("usage-rollup", start, 2)) == 120
    assert len(runs("auto-recharge-sweep", start, 2)) == 120
    assert runs("usage-reconcile", start, 3) == ["01 23:30", "02 00:30", "02 01:30"]
    assert runs("statements-monthly", datetime(2025, 3, 30, 23, 0, 30, tzinfo=UTC), 72) == ["01 00:10"]
    assert len(runs("alert-deliveries-due", start, 1)) == 60


@pytest.mark.django_db
def test_a_budget_period_starts_from_zero_with_no_task_to_reset_it():
    """A key's spend is the sum of its usage since its period's start: nothing is scheduled at midnight."""
    _, daily = customer("daily", budget_nano=USD, budget_period="day")
    _, monthly = customer("monthly", budget_nano=USD, budget_period="month")
    for key in (daily, monthly):
        event(key, cost=USD, at=datetime(2025, 2, 28, 23, 59, tzinfo=UTC))
        event(key, cost=3, at=datetime(2025, 3, 1, 0, 1, tzinfo=UTC))
    march_first = datetime(2025, 3, 1, 0, 5, tzinfo=UTC)
    for key in (daily, monthly):
        assert key_spend_nano(key.pk, budget_period_bounds(key.budget_period, march_first)[0]) == 3
    states = key_budget_states([daily, monthly], now=march_first)
    assert [states[key.pk].over for key in (daily, monthly)] == [False, False]
    assert states[daily.pk].resets == datetime(2025, 3, 2, tzinfo=UTC)
    assert not [entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if "budget" in entry["task"]]


# --- Committed rows: other connections (the scheduler's thread, a killed process) ----------------------


@pytest.fixture
def committed(django_db_setup, django_db_blocker):
    """Database access outside a test transaction. What it commits stays: usage rows and the ledger are
    append-only, and deleting events would leave their debits unexplained for every later reconcile."""
    with django_db_blocker.unblock():
        yield customer


KILL_MIDWAY = textwrap.dedent("""
    import json, os, signal, sys
    import django
    django.setup()
    from billing import services
    from billing.models import LedgerEntry, UsageRollup

    victim, tenants = int(sys.argv[1]), json.loads(sys.argv[2])
    real_ledger_post = services.ledger_post

    def ledger_post(**kwargs):
        if kwargs["tenant_id"] == victim:
            # Mid-batch: its rollups and the first tenant's debit are written, not committed.
            print(json.dumps({
                "rollups": UsageRollup.objects.filter(tenant_id__in=tenants).count(),
                "debits": LedgerEntry.objects.filter(tenant_id__in=tenants, kind="debit").count(),
            }), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_ledger_post(**kwargs)

    services.ledger_post = ledger_post
    services.usage_rollup()
    print("not killed", flush=True)
""")


def test_a_rollup_killed_midway_leaves_nothing_half_written_and_the_rerun_counts_once(committed):
    alice, alice_key = committed("kill-a")
    bob, bob_key = committed("kill-b")
    credit_grant(tenant=alice, amount_nano=USD, reason="credit")
    for key, cost in [(alice_key, 100), (alice_key, 0), (alice_key, 250), (bob_key, 75)]:
        event(key, cost=cost, status="ok" if cost else "error")
    tenants = [alice.pk, bob.pk]

    env = {**os.environ, "DATABASE_URL": database_url_for_current_connection(),
           "DJANGO_SETTINGS_MODULE": "config.settings"}
    killed = subprocess.run([sys.executable, "-c", KILL_MIDWAY, str(bob.pk), json.dumps(tenants)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert json.loads(killed.stdout) == {"rollups": 2, "debits": 1}

    assert rollups_of(alice, bob) == {}
    assert not LedgerEntry.objects.filter(tenant_id__in=tenants, kind="debit").exists()
    assert not UsageEvent.objects.filter(tenant_id__in=tenants, rolled_up_at__isnull=False).exists()
    assert ledger_sum(alice) == tenant_balance_nano(alice.pk) == USD

    tasks.usage_rollup.apply(throw=True)
    tasks.usage_rollup.apply(throw=True)
    assert [(sums["requests"], sums["errors"], sums["cost"]) for sums in rollups_of(alice, bob).values()] in (
        [(3, 1, 350), (1, 0, 75)], [(1, 0, 75), (3, 1, 350)])
    assert_books_agree(alice, credited=USD)
    assert_books_agree(bob, credited=0)
    assert tasks.usage_reconcile.apply().get() == []


def _scheduler_ran(caplog) -> list[str]:
    return [record.args[0] for record in caplog.records
            if record.name == "billing.scheduler" and record.msg.startswith("scheduled task")]


def test_embedded_scheduler_runs_the_due_beat_entries_on_its_own_thread(committed, caplog):
    caplog.set_level(logging.INFO, logger="billing.scheduler")
    tenant, key = committed("embedded")
    event(key, cost=42)
    runner = scheduler.Scheduler()
    assert set(runner.entries) == set(settings.CELERY_BEAT_SCHEDULE)
    try:
        # Nothing is due right after start: as beat, the first runs are the next slots.
        assert 0 < asyncio.run(runner.tick()) <= 60 and _scheduler_ran(caplog) == []
        runner.last_run = dict.fromkeys(runner.entries, timezone.now() - timedelta(days=2))
        wait = asyncio.run(runner.tick())
    finally:
        runner.close(wait=True)
    assert _scheduler_ran(caplog) == ["usage-rollup", "usage-reconcile", "conversations-expire",
                                      "auto-recharge-sweep", "statements-monthly",
                                      "alert-deliveries-due", "usage-partitions", "request-log-partitions"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert 0 < wait <= 60
    assert_books_agree(tenant, credited=0)
    assert UsageRollup.objects.get(api_key=key).cost_nano == 42


def test_embedded_scheduler_survives_a_failing_task_and_runs_the_next_ones(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="billing.scheduler")
    ran = []

    def usage_rollup_failing():
        raise RuntimeError("database away")

    monkeypatch.setattr(services, "usage_rollup", usage_rollup_failing)
    monkeypatch.setattr(services, "usage_reconcile", lambda **_: ran.append(threading.current_thread().name) or [])
    every_second = {
        "rollup": {"task": "billing.tasks.usage_rollup", "schedule": timedelta(seconds=1)},
        "reconcile": {"task": "billing.tasks.usage_reconcile", "schedule": timedelta(seconds=1)},
    }
    runner = scheduler.Scheduler(every_second)
    runner.last_run = dict.fromkeys(runner.entries, timezone.now() - timedelta(minutes=1))
    try:
        asyncio.run(runner.tick())
    finally:
        runner.close(wait=True)
    assert ran and ran[0].startswith("billing-scheduler")  # off the event loop's thread
    failed = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "billing.scheduler"]
    assert len(failed) == 1 and failed[0].exc_info[0] is RuntimeError


def test_embedded_scheduler_logs_an_unreachable_database_as_the_outage_line_not_a_traceback(monkeypatch, caplog):
    from django.db import OperationalError

    from common.outage import db_unavailable

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(db_unavailable, "_next", 0.0)  # the interval's line is due

    def alert_deliveries_unreachable():
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.alerts, "alert_deliveries_send_due", alert_deliveries_unreachable)
    runner = scheduler.Scheduler({"alerts": {"task": "billing.tasks.alert_deliveries_due",
                                             "schedule": timedelta(seconds=1)}})
    runner.last_run = dict.fromkeys(runner.entries, timezone.now() - timedelta(minutes=1))
    try:
        asyncio.run(runner.tick())
    finally:
        runner.close(wait=True)
    assert not [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in caplog.records if r.name == "gatehouse.database"][0].startswith(
        "database unavailable")


async def test_embedded_scheduler_task_is_started_and_cancelled_by_the_asgi_lifespan(monkeypatch, settings):
    import config.asgi

    started = []
    real_start = scheduler.start

    def start():
        started.append(real_start())
        return started[-1]

    monkeypatch.setattr(scheduler, "start", start)
    for eager in (False, True):
        settings.CELERY_TASK_ALWAYS_EAGER = eager
        inbox: asyncio.Queue = asyncio.Queue()
        outbox = []

        async def send(message):
            outbox.append(message["type"])

        lifespan = asyncio.create_task(config.asgi._lifespan(inbox.get, send))
        await inbox.put({"type": "lifespan.startup"})
        await asyncio.sleep(0.05)
        assert len(started) == int(eager)
        if eager:
            assert not started[0].done()
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(lifespan, 5)
        assert outbox == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert started[0].cancelled()


@requires_postgres
def test_reconcile_reads_one_snapshot_while_a_rollup_commits_in_between(committed):
    tenant, key = committed("snapshot")
    event(key, cost=10)
    usage_rollup()
    event(key, cost=20)  # pending when the reconcile starts; a worker rolls it up while it reads

    def rollup_between_reads(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "billing_usageevent" in sql and "GROUP BY" in sql and not worker.is_alive() and not done:
            worker.start()
            worker.join()
            done.append(True)
        return result

    def rollup_on_another_connection():
        from django.db import connections

        try:
            usage_rollup()
        finally:
            connections.close_all()

    worker, done = threading.Thread(target=rollup_on_another_connection), []
    with connection.execute_wrapper(rollup_between_reads):
        drift = usage_reconcile(since=timezone.now() - timedelta(days=1))
    assert done and drift == []
    assert UsageRollup.objects.get(api_key=key).requests == 2  # the rollup did commit in between
    assert usage_reconcile() == []


@pytest.mark.django_db
def test_a_rollup_row_another_process_created_meanwhile_is_added_to_not_a_failed_batch():
    """Two workers' rollup batches (the embedded scheduler runs in each) can both find a row missing:
    the second create hits the unique constraint and adds to the row the first one made."""
    from django.db import IntegrityError

    from billing.services import _add_to_row

    class Rows:
        updates = 0

        def filter(self, **where):
            return self

        def update(self, **add):
            Rows.updates += 1
            return 0 if Rows.updates == 1 else 1  # missing at first; there after the other batch committed

        def create(self, **fields):
            raise IntegrityError('duplicate key value violates unique constraint "rollup_unique_day_key_model"')

    class Racing:
        objects = Rows()

    _add_to_row(Racing, {"day": "2026-12-02", "api_key_id": 1, "model": "m"}, 1, {"requests": 1})
    assert Rows.updates == 2
