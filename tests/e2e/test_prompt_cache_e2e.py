"""Prompt caching end to end: auto cache_control for OpenAI-format clients, the fake upstream's cache and
thread affinity, through the official OpenAI SDK, a gateway process and the usage rows.

The measurement in docs/prompt-caching.md is `test_auto_cache_control_cuts_the_input_cost_of_a_tool_conversation`
(run with `-s` to see its figures): a 20-turn tool conversation with and without auto cache_control, its
input cost from the usage rows at Claude Sonnet 4.6's prices.
"""

from __future__ import annotations

import json
import uuid

import openai
import pytest
from django.utils import timezone

from billing.models import UsageEvent
from tests.support.e2e import make_persona, start_gateway, stop_process, upstream_request

pytestmark = pytest.mark.e2e

# Claude Sonnet 4.6's list prices, nano-USD per million tokens.
PRICES = dict(input_nano_per_mtok=3 * 10**9, output_nano_per_mtok=15 * 10**9, cache_write_nano_per_mtok=3_750_000_000,
              cache_read_nano_per_mtok=300_000_000)
TOOLS = [{"type": "function", "function": {"name": name, "description": f"{name}: " + "details " * 40, "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}
    for name in ("read_file", "list_dir", "grep")]
TURNS = 20


def system_prompt(tag: str) -> str:
    rules = " ".join(f"Rule {i}: be precise, cite the file you read, keep answers short." for i in range(120))
    return f"You are a coding agent ({tag}). {rules}"  # about 2,000 tokens


@pytest.fixture(scope="module")
def cache_gateway(gateway_db_url, fake_upstream):
    url, process = start_gateway(gateway_db_url, fake_upstream, GATEWAY_CATALOG_CACHE_SECONDS="0")
    yield url
    stop_process(process)


@pytest.fixture
def catalog(django_db_blocker):
    """A model served by `providers` Anthropic providers on the fake, each with its own credential: the fake
    keeps a cache per key, as Anthropic keeps one per organisation."""
    from billing.services import model_price_add
    from gateway.models import CatalogModel, Credential, Deployment, Provider
    from gateway.services import credential_save

    def build(providers: int = 2) -> str:
        suffix = uuid.uuid4().hex[:8]
        with django_db_blocker.unblock():
            model = CatalogModel.objects.create(name=f"cache-{suffix}")
            model_price_add(model=model, effective_from=timezone.now(), **PRICES)
            for i in range(providers):
                provider = Provider.objects.create(name=f"anthropic-{suffix}-{i}", kind="anthropic")
                credential_save(credential=Credential(provider=provider, name="main"), secret=f"sk-ant-{suffix}-{i}")
                Deployment.objects.create(model=model, provider=provider, upstream_model="claude-sonnet-4-6")
        return model.name

    return build


def persona(django_db_blocker, *, tenant_setting: bool = False, **key_settings):
    from accounts.services import tenant_update

    with django_db_blocker.unblock():
        who = make_persona(f"c-{uuid.uuid4().hex[:12]}", **key_settings)
        if tenant_setting:
            tenant_update(tenant=who.tenant, auto_cache_control=True)
        return who


def tool_conversation(client: openai.OpenAI, model: str, tag: str, turns: int = TURNS) -> None:
    """`turns` requests; each answer calls a tool, whose output (about 500 tokens) the next request adds."""
    messages = [{"role": "system", "content": system_prompt(tag)},
                {"role": "user", "content": "Find where the retry limit is set and explain it."}]
    for turn in range(turns):
        response = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, tool_choice="required",
                                                  max_tokens=200)
        call = response.choices[0].message.tool_calls[0]
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]})
        output = f"turn {turn:02}: " + " ".join(f"line {n}: retries = {n % 7}  # config/settings.py" for n in range(40))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": output})


def rows_of(django_db_blocker, api_key) -> list[UsageEvent]:
    with django_db_blocker.unblock():
        return list(UsageEvent.objects.filter(api_key=api_key).order_by("id"))


def input_cost_nano(rows: list[UsageEvent], model: str, django_db_blocker) -> int:
    """The input side of the bill: the real price computation on each row's token counts, output left out."""
    from gateway.selectors import catalog_load

    with django_db_blocker.unblock():
        entry = catalog_load().by_name[model]
    return sum(entry.price_at(row.created_at.timestamp()).cost_nano(
        input_tokens=row.input_tokens, cache_write_tokens=row.cache_creation_input_tokens,
        cache_read_tokens=row.cache_read_input_tokens) for row in rows)


