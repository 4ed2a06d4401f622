"""The management API (/api/v1/) through DRF's test client: every operation, who may call it, bad input,
audit rows, cursor pages, idempotency and the OpenAPI schema.

Personas (tests/support/dashboard.py): alice owns tenant A, bob is its admin, carol a member; charlie
owns tenant B. Their admin keys act as them; `ops` is a full operator token, `viewer` a read-only one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import get_resolver
from django.utils import timezone
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from rest_framework.test import APIClient

from accounts import keys
from accounts.models import ApiKey, AuditEntry, Membership, Tenant
from accounts.services import admin_key_issue, api_key_issue, credential_revoke, operator_token_issue
from billing.models import LedgerEntry, ModelPrice
from billing.services import credit_grant
from common import crypto
from gateway.models import CatalogModel, Credential, Deployment, Provider
from tests.support.env import requires_postgres
from tests.support.rows import usage_event

V1 = "/api/v1"
SONNET = "claude-sonnet-4-6"
A, B = "dash-acme", "dash-globex"


@dataclass
class Callers:
    ops: APIClient
    viewer: APIClient
    alice: APIClient  # admin key of tenant A's owner
    bob: APIClient  # admin key of tenant A's admin
    charlie: APIClient  # admin key of tenant B's owner
    team: object


def client(plaintext: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return api


@pytest.fixture
def callers(team, admin_user) -> Callers:
    return Callers(
        ops=client(operator_token_issue(name="ops", user=admin_user).plaintext),
        viewer=client(operator_token_issue(name="viewer", read_only=True).plaintext),
        alice=client(admin_key_issue(tenant=team.tenant_a, name="alice", actor=team.alice).plaintext),
        bob=client(admin_key_issue(tenant=team.tenant_a, name="bob", actor=team.bob).plaintext),
        charlie=client(admin_key_issue(tenant=team.tenant_b, name="charlie", actor=team.charlie).plaintext),
        team=team,
    )


def call(api: APIClient, method: str, path: str, body=None, **headers):
    return getattr(api, method)(path, body, format="json", **headers)


def audited(api, method, path, body=None, *, status=200, action: str | tuple[str, ...]):
    """Make a write and check its status and that it wrote the audit entries `action`, via the API."""
    before = AuditEntry.objects.count()
    response = call(api, method, path, body)
    assert response.status_code == status, (path, response.content)
    entries = AuditEntry.objects.order_by("id")[before:]
    actions = (action,) if isinstance(action, str) else action
    assert [(entry.action, entry.via) for entry in entries] == [(name, "api") for name in actions], (path, entries)
    return response


# --- Operators: every write, through the services, audited ---------------------------------------------


def test_operators_manage_tenants_money_and_settings(callers, admin_user):
    ops = callers.ops
    created = audited(ops, "post", f"{V1}/tenants", {"slug": "initech", "name": "Initech", "credit_limit_nano": 0,
                                                      "conversation_retention_days": 30}, status=201,
                      action="tenant.create").json()
    assert created["slug"] == "initech" and created["status"] == "active"
    assert AuditEntry.objects.get(action="tenant.create", tenant__slug="initech").actor == admin_user
    tenant = f"{V1}/tenants/initech"
    changed = audited(ops, "patch", tenant, {"store_conversations": False, "log_requests": True,
                                             "credit_limit_nano": None}, action="tenant.update").json()
    assert (changed["store_conversations"], changed["log_requests"], changed["credit_limit_nano"]) == (False, True, None)
    assert audited(ops, "post", f"{tenant}/suspend", action="tenant.suspend").json()["status"] == "suspended"
    assert audited(ops, "post", f"{tenant}/resume", action="tenant.resume").json()["status"] == "active"
    credit = audited(ops, "post", f"{tenant}/credits", {"amount_nano": 5 * 10**9, "reason": "prepaid"}, status=201,
                     action="ledger.credit").json()
    assert (credit["kind"], credit["amount_nano"], credit["balance_after_nano"], credit["seq"]) == (
        "credit", 5 * 10**9, 5 * 10**9, 1)
    audited(ops, "post", f"{tenant}/adjustments", {"amount_nano": -10**9, "reason": "goodwill undone"}, status=201,
            action="ledger.adjust")
    balance = call(ops, "get", f"{tenant}/balance").json()
    assert balance == {"tenant": "initech", "balance_nano": 4 * 10**9, "unbilled_nano": 0,
                       "available_nano": 4 * 10**9, "credit_limit_nano": None}
    ledger = call(ops, "get", f"{tenant}/ledger").json()["results"]
    assert [(row["seq"], row["kind"], row["reason"]) for row in ledger] == [
        (2, "adjustment", "goodwill undone"), (1, "credit", "prepaid")]
    assert call(ops, "get", f"{V1}/ledger", {"tenant": "initech", "kind": "credit"}).json()["results"][0]["seq"] == 1
    assert "initech" in [row["slug"] for row in call(ops, "get", f"{V1}/tenants").json()["results"]]


def test_operators_manage_any_tenants_keys(callers):
    ops, keys_url = callers.ops, f"{V1}/tenants/{B}/keys"
    issued = audited(ops, "post", keys_url, {"name": "ci", "allowed_models": [SONNET], "rpm_limit": 60,
                                             "budget_nano": 10**10, "budget_period": "day"}, status=201,
                     action="key.issue").json()
    public_id, secret = keys.parse(issued["key"])
    key = ApiKey.objects.get(public_id=public_id)
    assert key.tenant.slug == B and keys.matches(secret, key.secret_digest) and issued["id"] == public_id
    assert "key" not in call(ops, "get", f"{keys_url}/{public_id}").json()  # shown once
    patched = audited(ops, "patch", f"{keys_url}/{public_id}", {"rpm_limit": None, "tpm_limit": 1000},
                      action="key.update").json()
    assert (patched["rpm_limit"], patched["tpm_limit"]) == (None, 1000)
    rotated = audited(ops, "post", f"{keys_url}/{public_id}/rotate", {"grace_seconds": 3600}, status=201,
                      action="key.rotate").json()
    key.refresh_from_db()
    assert keys.matches(keys.parse(rotated["key"])[1], key.secret_digest)
    assert key.previous_secret_digest == keys.digest(secret) and key.previous_secret_expires_at > timezone.now()
    assert audited(ops, "post", f"{keys_url}/{public_id}/revoke", action="key.revoke").json()["status"] == "revoked"
    assert call(ops, "patch", f"{keys_url}/{public_id}", {"name": "x"}).status_code == 400
    budgets = call(ops, "get", f"{V1}/tenants/{B}/budgets").json()["results"]
    assert budgets == []  # only live keys have budgets to watch


def test_operators_manage_members(callers):
    ops, team = callers.ops, callers.team
    members = f"{V1}/tenants/{B}/members"
    added = audited(ops, "post", members, {"email": "carol@example.com", "role": "admin"}, status=201,
                    action="member.add").json()
    assert (added["username"], added["role"], added["invited"]) == ("carol@example.com", "admin", False)
    assert audited(ops, "patch", f"{members}/{added['id']}", {"role": "member"}, action="member.role").json()[
        "role"] == "member"
    audited(ops, "delete", f"{members}/{added['id']}", status=204, action="member.remove")
    response = call(ops, "post", members, {"email": "nobody@example.com", "role": "member"})
    assert response.status_code == 400 and "email" in response.json()
    charlie = Membership.objects.get(tenant=team.tenant_b, user=team.charlie)
    response = call(ops, "delete", f"{members}/{charlie.pk}")
    assert response.status_code == 400 and "at least one owner" in str(response.json())


def test_operators_manage_the_catalog_prices_providers_and_deployments(callers):
    ops = callers.ops
    model = audited(ops, "post", f"{V1}/models", {"name": "deepseek-chat", "owned_by": "deepseek",
                                                  "default_max_tokens": 4096, "max_output_tokens": 8192},
                    status=201, action="model.create").json()
    assert model["name"] == "deepseek-chat" and model["enabled"] is True
    assert audited(ops, "patch", f"{V1}/models/deepseek-chat", {"enabled": False},
                   action="model.update").json()["enabled"] is False
    # A model's limits are checked by the model's own validation (default within max).
    response = call(ops, "patch", f"{V1}/models/deepseek-chat", {"default_max_tokens": 9000})
    assert response.status_code == 400, response.content
    later = (timezone.now() + timedelta(days=1)).isoformat()
    price = audited(ops, "post", f"{V1}/models/deepseek-chat/prices", {
        "effective_from": later, "input_nano_per_mtok": 270_000_000, "output_nano_per_mtok": 1_100_000_000,
        "cache_write_nano_per_mtok": 0, "cache_read_nano_per_mtok": 70_000_000}, status=201,
        action="price.add").json()
    assert price["model"] == "deepseek-chat" and ModelPrice.objects.filter(pk=price["id"]).exists()
    past = call(ops, "post", f"{V1}/models/deepseek-chat/prices", {
        "effective_from": "2020-01-01T00:00:00Z", "input_nano_per_mtok": 1, "output_nano_per_mtok": 1,
        "cache_write_nano_per_mtok": 1, "cache_read_nano_per_mtok": 1})
    assert past.status_code == 400 and "effective_from" in past.json()
    assert price["batch_discount_bp"] == 5000  # batch items at half price by default, as both vendors charge
    twice = call(ops, "post", f"{V1}/models/deepseek-chat/prices", {
        "effective_from": later, "input_nano_per_mtok": 1, "output_nano_per_mtok": 1, "cache_write_nano_per_mtok": 0,
        "cache_read_nano_per_mtok": 0})
    assert twice.status_code == 400 and "effective_from" in twice.json()  # one price per moment, not a 500
    later = (timezone.now() + timedelta(days=2)).isoformat()
    batch = call(ops, "post", f"{V1}/models/deepseek-chat/prices", {
        "effective_from": later, "input_nano_per_mtok": 1, "output_nano_per_mtok": 1, "cache_write_nano_per_mtok": 0,
        "cache_read_nano_per_mtok": 0, "batch_discount_bp": 2500})
    assert batch.status_code == 201 and batch.json()["batch_discount_bp"] == 2500
    over = call(ops, "post", f"{V1}/models/deepseek-chat/prices", {
        "effective_from": later, "input_nano_per_mtok": 1, "output_nano_per_mtok": 1, "cache_write_nano_per_mtok": 0,
        "cache_read_nano_per_mtok": 0, "batch_discount_bp": 10_001})
    assert over.status_code == 400 and "batch_discount_bp" in over.json()
    # Prices are add-only: no operation edits or deletes one.
    assert call(ops, "patch", f"{V1}/models/deepseek-chat/prices", {}).status_code == 405

    provider = audited(ops, "post", f"{V1}/providers", {"name": "deepseek", "kind": "openai",
                                                        "base_url": "https://api.deepseek.com/v1"}, status=201,
                       action="provider.create").json()
    assert provider["kind"] == "openai"
    audited(ops, "patch", f"{V1}/providers/deepseek", {"cooldown_seconds": 60}, action="provider.update")
    secret = "sk-deepseek-0123456789abcd"
    credential = audited(ops, "post", f"{V1}/providers/deepseek/credentials", {"name": "primary", "secret": secret},
                         status=201, action="credential.create").json()
    assert credential["hint"] == "abcd" and "secret" not in credential and secret not in str(credential)
    stored = Credential.objects.get(pk=credential["id"])
    assert crypto.decrypt(stored.secret_encrypted) == secret and secret not in stored.secret_encrypted
    listed = call(ops, "get", f"{V1}/providers/deepseek/credentials").json()["results"]
    assert secret not in str(listed) and listed[0]["hint"] == "abcd"
    audited(ops, "patch", f"{V1}/providers/deepseek/credentials/{credential['id']}",
            {"secret": "sk-deepseek-new-key-wxyz", "weight": 2}, action="credential.update")
    assert Credential.objects.get(pk=credential["id"]).hint == "wxyz"

    deployment = audited(ops, "post", f"{V1}/deployments", {"model": "deepseek-chat", "provider": "deepseek",
                                                            "upstream_model": "deepseek-chat"}, status=201,
                         action="deployment.create").json()
    assert (deployment["model"], deployment["provider"], deployment["priority"]) == ("deepseek-chat", "deepseek", 0)
    audited(ops, "patch", f"{V1}/deployments/{deployment['id']}", {"weight": 3}, action="deployment.update")
    audited(ops, "delete", f"{V1}/deployments/{deployment['id']}", status=204, action="deployment.delete")
    assert not Deployment.objects.filter(pk=deployment["id"]).exists()


def test_usage_and_audit_are_readable_filtered_and_paginated(callers):
    team = callers.team
    key_a = api_key_issue(tenant=team.tenant_a, name="a").api_key
    key_b = api_key_issue(tenant=team.tenant_b, name="b").api_key
    for _ in range(3):
        usage_event(key_a)
    usage_event(key_a, status="error", model="claude-haiku-4-5")
    usage_event(key_b)
    rows = call(callers.ops, "get", f"{V1}/usage", {"tenant": A}).json()["results"]
    assert len(rows) == 4 and {row["tenant"] for row in rows} == {A}
    assert len(call(callers.ops, "get", f"{V1}/usage").json()["results"]) == 5
    errors = call(callers.ops, "get", f"{V1}/tenants/{A}/usage", {"status": "error"}).json()["results"]
    assert [row["model"] for row in errors] == ["claude-haiku-4-5"]
    assert len(call(callers.alice, "get", f"{V1}/tenants/{A}/usage", {"api_key": key_a.public_id}).json()[
        "results"]) == 4
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert call(callers.ops, "get", f"{V1}/usage", {"since": future}).json()["results"] == []
    audit = call(callers.ops, "get", f"{V1}/audit", {"tenant": A, "action": "key.issue"}).json()["results"]
    assert [row["api_key"] for row in audit] == [key_a.public_id]


def test_cursor_pages_walk_every_row_once(callers):
    for n in range(7):
        api_key_issue(tenant=callers.team.tenant_a, name=f"k{n}")
    seen, url = [], f"{V1}/tenants/{A}/keys?limit=3"
    while url:
        page = call(callers.alice, "get", url).json()
        assert len(page["results"]) <= 3
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 7


# --- Tenant admins: their own tenant, with their creator's role -----------------------------------------


def test_tenant_admins_manage_their_keys_settings_and_see_their_money(callers):
    team = callers.team
    credit_grant(tenant=team.tenant_a, amount_nano=3 * 10**9, reason="start")
    issued = audited(callers.bob, "post", f"{V1}/tenants/{A}/keys", {"name": "svc", "budget_nano": 10**9},
                     status=201, action="key.issue").json()
    key = ApiKey.objects.get(public_id=issued["id"])
    assert key.created_by == team.bob and AuditEntry.objects.get(action="key.issue", api_key=key).actor == team.bob
    usage_event(key, cost=250_000_000)
    budgets = call(callers.bob, "get", f"{V1}/tenants/{A}/budgets").json()["results"]
    assert [(row["key"], row["spent_nano"], row["remaining_nano"]) for row in budgets] == [
        (key.public_id, 250_000_000, 750_000_000)]
    assert call(callers.bob, "get", f"{V1}/tenants/{A}/balance").json()["available_nano"] == 3 * 10**9 - 250_000_000
    assert len(call(callers.bob, "get", f"{V1}/tenants/{A}/ledger").json()["results"]) == 1
    audited(callers.bob, "patch", f"{V1}/tenants/{A}", {"conversation_retention_days": 3}, action="tenant.update")
    # Renaming is for owners (as in the dashboard); the credit limit for operators.
    assert call(callers.bob, "patch", f"{V1}/tenants/{A}", {"name": "Bob's"}).status_code == 403
    audited(callers.alice, "patch", f"{V1}/tenants/{A}", {"name": "Acme 2"}, action="tenant.update")
    assert call(callers.alice, "patch", f"{V1}/tenants/{A}", {"credit_limit_nano": 10**12}).status_code == 403
    assert Tenant.objects.get(slug=A).credit_limit_nano == 0


def test_tenant_admins_manage_alert_rules_and_see_a_webhook_secret_once(callers):
    from billing.models import AlertRule

    team = callers.team
    key = api_key_issue(tenant=team.tenant_a, name="budgeted", budget_nano=10**9).api_key
    low = audited(callers.bob, "post", f"{V1}/tenants/{A}/alert-rules",
                  {"kind": "balance_below", "threshold_nano": 5 * 10**9}, status=201, action="alert.create").json()
    assert (low["kind"], low["threshold_nano"], low["notify_email"], low["webhook_secret"]) == (
        "balance_below", 5 * 10**9, True, None)
    hooked = audited(callers.bob, "post", f"{V1}/tenants/{A}/alert-rules",
                     {"kind": "key_budget", "percent": 80, "api_key": key.public_id, "notify_email": False,
                      "webhook_url": "https://hooks.example.com/gatehouse"}, status=201, action="alert.create").json()
    assert hooked["webhook_secret"].startswith("whsec_") and hooked["api_key"] == key.public_id
    listed = call(callers.alice, "get", f"{V1}/tenants/{A}/alert-rules").json()["results"]
    assert sorted(rule["id"] for rule in listed) == [low["id"], hooked["id"]]
    assert all(rule["webhook_secret"] is None for rule in listed)  # shown once, at creation
    for body, field in (({"kind": "key_budget", "percent": 70}, "percent"),
                        ({"kind": "balance_below"}, "threshold"),
                        ({"kind": "balance_below", "threshold_nano": 1, "notify_email": False}, None),
                        ({"kind": "nonsense"}, "kind"),
                        ({"kind": "hourly_spend", "threshold_nano": 1, "webhook_url": "http://10.0.0.1/x"}, None),
                        ({"kind": "hourly_spend", "threshold_nano": 1, "extra": 1}, "extra")):
        response = call(callers.bob, "post", f"{V1}/tenants/{A}/alert-rules", body)
        assert response.status_code == 400, (body, response.content)
        assert field is None or field in response.content.decode()
    assert call(callers.charlie, "delete", f"{V1}/tenants/{A}/alert-rules/{low['id']}").status_code == 404
    audited(callers.bob, "delete", f"{V1}/tenants/{A}/alert-rules/{low['id']}", status=204, action="alert.delete")
    assert list(AlertRule.objects.filter(tenant=team.tenant_a).values_list("id", flat=True)) == [hooked["id"]]


def test_tenant_admins_invite_and_manage_members_with_their_role(callers):
    team = callers.team
    invited = audited(callers.bob, "post", f"{V1}/tenants/{A}/invitations", {"email": "dave@example.com",
                                                                             "role": "member"}, status=201,
                      action=("user.invite", "member.add"))
    assert invited.json()["invited"] is True
    # Only owners make owners: bob's key cannot, alice's can.
    response = call(callers.bob, "post", f"{V1}/tenants/{A}/invitations", {"email": "eve@example.com", "role": "owner"})
    assert response.status_code == 400 and "owner" in str(response.json())
    carol = Membership.objects.get(tenant=team.tenant_a, user=team.carol)
    assert call(callers.bob, "patch", f"{V1}/tenants/{A}/members/{carol.pk}", {"role": "owner"}).status_code == 400
    audited(callers.alice, "patch", f"{V1}/tenants/{A}/members/{carol.pk}", {"role": "owner"}, action="member.role")
    assert call(callers.bob, "delete", f"{V1}/tenants/{A}/members/{carol.pk}").status_code == 400
    audited(callers.alice, "delete", f"{V1}/tenants/{A}/members/{carol.pk}", status=204, action="member.remove")
    members = call(callers.bob, "get", f"{V1}/tenants/{A}/members").json()["results"]
    assert sorted(row["username"] for row in members) == ["alice@example.com", "bob@example.com", "dave@example.com"]
    # Invitations act as a member of the tenant: an operator token has no one to act as.
    assert call(callers.ops, "post", f"{V1}/tenants/{A}/invitations", {"email": "x@example.com",
                                                                      "role": "member"}).status_code == 403
    assert len(mail.outbox) == 0  # sent after commit; the test transaction never commits


OPERATOR_ONLY = [
    ("get", f"{V1}/tenants", None), ("post", f"{V1}/tenants", {"slug": "x"}),
    ("post", f"{V1}/tenants/{A}/suspend", None), ("post", f"{V1}/tenants/{A}/resume", None),
    ("post", f"{V1}/tenants/{A}/credits", {"amount_nano": 1, "reason": "r"}),
    ("post", f"{V1}/tenants/{A}/adjustments", {"amount_nano": 1, "reason": "r"}),
    ("post", f"{V1}/tenants/{A}/members", {"email": "bob@example.com", "role": "member"}),
    ("get", f"{V1}/ledger", None), ("get", f"{V1}/usage", None), ("get", f"{V1}/audit", None),
    ("get", f"{V1}/models", None), ("post", f"{V1}/models", {"name": "m"}),
    ("get", f"{V1}/models/{SONNET}/prices", None), ("get", f"{V1}/providers", None),
    ("get", f"{V1}/deployments", None),
]


@pytest.mark.parametrize(("method", "path", "body"), OPERATOR_ONLY)
def test_tenant_admin_keys_cannot_call_operator_operations(callers, method, path, body):
    assert call(callers.alice, method, path, body).status_code == 403
    assert not AuditEntry.objects.filter(via="api").exists()


TENANT_SCOPED = [
    ("get", "", None), ("patch", "", {"log_requests": True}), ("get", "/balance", None), ("get", "/ledger", None),
    ("get", "/usage", None), ("get", "/budgets", None), ("get", "/keys", None), ("post", "/keys", {"name": "x"}),
    ("get", "/members", None), ("post", "/invitations", {"email": "z@example.com", "role": "member"}),
    ("get", "/alert-rules", None), ("post", "/alert-rules", {"kind": "hourly_spend", "threshold_nano": 10**9}),
]


@pytest.mark.parametrize(("method", "suffix", "body"), TENANT_SCOPED)
def test_a_tenant_admin_cannot_see_or_change_another_tenant(callers, method, suffix, body):
    response = call(callers.charlie, method, f"{V1}/tenants/{A}{suffix}", body)
    assert response.status_code == 404, response.content
    assert call(callers.charlie, method, f"{V1}/tenants/{B}{suffix}", body).status_code in (200, 201)


def test_a_tenant_admin_cannot_reach_another_tenants_key_or_member(callers):
    team = callers.team
    key = api_key_issue(tenant=team.tenant_a, name="a").api_key
    carol = Membership.objects.get(tenant=team.tenant_a, user=team.carol)
    # Tenant B's URL with tenant A's objects: not found either (objects are looked up within the tenant).
    for method, path, body in (("get", f"/keys/{key.public_id}", None), ("post", f"/keys/{key.public_id}/revoke", None),
                               ("post", f"/keys/{key.public_id}/rotate", {}),
                               ("patch", f"/members/{carol.pk}", {"role": "admin"}),
                               ("delete", f"/members/{carol.pk}", None)):
        for slug in (A, B):
            assert call(callers.charlie, method, f"{V1}/tenants/{slug}{path}", body).status_code == 404
    key.refresh_from_db()
    assert not key.is_revoked and Membership.objects.get(pk=carol.pk).role == "member"


def test_revoked_admin_keys_and_demoted_creators_are_refused(callers, team):
    issued = admin_key_issue(tenant=team.tenant_a, name="tmp", actor=team.bob)
    api = client(issued.plaintext)
    assert call(api, "get", f"{V1}/tenants/{A}/keys").status_code == 200
    credential_revoke(credential=issued.credential, actor=team.alice)
    assert call(api, "get", f"{V1}/tenants/{A}/keys").status_code == 401
    Membership.objects.filter(tenant=team.tenant_a, user=team.bob).update(role="member")
    assert call(callers.bob, "post", f"{V1}/tenants/{A}/keys", {"name": "x"}).status_code == 403
    assert not ApiKey.objects.filter(tenant=team.tenant_a).exists()


WRITES = [
    ("post", f"{V1}/tenants", {"slug": "ro"}), ("patch", f"{V1}/tenants/{A}", {"log_requests": True}),
    ("post", f"{V1}/tenants/{A}/suspend", None), ("post", f"{V1}/tenants/{A}/credits", {"amount_nano": 1, "reason": "r"}),
    ("post", f"{V1}/tenants/{A}/adjustments", {"amount_nano": 1, "reason": "r"}),
    ("post", f"{V1}/tenants/{A}/keys", {"name": "x"}),
    ("post", f"{V1}/tenants/{A}/members", {"email": "bob@example.com", "role": "member"}),
    ("post", f"{V1}/models", {"name": "m"}), ("patch", f"{V1}/models/{SONNET}", {"enabled": False}),
    ("post", f"{V1}/models/{SONNET}/prices", {}), ("post", f"{V1}/providers", {"name": "p", "kind": "openai"}),
    ("post", f"{V1}/deployments", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_a_read_only_operator_token_cannot_write(callers, method, path, body):
    response = call(callers.viewer, method, path, body)
    assert response.status_code == 403 and "read-only" in response.json()["detail"]
    assert not AuditEntry.objects.filter(via="api").exists()


def test_a_read_only_operator_token_reads_everything(callers):
    for path in (f"{V1}/tenants", f"{V1}/tenants/{A}", f"{V1}/tenants/{A}/keys", f"{V1}/usage", f"{V1}/audit",
                 f"{V1}/models", f"{V1}/providers", f"{V1}/deployments", f"{V1}/ledger"):
        assert call(callers.viewer, "get", path).status_code == 200, path


# --- Bad input: a 400 naming the field, nothing written ---------------------------------------------------

BAD = [
    ("post", "/keys", {"name": 5}, "name"),
    ("post", "/keys", {"rpm_limit": "60"}, "rpm_limit"),
    ("post", "/keys", {"rpm_limit": True}, "rpm_limit"),
    ("post", "/keys", {"rpm_limit": 1.5}, "rpm_limit"),
    ("post", "/keys", {"rpm_limit": -1}, "rpm_limit"),
    ("post", "/keys", {"tpm_limit": 0}, "tpm_limit"),
    ("post", "/keys", {"tpm_limit": 2**40}, "tpm_limit"),
    ("post", "/keys", {"budget_nano": 1e30}, "budget_nano"),
    ("post", "/keys", {"budget_nano": 10**30}, "budget_nano"),
    ("post", "/keys", {"budget_nano": -5}, "budget_nano"),
    ("post", "/keys", {"budget_period": "week"}, "budget_period"),
    ("post", "/keys", {"expires_at": "yesterday"}, "expires_at"),
    ("post", "/keys", {"expires_at": "9999-12-31T23:59:59Z"}, "expires_at"),
    ("post", "/keys", {"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ("post", "/keys", {"expires_at": "2026-13-45T00:00:00Z"}, "expires_at"),
    ("post", "/keys", {"allowed_models": "claude-sonnet-4-6"}, "allowed_models"),
    ("post", "/keys", {"allowed_models": ["no-such-model"]}, "allowed_models"),
    ("post", "/keys", {"name": "x", "rpm": 5}, "rpm"),
    ("post", "/keys", ["not", "an", "object"], "non_field_errors"),
    ("patch", "", {"conversation_retention_days": 0}, "conversation_retention_days"),
    ("patch", "", {"store_conversations": "yes"}, "store_conversations"),
    ("patch", "", {"status": "suspended"}, "status"),
    ("post", "/credits", {"amount_nano": 0, "reason": "r"}, "amount_nano"),
    ("post", "/credits", {"amount_nano": -5, "reason": "r"}, "amount_nano"),
    ("post", "/credits", {"amount_nano": 1e30, "reason": "r"}, "amount_nano"),
    ("post", "/credits", {"amount_nano": 10**30, "reason": "r"}, "amount_nano"),
    ("post", "/credits", {"amount_nano": 5}, "reason"),
    ("post", "/credits", {"amount_nano": 5, "reason": "   "}, "reason"),
    ("post", "/adjustments", {"amount_nano": 0, "reason": "r"}, "amount"),
    ("post", "/members", {"email": "not-an-email", "role": "member"}, "email"),
    ("post", "/members", {"email": "bob@example.com", "role": "god"}, "role"),
    ("get", "/usage?since=not-a-date", None, "since"),
    ("get", "/usage?since=1900-01-01T00:00:00Z", None, "since"),
    ("get", "/usage?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", None, "until"),
    ("get", "/usage?status=weird", None, "status"),
    ("get", "/usage?colour=blue", None, "colour"),
    ("get", "/keys?limit=1000000000", None, "limit"),
    ("get", "/keys?limit=0", None, "limit"),
    ("get", "/keys?limit=-3", None, "limit"),
    ("get", "/keys?limit=ten", None, "limit"),
    ("get", "/keys?cursor=garbage", None, "cursor"),
    ("get", "/members?role=owner", None, "role"),
]


@pytest.mark.parametrize(("method", "suffix", "body", "field"), BAD, ids=[f"{m} {p} {f}" for m, p, _, f in BAD])
def test_bad_input_is_a_400_naming_the_field(callers, method, suffix, body, field):
    before = (AuditEntry.objects.count(), ApiKey.objects.count(), LedgerEntry.objects.count())
    response = call(callers.ops, method, f"{V1}/tenants/{A}{suffix}", body)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert (AuditEntry.objects.count(), ApiKey.objects.count(), LedgerEntry.objects.count()) == before


BAD_OPERATOR = [
    ("post", "/tenants", {"slug": "Not A Slug"}, "slug"),
    ("post", "/tenants", {"slug": "dash-acme"}, "non_field_errors"),
    ("post", "/tenants", {"slug": "neg", "credit_limit_nano": -1}, "credit_limit_nano"),
    ("post", f"/tenants/{A}/keys/nope/rotate", {"grace_seconds": 10**9}, "grace_seconds"),
    ("post", "/models", {"name": "x", "max_output_tokens": "lots"}, "max_output_tokens"),
    ("post", "/models", {"name": "bad name!"}, "name"),
    ("post", f"/models/{SONNET}/prices", {"input_nano_per_mtok": -1, "output_nano_per_mtok": 1,
                                          "cache_write_nano_per_mtok": 1, "cache_read_nano_per_mtok": 1},
     "input_nano_per_mtok"),
    ("post", "/providers", {"name": "p", "kind": "nope"}, "kind"),
    ("post", "/providers", {"name": "p", "kind": "openai", "base_url": "ftp://x"}, "base_url"),
    ("post", "/providers/anthropic/credentials", {"name": "c", "secret": "short"}, "secret"),
    ("post", "/deployments", {"model": "no-such", "provider": "anthropic", "upstream_model": "x"}, "model"),
    ("get", "/audit?via=telepathy", None, "via"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD_OPERATOR,
                         ids=[f"{m} {p} {f}" for m, p, _, f in BAD_OPERATOR])
def test_bad_operator_input_is_a_400_naming_the_field(callers, method, path, body, field):
    Provider.objects.get_or_create(name="anthropic", defaults={"kind": "anthropic"})
    api_key_issue(tenant=callers.team.tenant_a, name="k")
    if "keys/nope" in path:
        path = path.replace("nope", ApiKey.objects.get(tenant=callers.team.tenant_a).public_id)
    before = AuditEntry.objects.count()
    response = call(callers.ops, method, f"{V1}{path}", body)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert AuditEntry.objects.count() == before


# --- Idempotency ------------------------------------------------------------------------------------------


def test_a_retried_credit_returns_the_first_answer_and_posts_once(callers):
    url, body = f"{V1}/tenants/{A}/credits", {"amount_nano": 7 * 10**9, "reason": "invoice 42"}
    first = call(callers.ops, "post", url, body, HTTP_IDEMPOTENCY_KEY="inv-42")
    again = call(callers.ops, "post", url, body, HTTP_IDEMPOTENCY_KEY="inv-42")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again["Idempotent-Replayed"] == "true"
    assert LedgerEntry.objects.filter(tenant__slug=A).count() == 1
    assert AuditEntry.objects.filter(action="ledger.credit").count() == 1
    # The same key with another body is refused, and posts nothing.
    response = call(callers.ops, "post", url, {**body, "amount_nano": 8 * 10**9}, HTTP_IDEMPOTENCY_KEY="inv-42")
    assert response.status_code == 422 and response.json()["code"] == "idempotency_key_reused"
    # Another key (or another credential with the same key) is another request.
    assert call(callers.ops, "post", url, body, HTTP_IDEMPOTENCY_KEY="inv-43").status_code == 201
    assert LedgerEntry.objects.filter(tenant__slug=A).count() == 2


def test_a_retried_key_issue_returns_the_same_secret_once_stored_encrypted(callers):
    from management.models import IdempotencyRecord

    url = f"{V1}/tenants/{A}/keys"
    first = call(callers.alice, "post", url, {"name": "deploy"}, HTTP_IDEMPOTENCY_KEY="k1").json()
    again = call(callers.alice, "post", url, {"name": "deploy"}, HTTP_IDEMPOTENCY_KEY="k1").json()
    assert first == again and ApiKey.objects.filter(tenant__slug=A).count() == 1
    record = IdempotencyRecord.objects.get()
    assert first["key"] not in record.response_encrypted
    # A key from another credential is its own: charlie's "k1" is not alice's.
    assert call(callers.charlie, "post", f"{V1}/tenants/{B}/keys", {"name": "deploy"},
                HTTP_IDEMPOTENCY_KEY="k1").json()["key"] != first["key"]


def test_a_failed_request_is_not_stored_so_the_corrected_retry_runs(callers):
    url = f"{V1}/tenants/{A}/adjustments"
    assert call(callers.ops, "post", url, {"amount_nano": 0, "reason": "r"}, HTTP_IDEMPOTENCY_KEY="adj").status_code == 400
    response = call(callers.ops, "post", url, {"amount_nano": 0, "reason": "r"}, HTTP_IDEMPOTENCY_KEY="adj")
    assert response.status_code == 400


def test_idempotency_records_expire(callers, settings):
    from management.models import IdempotencyRecord

    url, body = f"{V1}/tenants/{A}/credits", {"amount_nano": 10**9, "reason": "r"}
    call(callers.ops, "post", url, body, HTTP_IDEMPOTENCY_KEY="old")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=settings.MANAGEMENT_IDEMPOTENCY_HOURS,
                                                                            minutes=1))
    assert call(callers.ops, "post", url, body, HTTP_IDEMPOTENCY_KEY="old").status_code == 201
    assert LedgerEntry.objects.filter(tenant__slug=A).count() == 2 and IdempotencyRecord.objects.count() == 1


# --- The schema and the docs ------------------------------------------------------------------------------


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _api_routes() -> set[tuple[str, str]]:
    """(path, method) of every management operation, from the URLconf (not from the schema)."""
    from drf_spectacular.generators import EndpointEnumerator

    return {(path, method.lower()) for path, _, method, _ in EndpointEnumerator().get_api_endpoints()
            if path.startswith("/api/v1/")}


def test_every_operation_is_documented(schema):
    operations = {(path, method): operation for path, methods in schema["paths"].items()
                  for method, operation in methods.items()}
    assert schema["openapi"].startswith("3.1")
    assert set(operations) == _api_routes() and len(operations) >= 40
    for (path, method), operation in operations.items():
        assert operation.get("summary"), (path, method)
        assert operation.get("operationId") and operation.get("responses"), (path, method)
        assert operation.get("security") == [{"managementCredential": []}], (path, method)
        if method in ("post", "patch") and "requestBody" in operation:
            assert operation["requestBody"]["content"]["application/json"].get("examples"), (path, method)
    ids = [operation["operationId"] for operation in operations.values()]
    assert len(ids) == len(set(ids))


def test_the_example_requests_are_valid(schema):
    registry = Registry().with_resource("urn:schema", Resource.from_contents(schema, default_specification=DRAFT202012))
    checked = bodies = 0
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if not content:
                continue
            bodies += 1
            validator = Draft202012Validator({"$ref": "urn:schema" + content["schema"]["$ref"]}, registry=registry)
            for name, example in content.get("examples", {}).items():
                errors = list(validator.iter_errors(example["value"]))
                assert not errors, (path, method, name, errors[0].message)
                checked += 1
    assert checked >= bodies >= 15


def test_the_docs_page_is_served_locally(client):
    from django.contrib.staticfiles import finders

    response = client.get("/api/docs/")
    page = response.content.decode()
    assert response.status_code == 200 and "/api/schema/" in page
    assert "cdn" not in page.lower() and "unpkg" not in page
    scripts = [part.split('"')[0] for part in page.split('src="')[1:]]
    assert any("swagger-ui" in script for script in scripts)
    for script in scripts:  # our own static files (collectstatic puts them where the server serves /static)
        assert script.startswith("/static/") and finders.find(script.removeprefix("/static/")), script


@requires_postgres
def test_concurrent_retries_with_one_key_post_once(django_db_blocker):
    """Two copies of one request at once (a client retrying on a timeout): one credit, one answer.

    Committed rows and a thread per request (each its own connection), so the copies really race."""
    import threading
    import uuid

    from django.db import connection

    with django_db_blocker.unblock():
        tenant = Tenant.objects.create(slug=f"idem-{uuid.uuid4().hex[:10]}", name="Idem")
        token = operator_token_issue(name="race").plaintext
        barrier, answers = threading.Barrier(4), []

        def post():
            barrier.wait()
            response = call(client(token), "post", f"{V1}/tenants/{tenant.slug}/credits",
                            {"amount_nano": 10**9, "reason": "race"}, HTTP_IDEMPOTENCY_KEY="same")
            answers.append((response.status_code, response.json()))
            connection.close()

        threads = [threading.Thread(target=post) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [status for status, _ in answers] == [201] * 4
        assert len({str(body) for _, body in answers}) == 1
        assert LedgerEntry.objects.filter(tenant=tenant).count() == 1


def test_tenant_admins_turn_prompt_cache_breakpoints_on_for_the_tenant_and_for_one_key(callers):
    team = callers.team
    audited(callers.bob, "patch", f"{V1}/tenants/{A}", {"auto_cache_control": True}, action="tenant.update")
    assert Tenant.objects.get(slug=A).auto_cache_control is True
    assert call(callers.bob, "get", f"{V1}/tenants/{A}").json()["auto_cache_control"] is True
    issued = audited(callers.bob, "post", f"{V1}/tenants/{A}/keys", {"name": "cached", "auto_cache_control": True},
                     status=201, action="key.issue").json()
    assert issued["auto_cache_control"] is True
    assert call(callers.bob, "patch", f"{V1}/tenants/{A}/keys/{issued['id']}", {"auto_cache_control": "yes"}
                ).status_code == 400
    audited(callers.bob, "patch", f"{V1}/tenants/{A}/keys/{issued['id']}", {"auto_cache_control": False},
            action="key.update")
    assert ApiKey.objects.get(public_id=issued["id"]).auto_cache_control is False
    assert team  # the personas' tenant A
def test_per_end_user_limits_are_key_settings_of_the_management_api(callers):
    ops, keys_url = callers.ops, f"{V1}/tenants/{B}/keys"
    issued = audited(ops, "post", keys_url, {"name": "eu", "end_user_rpm_limit": 10, "end_user_budget_nano": 5 * 10**8},
                     status=201, action="key.issue").json()
    assert (issued["end_user_rpm_limit"], issued["end_user_budget_nano"]) == (10, 5 * 10**8)
    patched = audited(ops, "patch", f"{keys_url}/{issued['id']}", {"end_user_rpm_limit": None},
                      action="key.update").json()
    assert (patched["end_user_rpm_limit"], patched["end_user_budget_nano"]) == (None, 5 * 10**8)
    bad = call(ops, "patch", f"{keys_url}/{issued['id']}", {"end_user_budget_nano": 0})
    assert bad.status_code == 400 and "end_user_budget_nano" in bad.json()
