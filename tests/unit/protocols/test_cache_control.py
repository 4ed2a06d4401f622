"""gateway/protocols/_common/cache_control.py: where auto cache breakpoints go, and where they don't."""

from __future__ import annotations

import copy

from gateway.protocols._common.cache_control import (MAX_BREAKPOINTS, count_breakpoints, min_cacheable_tokens,
                                                     with_breakpoints)

LONG = "x" * 8000  # 2000 tokens at 4 characters a token
TOOL = {"name": "read_file", "description": "Read a file", "input_schema": {"type": "object", "properties": {}}}
EPHEMERAL = {"type": "ephemeral"}


def tool_turns(n: int, text: str = "y" * 400) -> list[dict]:
    messages = [{"role": "user", "content": "Start"}]
    for i in range(n):
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "read_file",
                                                           "input": {}}]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": text}]})
    return messages


def test_system_and_last_stable_turn_get_one_breakpoint_each():
    params = {"system": LONG, "tools": [TOOL], "messages": tool_turns(3), "max_tokens": 10}
    out = with_breakpoints(params, min_tokens=1024)
    assert out["system"] == [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]
    assert out["tools"] == [TOOL]  # the system breakpoint covers the tools (render order tools, system, messages)
    assert out["messages"][-2]["content"][-1]["cache_control"] == EPHEMERAL  # the assistant turn before the newest
    assert "cache_control" not in out["messages"][-1]["content"][-1]
    assert count_breakpoints(out) == 2


def test_the_request_is_copied_never_changed():
    params = {"system": [{"type": "text", "text": LONG}], "messages": tool_turns(2)}
    before = copy.deepcopy(params)
    out = with_breakpoints(params, min_tokens=1024)
    assert params == before and out is not params and count_breakpoints(out) == 2


def test_without_a_system_prompt_the_last_tool_is_marked():
    tools = [TOOL, {**TOOL, "name": "big", "description": LONG}]
    out = with_breakpoints({"tools": tools, "messages": [{"role": "user", "content": "Hi"}]}, min_tokens=1024)
    assert out["tools"][-1]["cache_control"] == EPHEMERAL and "cache_control" not in out["tools"][0]
    assert out["messages"] == [{"role": "user", "content": "Hi"}]  # a first turn has no stable turn


def test_a_short_prefix_gets_no_breakpoint():
    params = {"system": "Be brief.", "messages": tool_turns(1, text="short")}
    assert with_breakpoints(params, min_tokens=1024) is params


def test_a_short_system_still_lets_a_long_history_be_cached():
    params = {"system": "Be brief.", "messages": tool_turns(4, text="z" * 2000)}
    out = with_breakpoints(params, min_tokens=1024)
    assert out["system"] == "Be brief." and out["messages"][-2]["content"][-1]["cache_control"] == EPHEMERAL


def test_string_content_and_thinking_blocks():
    messages = [{"role": "user", "content": LONG},
                {"role": "assistant", "content": [{"type": "text", "text": "Sure"},
                                                  {"type": "thinking", "thinking": "hm", "signature": "s"}]},
                {"role": "user", "content": "Next"}]
    out = with_breakpoints({"messages": messages}, min_tokens=1024)
    assert out["messages"][1]["content"][0]["cache_control"] == EPHEMERAL  # not the thinking block after it
    assert "cache_control" not in out["messages"][1]["content"][1]
    only_thinking = [messages[0], {"role": "assistant", "content": [messages[1]["content"][1]]}, messages[2]]
    assert count_breakpoints(with_breakpoints({"messages": only_thinking}, min_tokens=1024)) == 0
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": LONG}, {"role": "user", "content": "b"}]
    out = with_breakpoints({"messages": messages}, min_tokens=1024)
    assert out["messages"][1]["content"] == [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]


def test_the_limit_of_four_counts_the_clients_own_breakpoints():
    system = [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}] * 3
    params = {"system": system, "messages": tool_turns(2)}
    out = with_breakpoints(params, min_tokens=1024)
    assert count_breakpoints(out) == MAX_BREAKPOINTS  # one added: on the last stable turn
    full = {"system": [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}] * 4, "messages": tool_turns(2)}
    assert with_breakpoints(full, min_tokens=1024) is full


def test_automatic_caching_asked_by_the_client_is_left_alone():
    params = {"system": LONG, "cache_control": EPHEMERAL, "messages": tool_turns(2)}
    assert with_breakpoints(params, min_tokens=1024) is params


def test_a_turn_beyond_the_lookback_gets_a_bridge_to_the_previous_turn():
    messages = tool_turns(1)
    calls = [{"type": "tool_use", "id": f"p{i}", "name": "read_file", "input": {}} for i in range(24)]
    results = [{"type": "tool_result", "tool_use_id": f"p{i}", "content": "r"} for i in range(24)]
    messages += [{"role": "assistant", "content": calls}, {"role": "user", "content": results}]
    out = with_breakpoints({"system": LONG, "messages": messages}, min_tokens=1024)
    # the previous request's stable turn (messages[1]) and this one's (messages[3]): 1 + 24 blocks apart
    assert out["messages"][1]["content"][-1]["cache_control"] == EPHEMERAL
    assert out["messages"][3]["content"][-1]["cache_control"] == EPHEMERAL
    assert count_breakpoints(out) == 3


def test_minimums_per_model():
    assert min_cacheable_tokens("claude-sonnet-4-6") == 1024
    assert min_cacheable_tokens("claude-opus-4-6") == 4096
    assert min_cacheable_tokens("claude-haiku-4-5-20251001") == 4096
    assert min_cacheable_tokens("claude-3-5-haiku-latest") == 2048
    assert min_cacheable_tokens("something-else") == 1024
