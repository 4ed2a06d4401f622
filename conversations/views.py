"""The dashboard's conversations pages: the tenant's stored conversations, one conversation's messages,
and deleting one. Members see the conversations of their own keys only."""

from __future__ import annotations

import orjson
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render

from accounts.dashboard import dashboard_view, is_manager, visible_keys
from common.errors import NotFound

from .models import Conversation, Message
from .selectors import conversations_summarised
from .services import conversation_delete

PAGE_SIZE = 50
PREVIEW_CHARS = 90


def _conversations(request):
    rows = Conversation.objects.filter(tenant=request.tenant)
    if not is_manager(request.membership):
        rows = rows.filter(api_key__in=visible_keys(request))
    return rows


def _conversation(request, conversation_id: str) -> Conversation:
    conversation = _conversations(request).filter(pk=conversation_id).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _display(block: dict) -> tuple[str, str]:
    """(kind, text) of a stored content block, as a support page shows it (media by kind, not content)."""
    kind = block.get("type", "")
    if kind == "text":
        return "text", block.get("text", "")
    if kind == "thinking":
        return "thinking", block.get("thinking", "")
    if kind == "tool_use":
        return "tool call", f"{block.get('name')}({orjson.dumps(block.get('input') or {}).decode()})"
    if kind == "tool_result":
        content = block.get("content")
        text = content if isinstance(content, str) else " ".join(
            part.get("text", "") for part in content or () if isinstance(part, dict))
        return "tool result", text
    return kind, f"[{kind}]"


def _preview(content) -> str:
    """The first words of a message, to tell conversations apart in a list."""
    text = " ".join(" ".join(_display(block)[1].split()) for block in content or () if isinstance(block, dict))
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS].rsplit(" ", 1)[0] + "…"


@dashboard_view()
def conversation_list(request):
    rows = conversations_summarised(_conversations(request).select_related("api_key"))
    page = Paginator(rows.order_by("-last_activity_at"), PAGE_SIZE).get_page(request.GET.get("page"))
    for conversation in page.object_list:
        conversation.preview = _preview(conversation.first_content)
    return render(request, "dashboard/conversations.html", {"section": "conversations", "page": page,
                                                             "retention": request.tenant.conversation_retention_days})


@dashboard_view()
def conversation_detail(request, conversation_id: str):
    conversation = _conversation(request, conversation_id)
    rows = Message.objects.filter(conversation=conversation).order_by("seq")
    shown = [{"role": m.role, "model": m.model, "created_at": m.created_at,
              "parts": [_display(block) for block in m.content if isinstance(block, dict)]} for m in rows]
    return render(request, "dashboard/conversation.html", {"section": "conversations", "conversation": conversation,
                                                            "messages_shown": shown})


@dashboard_view()
def conversation_remove(request, conversation_id: str):
    conversation = _conversation(request, conversation_id)
    if request.method == "POST":
        try:
            conversation_delete(tenant_id=request.tenant.pk, conversation_id=conversation.pk)
        except NotFound:
            raise Http404("No such conversation.") from None
        messages.success(request, f"Conversation {conversation.pk} deleted.")
        return redirect("conversations")
    return render(request, "dashboard/conversation_delete.html", {"section": "conversations",
                                                                   "conversation": conversation})
