"""The console's usage list reads a page of rows, never the whole table: no full count, no DISTINCT, a
period filter on the partition key, exact search by request id (docs/performance.md, "Months of data")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import api_key_issue
from billing import admin as billing_admin
from tests.support.rows import usage_event

pytestmark = pytest.mark.django_db

USAGE = "/admin/billing/usageevent/"


def usage_queries(client, url) -> tuple[object, list[str]]:
    """The page and the SQL it ran against the usage table."""
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    assert page.status_code == 200, url
    return page, [q["sql"] for q in queries.captured_queries if 'FROM "billing_usageevent"' in q["sql"]]


def assert_bounded(sql: list[str], *, paged: bool = False) -> None:
    """Every read of the usage table is a count of at most COUNT_CAP + 1 rows or the rows shown (a page of
    them, or all of them when they fit on one), and none lists the table's distinct values (the old model,
    endpoint and date-hierarchy choices)."""
    counts = [statement for statement in sql if "COUNT(" in statement.upper()]
    assert len(counts) == 1, sql  # one count, capped: not Django's second, full one
    assert re.search(rf"LIMIT {billing_admin.COUNT_CAP + 1}\b", counts[0]), counts[0]
    for statement in sql:
        assert "DISTINCT" not in statement.upper(), statement
        if paged and statement not in counts:
            assert re.search(r"LIMIT \d+", statement), statement


def test_the_list_counts_a_capped_number_of_rows_and_lists_no_distinct_values(admin_client, acme):
    key = api_key_issue(tenant=acme).api_key
    usage_event(key)
    page, sql = usage_queries(admin_client, USAGE)
    assert_bounded(sql)
    assert len(sql) == 2  # the capped count and the page
    sidebar = page.content.decode().split('id="changelist-filter"')[1]
    for choice in ("Last 7 days", f"{timezone.now():%B %Y}", "chat.completions", "gemini.generateContent",
                   "claude-sonnet-4-6"):
        assert choice in sidebar, choice  # choices from the catalog, the endpoints and the months
    assert "1 usage event" in page.content.decode()


def test_the_number_of_queries_does_not_grow_with_the_rows_shown(admin_client, acme, globex):
    keys = [api_key_issue(tenant=tenant).api_key for tenant in (acme, globex, acme)]
    usage_event(keys[0])
    with CaptureQueriesContext(connection) as one:
        admin_client.get(USAGE)
    for i in range(30):
        usage_event(keys[i % 3], model="claude-haiku-4-5" if i % 2 else "claude-sonnet-4-6")
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(USAGE)
    assert len(page.context["cl"].result_list) == 31
    assert len(many) == len(one)  # tenants and keys come with the rows (list_select_related)


def test_past_the_cap_the_list_says_more_than_and_pages_within_it(admin_client, acme, monkeypatch):
    monkeypatch.setattr(billing_admin, "COUNT_CAP", 3)
    monkeypatch.setattr(billing_admin.UsageEventAdmin, "list_per_page", 2)  # the cap is above a page, as in use
    key = api_key_issue(tenant=acme).api_key
    for _ in range(5):
        usage_event(key)
    page, sql = usage_queries(admin_client, USAGE)
    assert_bounded(sql, paged=True)
    assert page.context["cl"].result_count == 3
    assert "More than 3 usage events" in page.content.decode()
    assert len(page.context["cl"].result_list) == 2 and page.context["cl"].paginator.num_pages == 2
    few, _ = usage_queries(admin_client, f"{USAGE}?q=nothing-matches")
    assert "0 usage events" in few.content.decode() and "More than" not in few.content.decode()


def test_the_period_filter_selects_months_days_and_recent_windows(admin_client, acme):
    key = api_key_issue(tenant=acme).api_key
    now = timezone.now()
    recent = usage_event(key, at=now - timedelta(hours=2))
    week = usage_event(key, at=now - timedelta(days=5))
    old = usage_event(key, at=now - timedelta(days=40))
    expected = {"24h": [recent], "7d": [recent, week], f"{old.created_at:%Y-%m}": [old],
                f"{week.created_at:%Y-%m-%d}": [week], "2001-13": [], "junk": []}
    for period, rows in expected.items():
        page, sql = usage_queries(admin_client, f"{USAGE}?period={period}")
        assert list(page.context["cl"].result_list) == rows, period
        if rows:  # an invalid period reads nothing
            assert_bounded(sql)
    newest_first = usage_queries(admin_client, USAGE)[0].context["cl"].result_list
    assert list(newest_first) == [recent, week, old]


def test_filters_by_model_and_endpoint_use_fixed_choices(admin_client, acme):
    key = api_key_issue(tenant=acme).api_key
    sonnet = usage_event(key)
    haiku = usage_event(key, model="claude-haiku-4-5")
    assert list(admin_client.get(f"{USAGE}?model=claude-haiku-4-5").context["cl"].result_list) == [haiku]
    assert list(admin_client.get(f"{USAGE}?endpoint=messages").context["cl"].result_list) == [haiku, sonnet]
    assert list(admin_client.get(f"{USAGE}?endpoint=responses").context["cl"].result_list) == []


def test_search_finds_a_request_id_exactly_by_its_index(admin_client, acme):
    key = api_key_issue(tenant=acme).api_key
    row = usage_event(key)
    usage_event(key)
    page, sql = usage_queries(admin_client, f"{USAGE}?q={row.request_id}")
    assert list(page.context["cl"].result_list) == [row]
    assert all("LIKE" not in statement.upper() for statement in sql)  # `request_id = %s`: the unique index
    assert list(admin_client.get(f"{USAGE}?q={row.request_id[:12]}").context["cl"].result_list) == []


def test_only_the_indexed_column_sorts(admin_client, acme):
    usage_event(api_key_issue(tenant=acme).api_key, at=datetime(2026, 1, 1, tzinfo=UTC))
    page = admin_client.get(USAGE).content.decode()
    # A sort by cost or tenant would sort every row of every month: only created_at (its index) is offered.
    assert re.findall(r'<th scope="col" class="sortable[^"]*column-(\w+)', page) == ["created_at"]
