"""The dashboard's usage, conversations and playground pages, and the live usage WebSocket.

Personas: alice owns tenant A, mallory is a member of A, bob owns tenant B. Rows are committed (the
WebSocket consumer and the gateway process read them from other connections).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import Membership
from billing.models import UsageEvent
from tests.support.dashboard import assert_roles

pytestmark = pytest.mark.e2e  # committed rows, no test transaction

PASSWORD = "correct horse battery staple 42"


class World:
    def __init__(self) -> None:
        from django.contrib.auth import get_user_model

        from accounts.services import api_key_issue, membership_set, tenant_create
        from billing.services import credit_grant

        tag = uuid.uuid4().hex[:8]
        users = get_user_model().objects
        self.alice = users.create_user(f"alice-{tag}@example.com", f"alice-{tag}@example.com", PASSWORD)
        self.mallory = users.create_user(f"mallory-{tag}@example.com", f"mallory-{tag}@example.com", PASSWORD)
        self.bob = users.create_user(f"bob-{tag}@example.com", f"bob-{tag}@example.com", PASSWORD)
        self.tenant_a = tenant_create(slug=f"a-{tag}", name="Tenant A")
        self.tenant_b = tenant_create(slug=f"b-{tag}", name="Tenant B")
        credit_grant(tenant=self.tenant_a, amount_nano=100 * 10**9, reason="test credit")
        membership_set(tenant=self.tenant_a, user=self.alice, role=Membership.Role.OWNER)
        membership_set(tenant=self.tenant_a, user=self.mallory, role=Membership.Role.MEMBER)
        membership_set(tenant=self.tenant_b, user=self.bob, role=Membership.Role.OWNER)
        self.alice_key = api_key_issue(tenant=self.tenant_a, name="alice-ci", created_by=self.alice).api_key
        self.mallory_key = api_key_issue(tenant=self.tenant_a, name="mallory-dev", created_by=self.mallory).api_key
        self.bob_key = api_key_issue(tenant=self.tenant_b, name="bob-prod", created_by=self.bob).api_key

    def client(self, user) -> Client:
        client = Client()
        client.force_login(user)
        return client


@pytest.fixture
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        yield World()


def usage(api_key, *, model="claude-sonnet-4-6", cost=1_000_000, request_id=None, **fields) -> UsageEvent:
    return UsageEvent.objects.create(
        request_id=request_id or f"req_{uuid.uuid4().hex[:24]}", tenant_id=api_key.tenant_id, api_key=api_key,
        endpoint="chat.completions", requested_model=model, model=model, upstream_model=model, stream=False,
        input_tokens=100, output_tokens=20, cost_nano=cost, status="ok", http_status=200, latency_ms=5,
        created_at=fields.pop("created_at", datetime.now(UTC)), **fields)


def test_usage_page_shows_spend_by_model_and_key_and_members_see_only_their_own(world, django_db_blocker):
    with django_db_blocker.unblock():
        usage(world.alice_key, request_id=f"req_alice{uuid.uuid4().hex[:8]}", cost=2_500_000_000)
        usage(world.mallory_key, model="claude-haiku-4-5", request_id=f"req_mallory{uuid.uuid4().hex[:8]}")
        usage(world.bob_key, request_id=f"req_bob{uuid.uuid4().hex[:8]}")
        usage(world.alice_key, created_at=datetime.now(UTC) - timedelta(days=40))  # outside the window
        owner = world.client(world.alice).get("/dashboard/usage/").content.decode()
        member = world.client(world.mallory).get("/dashboard/usage/").content.decode()
        fragment = world.client(world.alice).get("/dashboard/usage/?fragment=1").content.decode()
        csv = world.client(world.mallory).get("/dashboard/usage.csv")
    assert "req_alice" in owner and "req_mallory" in owner and "req_bob" not in owner
    assert "alice-ci" in owner and "mallory-dev" in owner and "$2.50" in owner and "Balance available" in owner
    assert "<svg" in owner and "claude-haiku-4-5" in owner
    assert "req_mallory" in member and "req_alice" not in member and "Balance available" not in member
    assert "<html" not in fragment and "req_alice" in fragment
    assert csv.status_code == 200 and csv["content-type"].startswith("text/csv")
    assert "claude-haiku-4-5" in csv.content.decode() and "claude-sonnet-4-6" not in csv.content.decode()


def test_usage_page_empty_state_tells_what_to_do(world, django_db_blocker):
    with django_db_blocker.unblock():
        page = world.client(world.bob).get("/dashboard/usage/").content.decode()
    assert "No requests yet" in page and "/dashboard/keys/" in page


def test_budget_burn_down_shows_spend_against_the_keys_budget(world, django_db_blocker):
    from accounts.services import api_key_update

    with django_db_blocker.unblock():
        api_key_update(api_key=world.alice_key, budget_nano=10 * 10**9, budget_period="month")
        usage(world.alice_key, cost=2_500_000_000)
        page = world.client(world.alice).get("/dashboard/usage/").content.decode()
    assert "$2.50 spent of $10.00 this month (25%)" in page and 'data-percent="25"' in page
    assert "Over budget" not in page
    with django_db_blocker.unblock():
        usage(world.alice_key, cost=11 * 10**9)  # 135 %: shown as such, not as a full bar
        page = world.client(world.alice).get("/dashboard/usage/").content.decode()
    assert "$13.50 spent of $10.00 this month (135%)" in page and "Over budget" in page


def test_conversations_pages_list_show_and_delete_within_the_tenant(world, django_db_blocker):
    from conversations.services import conversation_create

    with django_db_blocker.unblock():
        now = datetime.now(UTC)
        mine = conversation_create(tenant_id=world.tenant_a.pk, api_key_id=world.alice_key.pk, system="Be brief.",
                                   messages=[{"role": "user", "content": [{"type": "text", "text": "hello there"}]},
                                             {"role": "assistant", "content": [
                                                 {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": 1}}]}],
                                   metadata={}, now=now)
        theirs = conversation_create(tenant_id=world.tenant_b.pk, api_key_id=world.bob_key.pk, system=None,
                                     messages=[{"role": "user", "content": [{"type": "text", "text": "bob's"}]}],
                                     metadata={}, now=now)
        alice, bob, mallory = world.client(world.alice), world.client(world.bob), world.client(world.mallory)
        listing = alice.get("/dashboard/conversations/").content.decode()
        detail = alice.get(f"/dashboard/conversations/{mine.pk}/").content.decode()
        assert bob.get(f"/dashboard/conversations/{mine.pk}/").status_code == 404
        assert bob.post(f"/dashboard/conversations/{mine.pk}/delete/").status_code == 404
        assert mallory.get(f"/dashboard/conversations/{mine.pk}/").status_code == 404  # not one of her keys'
        confirm = alice.get(f"/dashboard/conversations/{mine.pk}/delete/")
        deleted = alice.post(f"/dashboard/conversations/{mine.pk}/delete/")
        from conversations.models import Conversation

        assert not Conversation.objects.filter(pk=mine.pk).exists() and Conversation.objects.filter(pk=theirs.pk).exists()
    assert mine.pk in listing and theirs.pk not in listing
    assert "hello there" in detail and "lookup({&quot;q&quot;:1})" in detail and "Be brief." in detail
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    assert deleted.status_code == 302


def test_pages_need_a_login_and_a_membership(world, django_db_blocker):
    with django_db_blocker.unblock():
        for url in ("/dashboard/usage/", "/dashboard/usage.csv", "/dashboard/conversations/", "/dashboard/playground/"):
            response = Client().get(url)
            assert response.status_code == 302 and "/login/" in response["location"]


def test_the_playground_key_is_the_users_own_and_reissued_after_revocation(world, django_db_blocker):
    from accounts.services import api_key_revoke
    from gateway.services import playground_key

    with django_db_blocker.unblock():
        first = playground_key(tenant=world.tenant_a, user=world.mallory)
        assert playground_key(tenant=world.tenant_a, user=world.mallory) == first
        assert first.created_by == world.mallory and first.expires_at is not None
        api_key_revoke(api_key=first)
        again = playground_key(tenant=world.tenant_a, user=world.mallory)
    assert again.pk != first.pk


class Browser(httpx.Client):
    """httpx with a browser's cookie rule for localhost: its cookies are `Secure` outside DEBUG, which
    browsers send to http://127.0.0.1 (a secure context) but http.cookiejar keeps for HTTPS."""

    def send(self, request, **kwargs):
        if self.cookies:
            request.headers["cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return super().send(request, **kwargs)


def test_playground_chat_streams_through_the_gateway_and_reports_the_turns_cost(world, gateway, django_db_blocker):
    with Browser(base_url=gateway) as browser:
        page = browser.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        logged_in = browser.post("/login/", data={"username": world.mallory.username, "password": PASSWORD,
                                                  "csrfmiddlewaretoken": token}, headers={"referer": f"{gateway}/login/"})
        assert logged_in.status_code == 302
        page = browser.get("/dashboard/playground/")
        assert page.status_code == 200 and "claude-sonnet-4-6" in page.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        body = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi from the playground"}],
                "stream": True, "stream_options": {"include_usage": True}, "store": False}
        refused = browser.post("/dashboard/playground/chat", json=body)  # no CSRF token
        assert refused.status_code == 403
        answer = browser.post("/dashboard/playground/chat", json=body,
                              headers={"X-CSRFToken": token, "referer": f"{gateway}/dashboard/playground/"})
        assert answer.status_code == 200
        text = "".join(re.findall(r'"content":"([^"]*)"', answer.text))
        assert "You said: hi from the playground" in text
        cost = browser.get(f"/dashboard/playground/usage/{answer.headers['request-id']}").json()
        assert cost["input_tokens"] > 0 and cost["cost"].startswith("$")
    with django_db_blocker.unblock():
        row = UsageEvent.objects.get(request_id=answer.headers["request-id"])
        assert row.api_key.name == "Playground" and row.api_key.created_by == world.mallory
    anonymous = httpx.post(f"{gateway}/dashboard/playground/chat", json=body)
    assert anonymous.status_code in (401, 403)


