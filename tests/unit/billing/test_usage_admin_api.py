"""The OpenAI- and Anthropic-compatible usage and cost APIs (tenant admin keys) and the usage buckets
they read: query parsing and shapes (pure), the minute/hour/day buckets the rollup fills and the
reconciliation checks, and end to end through the official SDKs against a gateway process, where the
figures must equal `GET /v1/usage`, the dashboard and the ledger.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import F
from django.utils import timezone

from accounts.services import api_key_issue, tenant_create
from billing.buckets import bucket_floor, bucket_page
from billing.models import UsageBucket, UsageEvent
from billing.selectors import usage_buckets
from billing.services import usage_reconcile, usage_rollup
from gateway.core import GatewayError
from gateway.protocols import anthropic_admin, openai_admin
from tests.support.openapi import validate

SONNET, EMBED = "claude-sonnet-4-6", "jina-embeddings-v3"
NOW = datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)


def params(**values) -> dict[str, list[str]]:
    return {name.replace("__", "[]"): value if isinstance(value, list) else [str(value)]
            for name, value in values.items()}


# --- Queries and shapes (pure) -----------------------------------------------------------------------------


def test_buckets_snap_to_utc_minutes_hours_and_days_and_page_by_limit():
    assert bucket_floor(NOW, "1m") == NOW.replace(second=0)
    assert bucket_floor(NOW, "1h") == NOW.replace(minute=0, second=0)
    assert bucket_floor(NOW, "1d") == NOW.replace(hour=0, minute=0, second=0)
    page = bucket_page(start=NOW - timedelta(days=3), end=NOW, width="1d", limit=2)
    assert page.starts == [datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)]
    last = bucket_page(start=NOW - timedelta(days=3), end=NOW, width="1d", limit=2, page=page.next_start)
    assert last.starts == [datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)]
    assert last.next_start is None and last.end == datetime(2026, 12, 1, tzinfo=UTC)


def start_time(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.mark.parametrize("query, param", [
    ({}, "start_time"),
    ({"start_time": "yesterday"}, "start_time"),
    ({"start_time": 10**18}, "start_time"),
    ({"start_time": -5}, "start_time"),
    ({"start_time": 0}, "start_time"),  # 1970: seconds of a zero date, not a report
    ({"start_time": start_time(NOW), "end_time": start_time(NOW) - 60}, "start_time"),
    ({"start_time": start_time(NOW) - 3600, "bucket_width": "1w"}, "bucket_width"),
    ({"start_time": start_time(NOW) - 3600, "limit": 10**9}, "limit"),
    ({"start_time": start_time(NOW) - 3600, "limit": 0}, "limit"),
    ({"start_time": start_time(NOW) - 3600, "limit": -1}, "limit"),
    ({"start_time": start_time(NOW) - 3600, "bucket_width": "1m", "limit": 1441}, "limit"),
    ({"start_time": start_time(NOW) - 3600, "group_by": "user_id"}, "group_by"),
    ({"start_time": start_time(NOW) - 3600, "group_by__": ["model", "planet"]}, "group_by"),
    ({"start_time": start_time(NOW) - 3600, "page": "page_x"}, "page"),
    ({"start_time": start_time(NOW) - 3600, "page": f"page_{start_time(NOW) - 10**6}"}, "page"),
])
def test_openai_usage_queries_that_make_no_sense_are_400s_naming_the_parameter(query, param):
    with pytest.raises(GatewayError) as raised:
        openai_admin.parse_query(params(**query), now=NOW)
    assert (raised.value.status, raised.value.param) == (400, param)


def test_openai_costs_take_daily_buckets_only_and_up_to_180_of_them():
    base = {"start_time": start_time(NOW - timedelta(days=200))}
    assert openai_admin.parse_query(params(**base, limit=180), now=NOW, costs=True).page.width == "1d"
    for bad in ({"bucket_width": "1h"}, {"limit": 181}, {"group_by": "model"}):
        with pytest.raises(GatewayError):
            openai_admin.parse_query(params(**base, **bad), now=NOW, costs=True)


@pytest.mark.parametrize("query, param", [
    ({}, "starting_at"),
    ({"starting_at": "2026-11-30"}, "starting_at"),  # no time zone
    ({"starting_at": "tomorrow"}, "starting_at"),
    ({"starting_at": "1900-01-01T00:00:00Z"}, "starting_at"),
    ({"starting_at": "9999-01-01T00:00:00Z"}, "starting_at"),
    ({"starting_at": "2026-11-30T00:00:00Z", "ending_at": "2026-11-29T00:00:00Z"}, "starting_at"),
    ({"starting_at": "2026-11-30T00:00:00Z", "bucket_width": "2d"}, "bucket_width"),
    ({"starting_at": "2026-11-30T00:00:00Z", "limit": 10**9}, "limit"),
    ({"starting_at": "2026-11-30T00:00:00Z", "group_by__": "account_id"}, "group_by"),
    ({"starting_at": "2026-11-30T00:00:00Z", "page": "2026-11-29T00:00:00Z"}, "page"),
])
def test_anthropic_report_queries_that_make_no_sense_are_400s_naming_the_parameter(query, param):
    with pytest.raises(GatewayError) as raised:
        anthropic_admin.parse_query(params(**query), now=NOW)
    assert (raised.value.status, raised.value.param) == (400, param)


def rows(*specs) -> list[dict]:
    """Bucket rows as billing.selectors.usage_buckets returns them."""
    base = dict(requests=1, errors=0, input_tokens=10, output_tokens=5, cache_creation_input_tokens=3,
                cache_read_input_tokens=7, cost_nano=1_234_567)
    return [{"start": start, "key_public_id": key, "model": model, "endpoint": "messages", **base}
            for start, key, model in specs]


def test_openai_usage_pages_sum_per_bucket_and_group_and_validate_against_the_spec():
    day = datetime(2026, 11, 29, tzinfo=UTC)
    query = openai_admin.parse_query(params(start_time=start_time(day - timedelta(days=1)), group_by__=["model", "api_key_id"],
                                            limit=2), now=NOW)
    data = rows((day, "aaaa", SONNET), (day, "aaaa", SONNET), (day, "bbbb", SONNET))
    page = openai_admin.completions_page(query, data, project="proj_acme")
    validate("UsageResponse", page)
    assert page["has_more"] and page["next_page"] == f"page_{start_time(day + timedelta(days=1))}"
    assert [bucket["results"] for bucket in page["data"]][0] == []
    first, second = page["data"][1]["results"]
    assert (first["api_key_id"], first["model"], first["num_model_requests"]) == ("key_aaaa", SONNET, 2)
    # OpenAI's input tokens include cache reads and writes; ours are the uncached ones only.
    assert (first["input_tokens"], first["input_cached_tokens"], first["input_uncached_tokens"]) == (40, 14, 20)
    assert second["project_id"] is None and second["api_key_id"] == "key_bbbb"
    costs = openai_admin.costs_page(openai_admin.parse_query(params(start_time=start_time(day), group_by="line_item"),
                                                             now=NOW, costs=True), data, project="proj_acme")
    validate("UsageResponse", costs)
    assert costs["data"][0]["results"][0]["amount"] == {"value": 0.003703701, "currency": "usd"}
    assert costs["data"][0]["results"][0]["line_item"] == SONNET


def test_anthropic_reports_carry_cache_tokens_and_cents_as_decimal_strings():
    day = datetime(2026, 11, 29, tzinfo=UTC)
    query = anthropic_admin.parse_query(params(starting_at="2026-11-29T00:00:00Z", group_by__=["api_key_id", "model"]),
                                        now=NOW)
    report = anthropic_admin.usage_report(query, rows((day, "aaaa", SONNET), (day, "aaaa", SONNET)))
    assert report["has_more"] is False and report["next_page"] is None
    assert [bucket["starting_at"] for bucket in report["data"]] == ["2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z"]
    (result,) = report["data"][0]["results"]
    assert result == {"uncached_input_tokens": 20, "cache_creation": {"ephemeral_1h_input_tokens": 0,
                                                                       "ephemeral_5m_input_tokens": 6},
                      "cache_read_input_tokens": 14, "output_tokens": 10, "server_tool_use": {"web_search_requests": 0},
                      "api_key_id": "apikey_aaaa", "workspace_id": None, "model": SONNET, "service_tier": None,
                      "context_window": None}
    costs = anthropic_admin.cost_report(
        anthropic_admin.parse_query(params(starting_at="2026-11-29T00:00:00Z", group_by__="description"), now=NOW,
                                    costs=True), rows((day, "aaaa", SONNET)))
    assert costs["data"][0]["results"][0]["amount"] == "0.1234567"  # cents: $0.001234567
    assert costs["data"][0]["results"][0]["model"] == SONNET
    assert [anthropic_admin.cents(n) for n in (0, 10**7, 5 * 10**9, 1)] == ["0", "1", "500", "0.0000001"]


# --- Usage buckets: filled by the rollup, read with the unrolled tail, reconciled --------------------------


def customer(prefix: str = "buckets"):
    tenant = tenant_create(slug=f"{prefix}-{uuid.uuid4().hex[:10]}")
    return tenant, api_key_issue(tenant=tenant, name=f"{prefix} key").api_key


def event(api_key, *, at: datetime, cost: int = 1000, endpoint: str = "messages", model: str = SONNET,
          status: str = "ok", cache_write: int = 0, cache_read: int = 0) -> UsageEvent:
    return UsageEvent.objects.create(
        request_id=f"req_{uuid.uuid4().hex}", tenant_id=api_key.tenant_id, api_key=api_key, endpoint=endpoint,
        requested_model=model, model=model, upstream_model=model, stream=False, input_tokens=100, output_tokens=50,
        cache_creation_input_tokens=cache_write, cache_read_input_tokens=cache_read, cost_nano=cost, status=status,
        http_status=500 if status == "error" else 200, latency_ms=12, created_at=at)


def totals(found: list[dict]) -> dict[str, int]:
    return {field: sum(row[field] for row in found) for field in ("requests", "errors", "input_tokens", "cost_nano")}


def read(tenant, width: str, start: datetime, end: datetime, **filters) -> list[dict]:
    return usage_buckets(tenant_id=tenant.pk, width=width, start=start, end=end, **filters)


@pytest.mark.django_db
def test_the_rollup_fills_minute_hour_and_day_buckets_once_even_when_run_again():
    tenant, key = customer()
    minute = bucket_floor(timezone.now(), "1m") - timedelta(hours=2)
    event(key, at=minute + timedelta(seconds=5))
    event(key, at=minute + timedelta(seconds=50), status="error", cost=0)
    event(key, at=minute + timedelta(minutes=1), endpoint="embeddings", model=EMBED)
    assert usage_rollup() == 3 and usage_rollup() == 0
    by_width = {width: sorted((b.start, b.endpoint, b.requests, b.errors, b.cost_nano)
                              for b in UsageBucket.objects.filter(tenant=tenant, width=width))
                for width in ("1m", "1h", "1d")}
    assert by_width["1m"] == [(minute, "messages", 2, 1, 1000), (minute + timedelta(minutes=1), "embeddings", 1, 0, 1000)]
    assert by_width["1h"] == [(bucket_floor(minute, "1h"), "embeddings", 1, 0, 1000),
                              (bucket_floor(minute, "1h"), "messages", 2, 1, 1000)]
    assert [row[2:] for row in by_width["1d"]] == [(1, 0, 1000), (2, 1, 1000)]
    assert usage_reconcile() == []


@pytest.mark.django_db
def test_bucket_reads_count_the_rows_not_yet_rolled_up_once_before_and_after_the_rollup():
    tenant, key = customer()
    other_tenant, other_key = customer()
    now = timezone.now()
    event(key, at=now - timedelta(minutes=5), cache_read=7)
    usage_rollup()
    event(key, at=now, cache_write=3)  # the current minute: not rolled up yet
    event(other_key, at=now)
    window = (bucket_floor(now, "1d"), bucket_floor(now, "1d") + timedelta(days=1))
    before = {width: totals(read(tenant, width, *window)) for width in ("1m", "1h", "1d")}
    assert before["1d"] == {"requests": 2, "errors": 0, "input_tokens": 200, "cost_nano": 2000}
    assert before["1m"] == before["1h"] == before["1d"]
    assert {row["start"] for row in read(tenant, "1m", *window)} == {bucket_floor(now - timedelta(minutes=5), "1m"),
                                                                     bucket_floor(now, "1m")}
    usage_rollup()
    assert {width: totals(read(tenant, width, *window)) for width in ("1m", "1h", "1d")} == before
    assert UsageEvent.objects.filter(tenant=tenant, rolled_up_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_bucket_reads_filter_by_endpoint_kind_key_and_model():
    tenant, key = customer()
    second = api_key_issue(tenant=tenant, name="second").api_key
    now = timezone.now()
    event(key, at=now)
    event(second, at=now, model="claude-haiku-4-5")
    event(key, at=now, endpoint="rerank", model=EMBED)
    usage_rollup()
    event(second, at=now, endpoint="embeddings", model=EMBED)
    window = (bucket_floor(now, "1h"), bucket_floor(now, "1h") + timedelta(hours=1))
    assert totals(read(tenant, "1h", *window, embeddings=True))["requests"] == 2
    assert totals(read(tenant, "1h", *window, embeddings=False))["requests"] == 2
    assert totals(read(tenant, "1h", *window, key_public_ids=[second.public_id]))["requests"] == 2
    assert totals(read(tenant, "1h", *window, models=[SONNET, EMBED]))["requests"] == 3
    assert read(tenant, "1h", window[1], window[1] + timedelta(hours=1)) == []


@pytest.mark.django_db
def test_reconcile_reports_a_tampered_bucket():
    tenant, key = customer()
    event(key, at=timezone.now())
    usage_rollup()
    UsageBucket.objects.filter(api_key=key, width="1h").update(cost_nano=F("cost_nano") + 1)
    UsageBucket.objects.filter(api_key=key, width="1m").delete()
    drift = usage_reconcile(since=timezone.now() - timedelta(days=1))
    assert len(drift) == 2
    assert drift[0].startswith("1m bucket") and "missing for 1 events" in drift[0]
    assert drift[1].startswith("1h bucket") and "'cost_nano': 1001" in drift[1]


@pytest.mark.django_db
def test_the_migration_fills_buckets_from_usage_already_rolled_up():
    import importlib

    from django.apps import apps

    tenant, key = customer()
    at = timezone.now() - timedelta(days=3)
    event(key, at=at)
    event(key, at=at + timedelta(minutes=2), endpoint="embeddings", model=EMBED)
    usage_rollup()
    expected = sorted(UsageBucket.objects.filter(tenant=tenant).values_list("width", "start", "endpoint", "requests",
                                                                            "input_tokens", "cost_nano"))
    UsageBucket.objects.all().delete()
    importlib.import_module("billing.migrations.0006_usage_buckets").fill_buckets(apps, None)
    assert sorted(UsageBucket.objects.filter(tenant=tenant).values_list(
        "width", "start", "endpoint", "requests", "input_tokens", "cost_nano")) == expected
    assert len(expected) == 6


# --- End to end: the official admin clients against a gateway process --------------------------------------


@dataclass
class Org:
    tenant: object
    api_key: object
    key: str  # an API key's plaintext (sk_cdx_...)
    admin: str  # a tenant admin key's plaintext (sk_cdx_admin_...)
    owner: object


def new_org(django_db_blocker) -> Org:
    from accounts.models import Membership
    from accounts.services import admin_key_issue, membership_set
    from tests.support.dashboard import make_user
    from tests.support.e2e import make_persona

    with django_db_blocker.unblock():
        persona = make_persona(f"org-{uuid.uuid4().hex[:10]}")
        owner = make_user(f"{uuid.uuid4().hex[:8]}@example.com")
        membership_set(tenant=persona.tenant, user=owner, role=Membership.Role.OWNER)
        admin = admin_key_issue(tenant=persona.tenant, name="finance export", actor=owner).plaintext
    return Org(tenant=persona.tenant, api_key=persona.api_key, key=persona.key, admin=admin, owner=owner)


def openai_admin_client(gateway: str, org: Org, prefix: str = "/v1"):
    import openai

    return openai.OpenAI(base_url=gateway + prefix, api_key="unused", admin_api_key=org.admin, max_retries=0)


def anthropic_get(gateway: str, path: str, key: str, prefix: str = "/v1", **query):
    import httpx

    return httpx.get(f"{gateway}{prefix}/organizations/{path}", params=query,
                     headers={"x-api-key": key, "anthropic-version": "2023-06-01"})


def run_mixed_workload(gateway: str, org: Org, django_db_blocker) -> list[str]:
    """Plain, streamed, cut, failed and broken requests, with cache reads and writes, through two protocols."""
    import asyncio

    import anthropic
    import openai

    from tests.support.e2e import HAIKU, chat, cut_stream, say, usage_row

    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=org.key, max_retries=0)
    ids = [client.chat.completions.with_raw_response.create(model=HAIKU, max_tokens=64, messages=say(20))
           .headers["x-request-id"]]
    stream = client.chat.completions.with_raw_response.create(model="gpt-4o", max_tokens=64, stream=True,
                                                              messages=say(20, ",cache_read=30"))
    list(stream.parse())
    ids.append(stream.headers["x-request-id"])
    ids.append(asyncio.run(cut_stream(gateway, org.key)))
    ids.append(chat(gateway, org.key, model=HAIKU, messages=say(2, ",error=529")).headers["x-request-id"])
    ids.append(chat(gateway, org.key, model=HAIKU, stream=True, messages=say(30, ",midstream_error"))
               .headers["x-request-id"])
    messages = anthropic.Anthropic(base_url=gateway, api_key=org.key, max_retries=0)
    reply = messages.messages.with_raw_response.create(
        model=SONNET, max_tokens=64, messages=say(10, ",cache_write=40,cache_read=60"))
    ids.append(reply.headers["x-request-id"])
    rows = [usage_row(request_id, django_db_blocker) for request_id in ids]
    assert {row.status for row in rows} == {"ok", "partial", "error"}
    assert sum(row.cache_read_input_tokens for row in rows) == 90
    return ids


TOKEN_FIELDS = ("requests", "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                "cost_nano")


def from_v1_usage(gateway: str, org: Org) -> dict[str, int]:
    import httpx

    report = httpx.get(f"{gateway}/v1/usage", headers={"Authorization": f"Bearer {org.key}"}).json()
    return {field: sum(row[field] for row in report["data"]) for field in TOKEN_FIELDS}


def from_dashboard(org: Org, django_db_blocker) -> dict[str, int]:
    from django.test import Client

    with django_db_blocker.unblock():
        browser = Client()
        browser.force_login(org.owner)
        context = browser.get("/dashboard/usage/").context
    return {"requests": context["total_requests"], "cost_nano": context["total_cost"],
            "tokens": sum(row["tokens"] for row in context["by_model"])}


def from_openai(gateway: str, org: Org, since: datetime, width: str, prefix: str = "/v1") -> dict[str, int]:
    client = openai_admin_client(gateway, org, prefix)
    usage = client.admin.organization.usage.completions(start_time=int(since.timestamp()), bucket_width=width,
                                                        group_by=["model", "api_key_id", "project_id"])
    validate("UsageResponse", usage.model_dump(mode="json", exclude_unset=True))
    results = [result for bucket in usage.data for result in bucket.results]
    assert {result.project_id for result in results} == {f"proj_{org.tenant.slug}"}
    assert {result.api_key_id for result in results} == {f"key_{org.api_key.public_id}"}
    costs = client.admin.organization.usage.costs(start_time=int(since.timestamp()), group_by=["line_item"])
    return {"requests": sum(r.num_model_requests for r in results),
            "input_tokens": sum(r.input_uncached_tokens for r in results),
            "output_tokens": sum(r.output_tokens for r in results),
            "cache_creation_input_tokens": sum(r.input_cache_write_tokens for r in results),
            "cache_read_input_tokens": sum(r.input_cached_tokens for r in results),
            "cost_nano": sum(int(Decimal(str(r.amount.value)) * 10**9) for b in costs.data for r in b.results)}


def from_anthropic(gateway: str, org: Org, since: datetime, width: str, prefix: str = "/v1") -> dict[str, int]:
    starting_at = since.isoformat().replace("+00:00", "Z")
    usage = anthropic_get(gateway, "usage_report/messages", org.admin, prefix, starting_at=starting_at,
                          bucket_width=width, **{"group_by[]": ["model", "api_key_id"]})
    assert usage.status_code == 200, usage.text
    results = [result for bucket in usage.json()["data"] for result in bucket["results"]]
    assert {result["api_key_id"] for result in results} == {f"apikey_{org.api_key.public_id}"}
    costs = anthropic_get(gateway, "cost_report", org.admin, prefix, starting_at=starting_at)
    assert costs.status_code == 200, costs.text
    return {"requests": None,
            "input_tokens": sum(r["uncached_input_tokens"] for r in results),
            "output_tokens": sum(r["output_tokens"] for r in results),
            "cache_creation_input_tokens": sum(r["cache_creation"]["ephemeral_5m_input_tokens"] for r in results),
            "cache_read_input_tokens": sum(r["cache_read_input_tokens"] for r in results),
            "cost_nano": sum(int(Decimal(r["amount"]) * 10**7) for b in costs.json()["data"] for r in b["results"])}


@pytest.mark.e2e
def test_usage_and_costs_equal_v1_usage_the_dashboard_and_the_ledger_before_and_after_the_rollup(
        gateway, django_db_blocker):
    from django.db.models import Sum

    from billing.models import LedgerEntry

    org = new_org(django_db_blocker)
    since = bucket_floor(timezone.now(), "1m") - timedelta(minutes=1)
    run_mixed_workload(gateway, org, django_db_blocker)
    expected = from_v1_usage(gateway, org)
    assert min(expected.values()) > 0  # cost, and cache writes and reads among the tokens

    def check(label: str) -> None:
        for width in ("1m", "1h", "1d"):
            assert from_openai(gateway, org, since, width) == expected, (label, width)
            assert from_anthropic(gateway, org, since, width) == {**expected, "requests": None}, (label, width)
        dashboard = from_dashboard(org, django_db_blocker)
        assert dashboard == {"requests": expected["requests"], "cost_nano": expected["cost_nano"],
                             "tokens": expected["input_tokens"] + expected["output_tokens"]}

    check("unrolled")  # the rows the rollup task has not counted yet are read as they are
    with django_db_blocker.unblock():
        usage_rollup()
        debits = LedgerEntry.objects.filter(tenant=org.tenant, kind="debit").aggregate(total=Sum("amount_nano"))
        assert -debits["total"] == expected["cost_nano"]
        assert UsageBucket.objects.filter(tenant=org.tenant).exists()
        assert usage_reconcile() == []
    check("rolled up")
    assert from_openai(gateway, org, since, "1d", prefix="/openai/v1") == expected
    assert from_anthropic(gateway, org, since, "1d", prefix="/anthropic/v1")["cost_nano"] == expected["cost_nano"]


@pytest.fixture(scope="module")
def two_orgs(gateway, django_db_blocker):
    """acme and globex, each with an admin key and one request of usage."""
    from tests.support.e2e import HAIKU, chat, say, usage_row

    orgs = new_org(django_db_blocker), new_org(django_db_blocker)
    for org in orgs:
        usage_row(chat(gateway, org.key, model=HAIKU, max_tokens=16, messages=say(3)).headers["x-request-id"],
                  django_db_blocker)
    return orgs


@pytest.mark.e2e
def test_an_admin_key_sees_its_own_organization_only(gateway, two_orgs):
    acme, globex = two_orgs
    since = int((timezone.now() - timedelta(hours=1)).timestamp())
    for org, other in ((acme, globex), (globex, acme)):
        client = openai_admin_client(gateway, org)
        usage = client.admin.organization.usage.completions(start_time=since, group_by=["api_key_id"])
        assert {r.api_key_id for b in usage.data for r in b.results} == {f"key_{org.api_key.public_id}"}
        embeddings = client.admin.organization.usage.embeddings(start_time=since, bucket_width="1h")
        validate("UsageResponse", embeddings.model_dump(mode="json", exclude_unset=True))
        assert [r for b in embeddings.data for r in b.results] == []  # chat only: no embeddings usage
        # Another organization's key or project filters to nothing, and its project is not found.
        filtered = client.admin.organization.usage.completions(start_time=since,
                                                               api_key_ids=[f"key_{other.api_key.public_id}"])
        assert [r for b in filtered.data for r in b.results] == []
        assert [r for b in client.admin.organization.usage.costs(
            start_time=since, project_ids=[f"proj_{other.tenant.slug}"]).data for r in b.results] == []
        import openai

        with pytest.raises(openai.NotFoundError):
            client.admin.organization.projects.api_keys.list(f"proj_{other.tenant.slug}")
        keys = client.admin.organization.projects.api_keys.list(f"proj_{org.tenant.slug}")
        assert [key.id for key in keys.data] == [f"key_{org.api_key.public_id}"]
        assert [key.name for key in client.admin.organization.admin_api_keys.list().data] == ["finance export"]
        listed = anthropic_get(gateway, "api_keys", org.admin, status="active").json()
        assert [key["id"] for key in listed["data"]] == [f"apikey_{org.api_key.public_id}"]
        report = anthropic_get(gateway, "usage_report/messages", org.admin,
                               starting_at=(timezone.now() - timedelta(hours=1)).isoformat(),
                               **{"group_by[]": "api_key_id", "bucket_width": "1h"}).json()
        assert {r["api_key_id"] for b in report["data"] for r in b["results"]} == {f"apikey_{org.api_key.public_id}"}


@pytest.mark.e2e
def test_key_lists_validate_against_the_spec_and_the_anthropic_sdk_reads_them(gateway, two_orgs, django_db_blocker):
    import anthropic
    import httpx

    from accounts.services import api_key_revoke

    acme, _ = two_orgs
    with django_db_blocker.unblock():
        revoked = api_key_issue(tenant=acme.tenant, name="old").api_key
        api_key_revoke(api_key=revoked)
    headers = {"Authorization": f"Bearer {acme.admin}"}
    for path, schema in (("admin_api_keys", "ApiKeyList"), ("projects", "ProjectListResponse"),
                         (f"projects/proj_{acme.tenant.slug}", "Project"),
                         (f"projects/proj_{acme.tenant.slug}/api_keys", "ProjectApiKeyListResponse")):
        response = httpx.get(f"{gateway}/v1/organization/{path}", headers=headers)
        assert response.status_code == 200, (path, response.text)
        validate(schema, response.json())
    project_keys = httpx.get(f"{gateway}/v1/organization/projects/proj_{acme.tenant.slug}/api_keys",
                             headers=headers).json()
    assert [key["id"] for key in project_keys["data"]] == [f"key_{acme.api_key.public_id}"]  # revoked keys are gone

    client = anthropic.Anthropic(base_url=gateway, api_key=acme.admin, max_retries=0)
    keys = client.organization.api_keys.list()
    assert [(key.id, key.status) for key in keys.data] == [(f"apikey_{acme.api_key.public_id}", "active"),
                                                         (f"apikey_{revoked.public_id}", "archived")]
    assert keys.data[0].partial_key_hint == acme.api_key.display
    assert [key.id for key in client.organization.api_keys.list(status="archived").data] == [
        f"apikey_{revoked.public_id}"]
    first = client.organization.api_keys.list(limit=1)
    assert first.has_more and [key.id for key in client.organization.api_keys.list(
        after_id=first.data[0].id).data] == [f"apikey_{revoked.public_id}"]
    assert [key.id for key in client.organization.api_keys.list(before_id=f"apikey_{revoked.public_id}").data] == [
        f"apikey_{acme.api_key.public_id}"]


@pytest.mark.e2e
def test_credentials_other_than_a_live_admin_key_are_refused_in_each_protocols_shape(gateway, two_orgs,
                                                                                       django_db_blocker):
    import httpx

    from accounts.models import AdminKey
    from accounts.services import admin_key_issue, credential_revoke

    acme, _ = two_orgs
    with django_db_blocker.unblock():
        issued = admin_key_issue(tenant=acme.tenant, name="to revoke", actor=acme.owner)
        credential_revoke(credential=AdminKey.objects.get(pk=issued.credential.pk))
    since = int(timezone.now().timestamp()) - 60
    for credential in (None, acme.key, issued.plaintext, "sk_cdx_admin_nonsense"):
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        response = httpx.get(f"{gateway}/v1/organization/usage/completions", params={"start_time": since},
                             headers=headers)
        assert response.status_code == 401, credential
        validate("ErrorResponse", response.json())
        for prefix in ("/v1", "/anthropic/v1"):
            refused = anthropic_get(gateway, "cost_report", credential or "", prefix, starting_at="2026-11-01T00:00:00Z")
            assert refused.status_code == 401
            assert refused.json()["type"] == "error" and refused.json()["error"]["type"] == "authentication_error"


@pytest.mark.e2e
@pytest.mark.parametrize("path, query, param", [
    ("usage/completions", {"start_time": "0"}, "start_time"),
    ("usage/completions", {"start_time": "1764547200", "limit": str(10**9)}, "limit"),
    ("usage/embeddings", {"start_time": "1764547200", "bucket_width": "1s"}, "bucket_width"),
    ("usage/completions", {"start_time": "1764547200", "group_by": "planet"}, "group_by"),
    ("costs", {"start_time": "1764547200", "bucket_width": "1h"}, "bucket_width"),
    ("admin_api_keys", {"limit": "-1"}, "limit"),
])
def test_bad_openai_queries_are_400s_in_openais_shape(gateway, two_orgs, path, query, param):
    import httpx

    response = httpx.get(f"{gateway}/v1/organization/{path}", params=query,
                         headers={"Authorization": f"Bearer {two_orgs[0].admin}"})
    assert response.status_code == 400
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == param


@pytest.mark.e2e
@pytest.mark.parametrize("path, query", [
    ("usage_report/messages", {"starting_at": "0000-01-01T00:00:00Z"}),
    ("usage_report/messages", {"starting_at": "2026-11-01T00:00:00Z", "limit": str(10**9)}),
    ("usage_report/messages", {"starting_at": "2026-11-01T00:00:00Z", "group_by[]": "speed"}),
    ("cost_report", {"starting_at": "2026-11-01T00:00:00Z", "bucket_width": "1m"}),
    ("api_keys", {"limit": "1001"}),
    ("api_keys", {"status": "lost"}),
])
def test_bad_anthropic_queries_are_400s_in_anthropics_shape(gateway, two_orgs, path, query):
    response = anthropic_get(gateway, path, two_orgs[0].admin, **query)
    assert response.status_code == 400
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.e2e
def test_unknown_admin_paths_are_404s_in_each_protocols_shape(gateway, two_orgs):
    import httpx

    openai_404 = httpx.get(f"{gateway}/v1/organization/users", headers={"Authorization": f"Bearer {two_orgs[0].admin}"})
    assert openai_404.status_code == 404
    validate("ErrorResponse", openai_404.json())
    anthropic_404 = anthropic_get(gateway, "workspaces", two_orgs[0].admin)
    assert anthropic_404.status_code == 404 and anthropic_404.json()["error"]["type"] == "not_found_error"
