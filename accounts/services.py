"""Writes for tenants, members and keys.

Every change writes an AuditEntry in the same transaction (who, through what, what changed). A key's
plaintext is returned exactly once, by `api_key_issue` and `api_key_rotate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone

from . import keys
from .models import ApiKey, AuditEntry, Membership, Tenant

# The key settings operators and customers may change (admin, dashboard, create_key).
KEY_SETTINGS = ("name", "expires_at", "allowed_models", "rpm_limit", "tpm_limit", "budget_nano", "budget_period")
MAX_ROTATION_GRACE = timedelta(days=30)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once, never stored


def audit_record(*, action: str, via: str, actor=None, tenant: Tenant | None = None, api_key: ApiKey | None = None,
                 details: dict[str, Any] | None = None) -> AuditEntry:
    return AuditEntry.objects.create(action=action, via=via, actor=actor, tenant=tenant or (api_key and api_key.tenant),
                                     api_key=api_key, details=details or {})


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", credit_limit_nano: int | None = 0, store_conversations: bool = True,
                  conversation_retention_days: int = 7, log_requests: bool = False, actor=None,
                  via: str = "system") -> Tenant:
    validate_slug(slug)
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError(f"A tenant with slug {slug!r} already exists.")
    if credit_limit_nano is not None and credit_limit_nano < 0:
        raise ValidationError("The credit limit cannot be negative.")
    if conversation_retention_days < 1:
        raise ValidationError("Keep conversations for at least a day.")
    tenant = Tenant.objects.create(slug=slug, name=name or slug, credit_limit_nano=credit_limit_nano,
                                   store_conversations=store_conversations, log_requests=log_requests,
                                   conversation_retention_days=conversation_retention_days)
    audit_record(action="tenant.create", via=via, actor=actor, tenant=tenant,
                 details={"slug": slug, "credit_limit_nano": credit_limit_nano})
    return tenant


@transaction.atomic
def tenant_set_status(*, tenant: Tenant, status: str, actor=None, via: str = "system") -> Tenant:
    if status not in Tenant.Status.values:
        raise ValidationError(f"Unknown tenant status {status!r}.")
    Tenant.objects.filter(pk=tenant.pk).update(status=status)
    tenant.status = status
    audit_record(action="tenant.suspend" if status == Tenant.Status.SUSPENDED else "tenant.resume", via=via,
                 actor=actor, tenant=tenant)
    return tenant


@transaction.atomic
def tenant_update(*, tenant: Tenant, actor=None, via: str = "system", **changes: Any) -> Tenant:
    """Change a tenant's name, credit limit or conversation settings (status has its own service)."""
    unknown = set(changes) - {"name", "credit_limit_nano", "store_conversations", "conversation_retention_days",
                              "log_requests"}
    if unknown:
        raise ValidationError(f"Cannot change {', '.join(sorted(unknown))} here.")
    if (changes.get("credit_limit_nano") or 0) < 0:
        raise ValidationError({"credit_limit_nano": "The credit limit cannot be negative."})
    if changes.get("conversation_retention_days", 1) < 1:
        raise ValidationError({"conversation_retention_days": "Keep conversations for at least a day."})
    before = {field: getattr(tenant, field) for field in changes}
    for field, value in changes.items():
        setattr(tenant, field, value)
    tenant.save(update_fields=list(changes))
    diff = {f: [before[f], changes[f]] for f in changes if before[f] != changes[f]}
    if diff:
        audit_record(action="tenant.update", via=via, actor=actor, tenant=tenant, details=diff)
    return tenant


@transaction.atomic
def membership_set(*, tenant: Tenant, user, role: str, actor=None, via: str = "system") -> Membership:
    """Add `user` to `tenant` with `role`, or change the role they have."""
    if role not in Membership.Role.values:
        raise ValidationError(f"Unknown role {role!r}.")
    membership, created = Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": role})
    if not created and membership.role != role:
        if membership.role == Membership.Role.OWNER and _last_owner(membership):
            raise ValidationError("A tenant must keep at least one owner.")
        membership.role = role
        membership.save(update_fields=["role"])
    audit_record(action="member.add" if created else "member.role", via=via, actor=actor, tenant=tenant,
                 details={"user": user.get_username(), "role": role})
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor=None, via: str = "system") -> None:
    if membership.role == Membership.Role.OWNER and _last_owner(membership):
        raise ValidationError("A tenant must keep at least one owner.")
    audit_record(action="member.remove", via=via, actor=actor, tenant=membership.tenant,
                 details={"user": membership.user.get_username()})
    membership.delete()


def _last_owner(membership: Membership) -> bool:
    return not (Membership.objects.filter(tenant_id=membership.tenant_id, role=Membership.Role.OWNER)
                .exclude(pk=membership.pk).exists())