async def test_the_usage_socket_tells_a_tenants_open_pages_about_new_usage(world, django_db_blocker):
    from asgiref.sync import sync_to_async
    from django.db import connection, connections

    from billing.live import usage_notifier
    from config.asgi import application

    def session_cookie(user) -> bytes:
        try:
            client = world.client(user)
            return f"sessionid={client.cookies['sessionid'].value}".encode()
        finally:
            connection.close()

    with django_db_blocker.unblock():
        alice_cookie = await sync_to_async(session_cookie)(world.alice)
        bob_cookie = await sync_to_async(session_cookie)(world.bob)

        async def connect(cookie: bytes | None):
            headers = [(b"origin", b"http://127.0.0.1")] + ([(b"cookie", cookie)] if cookie else [])
            socket = WebsocketCommunicator(application, "/ws/usage/", headers=headers)
            connected, _ = await socket.connect()
            return socket, connected

        alice, alice_ok = await connect(alice_cookie)
        bob, bob_ok = await connect(bob_cookie)
        anonymous, anonymous_ok = await connect(None)
        assert alice_ok and bob_ok and not anonymous_ok
        usage_notifier.notify({world.tenant_a.pk})
        assert await alice.receive_json_from(timeout=3) == {"type": "usage"}
        assert await bob.receive_nothing(timeout=0.8)  # another tenant hears nothing
        await alice.disconnect()
        await bob.disconnect()
        # The consumers' database thread keeps its connection; close it, or the test database cannot be dropped.
        await sync_to_async(connections.close_all)()


