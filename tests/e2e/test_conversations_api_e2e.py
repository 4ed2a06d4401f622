"""The OpenAI Conversations API end to end through the official `openai` SDK."""

from __future__ import annotations

import uuid

import openai
import pytest

from tests.support.e2e import make_persona, marker, upstream_request, upstream_texts

pytestmark = pytest.mark.e2e

HAIKU = "claude-haiku-4-5"


@pytest.fixture
def client(gateway, persona):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)


def test_conversations_are_created_updated_listed_and_deleted(client):
    conversation = client.conversations.create(
        metadata={"topic": "demo"},
        items=[{"type": "message", "role": "user", "content": "Remember the number 7."},
               {"type": "message", "role": "assistant", "content": "I will remember 7."}])
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "demo"}
    assert client.conversations.retrieve(conversation.id).id == conversation.id
    assert client.conversations.update(conversation.id, metadata={"topic": "numbers"}).metadata == {"topic": "numbers"}

    items = client.conversations.items.list(conversation.id, order="asc")
    assert [(item.type, item.role) for item in items.data] == [("message", "user"), ("message", "assistant")]
    assert items.data[0].content[0].text == "Remember the number 7."
    added = client.conversations.items.create(conversation.id, items=[
        {"type": "message", "role": "user", "content": "And 8."}])
    assert len(added.data) == 1
    item = client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    assert item.content[0].text == "And 8."
    client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
    assert len(client.conversations.items.list(conversation.id).data) == 2

    client.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_a_response_in_a_conversation_sees_its_items_and_appends_to_it(client, fake_upstream):
    conversation = client.conversations.create(items=[{"type": "message", "role": "user", "content": "seed"}])
    tag = marker()
    response = client.responses.create(model=HAIKU, input=f"next {tag}", conversation=conversation.id)
    seen = upstream_texts(upstream_request(fake_upstream, tag))
    assert seen[0] == ("user", "seed") and tag in seen[-1][1]
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [item.type for item in items] == ["message", "message", "message"]
    assert items[-1].content[0].text == response.output_text


def test_another_tenants_conversation_is_invisible(gateway, client, django_db_blocker):
    with django_db_blocker.unblock():
        other = make_persona(f"cv-{uuid.uuid4().hex[:10]}")
    theirs = openai.OpenAI(base_url=f"{gateway}/v1", api_key=other.key, max_retries=0).conversations.create()
    for call in (lambda: client.conversations.retrieve(theirs.id),
                 lambda: client.conversations.items.list(theirs.id),
                 lambda: client.conversations.delete(theirs.id)):
        with pytest.raises(openai.NotFoundError):
            call()


def test_bad_items_and_metadata_are_400s_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.create(items=[{"type": "message", "role": "wizard", "content": "x"}])
    assert raised.value.param.startswith("items")
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.create(metadata={"k": 1})
    assert raised.value.param == "metadata"
