"""Writes for tenants and keys. Each returns what the caller needs; a key's plaintext exactly once."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone

from . import keys
from .models import ApiKey, Tenant


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once, never stored


def tenant_create(*, slug: str, name: str = "") -> Tenant:
    validate_slug(slug)
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError(f"A tenant with slug {slug!r} already exists.")
    return Tenant.objects.create(slug=slug, name=name or slug)


def tenant_set_status(*, tenant: Tenant, status: str) -> Tenant:
    if status not in Tenant.Status.values:
        raise ValidationError(f"Unknown tenant status {status!r}.")
    Tenant.objects.filter(pk=tenant.pk).update(status=status)
    tenant.status = status
    return tenant


def api_key_issue(*, tenant: Tenant, name: str = "", created_by=None) -> IssuedKey:
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant {tenant.slug!r} is {tenant.status}; no keys can be issued.")
    if len(name) > ApiKey._meta.get_field("name").max_length:
        raise ValidationError("Key name is too long (100 characters at most).")
    plaintext, public_id, secret = keys.generate()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        public_id=public_id,
        secret_digest=keys.digest(secret),
        last4=secret[-4:],
        created_by=created_by,
    )
    return IssuedKey(api_key=api_key, plaintext=plaintext)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """One-way: a revoked key never works again. Gateways notice within GATEWAY_AUTH_CACHE_SECONDS."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key
