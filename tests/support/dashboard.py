"""Shared by the dashboard tests: personas in two tenants, and a check of who may open a URL.

The `team` and `client_for` fixtures (tests/conftest.py) build them:

    from tests.support.dashboard import assert_roles

    def test_usage_page_roles(client_for):
        assert_roles(client_for, reverse("usage"), {"owner", "admin"})

Personas (as in healthchecks' hc/test.py): alice owns tenant A, bob is its admin, carol a member;
charlie owns tenant B and is the outsider to everything of tenant A.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, Tenant
from billing.models import UsageEvent

PASSWORD = "Gatehouse-test-pw-42!"
ROLES = ("member", "admin", "owner")  # of tenant A, lowest first
MODEL = "claude-sonnet-4-6"  # what `spend` bills
ALLOWED_STATUSES = (200, 302, 400)  # 400: a POST with an invalid form was let in and answered with its errors


@dataclass
class Team:
    tenant_a: Tenant
    tenant_b: Tenant
    alice: object  # owner of A
    bob: object  # admin of A
    carol: object  # member of A
    charlie: object  # owner of B

    def user(self, role: str):
        return {"owner": self.alice, "admin": self.bob, "member": self.carol, "outsider": self.charlie}[role]


def make_user(email: str, password: str = PASSWORD):
    return get_user_model().objects.create_user(username=email, email=email, password=password)


FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # PBKDF2 would cost ~0.3 s per user


def assert_roles(client_for, url: str, allowed_roles, *, method: str = "get", data: dict | None = None,
                 denied_status: int = 403, outsider_status: int | None = None) -> None:
    """Anonymous: redirected to the login page. Each role of tenant A: let in when in `allowed_roles`,
    else `denied_status` (403 for a page above the role; 404 for an object the role may not even see).
    `outsider_status`, when given: what tenant B's owner gets (404 for tenant A's objects).
    """
    def call(role):
        return getattr(client_for(role), method)(url, data or {})

    response = call(None)
    assert response.status_code == 302 and response.url.startswith(reverse("login")), \
        f"anonymous {method.upper()} {url}: {response.status_code}"
    for role in ROLES:
        response = call(role)
        status = response.status_code
        if role in allowed_roles:
            assert status in ALLOWED_STATUSES, f"{role} {method.upper()} {url}: {status}, expected to be let in"
            assert status != 302 or not response.url.startswith(reverse("login")), f"{role} sent to log in: {url}"
        else:
            assert status == denied_status, f"{role} {method.upper()} {url}: {status}, expected {denied_status}"
    if outsider_status is not None:
        status = call("outsider").status_code
        assert status == outsider_status, f"outsider {method.upper()} {url}: {status}, expected {outsider_status}"


@pytest.fixture(autouse=True)
def _own_cache_and_fast_hasher(settings):
    """Autouse in the modules that import it: fast password hashing, and a cache of its own per test."""
    settings.PASSWORD_HASHERS = FAST_HASHERS
    # A cache of its own per test: the login-failure counters of one test must not throttle the next.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"dashboard-{uuid.uuid4().hex}"}}


def text(response) -> str:
    return response.content.decode()


def spend(api_key: ApiKey, cost_nano: int) -> None:
    """A usage row of `cost_nano` on `api_key`, now."""
    UsageEvent.objects.create(
        request_id=f"req_{uuid.uuid4().hex}", tenant=api_key.tenant, api_key=api_key, endpoint="chat.completions",
        requested_model=MODEL, model=MODEL, upstream_model=MODEL, stream=False, input_tokens=10, output_tokens=10,
        cost_nano=cost_nano, status=UsageEvent.Status.OK, http_status=200, latency_ms=5, created_at=timezone.now())
