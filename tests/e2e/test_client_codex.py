"""The Codex CLI (`codex exec`, the real npm build) through the gateway's OpenAI Responses API.

Codex reads a fresh CODEX_HOME whose config.toml names the gateway as a custom model provider
(`wire_api = "responses"`, base_url <gateway>/v1, the key from an env var); it sends its default tool
set. The fake upstream behind the gateway answers, and with `[[fake:tool]]` calls the first declared
tool, which Codex runs and answers with a `function_call_output`. Codex's default tools include
`namespace` and `web_search` tools: these tests need the Responses codec that accepts them.
"""

from __future__ import annotations

import json

import pytest

from billing.models import UsageEvent
from tests.support.e2e import marker
from tests.support.real_clients import client_bin, last_seq, run_client, upstream_log, usage_rows

pytestmark = pytest.mark.e2e

MODEL = "claude-haiku-4-5"


def codex(gateway: str, home, prompt: str, *, key: str):
    codex_home = home / "codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(f'''
model = "{MODEL}"
model_provider = "gatehouse"

[model_providers.gatehouse]
name = "Gatehouse"
base_url = "{gateway}/v1"
env_key = "GATEHOUSE_API_KEY"
wire_api = "responses"
''')
    work = home / "work"
    work.mkdir()
    env = {"CODEX_HOME": str(codex_home), "GATEHOUSE_API_KEY": key}
    return run_client([client_bin("codex"), "exec", "--skip-git-repo-check", "--json", "--sandbox", "read-only",
                       prompt], home=home, env=env, cwd=work)


def events_of(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def turns_of(fake_upstream: str, since: int, tag: str) -> list[dict]:
    entries = [e for e in upstream_log(fake_upstream, since) if tag in json.dumps(e["body"])]
    assert entries and all(e["status"] == 200 for e in entries), entries
    return entries


def check_rows(rows: list[UsageEvent], count: int) -> None:
    assert len(rows) == count
    for row in rows:
        assert (row.endpoint, row.status, row.model, row.stream) == ("responses", UsageEvent.Status.OK, MODEL, True)
        assert row.input_tokens > 0 and row.output_tokens > 0 and row.cost_nano > 0


def test_exec_answers_with_the_upstream_text(gateway, fake_upstream, persona, tmp_path, db_access):
    tag, since = marker(), last_seq(fake_upstream)
    result = codex(gateway, tmp_path, f"Say hello {tag}", key=persona.key)
    messages = [e["item"]["text"] for e in events_of(result)
                if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
    assert messages and messages[-1].startswith("Hello from the fake upstream"), result.stdout
    turns = turns_of(fake_upstream, since, tag)
    assert len(turns) == 1 and turns[0]["body"]["tools"]
    check_rows(usage_rows(persona.api_key, 1), 1)


def test_exec_runs_a_function_call_and_sends_its_output_back(gateway, fake_upstream, persona, tmp_path, db_access):
    tag, since = marker(), last_seq(fake_upstream)
    result = codex(gateway, tmp_path, f"[[fake:tool]] {tag}", key=persona.key)
    turns = turns_of(fake_upstream, since, tag)
    assert len(turns) == 2, result.stdout
    first_tool = turns[0]["body"]["tools"][0]["name"]
    history = turns[1]["body"]["messages"]
    call = next(block for block in history[-2]["content"] if block["type"] == "tool_use")
    assert call["name"] == first_tool
    outputs = [block for block in history[-1]["content"] if block["type"] == "tool_result"]
    assert [o["tool_use_id"] for o in outputs] == [call["id"]]
    messages = [e["item"]["text"] for e in events_of(result)
                if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
    assert messages and messages[-1].startswith("Tool results received"), result.stdout
    check_rows(usage_rows(persona.api_key, 2), 2)
