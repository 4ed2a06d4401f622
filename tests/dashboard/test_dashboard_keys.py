"""The dashboard's keys and account state (issue 20): keys edited in place, the models pick list, one key per
form token, the banner saying why requests fail, budgets (settled, reserved, over), case-insensitive login,
revoked_api_key, the styled error pages. Personas as in tests/support/dashboard.py.
"""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, AuditEntry, Tenant
from accounts.selectors import api_key_authenticate, key_cache
from accounts.services import api_key_issue, api_key_revoke, api_key_update, tenant_set_status
from billing.services import credit_grant
from tests.support.dashboard import (  # noqa: F401 (an autouse fixture)
    MODEL,
    PASSWORD,
    _own_cache_and_fast_hasher,
    assert_roles,
    make_user,
    spend,
    text,
)

pytestmark = pytest.mark.django_db
User = get_user_model()


def key_of(team, user, name="k", **limits) -> ApiKey:
    return api_key_issue(tenant=team.tenant_a, name=name, created_by=user, **limits).api_key


EDIT = {"name": "renamed", "models": [MODEL, "gpt-4o"], "rpm_limit": "30", "tpm_limit": "9000",
        "budget_usd": "12.5", "budget_period": "day", "expires_at": ""}


# --- Login in any case (item 3) -----------------------------------------------------------------------------


def test_a_sign_up_with_capitals_logs_in_with_the_same_text():
    client = Client()
    client.post(reverse("signup"), {"email": "Dana.Smith@Example.com", "password1": PASSWORD, "password2": PASSWORD,
                                    "workspace": "Dana Co"})
    client.post(reverse("logout"))
    for typed in ("Dana.Smith@Example.com", " dana.smith@example.com ", "DANA.SMITH@EXAMPLE.COM"):
        response = Client().post(reverse("login"), {"username": typed, "password": PASSWORD})
        assert response.status_code == 302 and response.url == reverse("dashboard"), typed


def test_an_operator_made_mixed_case_username_still_logs_in_in_any_case():
    make_user("Legacy.User@Example.com")
    for typed in ("Legacy.User@Example.com", "legacy.user@example.com"):
        assert Client().post(reverse("login"), {"username": typed, "password": PASSWORD}).status_code == 302


def test_usernames_differing_only_in_case_each_log_in_with_their_own_spelling_and_others_are_refused():
    make_user("Twin@Example.com", password="first-Password-1")
    make_user("twin@example.com", password="second-Password-2")
    assert Client().post(reverse("login"), {"username": "Twin@Example.com", "password": "first-Password-1"}
                         ).status_code == 302
    assert Client().post(reverse("login"), {"username": "twin@example.com", "password": "second-Password-2"}
                         ).status_code == 302
    ambiguous = Client().post(reverse("login"), {"username": "TWIN@example.com", "password": "first-Password-1"})
    assert ambiguous.status_code == 200 and "Wrong e-mail or password" in text(ambiguous)


def test_the_operators_console_login_ignores_case_too():
    User.objects.create_superuser(username="ops@example.com", email="ops@example.com", password=PASSWORD)
    response = Client().post(reverse("admin:login"), {"username": "OPS@Example.com", "password": PASSWORD,
                                                      "next": "/admin/"})
    assert response.status_code == 302 and response.url == "/admin/"


# --- Editing a key (item 2) ---------------------------------------------------------------------------------


def test_an_owner_edits_every_limit_in_place_and_the_change_is_audited(client_for, team):
    api_key = key_of(team, team.carol)
    response = client_for("owner").post(reverse("key-edit", args=[api_key.pk]), EDIT)
    assert response.status_code == 302 and response.url == reverse("keys")
    api_key.refresh_from_db()
    assert (api_key.name, api_key.allowed_models, api_key.rpm_limit, api_key.tpm_limit, api_key.budget_nano,
            api_key.budget_period) == ("renamed", [MODEL, "gpt-4o"], 30, 9000, 12_500_000_000, "day")
    entry = AuditEntry.objects.filter(action="key.update", api_key=api_key).get()
    assert entry.actor == team.alice and entry.via == "dashboard"
    assert entry.details["budget_nano"] == [None, 12_500_000_000] and entry.details["name"] == ["k", "renamed"]


