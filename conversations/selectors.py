"""Reads of stored request logs (the conversation reads that need a lease live in services)."""

from __future__ import annotations

from django.db.models import Count, JSONField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from .models import Message, RequestLog


def conversations_summarised(conversations: QuerySet) -> QuerySet:
    """The conversations annotated for a list: `first_content` (the first user message's blocks),
    `model` (the latest answer's) and `turns` (user messages), in one query with the page."""
    messages = Message.objects.filter(conversation=OuterRef("pk"))
    users = messages.filter(role=Message.Role.USER)
    return conversations.annotate(
        first_content=Subquery(users.order_by("seq").values("content")[:1], output_field=JSONField()),
        model=Subquery(messages.filter(role=Message.Role.ASSISTANT).exclude(model="").order_by("-seq")
                       .values("model")[:1]),
        turns=Coalesce(Subquery(users.values("conversation").annotate(n=Count("pk")).values("n")), 0),
    )


def request_logs_get(*, tenant_id: int, request_ids: list[str]) -> dict[str, tuple[dict, list]]:
    """request id -> (request, response) for those of the tenant's requests that were logged."""
    if not request_ids:
        return {}
    rows = RequestLog.objects.filter(tenant_id=tenant_id, request_id__in=request_ids)
    return {request_id: (request, response) for request_id, request, response in
            rows.values_list("request_id", "request", "response")}
