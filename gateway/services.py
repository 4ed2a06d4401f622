"""Writes to the upstream set-up (credentials, encrypted and audited) and the playground's key."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Tenant
from accounts.audit import audit_record
from accounts.services import api_key_issue
from common import crypto

from .models import CatalogModel, Credential, Deployment, Provider


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


# --- The catalog and the upstream set-up, as the management API writes them ------------------------------


def _changes(instance, fields: dict) -> dict:
    return {name: [getattr(instance, name), value] for name, value in fields.items() if getattr(instance, name) != value}


@transaction.atomic
def upstream_object_save(*, instance: CatalogModel | Provider | Deployment, changes: dict, actor=None,
                         via: str = "system"):
    """Create (no pk) or change a catalog model, provider or deployment: model validation (full_clean,
    including a model name that is another model's alias), then an audit entry naming what changed.
    Requests see the change within GATEWAY_CATALOG_CACHE_SECONDS."""
    created = instance.pk is None
    diff = {} if created else _changes(instance, changes)
    for name, value in changes.items():
        setattr(instance, name, value)
    instance.full_clean()
    instance.save()
    kind = {CatalogModel: "model", Provider: "provider", Deployment: "deployment"}[type(instance)]
    if created or diff:
        audit_record(action=f"{kind}.{'create' if created else 'update'}", via=via, actor=actor,
                     details={"id": instance.pk, "name": str(instance),
                              **({name: _plain(value) for name, value in changes.items()} if created else
                                 {name: [_plain(old), _plain(new)] for name, (old, new) in diff.items()})})
    return instance


@transaction.atomic
def deployment_delete(*, deployment: Deployment, actor=None, via: str = "system") -> None:
    audit_record(action="deployment.delete", via=via, actor=actor,
                 details={"id": deployment.pk, "name": str(deployment)})
    deployment.delete()


def _plain(value):
    """A value for the audit entry's JSON: related objects by their name."""
    return str(value) if isinstance(value, CatalogModel | Provider) else value
