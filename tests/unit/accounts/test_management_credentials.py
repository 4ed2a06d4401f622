"""Management credentials: operator tokens and tenant admin keys, issued once, hashed, kept to their API."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import keys
from accounts.models import AdminKey, AuditEntry, Membership, OperatorToken
from accounts.selectors import api_key_authenticate, key_cache
from accounts.services import admin_key_issue, api_key_issue, credential_revoke, membership_set, operator_token_issue
from common.errors import AppError
from tests.support.dashboard import assert_roles

pytestmark = pytest.mark.django_db

WHOAMI = "/api/v1/whoami"
ADMIN_KEY_RE = re.compile(r"sk_cdx_admin_[a-z0-9]{12}_[A-Za-z0-9]{32}")


def api(credential: str | None = None, header: str = "Authorization") -> APIClient:
    client = APIClient()
    if credential:
        client.credentials(**{("HTTP_AUTHORIZATION" if header == "Authorization" else "HTTP_X_API_KEY"):
                              (f"Bearer {credential}" if header == "Authorization" else credential)})
    return client


# --- Formats ---------------------------------------------------------------------------------------------


def _parse(plaintext: str, kind: str):
    return keys.parse(plaintext) if kind == keys.API else keys.credential_parse(plaintext, kind)


@pytest.mark.parametrize("kind", [keys.API, keys.ADMIN, keys.OPERATOR])
def test_each_kind_parses_as_itself_only(kind):
    plaintext, public_id, secret = keys.generate() if kind == keys.API else keys.credential_generate(kind)
    assert keys.kind_of(plaintext) == kind
    assert _parse(plaintext, kind) == (public_id, secret)
    assert all(_parse(plaintext, other) is None for other in keys.PREFIXES if other != kind)


# --- Issuance --------------------------------------------------------------------------------------------


def test_create_operator_token_prints_it_once_and_stores_only_a_digest(admin_user):
    out = StringIO()
    call_command("create_operator_token", "terraform", "--read-only", "--user", admin_user.username, stdout=out)
    plaintext = out.getvalue().strip().splitlines()[-1]
    public_id, secret = keys.credential_parse(plaintext, keys.OPERATOR)
    token = OperatorToken.objects.get()
    assert (token.public_id, token.name, token.read_only, token.user) == (public_id, "terraform", True, admin_user)
    assert keys.matches(secret, token.secret_digest) and secret not in token.secret_digest
    assert token.display == f"sk_cdx_op_{public_id}_...{secret[-4:]}"
    entry = AuditEntry.objects.get(action="operator_token.issue")
    assert entry.via == "command" and plaintext not in str(entry.details)


def test_create_operator_token_refuses_an_unknown_user_and_an_empty_name():
    with pytest.raises(CommandError, match="--user"):
        call_command("create_operator_token", "x", "--user", "nobody", stdout=StringIO())
    with pytest.raises(CommandError, match="Name the key"):
        call_command("create_operator_token", "  ", stdout=StringIO())
    assert not OperatorToken.objects.exists()


def test_only_owners_and_admins_issue_admin_keys(team):
    for user in (team.alice, team.bob):
        issued = admin_key_issue(tenant=team.tenant_a, name="ci", actor=user)
        assert ADMIN_KEY_RE.fullmatch(issued.plaintext) and issued.credential.created_by == user
    for user in (team.carol, team.charlie):
        with pytest.raises(PermissionDenied):
            admin_key_issue(tenant=team.tenant_a, name="ci", actor=user)
    with pytest.raises(ValidationError):
        admin_key_issue(tenant=team.tenant_a, name="", actor=team.alice)
    assert AdminKey.objects.count() == 2
    assert AuditEntry.objects.filter(action="admin_key.issue", tenant=team.tenant_a, via="dashboard").count() == 2


# --- Where each credential works -------------------------------------------------------------------------


def test_operator_token_and_admin_key_identify_themselves(team):
    token = operator_token_issue(name="ops", read_only=True)
    response = api(token.plaintext).get(WHOAMI)
    assert response.status_code == 200, response.content
    assert response.json() == {"kind": "operator", "credential": token.credential.display, "name": "ops",
                               "read_only": True, "tenant": None, "role": None}
    admin = admin_key_issue(tenant=team.tenant_a, name="ci", actor=team.bob)
    # Anthropic's admin API sends its key in x-api-key: accepted too.
    response = api(admin.plaintext, header="x-api-key").get(WHOAMI)
    assert response.status_code == 200, response.content
    assert response.json() | {"credential": None} == {"kind": "admin", "credential": None, "name": "ci",
                                                       "read_only": False, "tenant": "dash-acme", "role": "admin"}
    admin.credential.refresh_from_db()
    assert admin.credential.last_used_at is not None


def test_api_keys_are_refused_on_the_management_api_with_a_clear_401(team):
    issued = api_key_issue(tenant=team.tenant_a, name="app")
    response = api(issued.plaintext).get(WHOAMI)
    assert response.status_code == 401
    assert "call the model APIs only" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("presented", [None, "nonsense", "sk_cdx_op_abc_def", "sk_cdx_admin_" + "a" * 12 + "_" + "b" * 32])
def test_missing_malformed_or_unknown_credentials_are_401(presented):
    assert api(presented).get(WHOAMI).status_code == 401


def test_admin_keys_and_operator_tokens_are_refused_on_the_model_apis(team):
    admin = admin_key_issue(tenant=team.tenant_a, name="ci", actor=team.alice)
    token = operator_token_issue(name="ops")
    key_cache.clear()
    for plaintext, prefix in ((admin.plaintext, "sk_cdx_admin_"), (token.plaintext, "sk_cdx_op_")):
        with pytest.raises(AppError) as caught:
            async_to_sync(api_key_authenticate)(plaintext)
        assert caught.value.status == 401 and prefix in caught.value.message and "/api/v1" in caught.value.message
        # Through the OpenAI API as a client sees it.
        response = api(plaintext).get("/v1/models")
        assert response.status_code == 401 and "cannot call models" in response.json()["error"]["message"]


def test_revoked_credentials_are_refused_at_once(team):
    admin = admin_key_issue(tenant=team.tenant_a, name="ci", actor=team.alice)
    token = operator_token_issue(name="ops")
    for issued in (admin, token):
        assert api(issued.plaintext).get(WHOAMI).status_code == 200
        credential_revoke(credential=issued.credential, actor=team.alice, via="admin")
        assert api(issued.plaintext).get(WHOAMI).status_code == 401
    assert set(AuditEntry.objects.filter(via="admin").values_list("action", flat=True)) == {
        "admin_key.revoke", "operator_token.revoke"}


def test_an_admin_key_stops_working_when_its_creator_is_no_longer_a_manager(team):
    admin = admin_key_issue(tenant=team.tenant_a, name="ci", actor=team.bob)
    membership_set(tenant=team.tenant_a, user=team.bob, role=Membership.Role.MEMBER)
    response = api(admin.plaintext).get(WHOAMI)
    assert response.status_code == 403 and "no longer an owner or admin" in response.json()["detail"]


# --- The dashboard ---------------------------------------------------------------------------------------


def test_dashboard_admin_keys_are_for_owners_and_admins(client_for):
    assert_roles(client_for, reverse("admin-key-create"), {"owner", "admin"}, method="post", data={"name": "ci"})


def test_dashboard_shows_a_new_admin_key_once_and_revokes_it(client_for, team):
    owner = client_for("owner")
    response = owner.post(reverse("admin-key-create"), {"name": "billing export"}, follow=True)
    plaintext = ADMIN_KEY_RE.search(response.content.decode()).group(0)
    assert response["Cache-Control"].startswith("max-age=0")
    assert not ADMIN_KEY_RE.search(owner.get(reverse("keys")).content.decode())
    admin_key = AdminKey.objects.get(tenant=team.tenant_a)
    assert admin_key.name == "billing export" and admin_key.created_by == team.alice
    assert api(plaintext).get(WHOAMI).json()["role"] == "owner"
    # Another tenant's admin key is a 404.
    assert client_for("outsider").post(reverse("admin-key-revoke", args=[admin_key.pk])).status_code == 404
    owner.post(reverse("admin-key-revoke", args=[admin_key.pk]))
    assert api(plaintext).get(WHOAMI).status_code == 401
    assert AuditEntry.objects.filter(action="admin_key.revoke", via="dashboard", actor=team.alice).exists()


def test_members_do_not_see_the_admin_keys_section(client_for):
    assert b"Admin keys" not in client_for("member").get(reverse("keys")).content
    assert b"Admin keys" in client_for("admin").get(reverse("keys")).content


# --- The operators' console ------------------------------------------------------------------------------


def test_adding_an_operator_token_in_the_admin_shows_it_once(admin_client, admin_user):
    response = admin_client.post("/admin/accounts/operatortoken/add/", {"name": "grafana", "read_only": "on"},
                                 follow=True)
    plaintext = re.search(r"sk_cdx_op_[a-z0-9]{12}_[A-Za-z0-9]{32}", response.content.decode()).group(0)
    token = OperatorToken.objects.get()
    assert token.read_only and keys.matches(keys.credential_parse(plaintext, keys.OPERATOR)[1], token.secret_digest)
    assert plaintext not in admin_client.get(f"/admin/accounts/operatortoken/{token.pk}/change/").content.decode()
    assert AuditEntry.objects.filter(action="operator_token.issue", via="admin", actor=admin_user).exists()
