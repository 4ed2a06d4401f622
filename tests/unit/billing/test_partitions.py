"""Usage rows and request logs partitioned by month on PostgreSQL: rows of any month are taken, one request id
is still one row, retention drops whole months only once billed, and the scale seed loads consistent data."""

from __future__ import annotations

import importlib.util
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection

from accounts.services import api_key_issue, tenant_create
from billing.models import UsageEvent, UsageRollup
from billing.selectors import usage_by_day_and_model
from billing.services import usage_partitions_maintain, usage_reconcile, usage_rollup
from common.partitions import month_add, month_floor, partitions, partitions_ensure
from conversations.models import RequestLog
from conversations.services import request_log_partitions_maintain
from gateway.metering.writes import UsageRecord, usage_events_write

from tests.support.env import ROOT, requires_postgres

pytestmark = requires_postgres

NOW = datetime.now(UTC)
THIS_MONTH = month_floor(NOW)


@pytest.fixture
def principal(db):
    tenant = tenant_create(slug="partco")
    return tenant, api_key_issue(tenant=tenant).api_key


def record(principal, request_id: str, created_at: datetime, **overrides) -> UsageRecord:
    tenant, api_key = principal
    fields = dict(
        request_id=request_id, tenant_id=tenant.pk, api_key_id=api_key.pk, endpoint="chat.completions",
        requested_model="gpt-4o", model="claude-sonnet-4-6", upstream_model="claude-sonnet-4-6", stream=False,
        input_tokens=10, output_tokens=5, cache_creation_input_tokens=0, cache_read_input_tokens=0,
        cost_nano=105000, price_id=None, status="ok", http_status=200, error_type="", latency_ms=3, ttft_ms=None,
        created_at=created_at,
    )
    return UsageRecord(**{**fields, **overrides})


