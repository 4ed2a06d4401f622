"""Monthly statements reconcile with the ledger to the nano-USD, as PDF and CSV."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from datetime import UTC, date, datetime

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from accounts.services import api_key_issue
from billing.models import LedgerEntry, Statement, UsageEvent
from billing.services import credit_grant, ledger_adjust, ledger_reverse, usage_rollup
from billing.statements import previous_month, statement_generate, statements_generate_monthly
from billing.tasks import statements_monthly
from gateway.metering.writes import UsageRecord, usage_events_write
from tests.support.dashboard import assert_roles

OCTOBER = date(2026, 10, 1)


def at(monkeypatch, when: datetime) -> None:
    monkeypatch.setattr(timezone, "now", lambda: when)


def usage(tenant, key, request_id: str, *, model: str, cost: int, when: datetime, searches: int = 0) -> UsageRecord:
    return UsageRecord(
        request_id=request_id, tenant_id=tenant.pk, api_key_id=key.pk, endpoint="messages", requested_model=model,
        model=model, upstream_model=model, stream=False, input_tokens=1000, output_tokens=200,
        cache_creation_input_tokens=0, cache_read_input_tokens=30, cost_nano=cost, price_id=None, status="ok",
        http_status=200, error_type="", latency_ms=5, ttft_ms=None, created_at=when, web_search_requests=searches)


@pytest.fixture
def october(team, monkeypatch):
    """Tenant A's ledger: a credit before October; in October a credit, usage of two models by two keys, an
    adjustment and a refund of a debit; a credit in November."""
    tenant = team.tenant_a
    ci, batch = api_key_issue(tenant=tenant, name="ci").api_key, api_key_issue(tenant=tenant, name="batch").api_key
    at(monkeypatch, datetime(2026, 9, 15, tzinfo=UTC))
    credit_grant(tenant=tenant, amount_nano=100_000_000_000, reason="September top-up")
    at(monkeypatch, datetime(2026, 10, 2, 9, tzinfo=UTC))
    credit_grant(tenant=tenant, amount_nano=20_000_000_001, reason="October top-up")
    oct3 = datetime(2026, 10, 3, 12, tzinfo=UTC)
    usage_events_write([usage(tenant, ci, "req_s1", model="claude-sonnet-4-6", cost=1_234_567_891, when=oct3),
                        usage(tenant, ci, "req_s2", model="claude-sonnet-4-6", cost=7, when=oct3),
                        usage(tenant, batch, "req_h1", model="claude-haiku-4-5", cost=10_000_333, when=oct3,
                              searches=1)])
    at(monkeypatch, oct3)
    usage_rollup()
    first_debit = LedgerEntry.objects.get(tenant=tenant, kind="debit")
    oct20 = datetime(2026, 10, 20, tzinfo=UTC)
    usage_events_write([usage(tenant, batch, "req_h2", model="claude-haiku-4-5", cost=999_999_999, when=oct20)])
    at(monkeypatch, oct20)
    usage_rollup()
    at(monkeypatch, datetime(2026, 10, 25, tzinfo=UTC))
    ledger_adjust(tenant=tenant, amount_nano=-1_500_000_000, reason="Support plan, October")
    at(monkeypatch, datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))
    ledger_reverse(entry=first_debit, reason="Outage on Oct 3")
    at(monkeypatch, datetime(2026, 11, 2, tzinfo=UTC))
    credit_grant(tenant=tenant, amount_nano=5_000_000_000, reason="November top-up")
    monkeypatch.undo()
    return tenant


def test_a_statement_reconciles_with_the_ledger_to_the_nano_usd(october):
    statement = statement_generate(tenant=october, month=OCTOBER)
    debits = 1_234_567_891 + 7 + 10_000_333 + 999_999_999
    assert statement.opening_nano == 100_000_000_000
    assert statement.credits_nano == 20_000_000_001
    assert statement.usage_nano == -debits
    assert statement.refunds_nano == 1_234_567_891 + 7 + 10_000_333
    assert statement.adjustments_nano == -1_500_000_000
    last_october = LedgerEntry.objects.filter(tenant=october, created_at__lt=datetime(2026, 11, 1, tzinfo=UTC)).first()
    assert statement.closing_nano == last_october.balance_after_nano == 100_000_000_000 + 20_000_000_001 - debits \
        + 1_244_568_231 - 1_500_000_000
    assert statement_generate(tenant=october, month=OCTOBER).pk == statement.pk  # made once, then kept


def test_the_csv_lists_every_figure_and_its_lines_sum_to_the_change_of_balance(october):
    statement = statement_generate(tenant=october, month=OCTOBER)
    rows = list(csv.DictReader(io.StringIO(statement.csv)))
    assert (rows[0]["section"], int(rows[0]["amount_nano"])) == ("opening_balance", statement.opening_nano)
    assert (rows[-1]["section"], int(rows[-1]["amount_nano"])) == ("closing_balance", statement.closing_nano)
    lines = rows[1:-1]
    assert sum(int(row["amount_nano"]) for row in lines) == statement.closing_nano - statement.opening_nano
    assert [row["section"] for row in lines] == ["credit", "adjustment", "refund", "usage", "usage"]
    by_line = {(row["model"], row["api_key"].split(" ")[0]): row for row in lines if row["section"] == "usage"}
    haiku = by_line[("claude-haiku-4-5", "batch")]
    assert (haiku["requests"], haiku["web_search_requests"], haiku["amount_nano"]) == ("2", "1", "-1010000332")
    assert haiku["amount_usd"] == "-1.010000332"
    assert by_line[("claude-sonnet-4-6", "ci")]["input_tokens"] == "2000"
    assert "November" not in statement.csv


def pdf_text(pdf: bytes) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def test_the_pdf_shows_balances_usage_per_model_and_key_and_the_entries(october):
    text = pdf_text(bytes(statement_generate(tenant=october, month=OCTOBER).pdf))
    assert "Statement October 2026" in text and "Acme" in text
    for line in ("Opening balance", "$100.00", "Credits", "$20.00", "Adjustments", "-$1.50", "Closing balance"):
        assert line in text
    assert "claude-haiku-4-5" in text and "claude-sonnet-4-6" in text and "batch" in text and "ci (" in text
    assert "Support plan, October" in text and "Reverses #3: Outage on Oct 3" in text


def test_the_monthly_task_makes_last_months_statements_once(october):
    assert settings.CELERY_BEAT_SCHEDULE["statements-monthly"]["task"] == "billing.tasks.statements_monthly"
    november_1st = datetime(2026, 11, 1, 0, 10, tzinfo=UTC)
    assert statements_generate_monthly(now=november_1st) >= 1
    assert statements_generate_monthly(now=november_1st) == 0
    assert Statement.objects.filter(tenant=october, month=OCTOBER).count() == 1
    statements_monthly.apply(throw=True)  # the task: the month that ended last
    assert Statement.objects.filter(tenant=october, month=previous_month(datetime.now(UTC))).exists()
    with pytest.raises(ValueError, match="not ended"):
        statement_generate(tenant=october, month=datetime.now(UTC).date().replace(day=1))


def test_statements_are_listed_and_downloaded_by_owners_and_admins_only(october, client_for, team):
    statement = statement_generate(tenant=october, month=OCTOBER)
    assert_roles(client_for, reverse("statements"), {"admin", "owner"})
    page = client_for("admin").get(reverse("statements")).content.decode()
    assert "October 2026" in page
    pdf = client_for("owner").get(reverse("statement-download", args=[statement.pk, "pdf"]))
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert "statement-2026-10" in pdf["Content-Disposition"]
    assert client_for("owner").get(reverse("statement-download", args=[statement.pk, "csv"])).content.decode() \
        == statement.csv
    assert client_for("member").get(reverse("statement-download", args=[statement.pk, "csv"])).status_code == 403
    assert client_for("outsider").get(reverse("statement-download", args=[statement.pk, "pdf"])).status_code == 404


def test_the_billing_page_links_the_latest_statements(october, client_for):
    assert "first arrives on the 1st" in client_for("owner").get(reverse("billing")).content.decode()
    statement = statement_generate(tenant=october, month=OCTOBER)
    page = client_for("admin").get(reverse("billing")).content.decode()
    assert "October 2026" in page and reverse("statement-download", args=[statement.pk, "pdf"]) in page
