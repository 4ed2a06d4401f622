"""The catalog in OpenAI's model-list shape. Pure."""

from __future__ import annotations

from .core import GatewayError
from .selectors import Catalog


def _model_object(name: str, created: int, owned_by: str) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": owned_by}


def model_list_payload(catalog: Catalog, allowed: frozenset[str] = frozenset()) -> dict:
    """Every enabled model and alias, or only those of a key's allow-list."""
    data = []
    for entry in catalog.models:
        if allowed and not allowed & entry.names:
            continue
        data.append(_model_object(entry.name, entry.created, entry.owned_by))
        data.extend(_model_object(alias, entry.created, entry.owned_by) for alias in entry.aliases)
    return {"object": "list", "data": data}


def model_payload(catalog: Catalog, name: str, allowed: frozenset[str] = frozenset()) -> dict:
    entry = catalog.by_name.get(name)
    if entry is None or (allowed and not allowed & entry.names):
        raise GatewayError(404, f"The model '{name}' does not exist or you do not have access to it.",
                           code="model_not_found", param="model")
    return _model_object(name, entry.created, entry.owned_by)
