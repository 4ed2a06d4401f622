"""The catalog in each protocol's model-list shape. Pure.

A key with an allow-list sees only its models; every shape lists ids and aliases alike, since either
can be sent as `model`. OpenAI's Model objects carry Gatehouse's own `gatehouse` extension field (the
schema allows extra properties): the canonical model, its aliases, limits and the price in force.
"""

from __future__ import annotations

import time  # the price in force now: the only input not in the catalog
from collections.abc import Iterator
from datetime import UTC, datetime

from common.money import usd_string

from ..core import GatewayError
from ..selectors import Catalog, ModelEntry

_GEMINI_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


def _visible(catalog: Catalog, allowed: frozenset[str]) -> Iterator[tuple[str, ModelEntry]]:
    for entry in catalog.models:
        if allowed and not allowed & entry.names:
            continue
        yield entry.name, entry
        for alias in entry.aliases:
            yield alias, entry


def _lookup(catalog: Catalog, name: str, allowed: frozenset[str]) -> ModelEntry:
    entry = catalog.by_name.get(name)
    if entry is None or (allowed and not allowed & entry.names):
        raise GatewayError(404, f"The model '{name}' does not exist or you do not have access to it.",
                           code="model_not_found", param="model")
    return entry


def _rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


def model_details(entry: ModelEntry) -> dict:
    """The model's limits and the price in force now, amounts as exact USD decimal strings; `pricing` is
    null for a model without a price (its usage costs nothing)."""
    price = entry.price_at(time.time())
    pricing = None if price is None else {
        "currency": "USD",
        "input_per_mtok": usd_string(price.input),
        "output_per_mtok": usd_string(price.output),
        "cache_write_per_mtok": usd_string(price.cache_write),
        "cache_read_per_mtok": usd_string(price.cache_read),
        "web_search_per_search": usd_string(price.web_search),
        "effective_from": _rfc3339(price.effective_from),
    }
    return {"model": entry.name, "aliases": list(entry.aliases), "capability": entry.capability,
            "context_window": entry.context_window, "max_output_tokens": entry.max_output_tokens,
            "pricing": pricing}


# OpenAI: {object: list, data: [{id, object: model, created, owned_by, gatehouse}]}

def _openai_model(name: str, entry: ModelEntry) -> dict:
    return {"id": name, "object": "model", "created": entry.created, "owned_by": entry.owned_by,
            "gatehouse": model_details(entry)}


def model_list_payload(catalog: Catalog, allowed: frozenset[str] = frozenset()) -> dict:
    return {"object": "list", "data": [_openai_model(name, entry) for name, entry in _visible(catalog, allowed)]}


def model_payload(catalog: Catalog, name: str, allowed: frozenset[str] = frozenset()) -> dict:
    return _openai_model(name, _lookup(catalog, name, allowed))


# Anthropic: {data: [{type: model, id, display_name, created_at (RFC 3339)}], has_more, first_id, last_id}

def _anthropic_model(name: str, entry: ModelEntry) -> dict:
    return {"type": "model", "id": name, "display_name": name, "created_at": _rfc3339(entry.created)}


def anthropic_model_list(catalog: Catalog, allowed: frozenset[str] = frozenset()) -> dict:
    data = [_anthropic_model(name, entry) for name, entry in _visible(catalog, allowed)]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def anthropic_model(catalog: Catalog, name: str, allowed: frozenset[str] = frozenset()) -> dict:
    return _anthropic_model(name, _lookup(catalog, name, allowed))


# Gemini: {models: [{name: "models/<id>", displayName, outputTokenLimit, supportedGenerationMethods}]}

def _gemini_model(name: str, entry: ModelEntry) -> dict:
    return {"name": f"models/{name}", "displayName": name, "outputTokenLimit": entry.max_output_tokens,
            "supportedGenerationMethods": _GEMINI_METHODS}


def gemini_model_list(catalog: Catalog, allowed: frozenset[str] = frozenset()) -> dict:
    return {"models": [_gemini_model(name, entry) for name, entry in _visible(catalog, allowed)]}


def gemini_model(catalog: Catalog, name: str, allowed: frozenset[str] = frozenset()) -> dict:
    name = name.removeprefix("models/")
    return _gemini_model(name, _lookup(catalog, name, allowed))
