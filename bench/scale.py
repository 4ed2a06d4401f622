#!/usr/bin/env python
"""What months of data cost the request path and the pages: run against a database `bench/seed.py` filled.

    DATABASE_URL=postgres://... .venv/bin/python bench/scale.py [--prefix seed] [--repeat 30] [--inserts 2000]
        [--baseline-url postgres://.../an_almost_empty_database]

Measures, in this process (no server: the figures are the database's and Django's, without HTTP):
- the usage INSERT alone, as the recorder issues it (`usage_events_write`), batches of 1 and of 32 rows;
  with `--baseline-url`, the same INSERTs against that (migrated, almost empty) database too, in a child
  process run right before, so "the INSERT does not slow down with the table's size" is one comparison
  (`insert_baseline`: its figures; `insert_ratio_p50`: this database's p50 over the baseline's);
- `GET /v1/usage` for 30 days, the dashboard usage page (30 days), `GET /v1/traces/{id}`, through Django's
  test client, for the seed's largest tenant, p50 and p99 over `--repeat` requests after one warm-up;
- the console's usage list (`/admin/billing/usageevent/`): unfiltered, last 7 days, one tenant, a page deep
  in the list, and a search by request id;
- one rollup run after a minute of new rows, one conversation expiry run, the hourly reconciliation (the
  task's windows: today and one older day) and the 7-day one it replaced, and the queries of one
  conversation history read.
Writes rows of its own (tenant `<prefix>-001`); run it on a scratch database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(os.environ.get("GATEHOUSE_ROOT") or Path(__file__).resolve().parent.parent)


def _setup() -> None:
    # ROOT's code, even where the venv's editable install points at another checkout.
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")
                        and "editable" not in type(f).__module__]
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p99_ms": round(p99 * 1000, 1),
            "n": len(ordered)}


def _timed(call, repeat: int) -> dict:
    call()  # warm-up: connections, caches, plans
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return _ms(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", default="seed")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--inserts", type=int, default=2000)
    parser.add_argument("--label", default="")
    parser.add_argument("--skip-slow", action="store_true", help="skip the 7-day reconciliation")
    parser.add_argument("--baseline-url", default="", help="an almost empty database to run the INSERTs against too")
    parser.add_argument("--inserts-only", action="store_true", help=argparse.SUPPRESS)  # the baseline's child
    args = parser.parse_args()
    baseline = _baseline(args) if args.baseline_url else None
    _setup()
    if args.inserts_only:
        print(json.dumps(_inserts(args, _bench_tenant(args.prefix, create=True))))
        return

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from accounts.models import Membership
    from accounts.services import membership_set
    from billing.models import UsageEvent

    tenant = _bench_tenant(args.prefix)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM billing_usageevent")
        total_rows = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM billing_usageevent WHERE tenant_id = %s", [tenant.pk])
        tenant_rows = cursor.fetchone()[0]
    results: dict = {"label": args.label, "usage_rows": total_rows, "tenant_rows": tenant_rows}
    inserts = _inserts(args, tenant)
    secret, record = inserts.pop("_secret"), inserts.pop("_record")
    results |= inserts
    if baseline is not None:
        results["insert_baseline"] = baseline | {"usage_rows": baseline.get("usage_rows")}
        results["insert_ratio_p50"] = {name: round(inserts[name]["p50_ms"] / baseline[name]["p50_ms"], 2)
                                       for name in inserts if name in baseline}

    # Pages and APIs of the largest tenant.
    api = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    today = datetime.now(UTC).date()
    start = today - timedelta(days=29)
    url = f"/v1/usage?start={start}&end={today}"
    assert api.get(url).status_code == 200
    results["v1_usage_30d"] = _timed(lambda: api.get(url), args.repeat)
    user, _ = get_user_model().objects.get_or_create(username=f"{args.prefix}-owner",
                                                     defaults={"email": f"{args.prefix}-owner@example.com"})
    if not Membership.objects.filter(user=user, tenant=tenant).exists():
        membership_set(tenant=tenant, user=user, role=Membership.Role.OWNER)
    dashboard = Client()
    dashboard.force_login(user)
    page = dashboard.get("/dashboard/usage/")
    assert page.status_code == 200, page.status_code
    results["dashboard_usage_30d"] = _timed(lambda: dashboard.get("/dashboard/usage/"), args.repeat)
    trace = (UsageEvent.objects.filter(tenant=tenant).exclude(trace_id="").values_list("trace_id", flat=True).first())
    if trace is None:  # seeds without trace ids: give a few recent rows one
        trace = "trace-scale"
        ids = list(UsageEvent.objects.filter(tenant=tenant, created_at__gte=datetime.now(UTC) - timedelta(days=3))
                   .values_list("id", flat=True)[:5])
        UsageEvent.objects.filter(id__in=ids).update(trace_id=trace)
    assert api.get(f"/v1/traces/{trace}").status_code == 200
    results["v1_traces"] = _timed(lambda: api.get(f"/v1/traces/{trace}"), args.repeat)

    _console(results, args.repeat, tenant)
    _tasks(results, args, record, tenant)
    print(json.dumps(results, indent=1))


def _bench_tenant(prefix: str, *, create: bool = False):
    from accounts.models import Tenant
    from accounts.services import tenant_create

    slug = f"{prefix}-001"
    if create and not Tenant.objects.filter(slug=slug).exists():
        return tenant_create(slug=slug, name="Scale baseline")
    return Tenant.objects.get(slug=slug)


def _inserts(args, tenant) -> dict:
    """The INSERT alone: the recorder's statement for one row and for a group-committed batch of 32."""
    from accounts.services import api_key_issue
    from billing.models import UsageEvent
    from gateway.metering.writes import UsageRecord, usage_events_write

    issued = api_key_issue(tenant=tenant, name=f"scale bench {uuid.uuid4().hex[:6]}")
    key = issued.api_key

    def record(created_at: datetime) -> UsageRecord:
        return UsageRecord(
            request_id="req_" + uuid.uuid4().hex[:24], tenant_id=tenant.pk, api_key_id=key.pk, endpoint="chat.completions",
            requested_model="claude-sonnet-4-6", model="claude-sonnet-4-6", upstream_model="claude-sonnet-4-6",
            stream=False, input_tokens=12, output_tokens=9, cache_creation_input_tokens=0, cache_read_input_tokens=0,
            cost_nano=171000, price_id=None, status="ok", http_status=200, error_type="", latency_ms=4, ttft_ms=None,
            created_at=created_at)

    results: dict = {}
    for batch in (1, 32):
        samples = []
        for _ in range(max(1, args.inserts // batch)):
            records = [record(datetime.now(UTC)) for _ in range(batch)]
            started = time.perf_counter()
            usage_events_write(records)
            samples.append(time.perf_counter() - started)
        summary = _ms(samples)
        summary["rows_per_s"] = round(batch * len(samples) / sum(samples))
        summary["us_per_row"] = round(sum(samples) / (batch * len(samples)) * 1e6)
        results[f"insert_batch_{batch}"] = summary
    if args.inserts_only:
        results["usage_rows"] = UsageEvent.objects.count()
    else:
        results |= {"_secret": issued.plaintext, "_record": record}
    return results


def _baseline(args) -> dict:
    """The same INSERTs in a child process against `--baseline-url` (its own Django, its own database)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--inserts-only", "--prefix", args.prefix,
               "--inserts", str(args.inserts)]
    done = subprocess.run(command, env={**os.environ, "DATABASE_URL": args.baseline_url}, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _console(results: dict, repeat: int, tenant) -> None:
    """The operators' usage list (billing/admin.py UsageEventAdmin): no full count, fixed filter choices."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from billing.models import UsageEvent

    admin, _ = get_user_model().objects.get_or_create(username="scale-operator",
                                                      defaults={"is_staff": True, "is_superuser": True})
    console = Client()
    console.force_login(admin)
    request_id = UsageEvent.objects.filter(tenant=tenant).order_by("-created_at").values_list("request_id", flat=True)[50]
    pages = {"admin_usage_rows": "", "admin_usage_rows_7d": "?period=7d",
             "admin_usage_rows_tenant": f"?tenant__id__exact={tenant.pk}", "admin_usage_rows_page_50": "?p=50",
             "admin_usage_rows_search": f"?q={request_id}"}
    for name, query in pages.items():
        url = f"/admin/billing/usageevent/{query}"
        assert console.get(url).status_code == 200, url
        results[name] = _timed(lambda url=url: console.get(url), repeat)


def _tasks(results: dict, args, record, tenant) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.services import usage_reconcile, usage_reconcile_windows, usage_rollup
    from conversations.models import Conversation
    from conversations.services import conversation_begin, conversations_expire
    from gateway.metering.writes import usage_events_write

    total_rows = results["usage_rows"]
    # Periodic tasks: one rollup run after a minute's rows (~the seed's rate), expiry, reconciliation.
    usage_rollup()
    minute = max(1, total_rows // (60 * 24 * 60))
    usage_events_write([record(datetime.now(UTC)) for _ in range(minute)])
    started = time.perf_counter()
    rolled = usage_rollup()
    results["rollup_run"] = {"rows": rolled, "ms": round((time.perf_counter() - started) * 1000, 1)}
    started = time.perf_counter()
    expired = conversations_expire()
    results["expiry_run"] = {"deleted": expired, "ms": round((time.perf_counter() - started) * 1000, 1)}
    # The hourly task's run (today and one older day: services.usage_reconcile_windows), then the 7-day
    # window it replaced, for the comparison.
    started = time.perf_counter()
    drift = [line for since, until in usage_reconcile_windows(now=datetime.now(UTC))
             for line in usage_reconcile(since=since, until=until)]
    results["reconcile_hourly_run"] = {"drift": len(drift), "ms": round((time.perf_counter() - started) * 1000, 1)}
    if not args.skip_slow:
        started = time.perf_counter()
        drift = usage_reconcile(since=datetime.now(UTC) - timedelta(days=7))
        results["reconcile_7d"] = {"drift": len(drift), "ms": round((time.perf_counter() - started) * 1000, 1)}

    conversation = Conversation.objects.filter(tenant=tenant).order_by("-last_activity_at").first()
    if conversation is not None:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            history = conversation_begin(tenant_id=tenant.pk, conversation_id=conversation.pk, lease=False,
                                         now=datetime.now(UTC))
            elapsed = time.perf_counter() - started
        results["history_read"] = {"queries": len(queries), "ms": round(elapsed * 1000, 1),
                                   "messages": len(getattr(history, "messages", []) or [])}


if __name__ == "__main__":
    main()
