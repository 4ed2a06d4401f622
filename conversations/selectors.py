"""Reads of stored request logs (the conversation reads that need a lease live in services)."""

from __future__ import annotations

from .models import RequestLog


def request_logs_get(*, tenant_id: int, request_ids: list[str]) -> dict[str, tuple[dict, list]]:
    """request id -> (request, response) for those of the tenant's requests that were logged."""
    if not request_ids:
        return {}
    rows = RequestLog.objects.filter(tenant_id=tenant_id, request_id__in=request_ids)
    return {request_id: (request, response) for request_id, request, response in
            rows.values_list("request_id", "request", "response")}
