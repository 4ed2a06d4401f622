"""Rows and records the tests build: a usage row, a conversation turn, a catalog model's admin form, a key's
admission principal."""

from __future__ import annotations

import uuid

from django.utils import timezone

from accounts.selectors import KeyPrincipal
from billing.models import UsageEvent
from conversations.services import TurnRecord, new_conversation_id


def usage_event(api_key, *, model="claude-sonnet-4-6", status="ok", cost=1_500_000, at=None) -> UsageEvent:
    return UsageEvent.objects.create(
        request_id=f"req_{uuid.uuid4().hex}", tenant_id=api_key.tenant_id, api_key=api_key, endpoint="messages",
        requested_model=model, model=model, upstream_model=model, stream=False, input_tokens=100,
        output_tokens=50, cost_nano=cost, status=status, http_status=200, latency_ms=12,
        created_at=at or timezone.now(),
    )


def turn_record(tenant, key, text: str, *, cid: str | None = None, created: bool = True) -> TurnRecord:
    return TurnRecord(conversation_id=cid or new_conversation_id(), tenant_id=tenant.pk, api_key_id=key.pk,
                      request_id="req_" + uuid.uuid4().hex[:8], created=created, next_seq=0,
                      messages=[{"role": "user", "content": [{"type": "text", "text": text}]},
                                {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}])


def catalog_form(model, **changes) -> dict:
    """The admin change form of a catalog model as it stands, with `changes` and no alias or price rows."""
    form = {"name": model.name, "capability": model.capability,
            "default_max_tokens": model.default_max_tokens, "max_output_tokens": model.max_output_tokens,
            "context_window": model.context_window,
            "enabled": "on", "owned_by": model.owned_by, "aliases-TOTAL_FORMS": 0, "aliases-INITIAL_FORMS": 0,
            "prices-TOTAL_FORMS": 0, "prices-INITIAL_FORMS": 0, "deployments-TOTAL_FORMS": 0,
            "deployments-INITIAL_FORMS": 0}
    return {**form, **changes}


def principal(**limits) -> KeyPrincipal:
    # Random ids: Redis counters of one test must not meet another's.
    ident = uuid.uuid4().int % 10**9
    return KeyPrincipal(key_id=ident, tenant_id=ident, tenant_slug="t", secret_digest="", revoked=False,
                        tenant_active=True, **limits)