def key_settings_validate(values: dict[str, Any]) -> dict[str, Any]:
    """Check key settings as the admin, the dashboard and `create_key` all must; returns them normalised."""
    from gateway.models import CatalogModel, ModelAlias

    errors: dict[str, str] = {}
    unknown = set(values) - set(KEY_SETTINGS)
    if unknown:
        raise ValidationError(f"Unknown key settings: {', '.join(sorted(unknown))}.")
    if len(values.get("name") or "") > ApiKey._meta.get_field("name").max_length:
        errors["name"] = "Key name is too long (100 characters at most)."
    models = values.get("allowed_models")
    if models is not None:
        if not isinstance(models, list | tuple) or not all(isinstance(m, str) and m for m in models):
            errors["allowed_models"] = "A list of model ids or aliases."
        else:
            models = list(dict.fromkeys(m.strip() for m in models))
            known = set(CatalogModel.objects.filter(name__in=models).values_list("name", flat=True))
            known |= set(ModelAlias.objects.filter(name__in=models).values_list("name", flat=True))
            if missing := [m for m in models if m not in known]:
                errors["allowed_models"] = f"Not in the catalog: {', '.join(missing)}."
            values["allowed_models"] = models
    for field in ("rpm_limit", "tpm_limit", "budget_nano"):
        value = values.get(field)
        if value is not None and (not isinstance(value, int) or value < 1):
            errors[field] = "Must be a positive whole number, or empty for no limit."
    if values.get("budget_period", ApiKey.BudgetPeriod.MONTH) not in ApiKey.BudgetPeriod.values:
        errors["budget_period"] = "day or month."
    expires_at = values.get("expires_at")
    if expires_at is not None and (not isinstance(expires_at, datetime) or timezone.is_naive(expires_at)):
        errors["expires_at"] = "An aware date and time."
    if errors:
        raise ValidationError(errors)
    return values


@transaction.atomic
def api_key_issue(*, tenant: Tenant, name: str = "", created_by=None, via: str = "system",
                  **settings: Any) -> IssuedKey:
    """A new key for `tenant`, with optional limits (see KEY_SETTINGS)."""
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant {tenant.slug!r} is {tenant.status}; no keys can be issued.")
    settings = key_settings_validate({"name": name, **settings})
    if settings.get("expires_at") is not None and settings["expires_at"] <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    plaintext, public_id, secret = keys.generate()
    api_key = ApiKey.objects.create(
        tenant=tenant, public_id=public_id, secret_digest=keys.digest(secret), last4=secret[-4:],
        created_by=created_by, **settings,
    )
    audit_record(action="key.issue", via=via, actor=created_by, api_key=api_key,
                 details={k: _jsonable(v) for k, v in settings.items() if v not in (None, [], "")})
    return IssuedKey(api_key=api_key, plaintext=plaintext)


@transaction.atomic
def api_key_update(*, api_key: ApiKey, actor=None, via: str = "system", **changes: Any) -> ApiKey:
    """Change a key's name or limits; takes effect on every gateway within GATEWAY_AUTH_CACHE_SECONDS."""
    changes = key_settings_validate(changes)
    diff = {f: [_jsonable(getattr(api_key, f)), _jsonable(v)] for f, v in changes.items() if getattr(api_key, f) != v}
    if not diff:
        return api_key
    for field, value in changes.items():
        setattr(api_key, field, value)
    api_key.save(update_fields=list(changes))
    audit_record(action="key.update", via=via, actor=actor, api_key=api_key, details=diff)
    return api_key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor=None, via: str = "system") -> ApiKey:
    """One-way: a revoked key never works again. Gateways notice within GATEWAY_AUTH_CACHE_SECONDS."""
    changed = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    if changed:
        audit_record(action="key.revoke", via=via, actor=actor, api_key=api_key)
    return api_key


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, grace: timedelta = timedelta(0), actor=None, via: str = "system") -> IssuedKey:
    """Give the key a new secret; the old one keeps working for `grace` (0: stops at once).

    The key keeps its id, limits, budget and usage history; only the secret changes. A key rotated
    again within a grace period ends the earlier grace: only the latest old secret is kept.
    """
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.is_revoked:
        raise ValidationError("A revoked key cannot be rotated.")
    if not timedelta(0) <= grace <= MAX_ROTATION_GRACE:
        raise ValidationError({"grace": f"The grace period must be between 0 and {MAX_ROTATION_GRACE.days} days."})
    plaintext, _, secret = keys.generate()
    now = timezone.now()
    api_key.previous_secret_digest = api_key.secret_digest if grace else ""
    api_key.previous_secret_expires_at = now + grace if grace else None
    api_key.secret_digest, api_key.last4 = keys.digest(secret), secret[-4:]
    api_key.save(update_fields=["secret_digest", "last4", "previous_secret_digest", "previous_secret_expires_at"])
    audit_record(action="key.rotate", via=via, actor=actor, api_key=api_key,
                 details={"grace_seconds": int(grace.total_seconds())})
    return IssuedKey(api_key=api_key, plaintext=f"{keys.PREFIX}{api_key.public_id}_{secret}")
