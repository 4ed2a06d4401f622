"""Extended thinking: reasoning efforts as budgets, the `thinking` object, and when Anthropic would refuse it."""

from __future__ import annotations

from typing import Any

from gateway.core import MIN_THINKING_BUDGET, invalid

from .checks import is_int, missing, required_dict, unsupported_value, wrong_type


EFFORT_BUDGETS = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 32768,  # the official spec lists `max` too; it gets our largest budget rather than a 400
}


def effort_thinking(effort: Any, param: str) -> dict | None:
    """Thinking for an OpenAI reasoning effort (or Gemini's `thinkingLevel`) at `param`, through `EFFORT_BUDGETS`."""
    if effort is None or effort == "none":
        return None
    if not isinstance(effort, str):
        raise wrong_type(param, "a string", effort)
    budget = EFFORT_BUDGETS.get(effort)
    if budget is None:
        supported = "'none', " + ", ".join(f"'{name}'" for name in EFFORT_BUDGETS)
        raise unsupported_value(param, effort, supported)
    return {"type": "enabled", "budget_tokens": budget}


def decode_thinking_object(thinking: Any, param: str) -> dict | None:
    """An Anthropic-style `thinking` object (`enabled` with `budget_tokens`, or `disabled`) at `param`."""
    kind = required_dict(thinking, param).get("type")
    if kind == "disabled":
        return None
    if kind != "enabled":
        raise unsupported_value(f"{param}.type", kind, "'enabled' and 'disabled'")
    budget = thinking.get("budget_tokens")
    budget_param = f"{param}.budget_tokens"
    if budget is None:
        raise missing(budget_param)
    if not is_int(budget):
        raise wrong_type(budget_param, "an integer", budget)
    if budget < MIN_THINKING_BUDGET:
        raise invalid(
            f"Invalid '{budget_param}': expected a value >= {MIN_THINKING_BUDGET}, but got {budget}.", budget_param
        )
    return {"type": "enabled", "budget_tokens": budget}


def last_tool_turn_lacks_thinking(messages: list[dict]) -> bool:
    """Whether Anthropic would reject thinking: the last assistant turn used a tool and does not start with
    its (possibly redacted) thinking block."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            content = message["content"]
            uses_tool = any(block["type"] == "tool_use" for block in content)
            return uses_tool and content[0]["type"] not in ("thinking", "redacted_thinking")
    return False
