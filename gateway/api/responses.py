"""Stored Responses API objects: `GET` / `DELETE /v1/responses/{id}` and `GET .../input_items`.

Creating one is the shared request path (gateway.pipeline.serve with the openai_responses codec);
these read what it stored, scoped to the calling key's tenant.
"""

from __future__ import annotations

from django.http import HttpResponse

from common.db import db_unit
from conversations.services import response_delete, response_get

from ..pipeline import json_response


_get_async = db_unit(response_get)
_delete_async = db_unit(response_delete)


async def response_retrieve(request, response_id: str) -> HttpResponse:
    return json_response((await _get_async(tenant_id=request.auth.tenant_id, response_id=response_id)).body)


async def response_remove(request, response_id: str) -> HttpResponse:
    await _delete_async(tenant_id=request.auth.tenant_id, response_id=response_id)
    return json_response({"id": response_id, "object": "response", "deleted": True})


async def response_input_items(request, response_id: str) -> HttpResponse:
    items = (await _get_async(tenant_id=request.auth.tenant_id, response_id=response_id)).input_items
    if request.GET.get("order", "desc") == "desc":
        items = list(reversed(items))
    return json_response({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                          "last_id": items[-1]["id"] if items else None, "has_more": False})
