"""Anthropic's Admin API shapes for a tenant: the messages usage report, the cost report and the API
keys list. Pure: query strings in, response bodies out.

A tenant is an organization whose keys all sit in its default workspace (`workspace_id` null, as
Anthropic reports the default workspace); keys are `apikey_<public id>`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing.buckets import WIDTHS, Sums, group_rows
from gateway.core import invalid

from . import usage_query as q

USAGE_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
COSTS_LIMITS = {"1d": (7, 31)}
USAGE_GROUPS = ("api_key_id", "workspace_id", "model", "service_tier")
COSTS_GROUPS = ("workspace_id", "description")
KEY_PREFIX = "apikey_"
KEY_STATUSES = ("active", "inactive", "archived", "expired")
MAX_LIST_LIMIT = 1000


def key_id(public_id: str) -> str:
    return KEY_PREFIX + public_id


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(f"{name} must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z, got {value!r}.",
                      name) from None
    if moment.tzinfo is None:
        raise invalid(f"{name} needs a time zone (Z or an offset), got {value!r}.", name)
    return q.in_range(moment.astimezone(UTC), name)


def parse_query(params: q.Params, *, now: datetime, costs: bool = False) -> q.UsageQuery:
    """The query of `GET /v1/organizations/usage_report/messages` (or `/cost_report`)."""
    start = q.single(params, "starting_at")
    if start is None:
        raise invalid("starting_at is required: an RFC 3339 timestamp.", "starting_at")
    end, page = q.single(params, "ending_at"), q.single(params, "page")
    return q.query(params, start=_time(start, "starting_at"), end=now if end is None else _time(end, "ending_at"),
                   page=None if page is None else _time(page, "page"), limits=COSTS_LIMITS if costs else USAGE_LIMITS,
                   groups=COSTS_GROUPS if costs else USAGE_GROUPS, key_prefix=KEY_PREFIX,
                   workspace_param="workspace_ids", names=("starting_at", "ending_at"))


def _dimension(row: dict, field: str) -> str | None:
    if field == "api_key_id":
        return key_id(row["key_public_id"])
    if field == "service_tier":
        return "standard"
    if field == "workspace_id":
        return None  # the default workspace
    return row["model"]  # model, or the cost report's description: one line per model


def _report(query: q.UsageQuery, rows: list[dict], result) -> dict:
    grouped = group_rows(rows, lambda row: tuple(_dimension(row, field) for field in query.group_by))
    step = WIDTHS[query.page.width]
    data = [
        {"starting_at": _rfc3339(start), "ending_at": _rfc3339(start + step),
         "results": [result(dict(zip(query.group_by, dims)), sums)
                     for dims, sums in sorted(grouped.get(start, {}).items(), key=lambda item: str(item[0]))]}
        for start in query.page.starts
    ]
    following = query.page.next_start
    return {"data": data, "has_more": following is not None,
            "next_page": None if following is None else _rfc3339(following)}


def usage_report(query: q.UsageQuery, rows: list[dict]) -> dict:
    """Cache writes are all reported as 5-minute ones: usage rows do not tell the two TTLs apart."""

    def result(dims: dict, sums: Sums) -> dict:
        return {"uncached_input_tokens": sums["input_tokens"],
                "cache_creation": {"ephemeral_1h_input_tokens": 0,
                                   "ephemeral_5m_input_tokens": sums["cache_creation_input_tokens"]},
                "cache_read_input_tokens": sums["cache_read_input_tokens"], "output_tokens": sums["output_tokens"],
                "server_tool_use": {"web_search_requests": 0}, "api_key_id": dims.get("api_key_id"),
                "workspace_id": None, "model": dims.get("model"), "service_tier": dims.get("service_tier"),
                "context_window": None}

    return _report(query, rows, result)


def cents(nano: int) -> str:
    """nano-USD as Anthropic's amount: US cents as an exact decimal string ("123.45" is $1.2345)."""
    text = f"{Decimal(nano).scaleb(-7):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def cost_report(query: q.UsageQuery, rows: list[dict]) -> dict:
    """One line per model when grouped by description, its whole billed cost (token_type null: a
    request's cost is rounded once, on its total)."""

    def result(dims: dict, sums: Sums) -> dict:
        described = "description" in dims
        return {"amount": cents(sums["cost_nano"]), "currency": "USD", "workspace_id": None,
                "description": dims.get("description"), "cost_type": "tokens" if described else None,
                "model": dims.get("description"), "service_tier": "standard" if described else None,
                "token_type": None, "context_window": None}

    return _report(query, rows, result)


# --- API keys ---------------------------------------------------------------------------------------------


def key_list_params(params: q.Params) -> tuple[int, str | None, str | None, str | None]:
    """(limit, after public id, before public id, status) of `GET /v1/organizations/api_keys`."""
    limit = q.integer(params, "limit")
    if limit is None:
        limit = 20
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise invalid(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}.", "limit")
    status = q.single(params, "status")
    if status is not None and status not in KEY_STATUSES:
        raise invalid(f"status must be one of {', '.join(KEY_STATUSES)}, got {status!r}.", "status")
    after, before = (q.single(params, name) for name in ("after_id", "before_id"))
    if after and before:
        raise invalid("Give after_id or before_id, not both.", "after_id")
    return limit, after and after.removeprefix(KEY_PREFIX), before and before.removeprefix(KEY_PREFIX), status


def key_list(keys: list[dict], *, has_more: bool) -> dict:
    """`keys` as accounts.selectors lists them, with `status` active, archived (revoked) or expired."""
    data = [
        {"type": "api_key", "id": key_id(key["public_id"]), "name": key["name"],
         "created_at": _rfc3339(key["created_at"]),
         "created_by": {"id": f"user_{key['creator']['id']}" if key["creator"] else "user_operator", "type": "user"},
         "partial_key_hint": key["display"], "status": key["status"], "workspace_id": None}
        for key in keys
    ]
    return {"data": data, "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None,
            "has_more": has_more}
