"""What the OpenAI and Anthropic usage and cost APIs share in their query strings: repeated parameters
(`group_by=a&group_by=b`, or `group_by[]=a` as both SDKs send arrays), bucket widths with per-width
limits, and pages of buckets. Pure module: each protocol module parses its own times and ids with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from billing.buckets import EARLIEST, LATEST, BucketPage, bucket_page
from gateway.core import invalid

Params = Mapping[str, list[str]]


@dataclass(frozen=True)
class UsageQuery:
    page: BucketPage
    group_by: tuple[str, ...]
    key_public_ids: list[str] | None  # None: every key
    models: list[str] | None
    workspace_ids: list[str] | None  # the project or workspace ids asked for; None: all


def values(params: Params, name: str) -> list[str] | None:
    """Every value of `name` and `name[]`, comma-separated lists split; None when absent."""
    found = [*params.get(name, []), *params.get(f"{name}[]", [])]
    if not found:
        return None
    return [item.strip() for value in found for item in value.split(",") if item.strip()]


def single(params: Params, name: str) -> str | None:
    found = params.get(name)
    if not found:
        return None
    if len(found) > 1:
        raise invalid(f"{name} must be given once.", name)
    return found[0]


def integer(params: Params, name: str) -> int | None:
    value = single(params, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid(f"{name} must be an integer, got {value!r}.", name) from None


def width(params: Params, allowed: tuple[str, ...]) -> str:
    value = single(params, "bucket_width") or "1d"
    if value not in allowed:
        raise invalid(f"bucket_width must be one of {', '.join(allowed)}, got {value!r}.", "bucket_width")
    return value


def limit(params: Params, bucket_width: str, limits: Mapping[str, tuple[int, int]], name: str = "limit") -> int:
    default, maximum = limits[bucket_width]
    value = integer(params, name)
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise invalid(f"{name} must be between 1 and {maximum} for bucket_width={bucket_width}, got {value}.", name)
    return value


def group_by(params: Params, allowed: tuple[str, ...]) -> tuple[str, ...]:
    asked = values(params, "group_by") or []
    for field in asked:
        if field not in allowed:
            raise invalid(f"group_by: {field!r} is not supported; use any of {', '.join(allowed)}.", "group_by")
    return tuple(dict.fromkeys(asked))


def in_range(moment: datetime, name: str) -> datetime:
    if not EARLIEST <= moment <= LATEST:
        raise invalid(f"{name} is out of range: dates from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} are served.", name)
    return moment


def query(params: Params, *, start: datetime, end: datetime, page: datetime | None,
          limits: Mapping[str, tuple[int, int]], groups: tuple[str, ...], key_prefix: str, workspace_param: str,
          names: tuple[str, str]) -> UsageQuery:
    """The query of one page, once the protocol has parsed its times: `limits` maps the widths served to
    their (default, maximum) limits, `names` are the protocol's start and end parameters."""
    if start >= end:
        raise invalid(f"{names[0]} must be before {names[1]}.", names[0])
    bucket_width = width(params, tuple(limits))
    try:
        buckets = bucket_page(start=start, end=end, width=bucket_width, limit=limit(params, bucket_width, limits),
                              page=page)
    except ValueError:
        raise invalid("page is not a next_page of this query.", "page") from None
    key_ids = values(params, "api_key_ids")
    return UsageQuery(page=buckets, group_by=group_by(params, groups), models=values(params, "models"),
                      key_public_ids=None if key_ids is None else [key.removeprefix(key_prefix) for key in key_ids
                                                                   if key.startswith(key_prefix)],
                      workspace_ids=values(params, workspace_param))
