"""Tools, tool calls and tool_choice in Anthropic's shape, from OpenAI-style definitions (function and custom
tools; Gemini's function declarations reuse the function ones)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import orjson

from gateway.core import depth_checked, invalid

from .checks import required_str, show, unsupported_value, wrong_type


TOOL_CHOICE_MODES = {"auto": "auto", "required": "any", "none": "none"}
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
UNSAFE_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def safe_id(value: str) -> str:
    """A name Anthropic accepts (^[a-zA-Z0-9_-]+$): other characters become `_`."""
    return UNSAFE_ID_CHARS.sub("_", value)


def tool_id(value: str) -> str:
    """A tool call id Anthropic accepts, the same on a call and on its result. Other providers' ids look
    like `functions.Bash:0`; one that needs changing also gets a digest of itself, so that two ids that
    differ only in the replaced characters (`call.1`, `call_1`) stay two ids."""
    safe = safe_id(value)
    return value if safe == value else f"{safe}_{hashlib.sha256(value.encode()).hexdigest()[:8]}"


def function_name(function: dict, param: str) -> str:
    """A function tool's name at `param`, as Anthropic accepts it."""
    name = required_str(function, "name", param)
    if not TOOL_NAME.fullmatch(name):
        raise invalid(
            f"Invalid '{param}.name': {show(name)} must be 1 to 64 characters from a-z, A-Z, 0-9, "
            "underscores and dashes.",
            f"{param}.name",
        )
    return name


def function_tool(function: dict, param: str, name: str) -> dict:
    """The Anthropic tool for an OpenAI function definition (`parameters`, `description` checked)."""
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise wrong_type(f"{param}.parameters", "an object", parameters)
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise wrong_type(f"{param}.description", "a string", description)
    # Anthropic requires an object input_schema; OpenAI lets parameters be left out.
    entry = {"name": name, "input_schema": parameters or {"type": "object", "properties": {}}}
    if description:
        entry["description"] = description
    return entry


CUSTOM_INPUT_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's entire raw input."}},
    "required": ["input"],
}


def custom_tool(spec: dict, param: str, anthropic_name: str, name: str, grammar: tuple[str, str] | None,
                note: str = "") -> dict:
    """The Anthropic tool for an OpenAI custom (freeform) tool: Claude writes its raw input as the one string
    property `input`, and the grammar, which Anthropic cannot enforce, is in the description."""
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise wrong_type(f"{param}.description", "a string", description)
    parts = [description] if description else []
    if note:
        parts.append(note)
    parts.append(f"{name} is a freeform tool: put its entire raw input, exactly as the tool expects it "
                 "and not JSON-encoded, in the `input` string.")
    if grammar is not None:
        parts.append(f"The input must match this {grammar[0]} grammar:\n{grammar[1]}")
    return {"name": anthropic_name, "description": "\n\n".join(parts), "input_schema": CUSTOM_INPUT_SCHEMA}


def custom_input(tool_input: Any) -> str:
    """A custom tool call's raw input; a model that ignored the one-string schema still gets it through, as JSON."""
    if not isinstance(tool_input, dict):
        return ""
    raw = tool_input.get("input")
    return raw if isinstance(raw, str) else (orjson.dumps(tool_input).decode() if tool_input else "")


def grammar_of(grammar: dict, param: str) -> tuple[str, str]:
    """(syntax, definition) of a custom tool's grammar at `param`."""
    syntax = grammar.get("syntax")
    if syntax not in ("lark", "regex"):
        raise unsupported_value(f"{param}.syntax", syntax, "'lark' and 'regex'")
    return syntax, required_str(grammar, "definition", param)


def parse_arguments(arguments: str, param: str) -> dict:
    """A tool call's JSON `arguments` string sent back by the client, as the tool_use input object."""
    if not arguments or arguments.isspace():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise invalid(f"Invalid '{param}': the tool call arguments are not valid JSON.", param) from None
    if not isinstance(value, dict):
        raise invalid(f"Invalid '{param}': the tool call arguments must be a JSON object.", param)
    return depth_checked(value, param)


def decode_tool_choice(choice: Any, tools: list[dict], parallel: Any,
                       forced_name: Callable[[dict], tuple[str, str]]) -> dict | None:
    """Anthropic's tool_choice for OpenAI's `tool_choice` and `parallel_tool_calls`.

    `forced_name(choice)` checks a tool_choice object and gives the Anthropic name of the tool it forces
    and its param: chat nests a function's name under `function`, the Responses API does not and also
    forces custom and hosted tools.
    """
    if choice is None:
        decoded = None
    elif isinstance(choice, str):
        mode = TOOL_CHOICE_MODES.get(choice)
        if mode is None:
            raise unsupported_value("tool_choice", choice, "'auto', 'required', 'none' or a function")
        decoded = {"type": mode}
    elif isinstance(choice, dict):
        name, param = forced_name(choice)
        if not any(tool["name"] == name for tool in tools):
            raise invalid(f"Invalid '{param}': no tool named {show(name)} in 'tools'.", param)
        decoded = {"type": "tool", "name": name}
    else:
        raise wrong_type("tool_choice", "a string or an object", choice)
    if parallel is not None and not isinstance(parallel, bool):
        raise wrong_type("parallel_tool_calls", "a boolean", parallel)
    if parallel is False:
        if decoded is None:
            decoded = {"type": "auto"}
        if decoded["type"] != "none":
            decoded["disable_parallel_tool_use"] = True
    return decoded

