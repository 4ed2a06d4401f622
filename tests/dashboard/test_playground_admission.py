"""The dashboard's playground passes the same admission as a presented key: every refusal the API gives
(suspended tenant, budget, balance, token limit, model allow-list) is the playground's too, in OpenAI's
error shape, and a refused turn writes no usage row.

Rows are committed with fresh tenants per test (admission's per-process counters are keyed by ids).
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from accounts.models import Membership
from billing.models import UsageEvent
from tests.support.dashboard import FAST_HASHERS, make_user

pytestmark = pytest.mark.e2e  # committed rows, no test transaction

BODY = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hello"}], "store": False}


@pytest.fixture
def member(django_db_setup, django_db_blocker, settings):
    """(client signed in as a member of a fresh, credited tenant, the tenant, the user's playground key)."""
    from accounts.services import membership_set, tenant_create
    from billing.services import credit_grant
    from gateway.services import playground_key

    settings.PASSWORD_HASHERS = FAST_HASHERS
    tag = uuid.uuid4().hex[:10]
    with django_db_blocker.unblock():
        tenant = tenant_create(slug=f"pg-{tag}", name="Playground Co")
        user = make_user(f"pg-{tag}@example.com")
        membership_set(tenant=tenant, user=user, role=Membership.Role.MEMBER)
        credit_grant(tenant=tenant, amount_nano=10 * 10**9, reason="test credit")
        key = playground_key(tenant=tenant, user=user)
        client = Client()
        client.force_login(user)
        yield client, tenant, key


def _refused(client: Client, django_db_blocker, key, status: int, code: str, body=BODY) -> dict:
    with django_db_blocker.unblock():
        response = client.post("/dashboard/playground/chat", body, content_type="application/json")
        assert not UsageEvent.objects.filter(api_key=key).exclude(request_id__startswith="req_seed").exists()
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_playground_of_a_suspended_tenant_is_refused_as_the_api_refuses(member, django_db_blocker):
    from accounts.models import Tenant
    from accounts.services import tenant_set_status

    client, tenant, key = member
    with django_db_blocker.unblock():
        tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)
    error = _refused(client, django_db_blocker, key, 403, "account_suspended")
    assert "suspended" in error["message"]


def test_playground_over_its_keys_budget_is_refused(member, django_db_blocker):
    from django.utils import timezone

    client, tenant, key = member
    with django_db_blocker.unblock():
        key.budget_nano, key.budget_period = 1_000, "day"
        key.save(update_fields=["budget_nano", "budget_period"])
        UsageEvent.objects.create(
            request_id=f"req_seed{uuid.uuid4().hex[:20]}", tenant=tenant, api_key=key, endpoint="chat.completions",
            requested_model="claude-sonnet-4-6", model="claude-sonnet-4-6", upstream_model="claude-sonnet-4-6",
            stream=False, input_tokens=10, output_tokens=10, cost_nano=5_000, status="ok", http_status=200,
            latency_ms=1, created_at=timezone.now())
    _refused(client, django_db_blocker, key, 429, "insufficient_quota")


def test_playground_of_a_tenant_without_balance_is_refused(member, django_db_blocker):
    from billing.services import ledger_adjust

    client, tenant, key = member
    with django_db_blocker.unblock():
        ledger_adjust(tenant=tenant, amount_nano=-10 * 10**9, reason="spent elsewhere")
    _refused(client, django_db_blocker, key, 429, "insufficient_quota")


def test_playground_over_its_keys_token_limit_is_refused(member, django_db_blocker):
    client, _, key = member
    with django_db_blocker.unblock():
        key.tpm_limit = 1
        key.save(update_fields=["tpm_limit"])
    _refused(client, django_db_blocker, key, 429, "rate_limit_exceeded")


def test_playground_asking_for_a_model_its_key_may_not_use_is_refused(member, django_db_blocker):
    client, _, key = member
    with django_db_blocker.unblock():
        key.allowed_models = ["claude-haiku-4-5"]
        key.save(update_fields=["allowed_models"])
    _refused(client, django_db_blocker, key, 403, "model_not_allowed")


def test_playground_without_a_membership_is_refused(django_db_setup, django_db_blocker):
    response = Client().post("/dashboard/playground/chat", BODY, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "login_required"