def test_the_edit_form_shows_the_current_limits_and_saving_unchanged_writes_no_audit_entry(client_for, team):
    api_key = key_of(team, team.alice, name="keep", allowed_models=["gpt-4o"], rpm_limit=7, budget_nano=2 * 10**9)
    page = text(client_for("owner").get(reverse("key-edit", args=[api_key.pk])))
    assert 'value="keep"' in page and 'value="7"' in page and 'value="2"' in page
    assert 'value="gpt-4o" checked' in page or ('value="gpt-4o"' in page and "checked" in page)
    same = {"name": "keep", "models": ["gpt-4o"], "rpm_limit": "7", "tpm_limit": "", "budget_usd": "2.00",
            "budget_period": "month", "expires_at": ""}
    assert client_for("owner").post(reverse("key-edit", args=[api_key.pk]), same).status_code == 302
    assert not AuditEntry.objects.filter(action="key.update", api_key=api_key).exists()


def test_members_edit_their_own_keys_only_and_outsiders_get_404(client_for, team):
    own, others = key_of(team, team.carol, name="carols"), key_of(team, team.bob, name="bobs")
    assert client_for("member").post(reverse("key-edit", args=[own.pk]), EDIT).status_code == 302
    assert ApiKey.objects.get(pk=own.pk).rpm_limit == 30
    assert_roles(client_for, reverse("key-edit", args=[others.pk]), {"owner", "admin"}, denied_status=404,
                 outsider_status=404)
    assert client_for("member").post(reverse("key-edit", args=[others.pk]), EDIT).status_code == 404
    assert ApiKey.objects.get(pk=others.pk).name == "bobs"


@pytest.mark.parametrize("field, value, error", [
    ("rpm_limit", "0", "greater than or equal to 1"),
    ("tpm_limit", "many", "Enter a whole number"),
    ("budget_usd", "0", "A budget must be more than 0 USD"),
    ("expires_at", "2001-01-01T00:00", "The expiry must be in the future."),
    ("name", "x" * 101, "at most 100 characters"),
    ("models", "no-such-model", "Select a valid choice"),
])
def test_an_invalid_edit_is_refused_next_to_the_field_and_changes_nothing(client_for, team, field, value, error):
    api_key = key_of(team, team.alice)
    response = client_for("owner").post(reverse("key-edit", args=[api_key.pk]), EDIT | {field: value})
    assert response.status_code == 400 and error in text(response)
    assert ApiKey.objects.get(pk=api_key.pk).name == "k"


def test_a_revoked_key_cannot_be_edited(client_for, team):
    api_key = key_of(team, team.alice)
    api_key_revoke(api_key=api_key)
    response = client_for("owner").post(reverse("key-edit", args=[api_key.pk]), EDIT, follow=True)
    assert "a revoked key cannot be changed" in text(response)
    assert ApiKey.objects.get(pk=api_key.pk).name == "k"


def test_the_budget_field_states_the_overshoot_rule(client_for):
    page = text(client_for("owner").get(reverse("key-create")))
    assert "by at most one request&#x27;s reservation" in page or "by at most one request's reservation" in page


# --- The models pick list (item 7) -------------------------------------------------------------------------


def test_the_models_field_lists_enabled_ids_and_aliases_with_their_prices(client_for):
    from gateway.models import CatalogModel

    CatalogModel.objects.filter(name="claude-opus-4-6").update(enabled=False)
    page = text(client_for("member").get(reverse("key-create")))
    assert 'type="checkbox" name="models" value="claude-sonnet-4-6"' in page
    assert 'value="gpt-4o"' in page and "gpt-4o (alias of claude-sonnet-4-6)" in page
    assert "$3.00 in, $15.00 out per million tokens" in page
    assert 'value="claude-opus-4-6"' not in page and "<legend>Models</legend>" in page


def test_a_key_keeps_a_model_disabled_since_when_other_limits_are_edited(client_for, team):
    from gateway.models import CatalogModel

    api_key = key_of(team, team.alice, allowed_models=["claude-opus-4-6"])
    CatalogModel.objects.filter(name="claude-opus-4-6").update(enabled=False)
    assert "claude-opus-4-6 (disabled in the catalog)" in text(client_for("owner").get(
        reverse("key-edit", args=[api_key.pk])))
    response = client_for("owner").post(reverse("key-edit", args=[api_key.pk]),
                                        EDIT | {"models": ["claude-opus-4-6"]})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).allowed_models == ["claude-opus-4-6"]


