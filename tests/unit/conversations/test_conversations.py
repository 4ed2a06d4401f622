"""Conversation storage services, expiry and the support view (no server process)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.utils import quote
from django.utils import timezone

from accounts.models import AuditEntry
from accounts.services import api_key_issue, tenant_create
from common.errors import AppError
from conversations.models import Conversation, Message
from conversations.services import (TurnRecord, conversation_begin, conversations_expire, new_conversation_id,
                                    tenant_conversations_delete, turns_write)
from gateway.core import MessageAccumulator
from tests.support.rows import turn_record

pytestmark = pytest.mark.django_db


def stored(tenant, *, days_idle: float = 0, turns: int = 1) -> str:
    key = api_key_issue(tenant=tenant).api_key
    cid = new_conversation_id()
    when = timezone.now() - timedelta(days=days_idle)
    turns_write([TurnRecord(conversation_id=cid, tenant_id=tenant.pk, api_key_id=key.pk, request_id="req_1",
                            created=True, next_seq=0, system="Be brief.",
                            messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                      {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}])], when)
    for n in range(1, turns):
        conversation_begin(tenant_id=tenant.pk, conversation_id=cid, lease=True, now=when)
        turns_write([TurnRecord(conversation_id=cid, tenant_id=tenant.pk, api_key_id=key.pk, request_id=f"req_{n}",
                                created=False, next_seq=3 + 2 * (n - 1),
                                messages=[{"role": "user", "content": [{"type": "text", "text": f"q{n}"}]},
                                          {"role": "assistant", "content": [{"type": "text", "text": f"a{n}"}]}])],
                    when)
    return cid


@pytest.fixture
def acme():
    return tenant_create(slug=f"acme-{uuid.uuid4().hex[:6]}")


def test_history_comes_back_in_order_with_its_system_prompt(acme):
    cid = stored(acme, turns=3)
    history = conversation_begin(tenant_id=acme.pk, conversation_id=cid, lease=False, now=timezone.now())
    assert history.system == "Be brief." and history.next_seq == 7
    assert [m["content"][0]["text"] for m in history.messages] == ["hi", "hello", "q1", "a1", "q2", "a2"]


def test_a_leased_conversation_refuses_a_second_turn_until_written_or_expired(acme):
    cid = stored(acme)
    now = timezone.now()
    conversation_begin(tenant_id=acme.pk, conversation_id=cid, lease=True, now=now)
    with pytest.raises(AppError) as raised:
        conversation_begin(tenant_id=acme.pk, conversation_id=cid, lease=True, now=now)
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (409, "conversation_busy", 1)
    conversation_begin(tenant_id=acme.pk, conversation_id=cid, lease=True, now=now + timedelta(hours=1))  # crashed


def test_another_tenants_conversation_is_not_found(acme):
    cid = stored(tenant_create(slug=f"other-{uuid.uuid4().hex[:6]}"))
    for lease in (True, False):
        with pytest.raises(AppError) as raised:
            conversation_begin(tenant_id=acme.pk, conversation_id=cid, lease=lease, now=timezone.now())
        assert raised.value.status == 404


def test_expiry_deletes_idle_conversations_per_tenant_retention_and_runs_twice_safely(acme):
    from accounts.services import tenant_update

    long_keeper = tenant_create(slug=f"keeper-{uuid.uuid4().hex[:6]}")
    tenant_update(tenant=long_keeper, conversation_retention_days=30)
    old, fresh, kept = stored(acme, days_idle=8), stored(acme, days_idle=1), stored(long_keeper, days_idle=8)
    assert conversations_expire(batch_size=1) >= 1
    assert conversations_expire() == 0
    assert set(Conversation.objects.filter(pk__in=[old, fresh, kept]).values_list("pk", flat=True)) == {fresh, kept}
    assert not Message.objects.filter(conversation_id=old).exists()


def test_an_operator_deletes_a_tenants_conversations_with_an_audit_row(acme, admin_user):
    stored(acme), stored(acme)
    assert tenant_conversations_delete(tenant=acme, actor=admin_user, via="admin") == 2
    assert not Conversation.objects.filter(tenant=acme).exists()
    assert AuditEntry.objects.get(action="conversations.delete", tenant=acme).details == {"deleted": 2}


def test_the_support_view_hides_content_until_opened_and_audits_the_opening(acme, admin_client, admin_user):
    cid = stored(acme)
    # The admin escapes ids in its URLs ("conv_22..." would otherwise read as 'conv"...').
    page = admin_client.get(f"/admin/conversations/conversation/{quote(cid)}/change/").content.decode()
    assert "hello" not in page and "Show the 3 messages" in page
    assert not AuditEntry.objects.filter(action="conversation.view").exists()
    page = admin_client.get(f"/admin/conversations/conversation/{cid}/messages/").content.decode()
    assert "hello" in page and "Be brief." in page
    entry = AuditEntry.objects.get(action="conversation.view")
    assert entry.actor == admin_user and entry.details == {"conversation": cid}


def test_the_tenant_action_deletes_stored_conversations(acme, admin_client):
    stored(acme)
    response = admin_client.post("/admin/accounts/tenant/", {"action": "delete_conversations",
                                                             "_selected_action": [acme.pk], "apply": "1",
                                                             "confirm": "on"})
    assert response.status_code == 302 and not Conversation.objects.filter(tenant=acme).exists()


def test_a_streamed_answer_is_rebuilt_block_by_block():
    events = [
        {"type": "message_start", "message": {}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_start", "index": 2,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": " 1}"}},
    ]
    answer = MessageAccumulator()
    for event in events:
        answer.feed(event)
    assert answer.content() == [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                {"type": "text", "text": "Hello"},
                                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]


def test_the_beat_schedule_runs_the_expiry_task(acme):
    from django.conf import settings

    from conversations.tasks import conversations_expire as task

    assert settings.CELERY_BEAT_SCHEDULE["conversations-expire"]["task"] == task.name
    stored(acme, days_idle=30)
    assert task.apply().result >= 1


def test_a_spooled_turn_replayed_twice_is_written_once(acme):
    from conversations.services import turns_replay

    key = api_key_issue(tenant=acme).api_key
    turn = turn_record(acme, key, "hello")
    turns_replay([turn], timezone.now())
    turns_replay([turn], timezone.now())
    assert Message.objects.filter(conversation_id=turn.conversation_id).count() == 2
    assert Conversation.objects.get(pk=turn.conversation_id).message_count == 2
