"""Stored Responses API objects: `GET` / `DELETE /v1/responses/{id}` and `GET .../input_items`.

Creating one is the shared request path (gateway.pipeline.serve with the openai_responses codec);
these read what it stored, scoped to the calling key's tenant.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpResponse

from config.db import refresh_connections
from conversations.services import response_delete, response_get

from .pipeline import json_response


def _get(tenant_id: int, response_id: str):
    refresh_connections()
    return response_get(tenant_id=tenant_id, response_id=response_id)


def _delete(tenant_id: int, response_id: str) -> None:
    refresh_connections()
    response_delete(tenant_id=tenant_id, response_id=response_id)


_get_async = sync_to_async(_get, thread_sensitive=True)
_delete_async = sync_to_async(_delete, thread_sensitive=True)


async def response_retrieve(request, response_id: str) -> HttpResponse:
    return json_response((await _get_async(request.auth.tenant_id, response_id)).body)


async def response_remove(request, response_id: str) -> HttpResponse:
    await _delete_async(request.auth.tenant_id, response_id)
    return json_response({"id": response_id, "object": "response", "deleted": True})


async def response_input_items(request, response_id: str) -> HttpResponse:
    items = (await _get_async(request.auth.tenant_id, response_id)).input_items
    if request.GET.get("order", "desc") == "desc":
        items = list(reversed(items))
    return json_response({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                          "last_id": items[-1]["id"] if items else None, "has_more": False})
