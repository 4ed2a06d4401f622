"""The OpenAI Conversations API (`/v1/conversations`): conversations and their items, per tenant.

Items go in through the Responses codec (the same input items `POST /v1/responses` accepts) and are
stored as the conversation's Anthropic messages; they come out as Responses items again. An item's id
names the message it belongs to (`<kind>_<conversation hex>_<seq>_<n>`), so deleting an item deletes
its whole message (a message with a tool call and text is one message, two items).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common.db import db_unit
from conversations import services
from conversations.models import Conversation, Message

from ..core import GatewayError, ResponseContext, invalid
from ..pipeline import json_response, parse_json_body
from ..protocols import openai_responses

MAX_ITEMS_PER_CALL = 20


def resource(conversation: Conversation) -> dict:
    return {"id": conversation.id, "object": "conversation", "created_at": int(conversation.created_at.timestamp()),
            "metadata": conversation.metadata}


def decode_items(items: Any) -> tuple[list[dict], str | None]:
    """Responses input items -> (Anthropic messages, system text), validated like `POST /v1/responses`."""
    if not isinstance(items, list) or len(items) > MAX_ITEMS_PER_CALL:
        raise invalid(f"'items' must be a list of at most {MAX_ITEMS_PER_CALL} items.", "items")
    if not items:
        return [], None
    messages, system = openai_responses.decode_input_items(items, param="items")
    return messages, "\n".join(system) or None


def message_items(message: Message) -> list[dict]:
    """One stored message as Responses items, with ids that name the message."""
    prefix = f"{message.conversation_id.removeprefix('conv_')}_{message.seq}"
    if message.role == Message.Role.ASSISTANT:
        ctx = ResponseContext(request_id="req_" + prefix, created=int(message.created_at.timestamp()), model="")
        items = openai_responses.response_to_items({"content": message.content, "stop_reason": "end_turn"}, ctx)
    else:
        items, parts = [], []
        for block in message.content:
            if block.get("type") == "tool_result":
                items.append({"type": "function_call_output", "call_id": block.get("tool_use_id"),
                              "output": _text_of(block.get("content")), "status": "completed"})
            elif block.get("type") == "text":
                parts.append({"type": "input_text", "text": block.get("text", "")})
            elif block.get("type") == "image":
                source = block.get("source") or {}
                url = source.get("url") or f"data:{source.get('media_type')};base64,{source.get('data')}"
                parts.append({"type": "input_image", "image_url": url, "detail": "auto"})
        if parts:
            items.append({"type": "message", "role": message.role, "content": parts, "status": "completed"})
    for n, item in enumerate(items):
        kind = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}.get(item["type"], "rs")
        item["id"] = f"{kind}_{prefix}_{n}"
    return items


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content or () if isinstance(block, dict))


def _seq_of(item_id: str) -> int:
    try:
        return int(item_id.split("_")[-2])
    except (IndexError, ValueError):
        raise GatewayError(404, f"No item found with id '{item_id}'.", code="item_not_found",
                           type="invalid_request_error") from None


def _list(items: list[dict], has_more: bool = False) -> dict:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


def _body(request) -> dict:
    body = parse_json_body(request) if request.body else {}
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


_create = db_unit(services.conversation_create)
_get = db_unit(services.conversation_get)
_update = db_unit(services.conversation_update)
_delete = db_unit(services.conversation_delete)
_messages = db_unit(services.conversation_messages)
_append = db_unit(services.conversation_append)
_delete_message = db_unit(services.conversation_message_delete)


async def create(request):
    body = _body(request)
    messages, system = decode_items(body.get("items") or [])
    conversation = await _create(tenant_id=request.auth.tenant_id, api_key_id=request.auth.key_id,
                                 messages=messages, system=system,
                                 metadata=services.metadata_validate(body.get("metadata")), now=datetime.now(UTC))
    return json_response(resource(conversation))


async def retrieve(request, conversation_id: str):
    return json_response(resource(await _get(tenant_id=request.auth.tenant_id, conversation_id=conversation_id)))


async def update(request, conversation_id: str):
    metadata = services.metadata_validate(_body(request).get("metadata"))
    return json_response(resource(await _update(tenant_id=request.auth.tenant_id, conversation_id=conversation_id,
                                                metadata=metadata)))


async def delete(request, conversation_id: str):
    await _delete(tenant_id=request.auth.tenant_id, conversation_id=conversation_id)
    return json_response({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


async def list_items(request, conversation_id: str):
    messages = await _messages(tenant_id=request.auth.tenant_id, conversation_id=conversation_id)
    items = [item for message in messages for item in message_items(message)]
    if request.GET.get("order", "desc") == "desc":
        items.reverse()
    after = request.GET.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    limit = request.GET.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise invalid("limit must be a whole number from 1 to 100.", "limit")
    return json_response(_list(items[:int(limit)], has_more=len(items) > int(limit)))


async def add_items(request, conversation_id: str):
    messages, system = decode_items(_body(request).get("items"))
    if not messages and not system:
        raise invalid("'items' must contain at least one item.", "items")
    first = await _append(tenant_id=request.auth.tenant_id, api_key_id=request.auth.key_id,
                          conversation_id=conversation_id, messages=messages, system=system, now=datetime.now(UTC))
    stored = await _messages(tenant_id=request.auth.tenant_id, conversation_id=conversation_id)
    return json_response(_list([item for message in stored if message.seq >= first for item in message_items(message)]))


async def retrieve_item(request, conversation_id: str, item_id: str):
    messages = await _messages(tenant_id=request.auth.tenant_id, conversation_id=conversation_id)
    for message in messages:
        for item in message_items(message):
            if item["id"] == item_id:
                return json_response(item)
    raise GatewayError(404, f"No item found with id '{item_id}'.", code="item_not_found", type="invalid_request_error")


async def delete_item(request, conversation_id: str, item_id: str):
    conversation = await _delete_message(tenant_id=request.auth.tenant_id, conversation_id=conversation_id,
                                         seq=_seq_of(item_id))
    return json_response(resource(conversation))
