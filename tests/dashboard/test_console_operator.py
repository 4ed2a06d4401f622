"""The operators' console as an operator uses it: USD everywhere, a tenant's page with its actions and
records, search by e-mail, a key filter scoped to the tenant, branding and recent actions (Django client;
the browser pass is in test_product_pages_browser)."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.html import strip_tags

from accounts.models import AuditEntry, Tenant
from accounts.services import api_key_issue, membership_set, tenant_update
from billing.models import LedgerEntry, UsageEvent, UsageRollup
from billing.services import credit_grant

pytestmark = pytest.mark.django_db
TENANTS, KEYS, AUDIT = "/admin/accounts/tenant/", "/admin/accounts/apikey/", "/admin/accounts/auditentry/"
USAGE, ROLLUPS, LEDGER = "/admin/billing/usageevent/", "/admin/billing/usagerollup/", "/admin/billing/ledgerentry/"
USD = 10**9


def text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def shown(response) -> str:
    return " ".join(strip_tags(text(response)).split())


def usage_row(api_key, cost=1_500_000) -> UsageEvent:
    return UsageEvent.objects.create(
        request_id=f"req_{uuid.uuid4().hex}", tenant_id=api_key.tenant_id, api_key=api_key, endpoint="messages",
        requested_model="claude-sonnet-4-6", model="claude-sonnet-4-6", upstream_model="claude-sonnet-4-6",
        stream=False, input_tokens=100, output_tokens=50, cost_nano=cost, status="ok", http_status=200,
        latency_ms=12, created_at=timezone.now())


def test_no_console_page_shows_raw_nano_usd(admin_client, acme):
    key = api_key_issue(tenant=acme, name="ci", budget_nano=5 * USD).api_key
    row = usage_row(key, cost=1_234_567_891)
    rollup = UsageRollup.objects.create(day=timezone.now().date(), tenant=acme, api_key=key, model="claude-sonnet-4-6",
                                        requests=1, cost_nano=2_500_000_000)
    entry = credit_grant(tenant=acme, amount_nano=12_500_000_000, reason="top-up")
    tenant_update(tenant=acme, credit_limit_nano=25 * USD)
    pages = [TENANTS, f"{TENANTS}{acme.pk}/change/", KEYS, f"{KEYS}{key.pk}/change/", USAGE,
             f"{USAGE}{row.pk}/change/", ROLLUPS, f"{ROLLUPS}{rollup.pk}/change/", LEDGER, f"{LEDGER}{entry.pk}/change/",
             AUDIT, *(f"{AUDIT}{audit.pk}/change/" for audit in AuditEntry.objects.all()), "/admin/"]
    for url in pages:
        page = shown(admin_client.get(url))
        assert "nano" not in page.lower(), (url, page[page.lower().find("nano") - 200:][:400])
        for raw in ("1234567891", "12500000000", "25000000000", "2500000000"):
            assert raw not in page, (url, raw)
    assert "$1.23" in shown(admin_client.get(f"{USAGE}{row.pk}/change/"))
    ledger_page = shown(admin_client.get(f"{LEDGER}{entry.pk}/change/"))
    assert "Amount: $12.50" in ledger_page or "Amount $12.50" in ledger_page
    audit_list = shown(admin_client.get(AUDIT))
    assert "amount: $12.50" in audit_list and "reason: top-up" in audit_list
    assert "credit limit: $0.00 → $25.00" in audit_list


def test_a_tenants_page_has_its_actions_as_buttons_and_links_to_its_records(admin_client, admin_user, acme, globex):
    url = f"{TENANTS}{acme.pk}/change/"
    page = text(admin_client.get(url))
    for label in ("Grant credit…", "Adjust balance…", "Suspend…"):
        assert f"<button type=\"submit\">{label}</button>" in page
    assert "Resume…" not in page
    for changelist in (KEYS, USAGE, ROLLUPS, LEDGER, AUDIT, "/admin/conversations/conversation/"):
        assert f'href="{changelist}?tenant__id__exact={acme.pk}"' in page, changelist

    # The button posts the action for this tenant; its form asks amount and reason, then comes back here.
    button = {"action": "grant_credit", "_selected_action": acme.pk, "return_to": url}
    form = text(admin_client.post(TENANTS, button))
    assert 'name="amount"' in form and 'name="reason"' in form and f'name="return_to" value="{url}"' in form
    done = admin_client.post(TENANTS, {**button, "apply": "Grant credit", "amount": "20", "reason": "welcome"})
    assert done.status_code == 302 and done.url == url
    assert LedgerEntry.objects.get(tenant=acme).amount_nano == 20 * USD
    assert not LedgerEntry.objects.filter(tenant=globex).exists()
    assert "$20.00" in text(admin_client.get(url))

    adjust = {"action": "post_adjustment", "_selected_action": acme.pk, "return_to": url, "apply": "x"}
    assert admin_client.post(TENANTS, {**adjust, "amount": "-2.5", "reason": "refund of a bad day"}).url == url
    assert AuditEntry.objects.get(action="ledger.adjust").details["reason"] == "refund of a bad day"

    suspend = {"action": "suspend", "_selected_action": acme.pk, "return_to": url}
    assert 'name="reason"' in text(admin_client.post(TENANTS, suspend))
    assert admin_client.post(TENANTS, {**suspend, "apply": "Suspend", "reason": "fraud review"}).url == url
    assert Tenant.objects.get(pk=acme.pk).status == Tenant.Status.SUSPENDED
    entry = AuditEntry.objects.get(action="tenant.suspend", tenant=acme)
    assert (entry.actor, entry.details) == (admin_user, {"reason": "fraud review"})
    page = text(admin_client.get(url))
    assert "Resume…" in page and "Suspend…" not in page

    # Only a path on this site is followed back.
    elsewhere = admin_client.post(TENANTS, {"action": "resume", "_selected_action": acme.pk, "apply": "Resume",
                                            "reason": "ok", "return_to": "https://evil.example/"})
    assert elsewhere.status_code == 302 and "evil" not in elsewhere.url


def test_operators_without_the_ledger_permission_get_no_money_buttons(client, acme):
    staff = get_user_model().objects.create_user("support", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__in=("view_tenant", "change_tenant")))
    client.force_login(staff)
    page = text(client.get(f"{TENANTS}{acme.pk}/change/"))
    assert "Suspend…" in page and "Grant credit…" not in page and "Adjust balance…" not in page
    response = client.post(TENANTS, {"action": "grant_credit", "_selected_action": acme.pk, "apply": "x",
                                     "amount": "5", "reason": "crafted"})
    assert not LedgerEntry.objects.exists() and response.status_code in (200, 302)


def test_tenants_keys_and_audit_entries_are_found_by_a_members_email(admin_client, acme, globex):
    dana = get_user_model().objects.create_user("dana", email="Dana.Smith@example.com")
    membership_set(tenant=acme, user=dana, role="owner")
    membership_set(tenant=globex, user=get_user_model().objects.create_user("eve", email="eve@example.com"),
                   role="owner")
    api_key_issue(tenant=acme, name="danas-key", created_by=dana)
    tenants = admin_client.get(TENANTS, {"q": "dana.smith@example"})
    assert [t.slug for t in tenants.context["cl"].result_list] == ["console-acme"]
    keys = admin_client.get(KEYS, {"q": "dana.smith@example.com"})
    assert [k.name for k in keys.context["cl"].result_list] == ["danas-key"]
    assert "e-mail" in text(admin_client.get(TENANTS))  # the search box says what it searches


def test_the_key_filter_lists_only_the_chosen_tenants_keys(admin_client, acme, globex):
    acme_key = api_key_issue(tenant=acme, name="acme-prod").api_key
    globex_key = api_key_issue(tenant=globex, name="globex-prod").api_key
    mine, theirs = usage_row(acme_key), usage_row(globex_key)
    for url in (USAGE, ROLLUPS):
        everything = text(admin_client.get(url))
        assert "API key (choose a tenant first)" not in everything  # no key list until a tenant is chosen
        scoped = text(admin_client.get(url, {"tenant__id__exact": acme.pk}))
        sidebar = scoped.split('id="changelist-filter"')[1]
        assert "acme-prod" in sidebar and "globex-prod" not in sidebar
    filtered = admin_client.get(USAGE, {"api_key__id__exact": acme_key.pk})
    assert list(filtered.context["cl"].result_list) == [mine]
    assert "acme-prod" in text(filtered).split('id="changelist-filter"')[1]
    assert theirs not in filtered.context["cl"].result_list


def test_the_console_is_branded_and_its_recent_actions_come_from_the_audit_log(admin_client, admin_user, acme):
    credit_grant(tenant=acme, amount_nano=USD, reason="seed", actor=admin_user, via="admin")
    page = text(admin_client.get("/admin/"))
    assert "<title>Operations | Gatehouse console</title>" in page
    assert re.search(r'<div id="site-name"><a href="/admin/">Gatehouse console</a></div>', page)
    assert "Django administration" not in page and "Django site admin" not in page
    recent = page.split('id="recent-actions-module"')[1].split("</div>")[0]
    assert "ledger.credit" in recent and "console-acme" in recent and "tenant.create" in recent
    assert "None available" not in page
