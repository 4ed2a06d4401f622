"""Validate objects against the official OpenAI OpenAPI schemas (`/work/shared/specs/openai-openapi.yaml`).

    from tests.support.openapi import validate
    validate("CreateChatCompletionResponse", body)   # AssertionError with the validation message

The spec is an OpenAPI 3.1 document (JSON Schema 2020-12) that still uses OpenAPI 3.0's
`nullable: true` in about a hundred places; those are rewritten to allow null before validating.
Loaded once per process (a 3 MB YAML file takes about a second to parse).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .env import ROOT

_SPEC_URI = "urn:openai-openapi"


def spec_path() -> Path:
    configured = os.environ.get("OPENAI_OPENAPI_SPEC")
    if configured:
        return Path(configured)
    return ROOT.parent / "shared/specs/openai-openapi.yaml"


def spec_available() -> bool:
    return spec_path().is_file()


def validate(schema_name: str, instance: Any) -> None:
    """Raise AssertionError unless `instance` is valid against `#/components/schemas/<schema_name>`."""
    error = best_match(_validator(schema_name).iter_errors(instance))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise AssertionError(f"{schema_name} at {where}: {error.message}")


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    schemas = _schemas()
    if schema_name not in schemas:
        raise KeyError(f"no schema {schema_name!r} in {spec_path()}")
    registry = Registry().with_resource(
        _SPEC_URI, Resource(contents={"components": {"schemas": schemas}}, specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"{_SPEC_URI}#/components/schemas/{schema_name}"}, registry=registry)


@functools.cache
def _schemas() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path().open("rb") as spec_file:
        spec = yaml.load(spec_file, Loader=loader)
    return _without_nullable(spec["components"]["schemas"])


def _without_nullable(node: Any) -> Any:
    """Rewrite OpenAPI 3.0 `nullable: true` as JSON Schema, recursively."""
    if isinstance(node, list):
        return [_without_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    # A property *named* "nullable" has a schema (a dict) as its value, not a boolean.
    schema = {
        key: _without_nullable(value)
        for key, value in node.items()
        if not (key == "nullable" and isinstance(value, bool))
    }
    if node.get("nullable") is not True:
        return schema
    kind = schema.get("type")
    if isinstance(kind, str) and not any(key in schema for key in ("$ref", "anyOf", "oneOf", "allOf")):
        schema["type"] = [kind, "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return schema
    return {"anyOf": [{"type": "null"}, schema]}
