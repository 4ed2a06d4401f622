"""The operators' console: every write goes through a service as the operator, and no page shows a secret."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey, AuditEntry, Membership, Tenant
from accounts.services import api_key_issue, api_key_rotate, membership_set, tenant_set_status
from billing.models import LedgerEntry, ModelPrice, UsageEvent, UsageRollup
from billing.selectors import tenant_balance_nano
from billing.services import credit_grant, ledger_post
from gateway.models import CatalogModel
from tests.support.rows import catalog_form, usage_event

pytestmark = pytest.mark.django_db

TENANTS = "/admin/accounts/tenant/"
KEYS = "/admin/accounts/apikey/"
AUDIT = "/admin/accounts/auditentry/"
LEDGER = "/admin/billing/ledgerentry/"
USAGE = "/admin/billing/usageevent/"
ROLLUPS = "/admin/billing/usagerollup/"
SONNET = "claude-sonnet-4-6"
PLAINTEXT_RE = re.compile(r"sk_cdx_[a-z0-9]{16}_[A-Za-z0-9]{32}")
USD = 10**9


def act(client, url, action, objects, *, follow=False, **form):
    """Run an admin action on `objects`; with `form`, submit its intermediate page as well."""
    data = {"action": action, "_selected_action": [obj.pk for obj in objects]}
    if form:
        data |= {"apply": "Apply", **form}
    return client.post(url, data, follow=follow)


def text(response) -> str:
    return response.content.decode()


def audit(action, **filters) -> AuditEntry:
    return AuditEntry.objects.get(action=action, **filters)


def results(client, url) -> list:
    """The rows a changelist shows (its filter sidebar lists every tenant, model and action)."""
    response = client.get(url)
    assert response.status_code == 200, url
    return list(response.context["cl"].result_list)


def input_tag(page: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', page)
    assert match, f"no input {name}"
    return match.group(0)


# --- Tenants -----------------------------------------------------------------------------------------------


def test_tenant_list_shows_status_balance_and_credit_limit_in_usd(admin_client, acme, globex):
    credit_grant(tenant=acme, amount_nano=12_500_000_000, reason="seed")
    tenant_set_status(tenant=globex, status=Tenant.Status.SUSPENDED)
    Tenant.objects.filter(pk=globex.pk).update(credit_limit_nano=None)
    page = text(admin_client.get(TENANTS))
    acme_row = next(row for row in page.split("<tr") if "console-acme" in row)
    globex_row = next(row for row in page.split("<tr") if "console-globex" in row)
    assert "$12.50" in acme_row and "Active" in acme_row and "$0.00" in acme_row
    assert "Suspended" in globex_row and "none (invoiced)" in globex_row


def test_suspend_and_resume_go_through_the_service_as_the_operator_with_a_reason(admin_client, admin_user, acme):
    page = text(act(admin_client, TENANTS, "suspend", [acme]))
    assert 'name="reason"' in page and Tenant.objects.get(pk=acme.pk).status == Tenant.Status.ACTIVE
    response = act(admin_client, TENANTS, "suspend", [acme], reason="")
    assert response.status_code == 200 and "This field is required." in text(response)
    assert Tenant.objects.get(pk=acme.pk).status == Tenant.Status.ACTIVE

    assert act(admin_client, TENANTS, "suspend", [acme], reason="chargeback #7").status_code == 302
    assert Tenant.objects.get(pk=acme.pk).status == Tenant.Status.SUSPENDED
    entry = audit("tenant.suspend", tenant=acme)
    assert (entry.actor, entry.via, entry.details) == (admin_user, "admin", {"reason": "chargeback #7"})

    act(admin_client, TENANTS, "suspend", [acme], reason="again")  # already suspended: nothing recorded
    assert AuditEntry.objects.filter(action="tenant.suspend", tenant=acme).count() == 1

    act(admin_client, TENANTS, "resume", [acme], reason="paid")
    assert Tenant.objects.get(pk=acme.pk).status == Tenant.Status.ACTIVE
    assert audit("tenant.resume", tenant=acme).actor == admin_user


def test_grant_credit_asks_for_amount_and_reason_then_posts_a_credit(admin_client, admin_user, acme):
    page = text(act(admin_client, TENANTS, "grant_credit", [acme]))
    assert 'name="amount"' in page and 'name="reason"' in page and "console-acme" in page
    assert not LedgerEntry.objects.filter(tenant=acme).exists()

    response = act(admin_client, TENANTS, "grant_credit", [acme], amount="12.50", reason="March top-up")
    assert response.status_code == 302
    entry = LedgerEntry.objects.get(tenant=acme)
    assert (entry.kind, entry.amount_nano, entry.reason, entry.created_by) == (
        LedgerEntry.Kind.CREDIT, 12_500_000_000, "March top-up", admin_user)
    logged = audit("ledger.credit", tenant=acme)
    assert (logged.actor, logged.via, logged.details["reason"]) == (admin_user, "admin", "March top-up")
    assert "$12.50" in text(admin_client.get(TENANTS))
    assert "$12.50" in text(admin_client.get(f"{TENANTS}{acme.pk}/change/"))


@pytest.mark.parametrize(("amount", "reason", "error"), [
    ("-5", "oops", "A credit must be a positive amount."),
    ("0", "oops", "A credit must be a positive amount."),
    ("ten", "oops", "is not an amount in USD"),
    ("1.0000000001", "oops", "more than 9 decimal places"),
    ("5000000000", "oops", "cannot be more than"),
    ("5", "", "This field is required."),
])
def test_grant_credit_refuses_bad_input_and_posts_nothing(admin_client, acme, amount, reason, error):
    response = act(admin_client, TENANTS, "grant_credit", [acme], amount=amount, reason=reason)
    assert response.status_code == 200 and error in text(response)
    assert not LedgerEntry.objects.filter(tenant=acme).exists()


def test_post_adjustment_takes_either_sign_but_not_zero(admin_client, admin_user, acme):
    credit_grant(tenant=acme, amount_nano=10 * USD, reason="seed")
    response = act(admin_client, TENANTS, "post_adjustment", [acme], amount="0", reason="nothing")
    assert response.status_code == 200 and "An adjustment cannot be zero." in text(response)

    act(admin_client, TENANTS, "post_adjustment", [acme], amount="-3.20", reason="overcharge on the 3rd")
    entry = LedgerEntry.objects.get(tenant=acme, kind=LedgerEntry.Kind.ADJUSTMENT)
    assert (entry.amount_nano, entry.balance_after_nano) == (-3_200_000_000, 6_800_000_000)
    assert audit("ledger.adjust", tenant=acme).details["amount_nano"] == -3_200_000_000
    assert tenant_balance_nano(acme.pk) == 6_800_000_000


def tenant_form(tenant=None, **changes) -> dict:
    form = {"name": tenant.name if tenant else "", "credit_limit_usd": "0", "store_conversations": "on",
            "conversation_retention_days": 7, "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0}
    return {**form, **changes}


def test_tenants_are_created_and_edited_through_the_services(admin_client, admin_user):
    response = admin_client.post(f"{TENANTS}add/", tenant_form(slug="console-new", name="New Co", credit_limit_usd=""))
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>.{0,300}", text(response), re.S)
    tenant = Tenant.objects.get(slug="console-new")
    assert tenant.credit_limit_nano is None  # empty: no balance check
    assert audit("tenant.create", tenant=tenant).actor == admin_user

    page = text(admin_client.get(f"{TENANTS}{tenant.pk}/change/"))
    assert 'value="console-new"' not in page  # the slug is not editable once created
    response = admin_client.post(f"{TENANTS}{tenant.pk}/change/", tenant_form(tenant, credit_limit_usd="25.5"))
    assert response.status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).credit_limit_nano == 25_500_000_000
    assert audit("tenant.update", tenant=tenant).details == {"credit_limit_nano": [None, 25_500_000_000]}
    assert 'value="25.5"' in text(admin_client.get(f"{TENANTS}{tenant.pk}/change/"))


@pytest.mark.parametrize(("changes", "error"), [
    ({"slug": "console-acme"}, "already exists"),
    ({"slug": "bad slug!"}, "Enter a valid “slug”"),
    ({"slug": "console-neg", "credit_limit_usd": "-1"}, "The amount cannot be negative."),
    ({"slug": "console-neg", "credit_limit_usd": "lots"}, "is not an amount in USD"),
])
def test_tenant_form_refuses_bad_input(admin_client, acme, changes, error):
    response = admin_client.post(f"{TENANTS}add/", tenant_form(name="X", **changes))
    assert response.status_code == 200 and error in text(response)
    assert Tenant.objects.count() == 1


def membership_rows(*rows, initial=0) -> dict:
    data = {"memberships-TOTAL_FORMS": len(rows), "memberships-INITIAL_FORMS": initial}
    for index, row in enumerate(rows):
        data |= {f"memberships-{index}-{field}": value for field, value in row.items()}
    return data


def test_membership_inline_adds_changes_and_removes_members_through_the_services(admin_client, admin_user, acme):
    User = get_user_model()
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    url = f"{TENANTS}{acme.pk}/change/"
    response = admin_client.post(url, {**tenant_form(acme), **membership_rows(
        {"user": alice.pk, "role": "owner"}, {"user": bob.pk, "role": "member"})})
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>.{0,300}", text(response), re.S)
    assert dict(Membership.objects.filter(tenant=acme).values_list("user__username", "role")) == {
        "alice": "owner", "bob": "member"}
    assert AuditEntry.objects.filter(action="member.add", tenant=acme, actor=admin_user, via="admin").count() == 2

    # A handover in one save: bob becomes owner while alice, the only owner so far, leaves.
    alice_row, bob_row = (Membership.objects.get(tenant=acme, user=user) for user in (alice, bob))
    response = admin_client.post(url, {**tenant_form(acme), **membership_rows(
        {"id": alice_row.pk, "role": "owner", "DELETE": "on"}, {"id": bob_row.pk, "role": "owner"}, initial=2)})
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>.{0,300}", text(response), re.S)
    assert dict(Membership.objects.filter(tenant=acme).values_list("user__username", "role")) == {"bob": "owner"}
    assert audit("member.role", tenant=acme).details == {"user": "bob", "role": "owner"}
    assert audit("member.remove", tenant=acme).details == {"user": "alice"}


def test_membership_inline_keeps_at_least_one_owner(admin_client, acme):
    alice = get_user_model().objects.create_user("alice")
    owner = membership_set(tenant=acme, user=alice, role="owner")
    url = f"{TENANTS}{acme.pk}/change/"
    for row in ({"id": owner.pk, "role": "owner", "DELETE": "on"}, {"id": owner.pk, "role": "member"}):
        response = admin_client.post(url, {**tenant_form(acme), **membership_rows(row, initial=1)})
        assert response.status_code == 200 and "A tenant must keep at least one owner." in text(response)
    assert Membership.objects.get(pk=owner.pk).role == "owner"


# --- API keys ----------------------------------------------------------------------------------------------


def key_form(tenant=None, **changes) -> dict:
    form = {"name": "ci", "models": "", "rpm_limit": "", "tpm_limit": "", "budget_usd": "", "budget_period": "month",
            "expires_at_0": "", "expires_at_1": ""}
    if tenant is not None:
        form["tenant"] = tenant.pk
    return {**form, **changes}


def test_adding_a_key_shows_its_plaintext_once_and_only_then(admin_client, admin_user, acme):
    response = admin_client.post(f"{KEYS}add/", key_form(
        acme, models=f"{SONNET}, gpt-4o", rpm_limit="60", tpm_limit="100000", budget_usd="12.345",
        budget_period="day", expires_at_0="2099-01-01", expires_at_1="00:00:00"), follow=True)
    assert response.status_code == 200
    shown = set(PLAINTEXT_RE.findall(text(response)))
    assert len(shown) == 1
    plaintext = shown.pop()
    key = ApiKey.objects.get(tenant=acme)
    public_id, secret = keys.parse(plaintext)
    assert public_id == key.public_id and keys.matches(secret, key.secret_digest)
    assert (key.name, key.allowed_models, key.rpm_limit, key.tpm_limit, key.budget_nano, key.budget_period) == (
        "ci", [SONNET, "gpt-4o"], 60, 100000, 12_345_000_000, "day")
    assert key.expires_at.year == 2099 and key.created_by == admin_user
    assert audit("key.issue", api_key=key).via == "admin"

    for url in (KEYS, f"{KEYS}{key.pk}/change/", AUDIT, f"{KEYS}{key.pk}/history/"):
        page = text(admin_client.get(url))
        assert plaintext not in page and key.secret_digest not in page, url


@pytest.mark.parametrize(("changes", "error"), [
    ({"models": "claude-sonnet-4-6, no-such-model"}, "Not in the catalog: no-such-model."),
    ({"rpm_limit": "0"}, "Ensure this value is greater than or equal to 1."),
    ({"tpm_limit": "lots"}, "Enter a whole number."),
    ({"budget_usd": "abc"}, "Enter a number."),
    ({"budget_usd": "0"}, "A budget must be more than 0 USD"),
    ({"budget_usd": "0.0000000001"}, "no more than 9 decimal places"),
    ({"budget_period": "week"}, "Select a valid choice."),
    ({"expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"}, "The expiry must be in the future."),
])
def test_adding_a_key_reports_bad_settings_on_their_fields(admin_client, acme, changes, error):
    response = admin_client.post(f"{KEYS}add/", key_form(acme, **changes))
    assert response.status_code == 200 and error in text(response)
    assert not ApiKey.objects.exists()


def test_no_key_is_issued_for_a_suspended_tenant(admin_client, acme):
    tenant_set_status(tenant=acme, status=Tenant.Status.SUSPENDED)
    response = admin_client.post(f"{KEYS}add/", key_form(acme))
    assert response.status_code == 200 and "is suspended; no keys can be issued" in text(response)
    assert not ApiKey.objects.exists()


def test_editing_a_key_changes_its_limits_through_api_key_update(admin_client, admin_user, acme):
    key = api_key_issue(tenant=acme, name="ci", rpm_limit=10, budget_nano=5 * USD).api_key
    url = f"{KEYS}{key.pk}/change/"
    page = text(admin_client.get(url))
    assert 'value="10"' in input_tag(page, "rpm_limit") and 'value="5"' in input_tag(page, "budget_usd")

    unchanged = key_form(rpm_limit="10", budget_usd="5")
    assert admin_client.post(url, unchanged).status_code == 302
    assert not AuditEntry.objects.filter(action="key.update").exists()

    response = admin_client.post(url, key_form(rpm_limit="20", budget_usd="7.5", models="claude-haiku-4-5"))
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>.{0,300}", text(response), re.S)
    key.refresh_from_db()
    assert (key.rpm_limit, key.budget_nano, key.allowed_models) == (20, 7_500_000_000, ["claude-haiku-4-5"])
    entry = audit("key.update", api_key=key)
    assert (entry.actor, entry.via) == (admin_user, "admin")
    assert entry.details == {"rpm_limit": [10, 20], "budget_nano": [5 * USD, 7_500_000_000],
                             "allowed_models": [[], ["claude-haiku-4-5"]]}


def test_revoke_action_revokes_through_the_service(admin_client, admin_user, acme):
    key = api_key_issue(tenant=acme).api_key
    assert act(admin_client, KEYS, "revoke", [key]).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert audit("key.revoke", api_key=key).actor == admin_user
    page = text(admin_client.get(f"{KEYS}{key.pk}/change/"))
    assert 'name="rpm_limit"' not in page  # a revoked key's page is read-only
    assert "revoked" in text(admin_client.get(f"{KEYS}?status=revoked"))


def test_rotate_asks_for_a_grace_period_then_shows_the_new_key_once(admin_client, admin_user, acme):
    issued = api_key_issue(tenant=acme)
    old_digest = issued.api_key.secret_digest
    page = text(act(admin_client, KEYS, "rotate", [issued.api_key]))
    assert 'name="grace_hours"' in page and 'value="24"' in page

    response = act(admin_client, KEYS, "rotate", [issued.api_key], grace_hours="721")
    assert response.status_code == 200 and "less than or equal to 720" in text(response)
    assert ApiKey.objects.get(pk=issued.api_key.pk).secret_digest == old_digest

    before = timezone.now()
    response = act(admin_client, KEYS, "rotate", [issued.api_key], grace_hours="2", follow=True)
    shown = set(PLAINTEXT_RE.findall(text(response)))
    assert len(shown) == 1
    plaintext = shown.pop()
    key = ApiKey.objects.get(pk=issued.api_key.pk)
    assert plaintext != issued.plaintext and keys.matches(keys.parse(plaintext)[1], key.secret_digest)
    assert key.previous_secret_digest == old_digest
    assert before + timedelta(hours=2) <= key.previous_secret_expires_at <= timezone.now() + timedelta(hours=2)
    entry = audit("key.rotate", api_key=key)
    assert (entry.actor, entry.via, entry.details) == (admin_user, "admin", {"grace_seconds": 7200})
    assert plaintext not in text(admin_client.get(KEYS))


def test_rotating_a_revoked_key_is_refused_with_a_message(admin_client, acme):
    key = api_key_issue(tenant=acme).api_key
    act(admin_client, KEYS, "revoke", [key])
    response = act(admin_client, KEYS, "rotate", [key], grace_hours="0", follow=True)
    assert "A revoked key cannot be rotated." in text(response)
    assert not PLAINTEXT_RE.search(text(response))


def test_no_console_page_renders_a_secret_or_its_digest(admin_client, acme):
    issued = api_key_issue(tenant=acme, name="ci")
    rotated = api_key_rotate(api_key=issued.api_key, grace=timedelta(hours=1))
    key = ApiKey.objects.get(pk=issued.api_key.pk)
    usage_event(key)
    UsageRollup.objects.create(day=timezone.now().date(), tenant=acme, api_key=key, model=SONNET, requests=1)
    secrets = {issued.plaintext, rotated.plaintext, key.secret_digest, key.previous_secret_digest,
               keys.parse(issued.plaintext)[1], keys.parse(rotated.plaintext)[1]}
    urls = [KEYS, f"{KEYS}{key.pk}/change/", f"{KEYS}{key.pk}/history/", TENANTS, f"{TENANTS}{acme.pk}/change/",
            AUDIT, USAGE, ROLLUPS, f"{USAGE}{UsageEvent.objects.get().pk}/change/",
            *(f"{AUDIT}{entry.pk}/change/" for entry in AuditEntry.objects.all())]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        page = text(response)
        assert not [secret for secret in secrets if secret in page], url
        assert "secret_digest" not in page, url


def test_every_console_form_renders(admin_client, acme):
    sonnet = CatalogModel.objects.get(name=SONNET)
    for url in (f"{TENANTS}add/", f"{KEYS}add/", "/admin/gateway/catalogmodel/add/",
                f"/admin/gateway/catalogmodel/{sonnet.pk}/change/", "/admin/gateway/catalogmodel/", "/admin/"):
        assert admin_client.get(url).status_code == 200, url


# --- Catalog prices ----------------------------------------------------------------------------------------


def price_rows(*rows, initial=0) -> dict:
    data = {"prices-TOTAL_FORMS": len(rows), "prices-INITIAL_FORMS": initial}
    for index, row in enumerate(rows):
        data |= {f"prices-{index}-{field}": value for field, value in row.items()}
    return data


def new_price(when: str = "", **usd) -> dict:
    date, _, time = when.partition(" ")
    return {"effective_from_0": date, "effective_from_1": time, "input_usd": "4", "output_usd": "20",
            "cache_write_usd": "5", "cache_read_usd": "0.40", **usd}


def test_prices_in_force_are_shown_in_usd_and_cannot_be_edited_or_deleted(admin_client):
    sonnet = CatalogModel.objects.get(name=SONNET)
    launch = ModelPrice.objects.get(model=sonnet)
    url = f"/admin/gateway/catalogmodel/{sonnet.pk}/change/"
    page = text(admin_client.get(url))
    for name in ("input_usd", "output_usd", "cache_read_usd", "effective_from_0", "DELETE"):
        assert f'name="prices-0-{name}"' not in page  # text, not a disabled input
    row = page.split('id="prices-0"')[1].split("</tr>")[0]
    shown = re.findall(r'<span class="price-in-force">([^<]*)</span>', row)
    assert shown[1:] == ["$3.00", "$15.00", "$3.75", "$0.30", "$0.01", "in force"], shown
    assert shown[0].endswith("UTC")

    tampered = {"id": launch.pk, "model": sonnet.pk, **new_price("2025-01-01 00:00:00", input_usd="99"),
                "DELETE": "on"}
    response = admin_client.post(url, catalog_form(sonnet, **price_rows(tampered, initial=1)))
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>.{0,300}", text(response), re.S)
    launch_now = ModelPrice.objects.get(pk=launch.pk)
    assert launch_now.input_nano_per_mtok == 3 * USD and launch_now.effective_from == launch.effective_from


def test_a_new_price_is_a_new_row_from_now_or_later(admin_client):
    sonnet = CatalogModel.objects.get(name=SONNET)
    launch = ModelPrice.objects.get(model=sonnet)
    url = f"/admin/gateway/catalogmodel/{sonnet.pk}/change/"
    keep = {"id": launch.pk, "model": sonnet.pk}

    response = admin_client.post(url, catalog_form(sonnet, **price_rows(keep, new_price("2020-06-01 00:00:00"),
                                                                      initial=1)))
    assert response.status_code == 200 and "A price cannot start in the past" in text(response)

    response = admin_client.post(url, catalog_form(sonnet, **price_rows(keep, new_price("2099-06-01 00:00:00"),
                                                                      initial=1)))
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>.{0,300}", text(response), re.S)
    scheduled = ModelPrice.objects.get(model=sonnet, effective_from__year=2099)
    assert (scheduled.input_nano_per_mtok, scheduled.output_nano_per_mtok, scheduled.cache_write_nano_per_mtok,
            scheduled.cache_read_nano_per_mtok) == (4 * USD, 20 * USD, 5 * USD, 400_000_000)

    # A price not yet in force can still be corrected, or withdrawn.
    page = text(admin_client.get(url))
    assert "disabled" not in input_tag(page, "prices-0-input_usd")  # newest first: the scheduled one
    rows = price_rows({"id": scheduled.pk, "model": sonnet.pk, **new_price("2099-06-01 00:00:00", input_usd="4.5")},
                      keep, initial=2)
    assert admin_client.post(url, catalog_form(sonnet, **rows)).status_code == 302
    assert ModelPrice.objects.get(pk=scheduled.pk).input_nano_per_mtok == 4_500_000_000
    rows["prices-0-DELETE"] = "on"
    assert admin_client.post(url, catalog_form(sonnet, **rows)).status_code == 302
    assert not ModelPrice.objects.filter(pk=scheduled.pk).exists()

    before = timezone.now()
    response = admin_client.post(url, catalog_form(sonnet, **price_rows(keep, new_price(), initial=1)))
    assert response.status_code == 302
    assert ModelPrice.objects.filter(model=sonnet).latest("effective_from").effective_from >= before


# --- Usage, ledger and audit: read-only --------------------------------------------------------------------


def assert_read_only(client, url, obj):
    assert client.get(f"{url}add/").status_code == 403
    assert client.post(f"{url}{obj.pk}/change/", {}).status_code == 403
    assert client.post(f"{url}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    page = text(client.get(url))
    assert "delete_selected" not in page


def test_usage_pages_are_read_only_and_filter_by_tenant_key_model_status_and_day(admin_client, acme, globex):
    acme_key, globex_key = (api_key_issue(tenant=tenant).api_key for tenant in (acme, globex))
    day = timezone.now() - timedelta(days=3)
    mine = usage_event(acme_key, at=day)
    usage_event(globex_key, model="claude-haiku-4-5", status="error")  # another tenant's row, filtered out
    for url in (f"{USAGE}?tenant__id__exact={acme.pk}", f"{USAGE}?api_key__id__exact={acme_key.pk}",
                f"{USAGE}?model={SONNET}", f"{USAGE}?status__exact=ok",
                f"{USAGE}?period={day:%Y-%m-%d}"):
        assert results(admin_client, url) == [mine], url
    assert "$0.0015" in text(admin_client.get(USAGE))
    assert_read_only(admin_client, USAGE, mine)

    rollup = UsageRollup.objects.create(day=day.date(), tenant=acme, api_key=acme_key, model=SONNET, requests=7,
                                        cost_nano=2 * USD)
    UsageRollup.objects.create(day=timezone.now().date(), tenant=globex, api_key=globex_key, model="claude-haiku-4-5",
                               requests=3, cost_nano=USD)
    for url in (f"{ROLLUPS}?tenant__id__exact={acme.pk}", f"{ROLLUPS}?api_key__id__exact={acme_key.pk}",
                f"{ROLLUPS}?model={SONNET}",
                f"{ROLLUPS}?day__year={day.year}&day__month={day.month}&day__day={day.day}"):
        assert results(admin_client, url) == [rollup], url
    assert "$2.00" in text(admin_client.get(ROLLUPS))
    assert_read_only(admin_client, ROLLUPS, rollup)


def test_ledger_is_read_only_and_filters_by_tenant_and_kind(admin_client, acme, globex):
    mine = credit_grant(tenant=acme, amount_nano=10 * USD, reason="acme top-up")
    credit_grant(tenant=globex, amount_nano=7 * USD, reason="globex top-up")
    for url in (f"{LEDGER}?tenant__id__exact={acme.pk}", f"{LEDGER}?tenant__id__exact={acme.pk}&kind__exact=credit"):
        assert results(admin_client, url) == [mine], url
    assert results(admin_client, f"{LEDGER}?kind__exact=debit") == []
    assert "acme top-up" in text(admin_client.get(LEDGER)) and "$10.00" in text(admin_client.get(LEDGER))
    assert_read_only(admin_client, LEDGER, mine)


def test_reversing_ledger_entries_needs_a_reason_and_posts_opposite_entries(admin_client, admin_user, acme):
    credit = credit_grant(tenant=acme, amount_nano=10 * USD, reason="granted to the wrong tenant")
    with transaction.atomic():
        debit = ledger_post(tenant_id=acme.pk, kind=LedgerEntry.Kind.DEBIT, amount_nano=-2 * USD, reason="usage")
    page = text(act(admin_client, LEDGER, "reverse_entries", [credit, debit]))
    assert 'name="reason"' in page and "console-acme #1 credit" in page and "console-acme #2 debit" in page
    response = act(admin_client, LEDGER, "reverse_entries", [credit, debit], reason="")
    assert response.status_code == 200 and "This field is required." in text(response)
    assert LedgerEntry.objects.filter(tenant=acme).count() == 2

    assert act(admin_client, LEDGER, "reverse_entries", [credit, debit], reason="ticket 42").status_code == 302
    adjustment, refund = (LedgerEntry.objects.get(tenant=acme, seq=seq) for seq in (3, 4))
    assert (refund.kind, refund.amount_nano, refund.reason) == ("refund", 2 * USD, "Reverses #2: ticket 42")
    assert (adjustment.kind, adjustment.amount_nano, adjustment.reason) == (
        "adjustment", -10 * USD, "Reverses #1: ticket 42")
    assert refund.created_by == adjustment.created_by == admin_user
    assert tenant_balance_nano(acme.pk) == 0
    assert AuditEntry.objects.filter(action="ledger.reverse", tenant=acme, actor=admin_user, via="admin").count() == 2


def test_audit_log_is_read_only_and_filters_by_action_via_and_tenant(admin_client, acme, globex):
    act(admin_client, TENANTS, "suspend", [acme, globex], reason="audit test")
    suspended = audit("tenant.suspend", tenant=acme)
    assert results(admin_client, f"{AUDIT}?action=tenant.suspend&via=admin&tenant__id__exact={acme.pk}") == [suspended]
    assert {entry.action for entry in results(admin_client, f"{AUDIT}?via=system")} == {"tenant.create"}
    assert_read_only(admin_client, AUDIT, suspended)


@pytest.mark.django_db
def test_a_new_price_is_audited(admin_client, admin_user):
    from accounts.models import AuditEntry
    from gateway.models import CatalogModel

    sonnet = CatalogModel.objects.get(name="claude-sonnet-4-6")
    rows = {"prices-TOTAL_FORMS": 1, "prices-INITIAL_FORMS": 0, "prices-0-effective_from_0": "2099-01-01",
            "prices-0-effective_from_1": "00:00:00", "prices-0-input_usd": "2", "prices-0-output_usd": "10",
            "prices-0-cache_write_usd": "2.5", "prices-0-cache_read_usd": "0.2"}
    response = admin_client.post(f"/admin/gateway/catalogmodel/{sonnet.pk}/change/", catalog_form(sonnet, **rows))
    assert response.status_code == 302, response.content[:3000]
    entry = AuditEntry.objects.get(action="price.add")
    assert entry.actor == admin_user and entry.details["model"] == sonnet.name
    assert entry.details["input_nano_per_mtok"] == 2 * 10**9


# --- Login throttle --------------------------------------------------------------------------------


@pytest.fixture
def operator_login(settings) -> str:
    # A cache of its own: the failure counters must not throttle other tests (nor clear a shared Redis).
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"console-{uuid.uuid4().hex}"}}
    settings.LOGIN_ATTEMPTS = 3
    return get_user_model().objects.create_superuser(f"op-{uuid.uuid4().hex[:8]}@example.com",
                                                     password="right-password").username


def admin_login_post(client, username, password):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def test_the_admin_login_is_refused_after_n_failures_even_with_the_right_password(operator_login):
    from django.test import Client

    for n in range(3):
        assert admin_login_post(Client(REMOTE_ADDR=f"10.3.0.{n}"), operator_login, "guess").status_code == 200
    client = Client(REMOTE_ADDR="10.3.1.1")
    response = admin_login_post(client, operator_login, "right-password")
    assert response.status_code == 429 and "Too many failed logins" in text(response)
    assert "_auth_user_id" not in client.session


def test_the_admin_login_counts_failures_per_address_and_still_logs_in_below_the_limit(operator_login):
    from django.test import Client

    for name in ("x@example.com", "y@example.com", "z@example.com"):
        admin_login_post(Client(REMOTE_ADDR="10.4.4.4"), name, "guess")
    assert admin_login_post(Client(REMOTE_ADDR="10.4.4.4"), operator_login, "right-password").status_code == 429
    response = admin_login_post(Client(REMOTE_ADDR="10.4.4.5"), operator_login, "right-password")
    assert response.status_code == 302 and response.url == "/admin/"
