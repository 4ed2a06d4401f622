"""The dashboard's account pages: sign-up, login (throttled), password reset, keys, team, settings.

Personas (tests/support/dashboard.py): alice owns tenant A, bob is its admin, carol a member; charlie owns
tenant B.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import keys
from accounts.dashboard import SESSION_TENANT
from accounts.models import ApiKey, AuditEntry, Membership, Tenant
from accounts.services import api_key_issue, membership_set
from accounts.views import SESSION_NEW_KEY
from tests.support.dashboard import (  # noqa: F401 (an autouse fixture)
    FAST_HASHERS,
    PASSWORD,
    _own_cache_and_fast_hasher,
    assert_roles,
    make_user,
    text,
)

pytestmark = pytest.mark.django_db

PLAINTEXT_RE = re.compile(r"sk_cdx_[a-z0-9]{16}_[A-Za-z0-9]{32}")
STRONG = "Plenty-of-entropy-9x"
User = get_user_model()


def key_of(team, user, name="k") -> ApiKey:
    return api_key_issue(tenant=team.tenant_a, name=name, created_by=user).api_key


def signup_post(client, **overrides):
    data = {"email": "New.Person@Example.com", "password1": STRONG, "password2": STRONG, "workspace": "Initech"}
    return client.post(reverse("signup"), data | overrides)


def login_post(client, username, password=PASSWORD):
    return client.post(reverse("login"), {"username": username, "password": password})


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- Sign-up --------------------------------------------------------------------------------------------------


def test_signup_creates_user_workspace_and_owner_membership_then_shows_the_empty_keys_page(client):
    response = signup_post(client)
    assert response.status_code == 302 and response.url == reverse("keys")

    user = User.objects.get(username="new.person@example.com")
    assert user.email == "new.person@example.com" and user.check_password(STRONG)
    membership = Membership.objects.select_related("tenant").get(user=user)
    assert membership.role == Membership.Role.OWNER
    assert membership.tenant.name == "Initech" and membership.tenant.slug == "initech"
    assert {"user.signup", "tenant.create", "member.add", "ledger.credit"} <= set(
        AuditEntry.objects.filter(actor=user, via="dashboard").values_list("action", flat=True))
    # The sign-up credit (SIGNUP_CREDIT_USD, $5 by default) lets the first requests through.
    from billing.selectors import tenant_balance_nano

    assert tenant_balance_nano(membership.tenant_id) == settings.SIGNUP_CREDIT_NANO == 5 * 10**9

    page = text(client.get(response.url))
    assert signed_in(client)
    assert "No API keys yet" in page and "Create your first key" in page


def test_signup_derives_a_unique_slug_from_a_taken_workspace_name(client):
    signup_post(client, email="one@example.com")
    signup_post(Client(), email="two@example.com")
    slugs = sorted(Tenant.objects.filter(name="Initech").values_list("slug", flat=True))
    assert len(slugs) == 2 and slugs[0] == "initech" and slugs[1].startswith("initech-")


def test_signup_refuses_an_email_already_in_use_whatever_its_case(client):
    make_user("taken@example.com")
    response = signup_post(client, email="Taken@Example.com")
    assert response.status_code == 200
    assert "already exists" in str(response.context["form"].errors["email"])
    assert "already exists" in text(response)
    assert not Tenant.objects.filter(name="Initech").exists() and not signed_in(client)


@pytest.mark.parametrize(("password1", "password2", "error_field", "error"), [
    ("password", "password", "password1", "too common"),
    ("x7", "x7", "password1", "too short"),
    ("new.person@example.com", "new.person@example.com", "password1", "too similar"),
    (STRONG, STRONG + "x", "password2", "differ"),
])
def test_signup_refuses_weak_or_mismatched_passwords_inline(client, password1, password2, error_field, error):
    response = signup_post(client, password1=password1, password2=password2)
    assert response.status_code == 200
    assert error in str(response.context["form"].errors[error_field])
    assert not User.objects.filter(username="new.person@example.com").exists()


def test_signup_form_labels_every_field(client):
    page = text(client.get(reverse("signup")))
    for name in ("email", "password1", "password2", "workspace"):
        assert f'<label for="id_{name}"' in page and f'id="id_{name}"' in page


# --- Login, logout, throttling ---------------------------------------------------------------------------------


def test_login_then_logout_by_post_only(client, team):
    response = login_post(client, "alice@example.com")
    assert response.status_code == 302 and response.url == reverse("dashboard")
    assert client.cookies["sessionid"]["httponly"] is True
    assert client.get(reverse("dashboard"), follow=True).redirect_chain[-1][0] == reverse("keys")

    assert client.get(reverse("logout")).status_code == 405
    assert signed_in(client)
    response = client.post(reverse("logout"))
    assert response.status_code == 302 and response.url == reverse("login")
    assert not signed_in(client)


def test_wrong_password_is_an_inline_error(client, team):
    response = login_post(client, "alice@example.com", "nope")
    assert response.status_code == 200
    assert "Wrong e-mail or password" in text(response) and not signed_in(client)


def test_login_is_refused_after_n_failures_for_a_username_even_with_the_right_password(team, settings):
    settings.LOGIN_ATTEMPTS = 3
    for n in range(3):  # from different addresses: the username's counter alone trips
        login_post(Client(REMOTE_ADDR=f"10.0.0.{n}"), "alice@example.com", "wrong")
    client = Client(REMOTE_ADDR="10.0.1.1")
    response = login_post(client, "ALICE@example.com")  # case variants share the counter
    assert response.status_code == 429 and "Too many failed logins" in text(response)
    response = login_post(client, "alice@example.com")
    assert response.status_code == 429 and not signed_in(client)
    # Other users are not affected.
    assert login_post(client, "bob@example.com").status_code == 302


def test_login_is_refused_after_n_failures_from_one_address(team, settings):
    settings.LOGIN_ATTEMPTS = 3
    for name in ("x@example.com", "y@example.com", "z@example.com"):
        login_post(Client(REMOTE_ADDR="10.9.9.9"), name, "guess")
    response = login_post(Client(REMOTE_ADDR="10.9.9.9"), "alice@example.com")
    assert response.status_code == 429 and "Too many failed logins" in text(response)
    assert login_post(Client(REMOTE_ADDR="10.9.9.10"), "alice@example.com").status_code == 302


def test_a_successful_login_resets_the_usernames_counter(team, settings):
    settings.LOGIN_ATTEMPTS = 3
    for round_ in range(2):
        for n in range(2):
            login_post(Client(REMOTE_ADDR=f"10.1.{round_}.{n}"), "alice@example.com", "wrong")
        assert login_post(Client(REMOTE_ADDR=f"10.2.{round_}.1"), "alice@example.com").status_code == 302


def test_a_refused_login_does_not_check_the_password(team, settings, monkeypatch):
    settings.LOGIN_ATTEMPTS = 1
    login_post(Client(), "alice@example.com", "wrong")
    import django.contrib.auth.forms

    def fail(*args, **kwargs):
        raise AssertionError("authenticate() called while throttled")

    monkeypatch.setattr(django.contrib.auth.forms, "authenticate", fail)
    assert login_post(Client(), "alice@example.com").status_code == 429


# --- Password reset --------------------------------------------------------------------------------------------


def link_in(message) -> str:
    return re.search(r"https?://testserver(/\S+)", message.body).group(1)


def test_password_reset_mails_a_link_that_sets_a_new_password(client, team):
    response = client.post(reverse("password_reset"), {"email": "Alice@Example.com"})
    assert response.status_code == 302 and response.url == reverse("password_reset_done")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.com"]

    form_page = client.get(link_in(mail.outbox[0]), follow=True)
    assert form_page.context["validlink"]
    response = client.post(form_page.redirect_chain[-1][0],
                           {"new_password1": "Brand-new-secret-77", "new_password2": "Brand-new-secret-77"})
    assert response.status_code == 302 and response.url == reverse("password_reset_complete")
    assert login_post(Client(), "alice@example.com", "Brand-new-secret-77").status_code == 302
    # The link works once.
    assert not client.get(link_in(mail.outbox[0]), follow=True).context["validlink"]


def test_password_reset_for_an_unknown_address_sends_nothing_and_says_the_same(client, team):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302 and response.url == reverse("password_reset_done")
    assert mail.outbox == []


# --- Keys ------------------------------------------------------------------------------------------------------


def create_key(client, **data):
    return client.post(reverse("key-create"), {"name": "ci", "budget_period": "month", **data})


def test_new_key_is_shown_once_with_snippets_and_only_its_digest_is_stored(client_for, team):
    client = client_for("member")
    response = create_key(client, rpm_limit="60", budget_usd="12.50")
    assert response.status_code == 302 and response.url == reverse("key-created")

    page = client.get(response.url)
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    plaintext = PLAINTEXT_RE.search(text(page)).group(0)
    public_id, secret = keys.parse(plaintext)
    api_key = ApiKey.objects.get(public_id=public_id)
    assert api_key.tenant == team.tenant_a and api_key.created_by == team.carol
    assert api_key.rpm_limit == 60 and api_key.budget_nano == 12_500_000_000
    assert api_key.secret_digest == keys.digest(secret) and secret not in api_key.secret_digest
    assert AuditEntry.objects.filter(action="key.issue", api_key=api_key, actor=team.carol, via="dashboard").exists()

    snippets = {match: text(page).count(match) for match in ("http://testserver/v1", "http://testserver/anthropic")}
    assert all(snippets.values())
    for snippet_id in ("snippet-curl", "snippet-python", "snippet-node", "snippet-anthropic"):
        block = re.search(rf'<pre id="{snippet_id}">(.*?)</pre>', text(page), re.DOTALL).group(1)
        assert plaintext in block
    assert 'data-copy="new-key"' in text(page)

    assert SESSION_NEW_KEY not in client.session
    again = client.get(reverse("key-created"))
    assert again.status_code == 302 and again.url == reverse("keys")
    listing = client.get(reverse("keys"))
    assert plaintext not in text(listing) and secret not in text(listing)
    assert api_key.display in text(listing) and "shown only once" in text(listing)


def test_key_list_shows_limits_status_and_expiry(client_for, team):
    active = api_key_issue(tenant=team.tenant_a, name="limited", created_by=team.alice, rpm_limit=10,
                           tpm_limit=2000, budget_nano=5 * 10**9, budget_period="day").api_key
    revoked = key_of(team, team.alice, "gone")
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at="2020-01-01T00:00:00Z")
    expired = key_of(team, team.alice, "old")
    ApiKey.objects.filter(pk=expired.pk).update(expires_at="2020-01-01T00:00:00Z")
    page = text(client_for("owner").get(reverse("keys")))
    assert active.display in page and "RPM: 10" in page and "TPM: 2000" in page and "$5.00 per day" in page
    assert 'class="status-revoked">revoked' in page and 'class="status-expired">expired' in page
    assert 'class="status-active">active' in page


def test_key_create_shows_errors_next_to_the_fields(client_for):
    response = create_key(client_for("member"), rpm_limit="0", models="no-such-model", expires_at="2001-01-01T00:00")
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) >= {"rpm_limit", "models", "expires_at"}
    assert not ApiKey.objects.exists()


def test_revoke_asks_for_confirmation_then_revokes_on_post(client_for, team):
    api_key = key_of(team, team.carol)
    client = client_for("member")
    page = client.get(reverse("key-revoke", args=[api_key.pk]))
    assert page.status_code == 200 and "Revoke this key?" in text(page)
    api_key.refresh_from_db()
    assert not api_key.is_revoked

    response = client.post(reverse("key-revoke", args=[api_key.pk]))
    assert response.status_code == 302 and response.url == reverse("keys")
    api_key.refresh_from_db()
    assert api_key.is_revoked
    assert AuditEntry.objects.filter(action="key.revoke", api_key=api_key, actor=team.carol, via="dashboard").exists()


def test_rotate_shows_the_new_secret_once_and_keeps_the_old_for_the_grace_period(client_for, team):
    api_key = key_of(team, team.alice)
    old_digest = api_key.secret_digest
    client = client_for("owner")
    assert "Grace period" in text(client.get(reverse("key-rotate", args=[api_key.pk])))

    response = client.post(reverse("key-rotate", args=[api_key.pk]), {"grace_hours": "2"})
    assert response.status_code == 302 and response.url == reverse("key-created")
    plaintext = PLAINTEXT_RE.search(text(client.get(response.url))).group(0)
    api_key.refresh_from_db()
    assert keys.parse(plaintext) == (api_key.public_id, keys.parse(plaintext)[1])
    assert api_key.secret_digest == keys.digest(keys.parse(plaintext)[1])
    assert api_key.previous_secret_digest == old_digest and api_key.previous_secret_expires_at is not None
    assert client.get(reverse("key-created")).status_code == 302


def test_rotating_a_revoked_key_is_an_inline_error(client_for, team):
    api_key = key_of(team, team.alice)
    client_for("owner").post(reverse("key-revoke", args=[api_key.pk]))
    response = client_for("owner").post(reverse("key-rotate", args=[api_key.pk]), {"grace_hours": "0"})
    assert response.status_code == 200 and "A revoked key cannot be rotated" in text(response)


def test_members_see_only_their_own_keys_and_managers_see_all(client_for, team):
    mine, alices = key_of(team, team.carol, "carol's"), key_of(team, team.alice, "alice's")
    member_page = text(client_for("member").get(reverse("keys")))
    assert mine.display in member_page and alices.display not in member_page
    for role in ("admin", "owner"):
        page = text(client_for(role).get(reverse("keys")))
        assert mine.display in page and alices.display in page and "carol@example.com" in page
    assert mine.display not in text(client_for("outsider").get(reverse("keys")))


def test_a_member_cannot_revoke_or_rotate_someone_elses_key(client_for, team):
    alices = key_of(team, team.alice)
    member = client_for("member")
    for name in ("key-revoke", "key-rotate"):
        url = reverse(name, args=[alices.pk])
        assert member.get(url).status_code == 404
        assert member.post(url, {"grace_hours": "0"}).status_code == 404
    alices.refresh_from_db()
    assert not alices.is_revoked and not alices.previous_secret_digest
    assert member.post(reverse("key-revoke", args=[999_999])).status_code == 404


# --- Who may open what -----------------------------------------------------------------------------------------


ALL = {"member", "admin", "owner"}
MANAGERS = {"admin", "owner"}


def test_role_and_tenant_matrix_of_the_account_pages(client_for, team):
    alices, carols = key_of(team, team.alice), key_of(team, team.carol)
    carol_membership = Membership.objects.get(user=team.carol, tenant=team.tenant_a)
    for name in ("dashboard", "keys", "key-create", "key-created", "team", "account-settings",
                 "dashboard-no-tenant"):
        assert_roles(client_for, reverse(name), ALL)
    assert_roles(client_for, reverse("team-invite"), MANAGERS, method="post")
    assert_roles(client_for, reverse("team-role", args=[carol_membership.pk]), MANAGERS, method="post",
                 outsider_status=404)
    assert_roles(client_for, reverse("team-remove", args=[carol_membership.pk]), MANAGERS, outsider_status=404)
    for name in ("key-revoke", "key-rotate"):
        # Another member's key does not exist for a member: 404, not 403.
        assert_roles(client_for, reverse(name, args=[alices.pk]), MANAGERS, denied_status=404, outsider_status=404)
        assert_roles(client_for, reverse(name, args=[carols.pk]), ALL, outsider_status=404)
    assert_roles(client_for, reverse("tenant-switch"), set(), method="post", data={"tenant": team.tenant_b.pk},
                 denied_status=404)


def test_the_outsider_cannot_act_on_tenant_a(client_for, team):
    alices = key_of(team, team.alice)
    carol_membership = Membership.objects.get(user=team.carol, tenant=team.tenant_a)
    outsider = client_for("outsider")
    assert outsider.post(reverse("key-revoke", args=[alices.pk])).status_code == 404
    assert outsider.post(reverse("team-remove", args=[carol_membership.pk])).status_code == 404
    assert outsider.post(reverse("team-role", args=[carol_membership.pk]), {"role": "owner"}).status_code == 404
    alices.refresh_from_db()
    carol_membership.refresh_from_db()
    assert not alices.is_revoked and carol_membership.role == Membership.Role.MEMBER


def test_csrf_is_enforced_on_dashboard_and_login_posts(team):
    client = Client(enforce_csrf_checks=True)
    assert client.post(reverse("login"), {"username": "alice@example.com", "password": PASSWORD}).status_code == 403
    client.force_login(team.carol)
    assert client.post(reverse("key-create"), {"name": "x", "budget_period": "month"}).status_code == 403
    assert not ApiKey.objects.exists()
    # With the token from the page, the same post goes through.
    client.get(reverse("key-create"))
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("key-create"), {"name": "x", "budget_period": "month",
                                                   "csrfmiddlewaretoken": token})
    assert response.status_code == 302


# --- Workspaces ------------------------------------------------------------------------------------------------


def test_tenant_switch_only_to_ones_own_tenants(client_for, team):
    membership_set(tenant=team.tenant_b, user=team.bob, role=Membership.Role.MEMBER)
    bob = client_for("admin")
    globex_key = api_key_issue(tenant=team.tenant_b, name="globex", created_by=team.bob).api_key
    response = bob.post(reverse("tenant-switch"), {"tenant": team.tenant_b.pk})
    assert response.status_code == 302 and bob.session[SESSION_TENANT] == team.tenant_b.pk
    page = bob.get(reverse("keys"))
    assert page.context["membership"].tenant == team.tenant_b and globex_key.display in text(page)

    carol = client_for("member")
    assert carol.post(reverse("tenant-switch"), {"tenant": team.tenant_b.pk}).status_code == 404
    assert carol.post(reverse("tenant-switch"), {"tenant": "x"}).status_code == 404
    assert SESSION_TENANT not in carol.session
    assert carol.get(reverse("tenant-switch")).status_code == 405


def test_a_user_without_a_workspace_is_told_so_and_can_create_one(client):
    user = make_user("lonely@example.com")
    client.force_login(user)
    response = client.get(reverse("keys"))
    assert response.status_code == 302 and response.url == reverse("dashboard-no-tenant")
    assert "not in a workspace" in text(client.get(response.url))

    response = client.post(reverse("dashboard-no-tenant"), {"workspace": "Solo"})
    assert response.status_code == 302 and response.url == reverse("keys")
    assert Membership.objects.get(user=user).role == Membership.Role.OWNER
    assert client.get(reverse("keys")).status_code == 200


# --- Team ------------------------------------------------------------------------------------------------------


def test_team_page_lists_members_and_is_read_only_for_members(client_for):
    member_page = client_for("member").get(reverse("team"))
    for email in ("alice@example.com", "bob@example.com", "carol@example.com"):
        assert email in text(member_page)
    assert "charlie@example.com" not in text(member_page)
    assert "Invite someone" not in text(member_page) and "team-role" not in text(member_page)
    assert reverse("team-invite") in text(client_for("admin").get(reverse("team")))


def test_inviting_an_existing_user_adds_them_with_the_chosen_role(client_for, team, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for("admin").post(reverse("team-invite"), {"email": "Charlie@Example.com",
                                                                     "role": "admin"})
    assert response.status_code == 302
    assert Membership.objects.get(user=team.charlie, tenant=team.tenant_a).role == Membership.Role.ADMIN
    assert len(mail.outbox) == 1 and "added you to the Acme workspace" in mail.outbox[0].body
    again = client_for("admin").post(reverse("team-invite"), {"email": "charlie@example.com", "role": "member"})
    assert again.status_code == 400 and "already in this workspace" in text(again)


def test_inviting_an_unknown_email_creates_an_account_and_mails_a_set_password_link(
        client_for, team, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for("owner").post(reverse("team-invite"), {"email": "newbie@example.com",
                                                                     "role": "member"})
    assert response.status_code == 302
    newbie = User.objects.get(username="newbie@example.com")
    assert not newbie.has_usable_password()
    assert Membership.objects.get(user=newbie, tenant=team.tenant_a).role == Membership.Role.MEMBER
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["newbie@example.com"]

    client = Client()
    form_page = client.get(link_in(mail.outbox[0]), follow=True)
    assert form_page.context["validlink"]
    client.post(form_page.redirect_chain[-1][0], {"new_password1": STRONG, "new_password2": STRONG})
    assert login_post(client, "newbie@example.com", STRONG).status_code == 302
    assert client.get(reverse("keys")).context["membership"].tenant == team.tenant_a


def test_only_owners_grant_or_take_the_owner_role(client_for, team):
    bob = client_for("admin")
    invite = bob.post(reverse("team-invite"), {"email": "x@example.com", "role": "owner"})
    assert invite.status_code == 400 and "role" in invite.context["invite_form"].errors
    carol_membership = Membership.objects.get(user=team.carol, tenant=team.tenant_a)
    alice_membership = Membership.objects.get(user=team.alice, tenant=team.tenant_a)
    response = bob.post(reverse("team-role", args=[carol_membership.pk]), {"role": "owner"})
    assert response.status_code == 400 and "Only an owner" in text(response)
    response = bob.post(reverse("team-role", args=[alice_membership.pk]), {"role": "member"})
    assert response.status_code == 400 and "Only an owner" in text(response)
    assert bob.post(reverse("team-remove", args=[alice_membership.pk])).status_code == 400
    assert Membership.objects.filter(tenant=team.tenant_a, role="owner").get().user == team.alice

    # An admin manages members; an owner makes owners.
    assert bob.post(reverse("team-role", args=[carol_membership.pk]), {"role": "admin"}).status_code == 302
    assert client_for("owner").post(reverse("team-role", args=[carol_membership.pk]),
                                    {"role": "owner"}).status_code == 302
    carol_membership.refresh_from_db()
    assert carol_membership.role == Membership.Role.OWNER


def test_the_last_owner_can_neither_step_down_nor_be_removed(client_for, team):
    alice = client_for("owner")
    mine = Membership.objects.get(user=team.alice, tenant=team.tenant_a)
    response = alice.post(reverse("team-role", args=[mine.pk]), {"role": "admin"})
    assert response.status_code == 400 and "at least one owner" in text(response)
    assert f'id="role-{mine.pk}-errors"' in text(response)
    response = alice.post(reverse("team-remove", args=[mine.pk]))
    assert response.status_code == 400 and "at least one owner" in text(response)
    mine.refresh_from_db()
    assert mine.role == Membership.Role.OWNER


def test_removing_a_member_asks_first_and_sends_them_to_the_welcome_page(client_for, team):
    carol_membership = Membership.objects.get(user=team.carol, tenant=team.tenant_a)
    url = reverse("team-remove", args=[carol_membership.pk])
    assert "Remove carol@example.com?" in text(client_for("admin").get(url))
    assert Membership.objects.filter(pk=carol_membership.pk).exists()
    response = client_for("admin").post(url)
    assert response.status_code == 302 and not Membership.objects.filter(pk=carol_membership.pk).exists()
    assert AuditEntry.objects.filter(action="member.remove", actor=team.bob, via="dashboard").exists()
    assert client_for("member").get(reverse("keys")).url == reverse("dashboard-no-tenant")


# --- Settings --------------------------------------------------------------------------------------------------


def test_changing_name_and_email_moves_the_login_too(client_for, team):
    response = client_for("member").post(reverse("account-settings"), {
        "form": "profile", "first_name": "Carol", "last_name": "Danvers", "email": "Carol@New.example"})
    assert response.status_code == 302
    team.carol.refresh_from_db()
    assert (team.carol.get_full_name(), team.carol.email, team.carol.username) == (
        "Carol Danvers", "carol@new.example", "carol@new.example")
    taken = client_for("member").post(reverse("account-settings"), {
        "form": "profile", "first_name": "", "last_name": "", "email": "alice@example.com"})
    assert taken.status_code == 400 and "Another account" in str(taken.context["profile_form"].errors["email"])


def test_changing_the_password_keeps_this_session(client, team):
    login_post(client, "carol@example.com")
    response = client.post(reverse("account-settings"), {
        "form": "password", "old_password": PASSWORD, "new_password1": STRONG, "new_password2": STRONG})
    assert response.status_code == 302
    assert client.get(reverse("keys")).status_code == 200
    team.carol.refresh_from_db()
    assert team.carol.check_password(STRONG)
    wrong = client.post(reverse("account-settings"), {
        "form": "password", "old_password": "nope", "new_password1": STRONG, "new_password2": STRONG})
    assert wrong.status_code == 400 and "old_password" in wrong.context["password_form"].errors


def test_only_owners_rename_the_workspace(client_for, team):
    assert "Workspace name" not in text(client_for("admin").get(reverse("account-settings")))
    response = client_for("admin").post(reverse("account-settings"), {"form": "workspace", "name": "Evil"})
    assert response.status_code == 403
    response = client_for("owner").post(reverse("account-settings"), {"form": "workspace", "name": "Acme Corp"})
    assert response.status_code == 302
    team.tenant_a.refresh_from_db()
    assert team.tenant_a.name == "Acme Corp"
