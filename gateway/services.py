"""Writes to the upstream set-up: credentials (encrypted, audited)."""

from __future__ import annotations

from django.db import transaction

from accounts.services import audit_record

from . import crypto
from .models import Credential


@transaction.atomic
def credential_save(*, credential: Credential, secret: str | None, actor=None, via: str = "system") -> Credential:
    """Create or update a credential; a new `secret` is encrypted and only its last four characters kept
    in clear. The audit entry names the credential, never the key."""
    created = credential.pk is None
    if secret:
        credential.secret_encrypted = crypto.encrypt(secret)
        credential.hint = secret[-4:]
    elif created:
        raise ValueError("a new credential needs its secret")
    credential.full_clean(exclude=["secret_encrypted", "hint"])
    credential.save()
    audit_record(action="credential.create" if created else "credential.update", via=via, actor=actor,
                 details={"provider": credential.provider.name, "credential": credential.name,
                          "key_changed": bool(secret), "weight": credential.weight, "enabled": credential.enabled})
    return credential
