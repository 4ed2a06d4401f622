"""The dashboard's conversations list tells conversations apart: first words, model, turns and dates
(Django client; the playground's side is in test_dashboard_browser)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from accounts.services import api_key_issue
from conversations.services import TurnRecord, conversation_create, turns_write

pytestmark = pytest.mark.django_db


def text(words: str) -> list[dict]:
    return [{"type": "text", "text": words}]


def test_the_list_shows_first_words_model_turns_and_dates_not_only_ids(team, client_for):
    key = api_key_issue(tenant=team.tenant_a, name="support-bot", created_by=team.alice).api_key
    now = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)
    long_question = "How do I rotate   an API key\nwithout downtime " + "and keep the old one working " * 5
    conversation = conversation_create(tenant_id=team.tenant_a.pk, api_key_id=key.pk, system="Be brief.",
                                       messages=[], metadata={}, now=now)
    turns_write([TurnRecord(conversation_id=conversation.pk, tenant_id=team.tenant_a.pk, api_key_id=key.pk,
                            request_id=f"req_{n}", created=False, next_seq=1 + 2 * n, model="claude-haiku-4-5",
                            messages=[{"role": "user", "content": text(long_question if n == 0 else "and then?")},
                                      {"role": "assistant", "content": text("Like this.")}]) for n in range(3)], now)
    empty = conversation_create(tenant_id=team.tenant_a.pk, api_key_id=key.pk, system=None, messages=[], metadata={},
                                now=now)
    page = client_for("owner").get("/dashboard/conversations/").content.decode()
    row = next(r for r in page.split("<tr>") if conversation.pk in r)
    assert "How do I rotate an API key without downtime and keep" in row and "…" in row  # whitespace folded, cut
    assert long_question[:120] not in row
    assert ">claude-haiku-4-5<" in row and 'data-label="Turns">3<' in row and "support-bot" in row
    assert "Mar 4, 2026 10:30" in row
    empty_row = next(r for r in page.split("<tr>") if empty.pk in r)
    assert "(no text)" in empty_row and 'data-label="Turns">0<' in empty_row


def test_a_member_lists_only_her_own_keys_conversations(team, client_for):
    alices = api_key_issue(tenant=team.tenant_a, name="alice", created_by=team.alice).api_key
    carols = api_key_issue(tenant=team.tenant_a, name="carol", created_by=team.carol).api_key
    now = datetime.now(UTC)
    for key, words in ((alices, "alice asks"), (carols, "carol asks")):
        conversation_create(tenant_id=team.tenant_a.pk, api_key_id=key.pk, system=None, metadata={}, now=now,
                            messages=[{"role": "user", "content": text(words)}])
    member = client_for("member").get("/dashboard/conversations/").content.decode()
    assert "carol asks" in member and "alice asks" not in member
    outsider = client_for("outsider").get("/dashboard/conversations/").content.decode()
    assert "asks" not in outsider
