"""OpenAI's Administration API shapes for a tenant: usage (completions, embeddings), costs, admin keys,
the project and its API keys. Pure: query strings in, response bodies out.

A tenant is an organization with one project, `proj_<tenant slug>` ("Default project"), holding all its
API keys; keys are `key_<public id>` (the part of `sk_cdx_<public id>_<secret>` shown anywhere).
"""

from __future__ import annotations

from datetime import UTC, datetime

from billing.buckets import WIDTHS, Sums, group_rows
from common.money import nano_to_usd
from gateway.core import GatewayError, invalid

from . import usage_query as q

USAGE_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
COSTS_LIMITS = {"1d": (7, 180)}
USAGE_GROUPS = ("project_id", "api_key_id", "model")
COSTS_GROUPS = ("project_id", "line_item", "api_key_id")
KEY_PREFIX, PROJECT_PREFIX, PAGE_PREFIX = "key_", "proj_", "page_"
MAX_LIST_LIMIT = 100


def project_id(tenant_slug: str) -> str:
    return PROJECT_PREFIX + tenant_slug


def key_id(public_id: str) -> str:
    return KEY_PREFIX + public_id


def _time(seconds: int, name: str) -> datetime:
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise invalid(f"{name} must be a Unix time in seconds, got {seconds}.", name) from None
    return q.in_range(moment, name)


def parse_query(params: q.Params, *, now: datetime, costs: bool = False) -> q.UsageQuery:
    """The query of `GET /organization/usage/{completions,embeddings}` (or `/organization/costs`)."""
    start = q.integer(params, "start_time")
    if start is None:
        raise invalid("start_time is required: a Unix time in seconds.", "start_time")
    end = q.integer(params, "end_time")
    page = q.single(params, "page")
    if page is not None:
        if not page.startswith(PAGE_PREFIX) or not page[len(PAGE_PREFIX):].isdigit():
            raise invalid("page is not a next_page of this query.", "page")
        page = _time(int(page[len(PAGE_PREFIX):]), "page")
    return q.query(params, start=_time(start, "start_time"), end=now if end is None else _time(end, "end_time"),
                   page=page, limits=COSTS_LIMITS if costs else USAGE_LIMITS,
                   groups=COSTS_GROUPS if costs else USAGE_GROUPS, key_prefix=KEY_PREFIX, workspace_param="project_ids",
                   names=("start_time", "end_time"))


def _dimension(row: dict, field: str, project: str) -> str:
    if field == "project_id":
        return project
    if field == "api_key_id":
        return key_id(row["key_public_id"])
    return row["model"]  # model, or line_item: one line item per model


def _page(query: q.UsageQuery, rows: list[dict], project: str, result) -> dict:
    grouped = group_rows(rows, lambda row: tuple(_dimension(row, field, project) for field in query.group_by))
    step = WIDTHS[query.page.width]
    data = [
        {"object": "bucket", "start_time": int(start.timestamp()), "end_time": int((start + step).timestamp()),
         "results": [result(dict(zip(query.group_by, dims)), sums) for dims, sums in sorted(grouped.get(start, {}).items())]}
        for start in query.page.starts
    ]
    following = query.page.next_start
    return {"object": "page", "data": data, "has_more": following is not None,
            "next_page": None if following is None else f"{PAGE_PREFIX}{int(following.timestamp())}"}


def completions_page(query: q.UsageQuery, rows: list[dict], *, project: str) -> dict:
    """Our input tokens are Anthropic's (uncached only); OpenAI's `input_tokens` include the cached ones
    and cache writes, which are also given apart."""

    def result(dims: dict, sums: Sums) -> dict:
        uncached, written, read = (sums["input_tokens"], sums["cache_creation_input_tokens"],
                                   sums["cache_read_input_tokens"])
        return {"object": "organization.usage.completions.result", "input_tokens": uncached + written + read,
                "input_cached_tokens": read, "input_cache_write_tokens": written, "input_uncached_tokens": uncached,
                "output_tokens": sums["output_tokens"], "input_audio_tokens": 0, "output_audio_tokens": 0,
                "num_model_requests": sums["requests"], "project_id": dims.get("project_id"), "user_id": None,
                "api_key_id": dims.get("api_key_id"), "model": dims.get("model"), "batch": None}

    return _page(query, rows, project, result)


