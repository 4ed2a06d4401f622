"""The Vercel AI SDK (`ai` with `@ai-sdk/openai` on the Responses API and `@ai-sdk/anthropic` on
/anthropic) through the gateway: plain and streamed text, a tool round trip, structured output.

Each case runs tests/clients/ai-sdk.mjs in node, which prints what the SDK returned as JSON.
"""

from __future__ import annotations

import json

import pytest

from billing.models import UsageEvent
from tests.support.e2e import marker
from tests.support.real_clients import last_seq, node_script, run_client, upstream_log, usage_rows

pytestmark = pytest.mark.e2e

PROVIDERS = {  # provider: (catalog model, the usage rows' endpoint)
    "openai": ("claude-haiku-4-5", "responses"),
    "anthropic": ("claude-sonnet-4-6", "messages"),
}


def ai_sdk(gateway: str, home, provider: str, mode: str, prompt: str, *, key: str) -> dict:
    env = {"GATEWAY_URL": gateway, "GATEWAY_KEY": key, "MODEL": PROVIDERS[provider][0]}
    result = run_client([*node_script("ai-sdk.mjs"), provider, mode, prompt], home=home, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_rows(api_key, provider: str, count: int, *, stream: bool) -> list[UsageEvent]:
    rows = usage_rows(api_key, count)
    assert len(rows) == count
    model, endpoint = PROVIDERS[provider]
    for row in rows:
        assert (row.endpoint, row.status, row.model, row.stream) == (endpoint, UsageEvent.Status.OK, model, stream)
        assert row.input_tokens > 0 and row.output_tokens > 0 and row.cost_nano > 0
    return rows


@pytest.fixture(params=list(PROVIDERS))
def provider(request) -> str:
    return request.param


def test_generate_text(gateway, persona, provider, tmp_path, db_access):
    tag = marker()
    out = ai_sdk(gateway, tmp_path, provider, "plain", f"Hello {tag}", key=persona.key)
    assert out["text"] == f"Hello from the fake upstream. You said: Hello {tag}"
    row, = check_rows(persona.api_key, provider, 1, stream=False)
    assert (out["usage"]["inputTokens"], out["usage"]["outputTokens"]) == (row.input_tokens, row.output_tokens)


def test_stream_text(gateway, persona, provider, tmp_path, db_access):
    out = ai_sdk(gateway, tmp_path, provider, "stream", "[[fake:words=40]] go", key=persona.key)
    assert len(out["text"].split()) == 40 and out["chunks"] > 1
    row, = check_rows(persona.api_key, provider, 1, stream=True)
    assert out["usage"]["outputTokens"] == row.output_tokens == 40


def test_tool_round_trip(gateway, fake_upstream, persona, provider, tmp_path, db_access):
    tag, since = marker(), last_seq(fake_upstream)
    out = ai_sdk(gateway, tmp_path, provider, "tool", f"[[fake:tool]] weather? {tag}", key=persona.key)
    assert out["steps"][0] == {"toolCalls": [{"name": "get_weather", "input": {"city": "example"}}],
                               "toolResults": ["sunny in example"]}
    assert out["text"] == "Tool results received: sunny in example"
    turns = [e for e in upstream_log(fake_upstream, since) if tag in json.dumps(e["body"])]
    assert [e["status"] for e in turns] == [200, 200]
    if provider == "anthropic":  # strict tools: the SDK's beta reaches the upstream
        assert "structured-outputs-2025-11-13" in turns[0]["headers"]["anthropic-beta"]
    results = [b for b in turns[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert len(results) == 1 and "sunny in example" in json.dumps(results[0]["content"])
    check_rows(persona.api_key, provider, 2, stream=False)


def test_generate_object(gateway, fake_upstream, persona, provider, tmp_path, db_access):
    tag, since = marker(), last_seq(fake_upstream)
    out = ai_sdk(gateway, tmp_path, provider, "object", f"A person {tag}", key=persona.key)
    assert out["object"] == {"name": "example", "age": 1, "tags": []}
    sent, = [e for e in upstream_log(fake_upstream, since) if tag in json.dumps(e["body"])]
    assert sent["status"] == 200
    check_rows(persona.api_key, provider, 1, stream=False)
