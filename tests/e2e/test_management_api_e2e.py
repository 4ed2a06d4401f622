"""The management API over real HTTP on the production ASGI server: /api/ is served by Django's full
handler (config/asgi.py), token-authenticated POSTs need no CSRF token, and the credentials stay on
their side of the line (admin keys refused on the model APIs, API keys on the management API)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from accounts.models import Membership
from accounts.services import admin_key_issue, membership_set, operator_token_issue, tenant_create
from billing.models import LedgerEntry
from tests.support.dashboard import make_user

pytestmark = pytest.mark.e2e  # no test transaction: the server process must see committed rows


@pytest.fixture(scope="module")
def credentials(django_db_setup, django_db_blocker):
    """An operator token and an admin key of a fresh tenant, committed so the server process sees them."""
    with django_db_blocker.unblock():
        tenant = tenant_create(slug=f"mgmt-{uuid.uuid4().hex[:10]}", name="Mgmt")
        owner = make_user(f"{tenant.slug}@example.com")
        membership_set(tenant=tenant, user=owner, role=Membership.Role.OWNER)
        return {"tenant": tenant.slug,
                "operator": operator_token_issue(name="e2e").plaintext,
                "admin": admin_key_issue(tenant=tenant, name="e2e", actor=owner).plaintext}


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def test_schema_and_docs_are_served(gateway):
    schema = httpx.get(f"{gateway}/api/schema/?format=json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.1")
    assert "/api/v1/tenants/{slug}/keys" in schema.json()["paths"]
    docs = httpx.get(f"{gateway}/api/docs/")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


def test_an_operator_creates_a_tenant_and_credits_it_once_over_http(gateway, credentials, db_access):
    with httpx.Client(base_url=f"{gateway}/api/v1", headers=bearer(credentials["operator"])) as api:
        slug = f"http-{uuid.uuid4().hex[:10]}"
        # No session, no CSRF cookie or token: a bearer-authenticated POST is not a browser form.
        created = api.post("/tenants", json={"slug": slug, "name": "Over HTTP"})
        assert created.status_code == 201, created.text
        body = {"amount_nano": 2 * 10**9, "reason": "HTTP credit"}
        first = api.post(f"/tenants/{slug}/credits", json=body, headers={"Idempotency-Key": "http-1"})
        again = api.post(f"/tenants/{slug}/credits", json=body, headers={"Idempotency-Key": "http-1"})
        assert first.status_code == again.status_code == 201 and first.json() == again.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert api.get(f"/tenants/{slug}/balance").json()["balance_nano"] == 2 * 10**9
        bad = api.get("/tenants", params={"limit": 10**9})
        assert bad.status_code == 400 and "limit" in bad.json()
    assert LedgerEntry.objects.filter(tenant__slug=slug).count() == 1


def test_an_admin_key_issues_an_api_key_and_each_stays_on_its_side(gateway, credentials):
    with httpx.Client(base_url=gateway) as http:
        admin = bearer(credentials["admin"])
        issued = http.post(f"/api/v1/tenants/{credentials['tenant']}/keys", json={"name": "app"}, headers=admin)
        assert issued.status_code == 201, issued.text
        api_key = issued.json()["key"]
        assert http.get("/v1/models", headers=bearer(api_key)).status_code == 200
        refused = http.get("/v1/models", headers=admin)
        assert refused.status_code == 401 and "cannot call models" in refused.json()["error"]["message"]
        refused = http.get("/api/v1/whoami", headers=bearer(api_key))
        assert refused.status_code == 401 and "model APIs only" in refused.json()["detail"]
        other = http.get("/api/v1/tenants", headers=admin)
        assert other.status_code == 403
