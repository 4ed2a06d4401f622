"""Operator commands: the same limits and checks as the console, clear errors naming the bad option."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey, AuditEntry, Tenant
from accounts.services import tenant_create, tenant_set_status
from billing.models import LedgerEntry
from billing.selectors import tenant_balance_nano

pytestmark = pytest.mark.django_db

SONNET = "claude-sonnet-4-6"


@pytest.fixture
def acme():
    return tenant_create(slug="cmd-acme", name="Acme")


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- create_key --------------------------------------------------------------------------------------------


def test_create_key_takes_every_limit_the_console_takes(acme):
    before = timezone.now()
    out = run("create_key", "cmd-acme", "--name", "deploy", "--models", f"{SONNET}, gpt-4o,", "--rpm", "60",
              "--tpm", "100000", "--budget-usd", "12.345", "--budget-period", "day", "--expires-in-days", "30")
    plaintext = out.strip().splitlines()[-1]
    public_id, secret = keys.parse(plaintext)
    key = ApiKey.objects.get(tenant=acme)
    assert key.public_id == public_id and keys.matches(secret, key.secret_digest)
    assert (key.name, key.allowed_models, key.rpm_limit, key.tpm_limit, key.budget_nano, key.budget_period) == (
        "deploy", [SONNET, "gpt-4o"], 60, 100000, 12_345_000_000, "day")
    assert before + timedelta(days=30) <= key.expires_at <= timezone.now() + timedelta(days=30)
    entry = AuditEntry.objects.get(action="key.issue", api_key=key)
    assert (entry.actor, entry.via) == (None, "command")


def test_create_key_without_options_issues_an_unlimited_key(acme):
    plaintext = run("create_key", "cmd-acme").strip().splitlines()[-1]
    assert keys.parse(plaintext)
    key = ApiKey.objects.get(tenant=acme)
    assert (key.allowed_models, key.rpm_limit, key.tpm_limit, key.budget_nano, key.budget_period, key.expires_at) == (
        [], None, None, None, "month", None)


@pytest.mark.parametrize(("args", "error"), [
    (["--rpm", "0"], "--rpm: Ensure this value is greater than or equal to 1."),
    (["--rpm", "many"], "--rpm: Enter a whole number."),
    (["--tpm", "-5"], "--tpm: Ensure this value is greater than or equal to 1."),
    (["--tpm", "99999999999"], "--tpm: Ensure this value is less than or equal to 2147483647."),
    (["--models", f"{SONNET},gpt-9"], "--models: Not in the catalog: gpt-9."),
    (["--budget-usd", "ten"], "--budget-usd: Enter a number."),
    (["--budget-usd", "0"], "--budget-usd: A budget must be more than 0 USD"),
    (["--budget-usd", "0.0000000001"], "--budget-usd: Ensure that there are no more than 9 decimal places."),
    (["--budget-period", "week"], "--budget-period: Select a valid choice."),
    (["--expires-in-days", "0"], "--expires-in-days: The expiry must be in the future."),
    (["--expires-in-days", "-3"], "--expires-in-days: The expiry must be in the future."),
    (["--expires-in-days", "soon"], "--expires-in-days: 'soon' is not a whole number of days."),
    (["--expires-in-days", "9" * 12], "--expires-in-days: '999999999999' is not a whole number of days."),
    (["--name", "x" * 101], "--name: Ensure this value has at most 100 characters"),
])
def test_create_key_names_the_bad_option_and_issues_nothing(acme, args, error):
    with pytest.raises(CommandError) as caught:
        run("create_key", "cmd-acme", *args)
    assert error in str(caught.value)
    assert not ApiKey.objects.exists()


def test_create_key_reports_every_bad_option_at_once(acme):
    with pytest.raises(CommandError) as caught:
        run("create_key", "cmd-acme", "--rpm", "0", "--models", "gpt-9", "--budget-usd", "x")
    assert {line.split(":")[0] for line in str(caught.value).splitlines()} == {"--rpm", "--models", "--budget-usd"}


def test_create_key_refuses_unknown_and_suspended_tenants(acme):
    with pytest.raises(CommandError, match="No tenant with slug 'ghost'"):
        run("create_key", "ghost")
    tenant_set_status(tenant=acme, status=Tenant.Status.SUSPENDED)
    with pytest.raises(CommandError, match="is suspended; no keys can be issued"):
        run("create_key", "cmd-acme")
    assert not ApiKey.objects.exists()


# --- grant_credit ------------------------------------------------------------------------------------------


def test_grant_credit_posts_a_ledger_credit_with_its_reason(acme):
    out = run("grant_credit", "cmd-acme", "12.50", "--reason", "March top-up")
    entry = LedgerEntry.objects.get(tenant=acme)
    assert (entry.kind, entry.amount_nano, entry.reason, entry.created_by) == ("credit", 12_500_000_000,
                                                                               "March top-up", None)
    logged = AuditEntry.objects.get(action="ledger.credit", tenant=acme)
    assert (logged.via, logged.details["reason"]) == ("command", "March top-up")
    assert "ledger entry #1" in out and "balance 12.5 USD" in out

    run("grant_credit", "cmd-acme", "0.000000001", "--reason", "exact to the nano")
    assert tenant_balance_nano(acme.pk) == 12_500_000_001


@pytest.mark.parametrize(("usd", "reason", "error"), [
    ("ten", "top-up", "usd: 'ten' is not an amount in USD."),
    ("1.0000000001", "top-up", "usd: '1.0000000001' has more than 9 decimal places."),
    ("-5", "top-up", "usd: A credit must be a positive amount."),
    ("0", "top-up", "usd: A credit must be a positive amount."),
    ("5000000000", "top-up", "usd: The amount cannot be more than 1000000000.0 USD."),
    ("5", "   ", "--reason: This field is required."),
    ("5", "x" * 451, "--reason: Ensure this value has at most 450 characters"),
])
def test_grant_credit_refuses_bad_input_and_posts_nothing(acme, usd, reason, error):
    with pytest.raises(CommandError) as caught:
        run("grant_credit", "cmd-acme", usd, "--reason", reason)
    assert error in str(caught.value)
    assert not LedgerEntry.objects.exists()


def test_grant_credit_needs_a_reason_and_a_known_tenant(acme):
    with pytest.raises(CommandError, match="--reason"):
        run("grant_credit", "cmd-acme", "5")
    with pytest.raises(CommandError, match="No tenant with slug 'ghost'"):
        run("grant_credit", "ghost", "5", "--reason", "top-up")
    assert not LedgerEntry.objects.exists()


# --- suspend_tenant / resume_tenant ------------------------------------------------------------------------


def test_suspend_and_resume_tenant(acme):
    assert run("suspend_tenant", "cmd-acme").strip() == "Tenant cmd-acme is now suspended."
    assert Tenant.objects.get(pk=acme.pk).status == Tenant.Status.SUSPENDED
    assert AuditEntry.objects.get(action="tenant.suspend", tenant=acme).via == "command"

    # Re-running a deployment script is harmless: no second change, no second audit row.
    assert run("suspend_tenant", "cmd-acme").strip() == "Tenant cmd-acme is already suspended."
    assert AuditEntry.objects.filter(action="tenant.suspend").count() == 1

    assert run("resume_tenant", "cmd-acme").strip() == "Tenant cmd-acme is now active."
    assert Tenant.objects.get(pk=acme.pk).status == Tenant.Status.ACTIVE
    assert AuditEntry.objects.get(action="tenant.resume", tenant=acme).via == "command"
    assert run("resume_tenant", "cmd-acme").strip() == "Tenant cmd-acme is already active."


@pytest.mark.parametrize("command", ["suspend_tenant", "resume_tenant"])
def test_status_commands_refuse_an_unknown_tenant(command):
    with pytest.raises(CommandError, match="No tenant with slug 'ghost'"):
        run(command, "ghost")
