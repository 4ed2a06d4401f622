"""Dashboard key tests that need committed rows, seen from other threads: parallel POSTs of one create form,
and a real admission in flight (the budget counters are seeded from the database in another thread).

Rows are committed with fresh tenants per test, as in tests/dashboard/test_playground_admission.py: a transactional
test would flush the seeded catalog that the end-to-end tests after it rely on.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, AuditEntry
from accounts.services import api_key_issue, membership_set, tenant_create
from tests.support.dashboard import FAST_HASHERS, MODEL, make_user, spend, text

pytestmark = pytest.mark.e2e  # committed rows, no test transaction


@pytest.fixture
def owner(django_db_setup, django_db_blocker, settings):
    """(a fresh tenant, its owner), committed; `django_db_blocker` stays unblocked for the test."""
    settings.PASSWORD_HASHERS = FAST_HASHERS
    tag = uuid.uuid4().hex[:10]
    with django_db_blocker.unblock():
        tenant = tenant_create(slug=f"keys-{tag}", credit_limit_nano=None)
        user = make_user(f"keys-{tag}@example.com")
        membership_set(tenant=tenant, user=user, role="owner")
        yield tenant, user


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="concurrent writes: PostgreSQL")
def test_two_parallel_posts_of_one_form_create_one_key(owner):
    tenant, user = owner
    form = {"name": "parallel", "form_token": uuid.uuid4().hex, "budget_period": "month"}
    urls, barrier = [], threading.Barrier(4)

    def post():
        client = Client()
        client.force_login(user)
        barrier.wait()
        try:
            urls.append(client.post(reverse("key-create"), form).url)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ApiKey.objects.filter(tenant=tenant, name="parallel").count() == 1
    key = ApiKey.objects.get(tenant=tenant, name="parallel")
    assert sorted(urls) == sorted([reverse("key-created")] + [f"{reverse('key-created')}?key={key.pk}"] * 3)
    assert AuditEntry.objects.filter(action="key.issue", api_key=key).count() == 1


def test_the_budget_bar_shows_what_requests_in_flight_reserved(owner):
    """A real admission (Redis or the local counters, whichever this run has), not yet settled."""
    from accounts.selectors import key_principal
    from gateway.admission import admission
    from gateway.selectors import catalog_forget, model_resolve

    tenant, user = owner
    api_key = api_key_issue(tenant=tenant, name="busy", budget_nano=10**9).api_key
    spend(api_key, 100_000_000)
    catalog_forget()
    model = async_to_sync(model_resolve)(MODEL)
    # 10,000 output tokens at $15 per million: $0.15 reserved.
    ticket = async_to_sync(admission.admit)(key_principal(api_key.public_id), model,
                                           {"max_tokens": 10_000, "messages": []})
    client = Client()
    client.force_login(user)
    try:
        page = text(client.get(reverse("keys")))
        assert "$0.10 spent of $1.00 this month (10%)" in page
        assert "$0.15 reserved by requests in flight" in page
    finally:
        async_to_sync(admission.settle)(ticket, tokens=0, cost_nano=0)
        async_to_sync(admission.drain)()
    assert "reserved by requests in flight" not in text(client.get(reverse("keys")))