@pytest.mark.django_db
def test_every_page_here_checks_login_role_and_tenant(team, client_for):
    """The role and isolation matrix for the usage, conversations and playground views (accounts' own views
    have theirs in test_dashboard_accounts)."""
    from accounts.services import api_key_issue
    from conversations.services import conversation_create
    from django.urls import reverse

    carols = api_key_issue(tenant=team.tenant_a, name="carol", created_by=team.carol).api_key
    alices = api_key_issue(tenant=team.tenant_a, name="alice", created_by=team.alice).api_key
    mine = conversation_create(tenant_id=team.tenant_a.pk, api_key_id=carols.pk, system=None, metadata={},
                               messages=[], now=datetime.now(UTC))
    managers_only = conversation_create(tenant_id=team.tenant_a.pk, api_key_id=alices.pk, system=None, metadata={},
                                        messages=[], now=datetime.now(UTC))
    row = usage(alices)
    everyone = {"owner", "admin", "member"}
    for name in ("usage", "usage-csv", "conversations", "playground"):
        assert_roles(client_for, reverse(name), everyone)
    for name in ("conversation-detail", "conversation-delete"):
        assert_roles(client_for, reverse(name, args=[mine.pk]), everyone, outsider_status=404)
        # A member sees only the conversations of her own keys: another key's is not found, not forbidden.
        assert_roles(client_for, reverse(name, args=[managers_only.pk]), {"owner", "admin"}, denied_status=404,
                     outsider_status=404)
    # Another member's request is not hers to see either.
    assert_roles(client_for, reverse("playground-usage", args=[row.request_id]), {"owner", "admin"},
                 denied_status=404, outsider_status=404)
