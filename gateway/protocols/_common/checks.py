"""Request checks shared by the codecs: each takes the parameter path it reports, so a 400 names the field
as the client sent it (`messages[2].content[0].type`, `items[0].role`), whichever codec's rules apply.

The messages follow OpenAI's wording, which the Gemini codec shares; Anthropic's own codec words its
errors as the Anthropic API does and does not use these.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core import GatewayError, invalid


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def show(value: Any) -> str:
    """A short JSON rendering of a client value for an error message."""
    try:
        shown = orjson.dumps(value).decode()
    except TypeError:
        shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def wrong_type(param: str, expected: str, value: Any) -> GatewayError:
    return invalid(f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead.", param)


def missing(param: str) -> GatewayError:
    return invalid(f"Missing required parameter: '{param}'.", param)


def unsupported_value(param: str, value: Any, supported: str) -> GatewayError:
    return invalid(f"Invalid value for '{param}': {show(value)}. Supported values are: {supported}.", param)


def required_dict(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise missing(param) if value is None else wrong_type(param, "an object", value)
    return value


def required_str(container: dict, key: str, parent: str, *, allow_empty: bool = False) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not (value or allow_empty):
        param = f"{parent}.{key}"
        expected = "a string" if allow_empty else "a non-empty string"
        raise missing(param) if value is None else wrong_type(param, expected, value)
    return value


def optional_bool(value: Any, param: str) -> bool:
    """A boolean field; absent (None) is false."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise wrong_type(param, "a boolean", value)
    return value


def int_at_least(value: Any, param: str, minimum: int) -> int:
    if not is_int(value):
        raise wrong_type(param, "an integer", value)
    if value < minimum:
        raise invalid(f"Invalid '{param}': expected a value >= {minimum}, but got {value}.", param)
    return value


def number_in_range(value: Any, param: str, low: int, high: int) -> int | float | None:
    """An optional number field between `low` and `high` (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise wrong_type(param, "a number", value)
    if not low <= value <= high:  # also false for NaN
        raise invalid(f"Invalid '{param}': expected a value between {low} and {high}, but got {value}.", param)
    return value