def embeddings_page(query: q.UsageQuery, rows: list[dict], *, project: str) -> dict:
    def result(dims: dict, sums: Sums) -> dict:
        return {"object": "organization.usage.embeddings.result", "input_tokens": sums["input_tokens"],
                "num_model_requests": sums["requests"], "project_id": dims.get("project_id"), "user_id": None,
                "api_key_id": dims.get("api_key_id"), "model": dims.get("model")}

    return _page(query, rows, project, result)


def costs_page(query: q.UsageQuery, rows: list[dict], *, project: str) -> dict:
    """Amounts are what the ledger debits (nano-USD) as JSON numbers in USD, the spec's type; one line
    item per model, its whole cost (a request's cost is rounded once, on its total, so splitting it per
    token kind would not add up to what was billed)."""

    def result(dims: dict, sums: Sums) -> dict:
        return {"object": "organization.costs.result",
                "amount": {"value": float(nano_to_usd(sums["cost_nano"])), "currency": "usd"},
                "line_item": dims.get("line_item"), "project_id": dims.get("project_id"),
                "api_key_id": dims.get("api_key_id"), "quantity": None, "quantity_unit": None}

    return _page(query, rows, project, result)


# --- Keys and the project ---------------------------------------------------------------------------------


def list_params(params: q.Params) -> tuple[int, str | None]:
    """(limit, after) of a list of keys or projects."""
    limit = q.integer(params, "limit")
    if limit is None:
        limit = 20
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise invalid(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}.", "limit")
    return limit, q.single(params, "after")


def descending(params: q.Params) -> bool:
    order = q.single(params, "order") or "asc"
    if order not in ("asc", "desc"):
        raise invalid(f"order must be asc or desc, got {order!r}.", "order")
    return order == "desc"


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _list(data: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}


def admin_key_list(keys: list[dict], *, has_more: bool) -> dict:
    """`keys`: the tenant's admin keys as accounts.selectors.admin_keys_listed gives them."""
    data = [
        {"object": "organization.admin_api_key", "id": key_id(key["public_id"]), "name": key["name"],
         "redacted_value": key["display"], "created_at": _unix(key["created_at"]), "expires_at": None,
         "last_used_at": _unix(key["last_used_at"]),
         "owner": {"type": "user", "object": "organization.user", **_user(key["creator"])}}
        for key in keys
    ]
    return _list(data, has_more)


def _user(user: dict | None) -> dict:
    if user is None:  # created by an operator (management command or admin), not a member
        return {"id": "user_operator", "name": "operator", "email": "", "created_at": 0, "role": "owner"}
    return {"id": f"user_{user['id']}", "name": user["name"], "email": user["email"],
            "created_at": _unix(user["created_at"]), "role": user["role"] or "member"}


def project(*, tenant_slug: str, tenant_name: str, created_at: datetime, active: bool) -> dict:
    return {"object": "organization.project", "id": project_id(tenant_slug), "name": tenant_name,
            "created_at": _unix(created_at), "archived_at": None, "status": "active" if active else "archived"}


def project_list(project_object: dict) -> dict:
    return _list([project_object], False)


def project_key_list(keys: list[dict], *, has_more: bool) -> dict:
    data = [
        {"object": "organization.project.api_key", "id": key_id(key["public_id"]), "name": key["name"],
         "redacted_value": key["display"], "created_at": _unix(key["created_at"]),
         "last_used_at": _unix(key["last_used_at"]), "owner_project_access": "active",
         "owner": {"type": "user", "user": _user(key["creator"])}}
        for key in keys
    ]
    return _list(data, has_more)


def unknown_project(requested: str) -> GatewayError:
    return GatewayError(404, f"No project {requested!r} in this organization.", code="not_found",
                        type="invalid_request_error", param="project_id")
