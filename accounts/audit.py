"""The audit log's one write: who did what, through which door, to which tenant or key.

Every app's services write their audit row in the same transaction as the change (billing's ledger,
conversations' deletions, the catalog), so this sits apart from accounts.services: recording an entry
imports nothing but the model.
"""

from __future__ import annotations

from typing import Any

from .models import ApiKey, AuditEntry, Tenant


def audit_record(*, action: str, via: str, actor=None, tenant: Tenant | None = None, api_key: ApiKey | None = None,
                 details: dict[str, Any] | None = None) -> AuditEntry:
    return AuditEntry.objects.create(action=action, via=via, actor=actor, tenant=tenant or (api_key and api_key.tenant),
                                     api_key=api_key, details=details or {})