# --- One key per form token (item 10) -----------------------------------------------------------------------


def test_the_same_create_form_sent_twice_makes_one_key_and_says_so(client_for, team):
    client = client_for("owner")
    form = {"name": "twice", "form_token": "tok-" + uuid.uuid4().hex, "budget_period": "month"}
    first = client.post(reverse("key-create"), form)
    assert first.status_code == 302 and first.url == reverse("key-created")
    second = client.post(reverse("key-create"), form)
    assert ApiKey.objects.filter(tenant=team.tenant_a, name="twice").count() == 1
    key = ApiKey.objects.get(name="twice")
    assert second.url == f"{reverse('key-created')}?key={key.pk}"
    shown = client.get(second.url)  # the first's secret is still waiting in the session: the same result page
    assert shown.status_code == 200 and key.display.split("...")[0] in text(shown)
    again = client.get(second.url, follow=True)
    assert "This key was already created" in text(again)


def test_the_create_form_carries_a_fresh_token_each_time(client_for):
    import re

    tokens = {re.search(r'name="form_token" value="([^"]+)"', text(client_for("owner").get(reverse("key-create"))))
              .group(1) for _ in range(2)}
    assert len(tokens) == 2


# --- Account state: the banner and the key status (item 4), budgets (item 5) --------------------------------


def test_a_suspended_tenant_shows_a_banner_on_every_page_to_every_role(client_for, team):
    tenant_set_status(tenant=team.tenant_a, status=Tenant.Status.SUSPENDED)
    for role in ("member", "admin", "owner"):
        for name in ("keys", "usage", "playground", "conversations", "team", "account-settings", "key-create"):
            page = text(client_for(role).get(reverse(name)))
            assert 'data-alert="suspended"' in page and "403 account_suspended" in page, (role, name)
    assert 'data-alert="suspended"' not in text(client_for("outsider").get(reverse("keys")))


def test_an_exhausted_balance_shows_to_members_without_the_amount_and_to_managers_with_it(client_for, team):
    key = key_of(team, team.carol)
    spend(key, 10**9)  # the tenant is prepaid with no credit: $1 spent is $1 below zero
    member, owner = text(client_for("member").get(reverse("keys"))), text(client_for("owner").get(reverse("keys")))
    assert 'data-alert="balance-exhausted"' in member and "-$1.00" not in member
    assert 'data-alert="balance-exhausted"' in owner and "-$1.00 available" in owner


def test_a_low_balance_warns_and_a_healthy_one_does_not(client_for, team, settings):
    settings.DASHBOARD_LOW_BALANCE_NANO = 2 * 10**9
    credit_grant(tenant=team.tenant_a, amount_nano=10**9, reason="test")
    assert 'data-alert="balance-low"' in text(client_for("member").get(reverse("keys")))
    credit_grant(tenant=team.tenant_a, amount_nano=5 * 10**9, reason="test")
    assert "data-alert=" not in text(client_for("member").get(reverse("keys")))
    Tenant.objects.filter(pk=team.tenant_a.pk).update(credit_limit_nano=None)  # invoiced: no balance check
    spend(key_of(team, team.alice), 100 * 10**9)
    assert "balance" not in text(client_for("owner").get(reverse("keys"))).split("<main>")[1].split("<h1>")[0]


def test_a_key_at_its_budget_is_over_budget_in_the_list_and_the_banner_names_it(client_for, team):
    credit_grant(tenant=team.tenant_a, amount_nano=100 * 10**9, reason="test")
    over, fine = key_of(team, team.carol, name="spent-key", budget_nano=10**9), key_of(team, team.carol, name="ok",
                                                                                        budget_nano=10**9)
    spend(over, 1_350_000_000)
    spend(fine, 100_000_000)
    page = text(client_for("member").get(reverse("keys")))
    assert 'data-alert="budget-reached"' in page and "Budget reached for spent-key" in page
    assert 'class="status-over-budget">over budget<' in page and 'class="status-active">active<' in page
    assert 'class="budget over" data-testid="budget" data-percent="135"' in page
    assert 'class="budget" data-testid="budget" data-percent="10"' in page
    assert "Over budget:" in page and "$1.35 spent of $1.00 this month (135%)" in page
    # Raising the budget clears the state.
    api_key_update(api_key=over, budget_nano=2 * 10**9)
    page = text(client_for("member").get(reverse("keys")))
    assert 'data-alert="budget-reached"' not in page and "over budget" not in page


