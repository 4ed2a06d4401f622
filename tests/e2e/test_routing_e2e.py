"""Providers, deployments and routing end to end: a gateway process in front of the fake Anthropic upstream,
the fake OpenAI-compatible upstream and a scripted failing upstream, driven by the official SDKs.

The gateway here reloads the catalog on every request (GATEWAY_CATALOG_CACHE_SECONDS=0), so each test
sets up its own providers and models in the database and the next request sees them.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import anthropic
import httpx
import openai
import pytest
from aiohttp import web
from django.utils import timezone

from billing.models import UsageEvent
from tests.support.e2e import marker, start_gateway, stop_process, upstream_request
from tests.support.env import free_port

pytestmark = pytest.mark.e2e

OPENAI_KEY = "sk-upstream-test-0001"


class ScriptedUpstream:
    """An upstream that fails as told (status, delay), in a thread, counting the requests it got."""

    def __init__(self) -> None:
        self.status, self.delay, self.hits = 529, 0.0, 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()

    async def _answer(self, request: web.Request) -> web.Response:
        self.hits += 1
        await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status == 200:  # recovered: a minimal Anthropic message (non-streaming calls only)
            return web.json_response({
                "id": "msg_scripted", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
                "content": [{"type": "text", "text": "Hello from the recovered upstream"}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 5}})
        body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return web.json_response(body, status=self.status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def scripted():
    return ScriptedUpstream()


@pytest.fixture(scope="module")
def routing_gateway(gateway_db_url, fake_upstream):
    url, process = start_gateway(gateway_db_url, fake_upstream, GATEWAY_CATALOG_CACHE_SECONDS="0",
                                 UPSTREAM_RETRIES="1", UPSTREAM_MAX_BACKOFF_SECONDS="0.5")
    yield url
    stop_process(process)


@pytest.fixture
def anthropic_provider(setup):
    return setup.provider("anthropic")  # the gateway's ANTHROPIC_BASE_URL and key: the fake Anthropic upstream


def usage_rows(django_db_blocker, **filters) -> list[UsageEvent]:
    with django_db_blocker.unblock():
        return list(UsageEvent.objects.filter(**filters).order_by("id"))


def test_an_openai_compatible_model_serves_every_ingress_protocol(routing_gateway, persona, setup,
                                                                  fake_openai_upstream, django_db_blocker):
    oai = setup.provider("openai", f"{fake_openai_upstream}/v1", key=OPENAI_KEY)
    name = setup.model((oai, "deepseek-chat", 0, 1))
    chat = openai.OpenAI(base_url=f"{routing_gateway}/v1", api_key=persona.key, max_retries=0)
    answer = chat.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi there"}])
    assert answer.choices[0].message.content.startswith("Hello from the fake OpenAI upstream")
    assert answer.model == name and answer.usage.prompt_tokens > 0

    claude_sdk = anthropic.Anthropic(base_url=f"{routing_gateway}/anthropic", api_key=persona.key, max_retries=0)
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    with claude_sdk.messages.stream(model=name, max_tokens=200, tools=tools,
                                    messages=[{"role": "user", "content": "[[fake:tools=2]] weather"}]) as stream:
        final = stream.get_final_message()
    calls = [block for block in final.content if block.type == "tool_use"]
    assert len(calls) == 2 and all(call.input == {"city": "example"} for call in calls)
    results = claude_sdk.messages.create(model=name, max_tokens=200, tools=tools, messages=[
        {"role": "user", "content": "[[fake:tools=2]] weather"},
        {"role": "assistant", "content": [call.model_dump(exclude_none=True) for call in calls]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": f"sunny {i}"}
                                     for i, call in enumerate(calls)]}])
    assert results.content[0].text == "Tool results received: sunny 0; sunny 1"

    gemini = httpx.post(f"{routing_gateway}/gemini/v1beta/models/{name}:generateContent",
                        headers={"x-goog-api-key": persona.key},
                        json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
    assert gemini.status_code == 200
    assert gemini.json()["candidates"][0]["content"]["parts"][0]["text"].startswith("Hello from the fake OpenAI")

    rows = usage_rows(django_db_blocker, model=name)
    assert len(rows) == 4 and {row.provider for row in rows} == {oai.name}
    assert {row.upstream_model for row in rows} == {"deepseek-chat"} and all(row.cost_nano > 0 for row in rows)


@pytest.mark.parametrize("failure", ["529", "timeout", "refused"])
def test_a_failing_deployment_falls_back_to_the_next(failure, routing_gateway, persona, setup, scripted,
                                                      anthropic_provider, django_db_blocker):
    scripted.status, scripted.delay = 529, 0.0
    base = scripted.url
    fields = {}
    if failure == "timeout":
        # Streams wait 0.5 s for the first event, a whole non-streaming answer 1 s.
        scripted.delay, fields = 3.0, {"first_token_timeout_seconds": 0.5, "timeout_seconds": 1}
    elif failure == "refused":
        base = f"http://127.0.0.1:{free_port()}"
    broken = setup.provider("anthropic", base, key="sk-ant-broken-0001")
    name = setup.model((broken, "claude-sonnet-4-6", 0, 1), (anthropic_provider, "claude-sonnet-4-6", 1, 1), **fields)
    client = openai.OpenAI(base_url=f"{routing_gateway}/v1", api_key=persona.key, max_retries=0)
    hits = scripted.hits
    for stream in (False, True):
        if stream:
            chunks = list(client.chat.completions.create(model=name, stream=True,
                                                         messages=[{"role": "user", "content": "Hi"}]))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Hello")
        else:
            answer = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}])
            assert answer.choices[0].message.content.startswith("Hello from the fake upstream")
    rows = usage_rows(django_db_blocker, model=name)
    assert [row.provider for row in rows] == [anthropic_provider.name] * 2
    assert all(row.status == UsageEvent.Status.OK for row in rows)
    if failure != "refused":
        # The first request tried the broken deployment twice (one retry); then it was cooling down.
        assert scripted.hits - hits == 2


def test_cooldown_skips_a_failed_deployment_and_probes_it_back(routing_gateway, persona, setup, scripted,
                                                               anthropic_provider, django_db_blocker):
    scripted.status, scripted.delay = 503, 0.0
    flaky = setup.provider("anthropic", scripted.url, key="sk-ant-flaky-0001", cooldown=1)
    name = setup.model((flaky, "claude-sonnet-4-6", 0, 1), (anthropic_provider, "claude-sonnet-4-6", 1, 1))
    client = openai.OpenAI(base_url=f"{routing_gateway}/v1", api_key=persona.key, max_retries=0)

    def ask() -> None:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}])

    hits = scripted.hits
    ask()
    assert scripted.hits - hits == 2  # tried, retried, then cooled down
    ask()
    ask()
    assert scripted.hits - hits == 2  # skipped while cooling down
    time.sleep(1.2)
    ask()
    assert scripted.hits - hits == 4  # probed back after the cooldown: still failing, cooled again
    assert {row.provider for row in usage_rows(django_db_blocker, model=name)} == {anthropic_provider.name}
    scripted.status = 200
    time.sleep(1.2)
    ask()  # probed back and recovered: it serves again, and stays in use
    ask()
    assert scripted.hits - hits == 6
    assert [row.provider for row in usage_rows(django_db_blocker, model=name)][-2:] == [flaky.name] * 2


def test_claude_code_betas_and_beta_fields_are_dropped_for_an_openai_compatible_upstream(
        routing_gateway, persona, setup, fake_openai_upstream):
    from tests.support.anthropic_events import parse_sse
    from tests.support.claude_code import CLAUDE_CODE_BETAS, CLAUDE_CODE_BODY

    oai = setup.provider("openai", f"{fake_openai_upstream}/v1", key=OPENAI_KEY)
    name, tag = setup.model((oai, "deepseek-chat", 0, 1)), marker()
    body = {**CLAUDE_CODE_BODY, "model": name, "messages": [{"role": "user", "content": tag}]}
    response = httpx.post(f"{routing_gateway}/anthropic/v1/messages?beta=true", json=body, headers={
        "x-api-key": persona.key, "anthropic-version": "2023-06-01", "anthropic-beta": CLAUDE_CODE_BETAS})
    assert response.status_code == 200, response.text
    text = "".join(event["delta"].get("text", "") for name, event in parse_sse(response.content)
                   if name == "content_block_delta")
    assert text.startswith("Hello from the fake OpenAI upstream")
    sent = upstream_request(fake_openai_upstream, tag)["body"]
    assert not {"context_management", "output_config", "thinking", "cache_control"} & set(sent)


def test_no_retry_once_the_stream_has_started(routing_gateway, persona, setup, fake_openai_upstream, fake_upstream,
                                              anthropic_provider):
    oai = setup.provider("openai", f"{fake_openai_upstream}/v1", key=OPENAI_KEY)
    name = setup.model((oai, "gpt-4o", 0, 1), (anthropic_provider, "claude-sonnet-4-6", 1, 1))
    client = openai.OpenAI(base_url=f"{routing_gateway}/v1", api_key=persona.key, max_retries=0)
    tag = marker()
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model=name, stream=True,
                                                messages=[{"role": "user", "content": f"{tag} [[fake:midstream_error]]"}]):
            pass
    time.sleep(0.3)
    assert not [e for e in httpx.get(f"{fake_upstream}/_fake/requests").json() if tag in str(e["body"])]


def test_weights_spread_requests_as_configured(routing_gateway, persona, setup, fake_openai_upstream,
                                               anthropic_provider, django_db_blocker):
    oai = setup.provider("openai", f"{fake_openai_upstream}/v1", key=OPENAI_KEY)
    name = setup.model((oai, "gpt-4o", 0, 3), (anthropic_provider, "claude-sonnet-4-6", 0, 1))
    client = openai.OpenAI(base_url=f"{routing_gateway}/v1", api_key=persona.key, max_retries=0)
    for _ in range(60):
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=20)
    spread = Counter(row.provider for row in usage_rows(django_db_blocker, model=name))
    # 3:1 expected (45:15); the band is wide enough for a random spread to stay inside (p < 1e-4).
    assert 33 <= spread[oai.name] <= 56 and spread[oai.name] + spread[anthropic_provider.name] == 60


def test_credentials_are_encrypted_and_spread_by_weight(setup, django_db_blocker):
    from gateway.models import Credential

    provider = setup.provider("openai", "https://api.example.com/v1", key="sk-secret-value-1234")
    with django_db_blocker.unblock():
        credential = Credential.objects.get(provider=provider)
    assert "sk-secret-value-1234" not in credential.secret_encrypted and credential.hint == "1234"
    from common import crypto

    assert crypto.decrypt(credential.secret_encrypted) == "sk-secret-value-1234"


def test_embeddings_and_rerank_are_routed_metered_and_billed(routing_gateway, persona, setup, fake_openai_upstream,
                                                             django_db_blocker):
    jina = setup.provider("jina", f"{fake_openai_upstream}/v1", key="jina-key-0001")
    embed = setup.model((jina, "jina-embeddings-v3", 0, 1), capability="embeddings")
    rerank = setup.model((jina, "jina-reranker-v2", 0, 1), capability="rerank")
    client = openai.OpenAI(base_url=f"{routing_gateway}/v1", api_key=persona.key, max_retries=0)
    result = client.embeddings.create(model=embed, input=["hello world", "goodbye"], dimensions=4)
    assert len(result.data) == 2 and len(result.data[0].embedding) == 4 and result.model == embed
    raw = httpx.post(f"{routing_gateway}/v1/embeddings", headers={"Authorization": f"Bearer {persona.key}"},
                     json={"model": embed, "input": "hello world", "encoding_format": "base64", "dimensions": 4})
    floats = struct.unpack("<4f", base64.b64decode(raw.json()["data"][0]["embedding"]))
    assert floats == pytest.approx(result.data[0].embedding, rel=1e-6)
    jina_path = httpx.post(f"{routing_gateway}/jina/v1/embeddings", headers={"Authorization": f"Bearer {persona.key}"},
                           json={"model": embed, "input": ["a b"], "task": "retrieval.query"})
    assert jina_path.status_code == 200

    ranked = httpx.post(f"{routing_gateway}/jina/v1/rerank", headers={"Authorization": f"Bearer {persona.key}"},
                        json={"model": rerank, "query": "red apple", "top_n": 2,
                              "documents": ["a red apple", "blue sky", {"text": "apple pie"}]}).json()
    assert [r["index"] for r in ranked["results"]] == [0, 2] and ranked["model"] == rerank
    also = httpx.post(f"{routing_gateway}/v1/rerank", headers={"Authorization": f"Bearer {persona.key}"},
                      json={"model": rerank, "query": "q", "documents": ["q"], "return_documents": False})
    assert "document" not in also.json()["results"][0]

    rows = usage_rows(django_db_blocker, model__in=[embed, rerank])
    assert [row.endpoint for row in rows] == ["embeddings"] * 3 + ["rerank"] * 2
    assert all(row.input_tokens > 0 and row.output_tokens == 0 and row.cost_nano > 0 for row in rows)

    # A chat model is not an embeddings model, and the other way round; bad bodies are 400s naming the field.
    wrong = httpx.post(f"{routing_gateway}/v1/embeddings", headers={"Authorization": f"Bearer {persona.key}"},
                       json={"model": "claude-sonnet-4-6", "input": "x"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "model_not_supported"
    chat = httpx.post(f"{routing_gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {persona.key}"},
                      json={"model": embed, "messages": [{"role": "user", "content": "Hi"}]})
    assert chat.status_code == 400 and "embeddings" in chat.json()["error"]["message"]
    unknown = httpx.post(f"{routing_gateway}/v1/embeddings", headers={"Authorization": f"Bearer {persona.key}"},
                         json={"model": "nope", "input": "x"})
    assert unknown.status_code == 404
    for body, param in (({"model": embed}, "input"), ({"model": embed, "input": []}, "input"),
                        ({"model": embed, "input": "x", "encoding_format": "int8"}, "encoding_format"),
                        ({"model": embed, "input": "x", "dimensions": 0}, "dimensions")):
        bad = httpx.post(f"{routing_gateway}/v1/embeddings", headers={"Authorization": f"Bearer {persona.key}"},
                         json=body)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param


def test_trace_and_thread_ids_are_stored_echoed_and_listed(routing_gateway, persona, django_db_blocker):
    from tests.support.e2e import make_persona

    trace, thread = f"tr-{uuid.uuid4().hex}", f"th-{uuid.uuid4().hex}"
    client = openai.OpenAI(base_url=f"{routing_gateway}/v1", api_key=persona.key, max_retries=0)
    for i in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": f"secret prompt {i}"}],
            extra_headers={"AH-Trace-Id": trace, "AH-Thread-Id": thread if i else "other", "X-Request-Id": f"c-{i}"})
        assert raw.headers["ah-trace-id"] == trace and raw.headers["x-request-id"] == f"c-{i}"
        assert raw.headers["request-id"].startswith("req_")
    listed = httpx.get(f"{routing_gateway}/v1/traces/{trace}", headers={"Authorization": f"Bearer {persona.key}"}).json()
    assert listed["total"]["requests"] == 3 and [r["client_request_id"] for r in listed["data"]] == ["c-0", "c-1", "c-2"]
    first = listed["data"][0]
    assert first["model"] == "claude-haiku-4-5" and first["status"] == "ok" and first["input_tokens"] > 0
    assert float(first["cost_usd"]) > 0 and first["latency_ms"] >= 0 and "secret prompt" not in str(listed)
    by_thread = httpx.get(f"{routing_gateway}/v1/threads/{thread}", headers={"Authorization": f"Bearer {persona.key}"})
    assert by_thread.json()["total"]["requests"] == 2
    # Another tenant sees nothing of it.
    with django_db_blocker.unblock():
        other = make_persona(f"other-{uuid.uuid4().hex[:8]}")
    hidden = httpx.get(f"{routing_gateway}/v1/traces/{trace}", headers={"Authorization": f"Bearer {other.key}"})
    assert hidden.json()["data"] == []
    # Errors echo the ids too; a malformed id is a 400.
    bad_model = httpx.post(f"{routing_gateway}/v1/chat/completions", json={"model": "nope", "messages": []},
                           headers={"Authorization": f"Bearer {persona.key}", "AH-Trace-Id": trace})
    assert bad_model.headers["ah-trace-id"] == trace
    malformed = httpx.post(f"{routing_gateway}/v1/chat/completions", json={"model": "claude-haiku-4-5", "messages": []},
                           headers={"Authorization": f"Bearer {persona.key}", "AH-Trace-Id": "x" * 200})
    assert malformed.status_code == 400 and "ah-trace-id" in malformed.json()["error"]["message"]


def test_prompts_appear_in_traces_only_for_tenants_that_log_requests(routing_gateway, django_db_blocker):
    from accounts.services import tenant_update
    from conversations.models import RequestLog
    from conversations.services import conversations_expire
    from tests.support.e2e import make_persona

    with django_db_blocker.unblock():
        quiet, logged = make_persona(f"q-{uuid.uuid4().hex[:8]}"), make_persona(f"l-{uuid.uuid4().hex[:8]}")
        tenant_update(tenant=logged.tenant, log_requests=True)
    time.sleep(1.1)  # the key cache
    traces = {}
    for persona in (quiet, logged):
        trace = traces[persona.key] = f"tr-{uuid.uuid4().hex}"
        client = openai.OpenAI(base_url=f"{routing_gateway}/v1", api_key=persona.key, max_retries=0)
        client.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "my secret"}],
                                       extra_headers={"AH-Trace-Id": trace})
        list(client.chat.completions.create(model="claude-haiku-4-5", stream=True, extra_headers={"AH-Trace-Id": trace},
                                            messages=[{"role": "user", "content": "streamed secret"}]))

    def listed(persona):
        return httpx.get(f"{routing_gateway}/v1/traces/{traces[persona.key]}",
                         headers={"Authorization": f"Bearer {persona.key}"}).json()["data"]

    assert "secret" not in str(listed(quiet)) and all("request" not in row for row in listed(quiet))
    plain, streamed = listed(logged)
    assert plain["request"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "my secret"}]}]
    assert plain["response"][0]["text"].startswith("Hello from the fake upstream. You said: my secret")
    assert streamed["response"][0]["text"].startswith("Hello from the fake upstream. You said: streamed secret")
    # Logs expire with the tenant's conversation retention.
    with django_db_blocker.unblock():
        assert RequestLog.objects.filter(tenant=logged.tenant).count() == 2
        conversations_expire(now=timezone.now() + timedelta(days=8))
        assert not RequestLog.objects.filter(tenant=logged.tenant).exists()
