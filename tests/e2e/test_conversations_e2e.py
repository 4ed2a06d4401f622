"""Server-side conversations on chat completions, end to end (openai SDK -> gateway -> fake upstream)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from conversations.models import Conversation, Message
from tests.support.e2e import chat, make_persona, marker, upstream_request, upstream_texts, usage_row

pytestmark = pytest.mark.e2e

HAIKU = "claude-haiku-4-5"


def client_for(gateway, persona, **kwargs):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, **{"max_retries": 0, **kwargs})


def test_three_turns_continue_by_conversation_id(gateway, fake_upstream, persona, django_db_blocker):
    client = client_for(gateway, persona)
    tags = [marker() for _ in range(3)]
    first = client.chat.completions.create(model=HAIKU, messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": f"one {tags[0]}"}])
    conversation_id = first.model_extra["conversation_id"]
    assert conversation_id.startswith("conv_")
    second = client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": f"two {tags[1]}"}],
                                            extra_body={"conversation_id": conversation_id})
    assert second.model_extra["conversation_id"] == conversation_id
    stream = client.chat.completions.create(model=HAIKU, stream=True, extra_body={"conversation_id": conversation_id},
                                            messages=[{"role": "user", "content": f"three {tags[2]}"}])
    chunks = list(stream)
    assert {chunk.model_extra["conversation_id"] for chunk in chunks} == {conversation_id}

    entry = upstream_request(fake_upstream, tags[2])
    assert entry["body"]["system"] == "You are terse."
    seen = upstream_texts(entry)
    assert [role for role, _ in seen] == ["user", "assistant", "user", "assistant", "user"]
    assert tags[0] in seen[0][1] and tags[1] in seen[2][1] and tags[2] in seen[4][1]
    assert seen[1][1] == first.choices[0].message.content and seen[3][1] == second.choices[0].message.content

    with django_db_blocker.unblock():
        rows = list(Message.objects.filter(conversation_id=conversation_id).values_list("role", flat=True))
        conversation = Conversation.objects.get(pk=conversation_id)
    assert rows == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert conversation.message_count == 7 and conversation.busy_until is None


def test_store_false_keeps_nothing_and_returns_no_conversation_id(gateway, persona, django_db_blocker):
    response = chat(gateway, persona.key, model=HAIKU, store=False, messages=[{"role": "user", "content": "hi"}])
    assert response.status_code == 200 and "conversation_id" not in response.json()
    usage_row(response.headers["x-request-id"], django_db_blocker)
    with django_db_blocker.unblock():
        assert not Conversation.objects.filter(tenant=persona.tenant).exists()


def test_a_tenant_can_turn_storage_off(gateway, django_db_blocker):
    from accounts.services import tenant_update

    with django_db_blocker.unblock():
        persona = make_persona(f"c-{uuid.uuid4().hex[:10]}")
        tenant_update(tenant=persona.tenant, store_conversations=False)
    response = chat(gateway, persona.key, model=HAIKU, messages=[{"role": "user", "content": "hi"}])
    assert "conversation_id" not in response.json()


@pytest.mark.parametrize("whose", ["unknown", "other tenant", "expired"])
def test_a_conversation_that_is_not_yours_is_a_404(gateway, persona, django_db_blocker, whose):
    conversation_id = "conv_" + uuid.uuid4().hex
    if whose != "unknown":
        with django_db_blocker.unblock():
            other = make_persona(f"c-{uuid.uuid4().hex[:10]}")
            owner = other if whose == "other tenant" else persona
            first = chat(gateway, owner.key, model=HAIKU, messages=[{"role": "user", "content": "secret"}])
            conversation_id = first.json()["conversation_id"]
            if whose == "expired":
                from conversations.services import conversations_expire

                conversations_expire(now=timezone.now() + timedelta(days=8))
    with pytest.raises(openai.NotFoundError) as raised:
        client_for(gateway, persona).chat.completions.create(
            model=HAIKU, messages=[{"role": "user", "content": "hi"}], extra_body={"conversation_id": conversation_id})
    assert raised.value.code == "conversation_not_found"


async def _two_turns_at_once(gateway: str, key: str, conversation_id: str, retries: int) -> list:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=retries)

    async def turn(word: str):
        try:
            return await client.chat.completions.create(
                model=HAIKU, extra_body={"conversation_id": conversation_id},
                messages=[{"role": "user", "content": f"[[fake:delay_ms=300]] {word}"}])
        except openai.APIStatusError as exc:
            return exc

    return await asyncio.gather(turn("alpha"), turn("beta"))


def test_concurrent_turns_on_one_conversation_are_serialised(gateway, persona, django_db_blocker):
    first = chat(gateway, persona.key, model=HAIKU, messages=[{"role": "user", "content": "start"}])
    conversation_id = first.json()["conversation_id"]

    results = asyncio.run(_two_turns_at_once(gateway, persona.key, conversation_id, retries=0))
    refused = [r for r in results if isinstance(r, openai.APIStatusError)]
    assert len(refused) == 1 and refused[0].status_code == 409
    assert refused[0].code == "conversation_busy" and refused[0].response.headers["retry-after"] == "1"

    # With the SDK's own retries both turns land, one after the other, each seeing the one before.
    results = asyncio.run(_two_turns_at_once(gateway, persona.key, conversation_id, retries=5))
    assert not [r for r in results if isinstance(r, Exception)]
    with django_db_blocker.unblock():
        rows = list(Message.objects.filter(conversation_id=conversation_id).order_by("seq")
                    .values_list("seq", "role", "content"))
    assert [seq for seq, _, _ in rows] == list(range(len(rows))) and len(rows) == 8
    roles = [role for _, role, _ in rows]
    assert roles == ["user", "assistant"] * 4  # no interleaving: every question is followed by its answer


def test_a_tool_call_round_trip_is_replayed_from_history(gateway, fake_upstream, persona):
    client = client_for(gateway, persona)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    first = client.chat.completions.create(model=HAIKU, tools=tools,
                                           messages=[{"role": "user", "content": "[[fake:tool]] weather?"}])
    call = first.choices[0].message.tool_calls[0]
    tag = marker()
    client.chat.completions.create(
        model=HAIKU, tools=tools, extra_body={"conversation_id": first.model_extra["conversation_id"]},
        messages=[{"role": "tool", "tool_call_id": call.id, "content": f"sunny {tag}"}])
    entry = upstream_request(fake_upstream, tag)
    messages = entry["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][-1]["type"] == "tool_use" and messages[1]["content"][-1]["id"] == call.id
    result = messages[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == call.id and tag in str(result["content"])
    assert entry["outcome"] == "completed"


def test_a_failed_turn_gives_the_conversation_back(gateway, persona, django_db_blocker):
    first = chat(gateway, persona.key, model=HAIKU, messages=[{"role": "user", "content": "start"}])
    conversation_id = first.json()["conversation_id"]
    failed = chat(gateway, persona.key, model=HAIKU, conversation_id=conversation_id,
                  messages=[{"role": "user", "content": "[[fake:error=529]] again"}])
    assert failed.status_code == 503
    ok = chat(gateway, persona.key, model=HAIKU, conversation_id=conversation_id,
              messages=[{"role": "user", "content": "once more"}])
    assert ok.status_code == 200
    with django_db_blocker.unblock():
        assert Conversation.objects.get(pk=conversation_id).message_count == 4  # the failed turn left nothing


def test_history_requests_read_what_the_previous_answer_just_wrote(gateway, persona):
    """No sleeping between turns: each answer is committed before the client has it."""
    conversation_id = None
    for n in range(5):
        body = {"model": HAIKU, "stream": n % 2 == 1, "messages": [{"role": "user", "content": f"turn {n}"}]}
        if conversation_id:
            body["conversation_id"] = conversation_id
        with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {persona.key}"}) as response:
            assert response.status_code == 200, response.read()
            text = response.read().decode()
        if conversation_id is None:
            conversation_id = response.json()["conversation_id"]
        assert conversation_id in text


PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_images_are_stored_once_by_reference_and_replayed_whole(gateway, fake_upstream, persona, django_db_blocker):
    from conversations.models import ConversationImage

    client = client_for(gateway, persona)
    first = client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]}])
    conversation_id = first.model_extra["conversation_id"]
    tag = marker()
    client.chat.completions.create(model=HAIKU, extra_body={"conversation_id": conversation_id},
                                   messages=[{"role": "user", "content": f"and now {tag}"}])
    image = upstream_request(fake_upstream, tag)["body"]["messages"][0]["content"][1]
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    with django_db_blocker.unblock():
        stored = Message.objects.get(conversation_id=conversation_id, seq=0).content[1]["source"]
        assert stored["type"] == "stored" and "data" not in stored
        assert ConversationImage.objects.filter(conversation_id=conversation_id).count() == 1
