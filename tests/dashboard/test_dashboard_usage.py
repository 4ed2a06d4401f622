"""The usage page's date range, key and model filters, per-day figures and CSV (Django client)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from accounts.services import api_key_issue
from billing.models import UsageEvent

pytestmark = pytest.mark.django_db
USAGE, CSV = "/dashboard/usage/", "/dashboard/usage.csv"
SONNET, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"


def usage(api_key, *, model=SONNET, cost=1_000_000, days_ago=0, tag="") -> UsageEvent:
    return UsageEvent.objects.create(
        request_id=f"req_{tag}{uuid.uuid4().hex[:16]}", tenant_id=api_key.tenant_id, api_key=api_key,
        endpoint="chat.completions", requested_model=model, model=model, upstream_model=model, stream=False,
        input_tokens=100, output_tokens=20, cost_nano=cost, status="ok", http_status=200, latency_ms=5,
        created_at=datetime.now(UTC) - timedelta(days=days_ago))


@pytest.fixture
def keys(team):
    alices = api_key_issue(tenant=team.tenant_a, name="alice-prod", created_by=team.alice).api_key
    carols = api_key_issue(tenant=team.tenant_a, name="carol-dev", created_by=team.carol).api_key
    return alices, carols


def page(client, url=USAGE, **params):
    response = client.get(url, params)
    return response.status_code, response.content.decode()


def today():
    return datetime.now(UTC).date()


def test_the_date_range_picks_which_days_are_shown(client_for, keys):
    alices, _ = keys
    usage(alices, days_ago=40, tag="old", cost=7 * 10**9)
    usage(alices, tag="new")
    status, default = page(client_for("owner"))
    assert status == 200 and "req_old" not in default and "req_new" in default and "30 days" in default
    assert f'value="{(today() - timedelta(days=29)).isoformat()}"' in default  # the picker shows the default range
    start, end = today() - timedelta(days=45), today() - timedelta(days=35)
    status, old = page(client_for("owner"), start=start.isoformat(), end=end.isoformat())
    assert status == 200 and "req_old" in old and "req_new" not in old
    assert "$7.00" in old and "11 days" in old
    assert f'value="{start.isoformat()}"' in old  # the picker keeps the range


@pytest.mark.parametrize(("params", "error"), [
    ({"start": "2026-02-30"}, "Enter a valid date."),
    ({"start": "yesterday"}, "Enter a valid date."),
    ({"end": (datetime.now(UTC).date() + timedelta(days=2)).isoformat()}, "cannot end after today"),
    ({"end": "9999-12-31"}, "cannot end after today"),
    ({"start": (datetime.now(UTC).date() - timedelta(days=1)).isoformat(),
      "end": (datetime.now(UTC).date() - timedelta(days=3)).isoformat()}, "The start must be on or before the end."),
    ({"start": "0001-01-01"}, "Choose at most 366 days."),
    ({"start": (datetime.now(UTC).date() - timedelta(days=366)).isoformat()}, "Choose at most 366 days."),
    ({"key": "not-a-number"}, "Select a valid choice."),
    ({"model": "no-such-model"}, "Select a valid choice."),
])
def test_bad_or_absurd_filters_are_a_form_error_on_the_page_and_the_csv(client_for, keys, params, error):
    usage(keys[0])
    status, body = page(client_for("owner"), **params)
    assert status == 400 and error in body and 'role="alert"' in body
    assert "req_" in body  # the page still shows the default 30 days below the error
    status, body = page(client_for("owner"), CSV, **params)
    assert status == 400 and error in body


def test_a_full_year_is_the_largest_range(client_for, keys):
    status, _ = page(client_for("owner"), start=(today() - timedelta(days=365)).isoformat())
    assert status == 200


def test_key_and_model_filters_narrow_charts_tables_and_totals(client_for, keys):
    alices, carols = keys
    usage(alices, tag="alice", cost=2 * 10**9)
    usage(carols, tag="carolhaiku", model=HAIKU, cost=3 * 10**9)
    usage(carols, tag="carolsonnet", cost=5 * 10**9)
    status, body = page(client_for("owner"), key=carols.pk)
    assert status == 200 and "req_alice" not in body and "req_carolhaiku" in body and "$8.00" in body
    status, body = page(client_for("owner"), key=carols.pk, model=HAIKU)
    assert status == 200 and "req_carolhaiku" in body and "req_carolsonnet" not in body
    assert 'data-testid="total-cost">$3.00' in body


def test_a_member_can_filter_only_by_her_own_keys(client_for, keys):
    alices, carols = keys
    usage(alices, tag="alice")
    status, body = page(client_for("member"))
    assert "alice-prod" not in body  # not even offered in the key picker
    status, body = page(client_for("member"), key=alices.pk)
    assert status == 400 and "Select a valid choice." in body and "req_alice" not in body
    status, body = page(client_for("member"), CSV, key=alices.pk)
    assert status == 400 and "req_alice" not in body


def test_every_day_has_its_labelled_figures_and_the_charts_have_date_axes(client_for, keys):
    alices, _ = keys
    usage(alices, days_ago=2, cost=1_250_000_000)
    start = today() - timedelta(days=6)
    status, body = page(client_for("owner"), start=start.isoformat())
    assert status == 200
    table = body.split('data-testid="per-day"')[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 7  # the header and each of the 7 days, zero days too
    two_days_ago = today() - timedelta(days=2)
    assert f'{two_days_ago.strftime("%a %b %-d, %Y")}</th><td data-label="Requests">1</td>' in table
    assert "$1.25" in table
    svg = body.split("<svg")[1].split("</svg>")[0]
    assert f">{start.strftime('%b %-d')}</text>" in svg  # the date axis
    assert 'class="value">$1.25</text>' in svg  # a short range: the day's total written on its bar
    assert f"<title>{two_days_ago.isoformat()} {SONNET}: $1.25</title>" in svg


def test_the_csv_has_a_row_per_day_key_and_model_with_the_keys_name_and_id(client_for, keys):
    alices, carols = keys
    usage(alices, cost=2 * 10**9)
    usage(carols, model=HAIKU, cost=3 * 10**9)
    usage(carols, model=HAIKU, cost=1 * 10**9, days_ago=1)
    response = client_for("owner").get(CSV)
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0])[:4] == ["date", "key", "key_id", "model"]
    got = {(r["date"], r["key"], r["key_id"], r["model"], r["requests"], r["cost_usd"]) for r in rows}
    now, yesterday = today().isoformat(), (today() - timedelta(days=1)).isoformat()
    assert got == {(now, "alice-prod", alices.public_id, SONNET, "1", "2.0"),
                   (now, "carol-dev", carols.public_id, HAIKU, "1", "3.0"),
                   (yesterday, "carol-dev", carols.public_id, HAIKU, "1", "1.0")}
    response = client_for("owner").get(CSV, {"key": alices.pk})
    assert {r["key"] for r in csv.DictReader(io.StringIO(response.content.decode()))} == {"alice-prod"}
    response = client_for("member").get(CSV)
    assert {r["key"] for r in csv.DictReader(io.StringIO(response.content.decode()))} == {"carol-dev"}
