"""The OpenAI Responses API end to end: the official `openai` SDK -> gateway -> fake upstream."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from tests.support.e2e import make_persona, marker, upstream_request, upstream_texts, usage_row

pytestmark = pytest.mark.e2e

HAIKU = "claude-haiku-4-5"
TOOLS = [{"type": "function", "name": "lookup", "description": "Look something up.",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]


@pytest.fixture
def client(gateway, persona):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)


def test_a_response_is_created_stored_listed_and_deleted(client, django_db_blocker):
    raw = client.responses.with_raw_response.create(model=HAIKU, instructions="Be brief.", input="Hello there",
                                                    metadata={"ticket": "42"})
    response = raw.parse()
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text.startswith("Hello from the fake upstream")
    assert response.metadata == {"ticket": "42"}
    row = usage_row(raw.headers["x-request-id"], django_db_blocker)
    assert row.endpoint == "responses" and row.output_tokens == response.usage.output_tokens

    assert client.responses.retrieve(response.id).model_dump() == response.model_dump()
    items = client.responses.input_items.list(response.id)
    assert [item.role for item in items.data] == ["user"]
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_replays_the_chain_right_after_it_completes(client, fake_upstream, stream):
    tags = [marker() for _ in range(3)]
    previous = None
    answers = []
    for tag in tags:
        kwargs = {"previous_response_id": previous} if previous else {}
        if stream:
            with client.responses.stream(model=HAIKU, input=f"say {tag}", **kwargs) as events:
                kinds = [event.type for event in events]
                response = events.get_final_response()
            assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        else:
            response = client.responses.create(model=HAIKU, input=f"say {tag}", **kwargs)
        previous = response.id
        answers.append(response.output_text)
    seen = upstream_texts(upstream_request(fake_upstream, tags[2]))
    assert [role for role, _ in seen] == ["user", "assistant", "user", "assistant", "user"]
    assert tags[0] in seen[0][1] and seen[1][1] == answers[0] and seen[3][1] == answers[1]


def test_a_function_call_round_trips_through_function_call_output(client, fake_upstream):
    first = client.responses.create(model=HAIKU, tools=TOOLS, input="[[fake:tool]] look it up")
    call = next(item for item in first.output if item.type == "function_call")
    tag = marker()
    second = client.responses.create(model=HAIKU, tools=TOOLS, previous_response_id=first.id, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": f"found {tag}"}])
    assert second.status == "completed"
    messages = upstream_request(fake_upstream, tag)["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][-1]["type"] == "tool_use" and messages[1]["content"][-1]["id"] == call.call_id
    assert messages[2]["content"][0]["type"] == "tool_result"
    assert messages[2]["content"][0]["tool_use_id"] == call.call_id


def test_branches_from_one_response_do_not_see_each_other(client, fake_upstream):
    root = client.responses.create(model=HAIKU, input="root")
    left = client.responses.create(model=HAIKU, input=f"left {marker()}", previous_response_id=root.id)
    tag = marker()
    client.responses.create(model=HAIKU, input=f"right {tag}", previous_response_id=root.id)
    seen = upstream_texts(upstream_request(fake_upstream, tag))
    assert len(seen) == 3 and "left" not in str(seen)
    # and the left branch continues with its own history
    tag = marker()
    client.responses.create(model=HAIKU, input=f"left again {tag}", previous_response_id=left.id)
    seen = upstream_texts(upstream_request(fake_upstream, tag))
    assert len(seen) == 5 and "left" in seen[2][1] and "right" not in str(seen)


def test_another_tenants_response_is_not_found(gateway, client, django_db_blocker):
    with django_db_blocker.unblock():
        other = make_persona(f"r-{uuid.uuid4().hex[:10]}")
    theirs = openai.OpenAI(base_url=f"{gateway}/v1", api_key=other.key, max_retries=0).responses.create(
        model=HAIKU, input="private")
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(theirs.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=HAIKU, input="hi", previous_response_id=theirs.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(theirs.id)


def test_store_false_keeps_nothing(client):
    response = client.responses.create(model=HAIKU, input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_a_response_can_continue_a_stored_conversation(gateway, client, persona, fake_upstream):
    from tests.support.e2e import chat

    first = chat(gateway, persona.key, model=HAIKU, messages=[{"role": "user", "content": "from chat"}]).json()
    tag = marker()
    response = client.responses.create(model=HAIKU, input=f"from responses {tag}",
                                       extra_body={"conversation": first["conversation_id"]})
    assert response.status == "completed"
    seen = upstream_texts(upstream_request(fake_upstream, tag))
    assert [role for role, _ in seen] == ["user", "assistant", "user"] and seen[0][1] == "from chat"


@pytest.mark.parametrize("prompt", ["[[fake:words=12]] hi", "[[fake:tool, text_then_tool]] look it up",
                                    "[[fake:midstream_error]] hi"])
def test_raw_stream_bytes_follow_the_responses_grammar(gateway, persona, prompt):
    from tests.support.responses_events import check_stream, sse_events

    response = httpx.post(f"{gateway}/v1/responses", headers={"Authorization": f"Bearer {persona.key}"},
                          json={"model": HAIKU, "input": prompt, "tools": TOOLS, "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    check_stream(events)
    expected = "response.failed" if "midstream_error" in prompt else "response.completed"
    assert events[-1]["type"] == expected


CODEX_TOOLS = [
    {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
        {"type": "function", "name": "spawn_agent", "description": "Start a sub-agent.",
         "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}}]},
    {"type": "custom", "name": "apply_patch", "description": "Edit files.",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    {"type": "web_search", "external_web_access": True},
]


def test_a_streamed_namespaced_function_call_round_trips_like_codex_sends_it(client, fake_upstream):
    """Codex's shape: stateless (`store: false`), streaming, the whole history sent back each turn."""
    common = {"model": HAIKU, "tools": CODEX_TOOLS, "store": False,
              "include": ["reasoning.encrypted_content"], "reasoning": {"summary": "auto"}}
    opening = {"role": "user", "content": "[[fake:tool]] start a helper"}
    with client.responses.stream(input=[opening], **common) as events:
        kinds = [event.type for event in events]
        first = events.get_final_response()
    assert "response.function_call_arguments.done" in kinds
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.namespace, call.name, call.arguments) == ("multi_agent_v1", "spawn_agent", '{"task":"example"}')

    tag = marker()
    sent_back = [opening, call.model_dump(exclude_none=True),
                 {"type": "function_call_output", "call_id": call.call_id, "output": f"spawned {tag}"}]
    with client.responses.stream(input=sent_back, **common) as events:
        second = events.get_final_response()
    assert second.output_text == f"Tool results received: spawned {tag}"
    messages = upstream_request(fake_upstream, tag)["body"]["messages"]
    assert messages[1]["content"] == [{"type": "tool_use", "id": call.call_id, "name": "multi_agent_v1__spawn_agent",
                                       "input": {"task": "example"}}]
    assert messages[2]["content"][0]["tool_use_id"] == call.call_id