def partition_of(request_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM billing_usageevent WHERE request_id = %s", [request_id])
        return cursor.fetchone()[0]


def month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def test_the_usage_table_is_partitioned_by_month_with_months_ahead(db):
    with connection.cursor() as cursor:
        months = [p.month for p in partitions(cursor, "billing_usageevent")]
    assert THIS_MONTH in months and month_add(THIS_MONTH, 3) in months
    assert months[-1] is None  # the DEFAULT partition, for a row of a month without its own


def test_rows_either_side_of_a_month_boundary_land_in_their_months(principal):
    boundary = month_start(month_add(THIS_MONTH, 1))
    usage_events_write([record(principal, "req_before", boundary - timedelta(microseconds=1)),
                        record(principal, "req_after", boundary),
                        record(principal, "req_far", datetime(2099, 5, 1, tzinfo=UTC))])
    assert partition_of("req_before") == f"billing_usageevent_p{THIS_MONTH:%Y_%m}"
    assert partition_of("req_after") == f"billing_usageevent_p{month_add(THIS_MONTH, 1):%Y_%m}"
    assert partition_of("req_far") == "billing_usageevent_default"  # taken, never refused
    assert UsageEvent.objects.filter(request_id__in=["req_before", "req_after", "req_far"]).count() == 3


def test_the_same_request_id_in_another_month_is_still_refused(principal):
    usage_events_write([record(principal, "req_once", NOW)])
    usage_events_write([record(principal, "req_once", month_start(month_add(THIS_MONTH, 1)), output_tokens=999)])
    assert UsageEvent.objects.filter(request_id="req_once").get().output_tokens == 5


def test_a_record_replayed_after_its_claim_expired_is_still_refused(principal):
    first = record(principal, "req_replayed", NOW)
    usage_events_write([first])
    assert usage_partitions_maintain(now=NOW + timedelta(days=2))["claims_expired"] >= 1
    usage_events_write([first])  # the spool's copy, as first built: same created_at
    assert UsageEvent.objects.filter(request_id="req_replayed").count() == 1


def test_a_month_whose_rows_waited_in_the_default_partition_is_created_with_them(principal):
    far = month_add(THIS_MONTH, 20)
    usage_events_write([record(principal, "req_early", month_start(far) + timedelta(days=3))])
    assert partition_of("req_early") == "billing_usageevent_default"
    with connection.cursor() as cursor:
        partitions_ensure(cursor, "billing_usageevent", first=far, last=far)
    assert partition_of("req_early") == f"billing_usageevent_p{far:%Y_%m}"


def test_retention_drops_only_old_months_rolled_up_and_debited(principal, settings):
    settings.USAGE_RETENTION_DAYS = 31
    billed_month, unbilled_month = month_add(THIS_MONTH, -3), month_add(THIS_MONTH, -4)
    with connection.cursor() as cursor:
        partitions_ensure(cursor, "billing_usageevent", first=unbilled_month, last=THIS_MONTH)
    usage_events_write([record(principal, "req_billed", month_start(billed_month) + timedelta(days=2)),
                        record(principal, "req_recent", NOW - timedelta(days=1))])
    assert usage_rollup() == 2
    usage_events_write([record(principal, "req_late", month_start(unbilled_month) + timedelta(days=2))])

    result = usage_partitions_maintain(now=NOW)

    assert f"billing_usageevent_p{billed_month:%Y_%m}" in result["dropped"]
    assert f"billing_usageevent_p{month_add(THIS_MONTH, -1):%Y_%m}" not in result["dropped"]  # 31 days not past
    assert result["kept"] == [f"billing_usageevent_p{unbilled_month:%Y_%m}"]  # its row is not billed yet
    assert set(UsageEvent.objects.values_list("request_id", flat=True)) == {"req_recent", "req_late"}
    # The rollups of a dropped month stay: the dashboard and the usage APIs still show it.
    tenant, _ = principal
    assert UsageRollup.objects.filter(tenant=tenant, day=(month_start(billed_month) + timedelta(days=2)).date()).exists()


def test_without_retention_no_month_is_dropped(principal, settings):
    settings.USAGE_RETENTION_DAYS = 0
    with connection.cursor() as cursor:
        partitions_ensure(cursor, "billing_usageevent", first=month_add(THIS_MONTH, -6), last=THIS_MONTH)
    usage_events_write([record(principal, "req_old", month_start(month_add(THIS_MONTH, -6)))])
    usage_rollup()
    assert usage_partitions_maintain(now=NOW)["dropped"] == []
    assert UsageEvent.objects.filter(request_id="req_old").exists()


def test_request_log_months_past_the_longest_retention_are_dropped(principal):
    tenant, _ = principal
    old, recent = month_add(THIS_MONTH, -3), month_add(THIS_MONTH, -1)
    with connection.cursor() as cursor:
        partitions_ensure(cursor, "conversations_requestlog", first=old, last=THIS_MONTH)
    for request_id, month in (("req_log_old", old), ("req_log_recent", recent)):
        RequestLog.objects.create(request_id=request_id, tenant=tenant, created_at=month_start(month) + timedelta(days=1),
                                  request={}, response=[])
    tenant.conversation_retention_days = 40
    tenant.save()
    result = request_log_partitions_maintain(now=NOW)
    assert f"conversations_requestlog_p{old:%Y_%m}" in result["dropped"]
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {"req_log_recent"}


def test_usage_reports_read_rollups_and_the_unrolled_rows_alike(principal):
    usage_events_write([record(principal, f"req_r{n}", NOW - timedelta(days=n % 3, minutes=n)) for n in range(9)])
    tenant, _ = principal
    selection = dict(tenant_id=tenant.pk, start=(NOW - timedelta(days=5)).date(), end=NOW.date())
    before = {by: usage_by_day_and_model(**selection, by=by) for by in (("model",), ("api_key", "model"))}
    usage_rollup()
    usage_events_write([record(principal, "req_r_new", NOW)])  # a row the rollup has not seen yet
    after = {by: usage_by_day_and_model(**selection, by=by) for by in (("model",), ("api_key", "model"))}
    for by, rows in after.items():
        today = [row for row in rows if row["day"] == NOW.date()][0]
        earlier = [row for row in before[by] if row["day"] == NOW.date()][0]
        assert today["requests"] == earlier["requests"] + 1
        assert today["cost_nano"] == earlier["cost_nano"] + 105000
        assert [row for row in rows if row["day"] != NOW.date()] == [row for row in before[by] if row["day"] != NOW.date()]


def _seed_module():
    path = ROOT / "bench" / "seed.py"
    spec = importlib.util.spec_from_file_location("bench_seed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seed_loads_rows_rollups_and_debits_that_agree(db):
    counts = _seed_module().seed(rows=10_000, days=60, tenants=4, keys_per_tenant=2, messages=400, request_logs=50,
                                 unrolled_minutes=30, minute_bucket_days=8, prefix="tinyseed", log=lambda line: None)
    assert counts["usage_rows"] == UsageEvent.objects.count() == 10_000
    assert counts["messages"] == 400 and counts["request_logs"] == 50
    assert 0 < counts["unrolled_rows"] < 100  # half an hour of 60 days' rows waits for the rollup
    assert usage_rollup() == counts["unrolled_rows"]
    # Rollups, buckets and debits are exactly what the rows say (the hourly check's window: minute buckets
    # are seeded for its week only).
    assert usage_reconcile(since=datetime.now(UTC) - timedelta(days=7)) == []
    assert UsageRollup.objects.count() and not [line for line in usage_reconcile() if not line.startswith("1m bucket")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT tableoid) FROM billing_usageevent")
        assert cursor.fetchone()[0] >= 3  # 60 days span three months, each in its partition
        cursor.execute("SELECT count(*) FROM billing_usageevent_default")
        assert cursor.fetchone()[0] == 0
