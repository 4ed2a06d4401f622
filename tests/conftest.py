"""Fixtures for every test: the test database, the fake upstreams and the real gateway as processes,
tenant personas, and the dashboard's team of users. Their helpers live in tests/support/.

End-to-end tests drive a real ASGI server (the production launcher, `python -m gateway.serve`) that
shares the test database, with the official SDKs as clients. Data they need is created once per
session outside any test transaction, so the server process sees it.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import Membership
from accounts.services import membership_set, tenant_create
from tests.support.dashboard import FAST_HASHERS, Team, make_user
from tests.support.e2e import (
    REDIS_PREFIX,
    FaultProxy,
    Persona,
    fake_server,
    fault_proxy_process,
    make_persona,
    start_gateway,
    stop_process,
)
from tests.support.env import ROOT, database_url_for_current_connection


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker, django_db_keepdb):
    """Always create the test database, even when only end-to-end tests run.

    pytest-django creates it only for tests marked django_db, but end-to-end tests must run outside a
    test transaction (the server process sees only committed rows, and SQLite's write lock would shut
    it out), so they are not marked.
    """
    from django.test.utils import setup_databases, teardown_databases

    (ROOT / "var").mkdir(exist_ok=True)  # the SQLite test database's home, absent in a fresh clone
    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, keepdb=django_db_keepdb, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=0, keepdb=django_db_keepdb)


@pytest.fixture(scope="session")
def fake_upstream():
    """Base URL of a fake Anthropic server process."""
    yield from fake_server("fakes.anthropic")


@pytest.fixture(scope="session")
def fake_openai_upstream():
    """Base URL (without /v1) of a fake OpenAI-compatible server process."""
    yield from fake_server("fakes.openai_compat")


@pytest.fixture(scope="session")
def fake_stripe():
    """Base URL of a fake Stripe server process (fakes/stripe.py); webhooks go where a test says."""
    yield from fake_server("fakes.stripe")


@pytest.fixture(scope="session")
def _fault_proxy_session(fake_upstream):
    yield from fault_proxy_process(fake_upstream)


@pytest.fixture(scope="session")
def _fault_openai_proxy_session(fake_openai_upstream):
    yield from fault_proxy_process(fake_openai_upstream)


@pytest.fixture
def fault_proxy(_fault_proxy_session) -> FaultProxy:
    """A fault-injection proxy in front of the fake Anthropic server, in `pass` mode with an empty log."""
    _fault_proxy_session.reset()
    yield _fault_proxy_session
    _fault_proxy_session.set("pass")


@pytest.fixture
def fault_openai_proxy(_fault_openai_proxy_session) -> FaultProxy:
    """A fault-injection proxy in front of the fake OpenAI-compatible server, in `pass` mode with an empty log."""
    _fault_openai_proxy_session.reset()
    yield _fault_openai_proxy_session
    _fault_openai_proxy_session.set("pass")


@pytest.fixture(scope="session", autouse=True)
def _redis_namespace():
    settings.GATEWAY_REDIS_PREFIX = REDIS_PREFIX


@pytest.fixture
def persona(django_db_setup, django_db_blocker) -> Persona:
    """A key of a tenant of its own, made for this test (committed, so server processes see it)."""
    import uuid

    with django_db_blocker.unblock():
        return make_persona(f"p-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def personas(django_db_setup, django_db_blocker):
    """alice and bob are customers of different tenants; created once, committed, visible to servers."""
    with django_db_blocker.unblock():
        return {"alice": make_persona("acme"), "bob": make_persona("globex")}


@pytest.fixture(scope="session")
def gateway_db_url(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        return database_url_for_current_connection()


@pytest.fixture(scope="session")
def gateway(gateway_db_url, fake_upstream):
    """Base URL of the gateway served by the production launcher against the test database."""
    url, process = start_gateway(gateway_db_url, fake_upstream)
    yield url
    stop_process(process)


@pytest.fixture(scope="session")
def second_gateway(gateway_db_url, fake_upstream):
    """Another gateway process on the same database and Redis, as in a deployment with several."""
    url, process = start_gateway(gateway_db_url, fake_upstream)
    yield url
    stop_process(process)


@pytest.fixture
def db_access(django_db_blocker):
    """Read what the server processes committed, outside a test transaction."""
    with django_db_blocker.unblock():
        yield


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
