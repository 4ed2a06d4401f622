"""Structured output: a JSON answer by instruction, or a JSON Schema answer through a forced tool (the
strategy is described in gateway/protocols/openai_chat's docstring, under `response_format`)."""

from __future__ import annotations

import orjson

from .checks import wrong_type
from .tools import safe_id

DEFAULT_JSON_TOOL = "json_response"
JSON_OBJECT_INSTRUCTION = (
    "Respond with exactly one valid JSON object and nothing else: no prose, no Markdown code fences."
)
JSON_SCHEMA_INSTRUCTION = (
    "Respond with exactly one valid JSON value that conforms to the following JSON Schema, and nothing "
    "else: no prose, no Markdown code fences.\nJSON Schema: "
)


def apply_json_schema(spec: dict, params: dict, system: list[str], options: dict, param: str) -> None:
    """A JSON Schema answer for `spec` (`schema`, `name`, `description`, at `param`): a forced tool when
    possible, else a system instruction (see the module docstring)."""
    schema = spec.get("schema")
    if schema is None:
        schema = {"type": "object"}
    elif not isinstance(schema, dict):
        raise wrong_type(f"{param}.schema", "an object", schema)
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise wrong_type(f"{param}.name", "a string", name)
    if "tools" in params or "thinking" in params or schema.get("type") != "object":
        system.append(JSON_SCHEMA_INSTRUCTION + orjson.dumps(schema).decode())
        return
    tool_name = safe_id(name)[:64] if name else DEFAULT_JSON_TOOL
    tool = {"name": tool_name, "input_schema": schema}
    description = spec.get("description")
    if isinstance(description, str) and description:
        tool["description"] = description
    params["tools"] = [tool]
    params["tool_choice"] = {"type": "tool", "name": tool_name}
    options["json_tool"] = tool_name