@pytest.mark.parametrize("stream", [False, True])
def test_a_web_search_answer_comes_back_with_its_search_call_and_url_citations(client, fake_upstream, stream):
    request = {"model": HAIKU, "tools": CODEX_TOOLS, "input": "[[fake:web_search]] paris weather"}
    if stream:
        with client.responses.stream(**request) as events:
            kinds = [event.type for event in events]
            response = events.get_final_response()
        assert {"response.web_search_call.searching", "response.output_text.annotation.added"} <= set(kinds)
    else:
        response = client.responses.create(**request)
    search, message = response.output
    assert search.type == "web_search_call" and search.status == "completed"
    assert search.action.query == "paris weather"
    assert [source.url for source in search.action.sources] == ["https://example.com/fake-search/1",
                                                                "https://example.com/fake-search/2"]
    [part] = message.content
    [citation] = part.annotations
    assert (citation.type, citation.url) == ("url_citation", "https://example.com/fake-search/1")
    cited = part.text[citation.start_index:citation.end_index]
    assert cited == "The first result says paris weather is well documented."

    # The stored turn replays the search to Anthropic as it came, results and citations included.
    tag = marker()
    client.responses.create(model=HAIKU, tools=CODEX_TOOLS, previous_response_id=response.id, input=f"thanks {tag}")
    replayed = upstream_request(fake_upstream, tag)["body"]["messages"][1]["content"]
    assert [block["type"] for block in replayed] == ["server_tool_use", "web_search_tool_result", "text", "text"]
    assert replayed[0]["input"] == {"query": "paris weather"} and replayed[3]["citations"][0]["url"] == citation.url


def test_a_custom_tool_call_comes_back_as_custom_tool_call(client):
    response = client.responses.create(model=HAIKU, tools=CODEX_TOOLS, input="patch it",
                                       tool_choice={"type": "custom", "name": "apply_patch"})
    [call] = response.output
    assert (call.type, call.name, call.input) == ("custom_tool_call", "apply_patch", "example")


def test_a_tool_claude_cannot_serve_is_a_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=HAIKU, input="hi", tools=[*CODEX_TOOLS, {"type": "image_generation"}])
    assert caught.value.body["param"] == "tools[3].type"
    assert "image_generation" in caught.value.body["message"]