def test_revoked_keys_can_be_hidden(client_for, team):
    kept, gone = key_of(team, team.alice, name="kept-key"), key_of(team, team.alice, name="gone-key")
    api_key_revoke(api_key=gone)
    page = text(client_for("owner").get(reverse("keys")))
    assert "gone-key" in page and "Hide revoked keys (1)" in page
    hidden = text(client_for("owner").get(reverse("keys") + "?revoked=hide"))
    assert "gone-key" not in hidden and kept.name in hidden and "Show revoked keys (1)" in hidden


# --- revoked_api_key (item 10) ------------------------------------------------------------------------------


def test_a_revoked_key_is_told_it_is_revoked_and_a_wrong_secret_still_is_just_invalid(team, settings):
    from common.errors import AppError

    settings.GATEWAY_AUTH_CACHE_SECONDS = 0
    issued = api_key_issue(tenant=team.tenant_a)
    api_key_revoke(api_key=issued.api_key)
    key_cache.clear()
    with pytest.raises(AppError) as revoked:
        async_to_sync(api_key_authenticate)(issued.plaintext)
    assert (revoked.value.status, revoked.value.code) == (401, "revoked_api_key")
    assert "revoked" in str(revoked.value)
    wrong = issued.plaintext[:-4] + ("AAAA" if not issued.plaintext.endswith("AAAA") else "BBBB")
    with pytest.raises(AppError) as invalid:
        async_to_sync(api_key_authenticate)(wrong)
    assert invalid.value.code == "invalid_api_key"


# --- Error pages (item 10) ----------------------------------------------------------------------------------


def test_a_404_is_styled_and_keeps_the_workspace_navigation(client_for, settings):
    settings.DEBUG = False
    response = client_for("owner").get(reverse("key-edit", args=[999_999]))
    page = text(response)
    assert response.status_code == 404 and "This page doesn't exist" in page
    assert 'aria-label="Dashboard"' in page and 'href="/dashboard/keys/"' in page
    anonymous = Client().get("/no/such/page/")
    assert anonymous.status_code == 404 and "This page doesn't exist" in text(anonymous)
    assert 'href="/login/"' in text(anonymous)


def test_a_403_is_styled_and_says_why(client_for, team, settings):
    settings.DEBUG = False
    membership = team.tenant_a.memberships.get(user=team.bob)
    response = client_for("member").get(reverse("team-remove", args=[membership.pk]))
    assert response.status_code == 403 and "You can't open this page" in text(response)
    assert 'aria-label="Dashboard"' in text(response)


def test_the_500_page_renders_without_a_request_or_a_database():
    from django.template import loader

    page = loader.get_template("500.html").render()
    assert "Something went wrong on our side" in page and 'href="/login/"' in page


def test_the_key_form_turns_prompt_cache_breakpoints_on_and_the_principal_carries_it(client_for, team):
    api_key = key_of(team, team.alice, name="cache")
    form = {"name": "cache", "models": [], "rpm_limit": "", "tpm_limit": "", "budget_usd": "", "budget_period": "month",
            "expires_at": "", "auto_cache_control": "on"}
    assert client_for("owner").post(reverse("key-edit", args=[api_key.pk]), form).status_code == 302
    api_key.refresh_from_db()
    assert api_key.auto_cache_control is True
    entry = AuditEntry.objects.filter(action="key.update", api_key=api_key).get()
    assert entry.details["auto_cache_control"] == [False, True]


def test_owners_and_admins_turn_prompt_caching_on_for_the_workspace_members_cannot(client_for, team):
    assert "Prompt caching" not in text(client_for("member").get(reverse("account-settings")))
    assert client_for("member").post(reverse("account-settings"), {"form": "caching", "auto_cache_control": "on"}
                                     ).status_code == 403
    assert "Prompt caching" in text(client_for("admin").get(reverse("account-settings")))
    response = client_for("admin").post(reverse("account-settings"), {"form": "caching", "auto_cache_control": "on"})
    assert response.status_code == 302
    tenant = Tenant.objects.get(pk=team.tenant_a.pk)
    assert tenant.auto_cache_control is True
    assert AuditEntry.objects.filter(action="tenant.update", tenant=tenant).latest("id").details == {
        "auto_cache_control": [False, True]}