def test_auto_cache_control_cuts_the_input_cost_of_a_tool_conversation(cache_gateway, catalog, django_db_blocker,
                                                                        capsys):
    model = catalog()
    figures = {}
    for label, on in (("without", False), ("with", True)):
        who = persona(django_db_blocker, auto_cache_control=on)
        client = openai.OpenAI(base_url=f"{cache_gateway}/v1", api_key=who.key, max_retries=0)
        tool_conversation(client, model, tag=uuid.uuid4().hex)  # same length in both runs: same token counts
        rows = rows_of(django_db_blocker, who.api_key)
        assert len(rows) == TURNS and all(row.status == UsageEvent.Status.OK for row in rows)
        figures[label] = {
            "input_tokens": sum(r.input_tokens for r in rows),
            "cache_write_tokens": sum(r.cache_creation_input_tokens for r in rows),
            "cache_read_tokens": sum(r.cache_read_input_tokens for r in rows),
            "input_cost_nano": input_cost_nano(rows, model, django_db_blocker),
            "cost_nano": sum(r.cost_nano for r in rows),
            "providers": len({r.provider for r in rows}),
        }
    with capsys.disabled():
        print(f"\nprompt cache, {TURNS}-turn tool conversation: {json.dumps(figures)}")
    without, cached = figures["without"], figures["with"]
    assert without["cache_read_tokens"] == without["cache_write_tokens"] == 0
    assert cached["cache_read_tokens"] > 0
    assert cached["providers"] == 1  # one thread, one target: the one whose cache holds its prefix
    assert cached["input_cost_nano"] < without["input_cost_nano"] and cached["cost_nano"] < without["cost_nano"]
    # Every input token is billed once, in one of the three kinds.
    assert cached["input_tokens"] + cached["cache_write_tokens"] + cached["cache_read_tokens"] == without["input_tokens"]


def test_breakpoints_reach_the_upstream_only_for_keys_or_tenants_that_opted_in(cache_gateway, catalog, fake_upstream,
                                                                               django_db_blocker):
    model = catalog(providers=1)

    def sent(who, api: str) -> str:
        tag = uuid.uuid4().hex
        client = openai.OpenAI(base_url=f"{cache_gateway}/v1", api_key=who.key, max_retries=0)
        history = [{"role": "user", "content": f"first {tag}"}, {"role": "assistant", "content": "ok"},
                   {"role": "user", "content": "second"}]
        if api == "chat":
            client.chat.completions.create(model=model, max_tokens=20,
                                           messages=[{"role": "system", "content": system_prompt(tag)}, *history])
        else:
            client.responses.create(model=model, instructions=system_prompt(tag), input=history, max_output_tokens=20)
        return json.dumps(upstream_request(fake_upstream, tag)["body"])

    off = persona(django_db_blocker)
    by_key, by_tenant = persona(django_db_blocker, auto_cache_control=True), persona(django_db_blocker,
                                                                                    tenant_setting=True)
    assert "cache_control" not in sent(off, "chat") and "cache_control" not in sent(off, "responses")
    for who in (by_key, by_tenant):
        for api in ("chat", "responses"):
            body = json.loads(sent(who, api))
            assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
            assert body["messages"][-2]["content"][-1]["cache_control"] == {"type": "ephemeral"}


def test_a_thread_sticks_to_one_deployment_and_reads_its_cache(cache_gateway, catalog, django_db_blocker):
    model = catalog(providers=2)
    who = persona(django_db_blocker)
    client = openai.OpenAI(base_url=f"{cache_gateway}/v1", api_key=who.key, max_retries=0)
    for i in range(12):  # no system prompt or tools: only the header makes these one thread
        client.chat.completions.create(model=model, max_tokens=20, messages=[{"role": "user", "content": f"q{i}"}],
                                       extra_headers={"AH-Thread-Id": "thread-1"})
    rows = rows_of(django_db_blocker, who.api_key)
    assert len({row.provider for row in rows}) == 1
    for i in range(40):  # no thread at all: spread by weight (both used; p of one only: 2 * 2^-40)
        client.chat.completions.create(model=model, max_tokens=20, messages=[{"role": "user", "content": f"r{i}"}])
    assert len({row.provider for row in rows_of(django_db_blocker, who.api_key)[12:]}) == 2
