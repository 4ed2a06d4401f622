"""Shared by the dashboard tests: personas in two tenants, and a check of who may open a URL.

Import the fixtures into a test module to use them:

    from .dashboard_helpers import assert_roles, client_for, team  # noqa: F401 (fixtures)

    def test_usage_page_roles(client_for):
        assert_roles(client_for, reverse("usage"), {"owner", "admin"})

Personas (as in healthchecks' hc/test.py): alice owns tenant A, bob is its admin, carol a member;
charlie owns tenant B and is the outsider to everything of tenant A.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts.models import Membership, Tenant
from accounts.services import membership_set, tenant_create

PASSWORD = "Gatehouse-test-pw-42!"
ROLES = ("member", "admin", "owner")  # of tenant A, lowest first
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


@pytest.fixture
def team(db, settings) -> Team:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    tenant_a = tenant_create(slug="dash-acme", name="Acme")
    tenant_b = tenant_create(slug="dash-globex", name="Globex")
    people = Team(tenant_a=tenant_a, tenant_b=tenant_b, alice=make_user("alice@example.com"),
                  bob=make_user("bob@example.com"), carol=make_user("carol@example.com"),
                  charlie=make_user("charlie@example.com"))
    membership_set(tenant=tenant_a, user=people.alice, role=Membership.Role.OWNER)
    membership_set(tenant=tenant_a, user=people.bob, role=Membership.Role.ADMIN)
    membership_set(tenant=tenant_a, user=people.carol, role=Membership.Role.MEMBER)
    membership_set(tenant=tenant_b, user=people.charlie, role=Membership.Role.OWNER)
    return people


@pytest.fixture
def client_for(team):
    """client_for(role) -> a Client signed in as that persona; role None: anonymous.

    Roles: "owner", "admin", "member" (of tenant A) and "outsider" (the owner of tenant B).
    """
    clients: dict = {}

    def get(role: str | None) -> Client:
        if role not in clients:
            clients[role] = Client()
            if role is not None:
                clients[role].force_login(team.user(role))
        return clients[role]

    return get


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
