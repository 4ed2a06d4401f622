"""Writes to the upstream set-up (credentials, encrypted and audited) and the playground's key."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Tenant
from accounts.services import api_key_issue, audit_record

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


PLAYGROUND_KEY_NAME = "Playground"
PLAYGROUND_KEY_LIFETIME = timedelta(days=30)


def playground_key(*, tenant: Tenant, user) -> ApiKey:
    """The user's own key for the dashboard's playground in `tenant`, issued on first use and again once
    it is revoked or about to expire. Its secret is never needed: the playground calls the request path
    with the key's principal (gateway.views.playground_chat), so the browser never holds a key."""
    now = timezone.now()
    key = (ApiKey.objects.filter(tenant=tenant, created_by=user, name=PLAYGROUND_KEY_NAME, revoked_at__isnull=True,
                                 expires_at__gt=now + timedelta(days=1)).order_by("-created_at").first())
    if key is None:
        key = api_key_issue(tenant=tenant, name=PLAYGROUND_KEY_NAME, created_by=user, via="dashboard",
                            expires_at=now + PLAYGROUND_KEY_LIFETIME).api_key
    return key
