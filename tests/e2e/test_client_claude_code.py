"""Claude Code (the real `claude` CLI, print mode) through the gateway's `/anthropic` to the fake upstream.

Claude Code sends what the real API takes: `POST /v1/messages?beta=true`, its `anthropic-beta` flags,
adaptive thinking, `output_config.effort`, `context_management`, its ~a dozen tools. The gateway must
pass all of it on untouched, bill every turn, and relay the answer in Anthropic's stream grammar.
Telemetry, auto-update, error reporting and other nonessential traffic are off, HOME is a fresh
directory, so the run is offline and uses nothing of the machine's configuration.
"""

from __future__ import annotations

import json

import pytest

from billing.models import UsageEvent
from tests.support.e2e import marker
from tests.support.real_clients import client_bin, last_seq, run_client, upstream_log, usage_rows

pytestmark = pytest.mark.e2e

SONNET = "claude-sonnet-4-6"
OFFLINE = {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_ERROR_REPORTING": "1"}


def claude(gateway: str, home, *args: str, key: str, bearer: bool = False):
    credential = {"ANTHROPIC_AUTH_TOKEN" if bearer else "ANTHROPIC_API_KEY": key}
    env = {**OFFLINE, **credential, "ANTHROPIC_BASE_URL": f"{gateway}/anthropic", "ANTHROPIC_MODEL": SONNET,
           "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5"}
    work = home / "work"
    work.mkdir(exist_ok=True)
    return run_client([client_bin("claude"), "-p", *args], home=home, env=env, cwd=work)


def messages_requests(fake_upstream: str, since: int, tag: str) -> list[dict]:
    """Claude Code's /v1/messages requests of this run, checked for what every one of them carries."""
    entries = [e for e in upstream_log(fake_upstream, since) if tag in json.dumps(e["body"])]
    assert entries, "Claude Code sent nothing that reached the upstream"
    for entry in entries:
        assert entry["status"] == 200 and entry["path"] in ("/v1/messages", "/v1/messages/count_tokens"), entry
    return [e for e in entries if e["path"] == "/v1/messages"]


def check_turns(rows: list[UsageEvent], turns: list[dict]) -> None:
    """One OK, streamed, priced usage row per /v1/messages request; count_tokens is not billed."""
    assert len(rows) == len(turns)
    for row in rows:
        assert (row.endpoint, row.status, row.model, row.stream) == ("messages", UsageEvent.Status.OK, SONNET, True)
        # Claude Code marks its prompt for caching, and the fake upstream now caches as Anthropic does: the
        # prompt is counted as cache writes and reads, `input_tokens` only after the last breakpoint (0 here).
        prompt = row.input_tokens + row.cache_creation_input_tokens + row.cache_read_input_tokens
        assert prompt > 0 and row.output_tokens > 0 and row.cost_nano > 0


def test_print_mode_answers_with_the_upstream_text_and_bills_the_turn(gateway, fake_upstream, persona, tmp_path,
                                                                      db_access):
    tag, since = marker(), last_seq(fake_upstream)
    result = claude(gateway, tmp_path, f"Say hello {tag}", key=persona.key)
    assert "Hello from the fake upstream" in result.stdout
    turns = messages_requests(fake_upstream, since, tag)
    assert len(turns) == 1
    sent = turns[0]
    betas = sent["headers"]["anthropic-beta"].split(",")
    assert "claude-code-20250219" in betas and "interleaved-thinking-2025-05-14" in betas
    body = sent["body"]
    assert body["model"] == SONNET and body["stream"] is True and body["max_tokens"] == 32000
    assert body["thinking"]["type"] == "adaptive" and body["output_config"]["effort"]
    assert body["context_management"]["edits"] and body["metadata"]["user_id"]
    assert {"Read", "Write", "Edit", "Bash"} <= {tool["name"] for tool in body["tools"]}
    check_turns(usage_rows(persona.api_key, 1), turns)


def test_stream_json_output_relays_the_streamed_answer(gateway, fake_upstream, persona, tmp_path, db_access):
    tag, since = marker(), last_seq(fake_upstream)
    result = claude(gateway, tmp_path, f"[[fake:words=30]] {tag}", "--output-format", "stream-json", "--verbose",
                    key=persona.key)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    texts = [block["text"] for event in events if event["type"] == "assistant"
             for block in event["message"]["content"] if block["type"] == "text"]
    assert len(" ".join(texts).split()) == 30
    final = events[-1]
    assert final["type"] == "result" and final["subtype"] == "success" and not final["is_error"]
    assert final["usage"]["output_tokens"] > 0
    turns = messages_requests(fake_upstream, since, tag)
    check_turns(usage_rows(persona.api_key, len(turns)), turns)


def test_a_bearer_token_authenticates(gateway, fake_upstream, persona, tmp_path, db_access):
    tag, since = marker(), last_seq(fake_upstream)
    result = claude(gateway, tmp_path, f"Hi {tag}", key=persona.key, bearer=True)
    assert "Hello from the fake upstream" in result.stdout
    check_turns(usage_rows(persona.api_key, 1), messages_requests(fake_upstream, since, tag))


def test_a_read_tool_call_runs_and_its_result_goes_back(gateway, fake_upstream, persona, tmp_path, db_access):
    tag, since = marker(), last_seq(fake_upstream)
    (tmp_path / "work").mkdir()
    # The fake fills a string argument with "example": Read's file_path, relative to the working directory.
    (tmp_path / "work" / "example").write_text(f"the secret is {tag}-4217\n")
    result = claude(gateway, tmp_path, f"Read the file [[fake:call=Read]] {tag}", "--allowedTools", "Read",
                    key=persona.key)
    assert f"Tool results received: 1\tthe secret is {tag}-4217" in result.stdout
    turns = messages_requests(fake_upstream, since, tag)
    assert len(turns) == 2
    history = turns[1]["body"]["messages"]
    call = next(block for block in history[-2]["content"] if block["type"] == "tool_use")
    assert call["name"] == "Read" and call["input"] == {"file_path": "example"}
    results = [block for block in history[-1]["content"] if block["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == [call["id"]]
    assert f"the secret is {tag}-4217" in json.dumps(results[0]["content"])
    check_turns(usage_rows(persona.api_key, 2), turns)
