"""Writes for tenants, members and keys.

Every change writes an AuditEntry in the same transaction (who, through what, what changed). A key's
plaintext is returned exactly once, by `api_key_issue` and `api_key_rotate`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from common.hooks import Hook

from . import catalog, keys
from .audit import audit_record
from .models import AdminKey, ApiKey, ManagementCredential, Membership, OperatorToken, Tenant
from .selectors import login_attempt_keys

# The key settings operators and customers may change (admin, dashboard, create_key).
KEY_SETTINGS = ("name", "expires_at", "allowed_models", "rpm_limit", "tpm_limit", "budget_nano", "budget_period",
                "auto_cache_control", "end_user_rpm_limit", "end_user_budget_nano")
MAX_ROTATION_GRACE = timedelta(days=30)
DASHBOARD_VIA = "dashboard"
# The roles that manage a tenant: its team, all its keys, its admin keys.
MANAGER_ROLES = (Membership.Role.OWNER, Membership.Role.ADMIN)
# Called with (user=, tenant=, via=) inside signup's transaction, after the workspace exists: billing
# grants the sign-up credit there (billing.apps), a step this app cannot take without importing billing.
signed_up = Hook()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once, never stored


@dataclass(frozen=True)
class IssuedCredential:
    credential: OperatorToken | AdminKey
    plaintext: str  # shown once, never stored


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", credit_limit_nano: int | None = 0, store_conversations: bool = True,
                  conversation_retention_days: int = 7, log_requests: bool = False, auto_cache_control: bool = False,
                  actor=None, via: str = "system") -> Tenant:
    validate_slug(slug)
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError(f"A tenant with slug {slug!r} already exists.")
    if credit_limit_nano is not None and credit_limit_nano < 0:
        raise ValidationError("The credit limit cannot be negative.")
    if conversation_retention_days < 1:
        raise ValidationError("Keep conversations for at least a day.")
    tenant = Tenant.objects.create(slug=slug, name=name or slug, credit_limit_nano=credit_limit_nano,
                                   store_conversations=store_conversations, log_requests=log_requests,
                                   auto_cache_control=auto_cache_control,
                                   conversation_retention_days=conversation_retention_days)
    audit_record(action="tenant.create", via=via, actor=actor, tenant=tenant,
                 details={"slug": slug, "credit_limit_nano": credit_limit_nano})
    return tenant


@transaction.atomic
def tenant_set_status(*, tenant: Tenant, status: str, reason: str = "", actor=None, via: str = "system") -> Tenant:
    """Suspend or resume; the operator's `reason`, if given, is kept in the audit entry."""
    if status not in Tenant.Status.values:
        raise ValidationError(f"Unknown tenant status {status!r}.")
    Tenant.objects.filter(pk=tenant.pk).update(status=status)
    tenant.status = status
    audit_record(action="tenant.suspend" if status == Tenant.Status.SUSPENDED else "tenant.resume", via=via,
                 actor=actor, tenant=tenant, details={"reason": reason} if reason else None)
    return tenant


@transaction.atomic
def tenant_update(*, tenant: Tenant, actor=None, via: str = "system", **changes: Any) -> Tenant:
    """Change a tenant's name, credit limit or conversation settings (status has its own service)."""
    unknown = set(changes) - {"name", "credit_limit_nano", "store_conversations", "conversation_retention_days",
                              "log_requests", "auto_cache_control"}
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
            known = catalog.known_models(models)
            if missing := [m for m in models if m not in known]:
                errors["allowed_models"] = f"Not in the catalog: {', '.join(missing)}."
            values["allowed_models"] = models
    for field in ("rpm_limit", "tpm_limit", "budget_nano", "end_user_rpm_limit", "end_user_budget_nano"):
        value = values.get(field)
        if value is not None and (not isinstance(value, int) or value < 1):
            errors[field] = "Must be a positive whole number, or empty for no limit."
    if values.get("budget_period", ApiKey.BudgetPeriod.MONTH) not in ApiKey.BudgetPeriod.values:
        errors["budget_period"] = "day or month."
    if not isinstance(values.get("auto_cache_control", False), bool):
        errors["auto_cache_control"] = "true or false."
    expires_at = values.get("expires_at")
    if expires_at is not None and (not isinstance(expires_at, datetime) or timezone.is_naive(expires_at)):
        errors["expires_at"] = "An aware date and time."
    if errors:
        raise ValidationError(errors)
    return values


class KeyAlreadyIssued(Exception):
    """api_key_issue was given an idempotency key it already issued a key for (whose secret is gone)."""

    def __init__(self, api_key: ApiKey) -> None:
        super().__init__(f"{api_key.display} was already issued for this request.")
        self.api_key = api_key


@transaction.atomic
def api_key_issue(*, tenant: Tenant, name: str = "", created_by=None, via: str = "system",
                  idempotency_key: str | None = None, **settings: Any) -> IssuedKey:
    """A new key for `tenant`, with optional limits (see KEY_SETTINGS).

    With an `idempotency_key` the same key twice (even concurrently) issues one key: the second call raises
    KeyAlreadyIssued, as the secret of the first can be returned only once.
    """
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant {tenant.slug!r} is {tenant.status}; no keys can be issued.")
    settings = key_settings_validate({"name": name, **settings})
    if settings.get("expires_at") is not None and settings["expires_at"] <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    plaintext, public_id, secret = keys.generate()
    try:
        # The unique constraint decides between concurrent calls: the second insert waits for the first's
        # commit, then fails here.
        with transaction.atomic():
            api_key = ApiKey.objects.create(
                tenant=tenant, public_id=public_id, secret_digest=keys.digest(secret), last4=secret[-4:],
                created_by=created_by, idempotency_key=idempotency_key or None, **settings,
            )
    except IntegrityError:
        existing = idempotency_key and ApiKey.objects.filter(tenant=tenant, idempotency_key=idempotency_key).first()
        if not existing:
            raise
        raise KeyAlreadyIssued(existing) from None
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


# --- Management API credentials: operator tokens and tenant admin keys -----------------------------------


def _credential_create(model: type[ManagementCredential], **fields: Any) -> IssuedCredential:
    plaintext, public_id, secret = keys.credential_generate(model.kind)
    credential = model.objects.create(public_id=public_id, secret_digest=keys.digest(secret), last4=secret[-4:],
                                      **fields)
    return IssuedCredential(credential=credential, plaintext=plaintext)


def _credential_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name the key, so that its audit entries and list say what it is for."})
    if len(name) > 100:
        raise ValidationError({"name": "The name is too long (100 characters at most)."})
    return name


@transaction.atomic
def operator_token_issue(*, name: str, read_only: bool = False, user=None, actor=None,
                         via: str = "system") -> IssuedCredential:
    """A token for the whole management API (read-only: GET only). `user` is named as its writes' actor."""
    issued = _credential_create(OperatorToken, name=_credential_name(name), read_only=read_only, user=user)
    audit_record(action="operator_token.issue", via=via, actor=actor,
                 details={"token": issued.credential.display, "name": issued.credential.name, "read_only": read_only})
    return issued


@transaction.atomic
def admin_key_issue(*, tenant: Tenant, name: str, actor, via: str = DASHBOARD_VIA) -> IssuedCredential:
    """A tenant admin key for `tenant`, acting as `actor` (who must be an owner or admin there)."""
    if _actor_role(tenant, actor) not in MANAGER_ROLES:
        raise PermissionDenied("Only owners and admins create admin keys.")
    issued = _credential_create(AdminKey, name=_credential_name(name), tenant=tenant, created_by=actor)
    audit_record(action="admin_key.issue", via=via, actor=actor, tenant=tenant,
                 details={"key": issued.credential.display, "name": issued.credential.name})
    return issued


@transaction.atomic
def credential_revoke(*, credential: ManagementCredential, actor=None, via: str = "system") -> ManagementCredential:
    """One-way, and immediate: the management API looks every credential up on each request."""
    changed = type(credential).objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now())
    credential.refresh_from_db(fields=["revoked_at"])
    if changed:
        audit_record(action=f"{'operator_token' if isinstance(credential, OperatorToken) else 'admin_key'}.revoke",
                     via=via, actor=actor, tenant=getattr(credential, "tenant", None),
                     details={"key": credential.display, "name": credential.name})
    return credential


# --- Self-serve dashboard: sign-up, team, profile, login throttling --------------------------------------


def _user_model():
    from django.contrib.auth import get_user_model

    return get_user_model()


def _email_taken(email: str, *, exclude_pk: int | None = None) -> bool:
    # Usernames are e-mail addresses here, but operators may have created users whose username differs
    # from their address: both must stay unique, or a password reset would reach two accounts.
    users = _user_model().objects.filter(Q(username__iexact=email) | Q(email__iexact=email))
    return users.exclude(pk=exclude_pk).exists()


def _unique_tenant_slug(name: str) -> str:
    base = slugify(name)[:48].strip("-") or "workspace"
    slug = base
    # A random suffix rather than counting up: one query in the common case, and no enumeration of
    # other customers' workspace names. A concurrent sign-up taking the same slug fails on the unique
    # index and the user simply submits again.
    while Tenant.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def workspace_create(*, user, name: str, via: str = DASHBOARD_VIA) -> Membership:
    """A new tenant named `name` (slug derived from it, made unique) with `user` as its owner."""
    name = name.strip()
    if not name:
        raise ValidationError({"workspace": "Name your workspace."})
    tenant = tenant_create(slug=_unique_tenant_slug(name), name=name, actor=user, via=via)
    return membership_set(tenant=tenant, user=user, role=Membership.Role.OWNER, actor=user, via=via)


@transaction.atomic
def signup(*, email: str, password: str, tenant_name: str, via: str = DASHBOARD_VIA):
    """A new user (username = e-mail, lower-cased), their workspace and their owner membership."""
    from django.contrib.auth import password_validation

    email = _user_model().objects.normalize_email(email).strip().lower()
    if _email_taken(email):
        raise ValidationError({"email": "An account with this e-mail address already exists. Log in instead."})
    user = _user_model()(username=email, email=email)
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password1": exc.messages}) from None
    user.set_password(password)
    user.save()
    audit_record(action="user.signup", via=via, actor=user, details={"user": email})
    membership = workspace_create(user=user, name=tenant_name, via=via)
    signed_up(user=user, tenant=membership.tenant, via=via)
    return user


def _actor_role(tenant: Tenant, actor) -> str | None:
    return Membership.objects.filter(tenant=tenant, user=actor).values_list("role", flat=True).first()


def _require_may_manage(*, tenant: Tenant, actor, roles: set[str]) -> None:
    """Owners manage everyone; admins manage members and admins. Only owners grant or take the owner role."""
    actor_role = _actor_role(tenant, actor)
    if actor_role not in MANAGER_ROLES:
        raise PermissionDenied("Only owners and admins manage the team.")
    if Membership.Role.OWNER in roles and actor_role != Membership.Role.OWNER:
        raise ValidationError("Only an owner can grant or remove the owner role.")


@dataclass(frozen=True)
class Invitation:
    membership: Membership
    new_user: bool  # True: an account was created and mailed a link to set its password


@transaction.atomic
def member_invite(*, tenant: Tenant, email: str, role: str, actor, site_url: str,
                  via: str = DASHBOARD_VIA) -> Invitation:
    """Add the user with this e-mail address to `tenant`, creating an account for an unknown address.

    A new account has no usable password; it is mailed a link to set one (the password-reset token, so
    the link stops working once used or once PASSWORD_RESET_TIMEOUT has passed). `site_url` is the
    dashboard's absolute root, e.g. request.build_absolute_uri("/").
    """
    email = _user_model().objects.normalize_email(email).strip().lower()
    _require_may_manage(tenant=tenant, actor=actor, roles={role})
    User = _user_model()
    user = (User.objects.filter(username__iexact=email).first()
            or User.objects.filter(email__iexact=email).order_by("pk").first())
    new_user = user is None
    if new_user:
        user = User(username=email, email=email)
        user.set_unusable_password()
        user.save()
        audit_record(action="user.invite", via=via, actor=actor, tenant=tenant, details={"user": email})
    elif Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationError({"email": f"{email} is already in this workspace."})
    membership = membership_set(tenant=tenant, user=user, role=role, actor=actor, via=via)
    # After commit: no mail for an invitation that was rolled back, and no SMTP wait inside the transaction.
    transaction.on_commit(lambda: _invitation_send(user=user, tenant=tenant, actor=actor, new_user=new_user,
                                                   site_url=site_url))
    return Invitation(membership=membership, new_user=new_user)


def _invitation_send(*, user, tenant: Tenant, actor, new_user: bool, site_url: str) -> None:
    from django.contrib.auth.tokens import default_token_generator
    from django.core.mail import send_mail
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    inviter = actor.get_full_name() or actor.email or actor.get_username()
    root = site_url.rstrip("/")
    if new_user:
        path = reverse("password_reset_confirm", kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                                                         "token": default_token_generator.make_token(user)})
        body = (f"{inviter} invited you to the {tenant.name} workspace on Gatehouse.\n\n"
                f"Choose a password to activate your account:\n{root}{path}\n\n"
                f"Then log in with this e-mail address ({user.email}).\n"
                "The link works once and expires in a few days. If you did not expect this, ignore this e-mail.\n")
    else:
        body = (f"{inviter} added you to the {tenant.name} workspace on Gatehouse.\n\n"
                f"Log in to use it: {root}{reverse('login')}\n")
    send_mail(f"You're invited to {tenant.name} on Gatehouse", body, None, [user.email])


@transaction.atomic
def member_role_change(*, membership: Membership, role: str, actor, via: str = DASHBOARD_VIA) -> Membership:
    """A team member's new role, as an owner or admin decides (the last owner cannot step down)."""
    _require_may_manage(tenant=membership.tenant, actor=actor, roles={role, membership.role})
    return membership_set(tenant=membership.tenant, user=membership.user, role=role, actor=actor, via=via)


@transaction.atomic
def member_remove(*, membership: Membership, actor, via: str = DASHBOARD_VIA) -> None:
    """Take someone off the team. Their keys stay with the tenant (managers can still revoke them)."""
    _require_may_manage(tenant=membership.tenant, actor=actor, roles={membership.role})
    membership_remove(membership=membership, actor=actor, via=via)


@transaction.atomic
def user_profile_update(*, user, actor, first_name: str, last_name: str, email: str, via: str = DASHBOARD_VIA):
    """Change a user's name and e-mail address; a username that was the old address follows the new one."""
    email = _user_model().objects.normalize_email(email).strip().lower()
    if email != user.email.lower() and _email_taken(email, exclude_pk=user.pk):
        raise ValidationError({"email": "Another account uses this e-mail address."})
    before = {"first_name": user.first_name, "last_name": user.last_name, "email": user.email}
    if user.get_username().lower() == user.email.lower():
        user.username = email
    user.first_name, user.last_name, user.email = first_name, last_name, email
    user.save(update_fields=["username", "first_name", "last_name", "email"])
    after = {"first_name": first_name, "last_name": last_name, "email": email}
    diff = {field: [before[field], after[field]] for field in after if before[field] != after[field]}
    if diff:
        audit_record(action="user.update", via=via, actor=actor, details=diff)
    return user


@transaction.atomic
def user_password_set(*, user, password: str, actor, via: str = DASHBOARD_VIA):
    """Set a (validated) password. Other sessions of the user end; keep the caller's own with
    update_session_auth_hash."""
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(action="user.password", via=via, actor=actor, details={"user": user.get_username()})
    return user


# Login throttling: counters in the Django cache (Redis when configured, so all processes share them).


def login_failure_record(*, username: str, address: str) -> None:
    from django.conf import settings
    from django.core.cache import cache

    for key in login_attempt_keys(username=username, address=address):
        # A fixed window that starts at the first failure: add() only sets the expiry when the key is
        # new. Simpler than a sliding window, and an attacker still gets at most LOGIN_ATTEMPTS tries
        # per window. incr() after add() can lose a race with the expiry; the next failure restarts the
        # count, which is fine.
        cache.add(key, 0, timeout=settings.LOGIN_ATTEMPTS_WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=settings.LOGIN_ATTEMPTS_WINDOW_SECONDS)


def login_success_record(*, username: str) -> None:
    """A success clears the username's counter; the address's stays, so one valid account cannot be
    used to reset the count of an address that is guessing other accounts' passwords."""
    from django.core.cache import cache

    cache.delete(login_attempt_keys(username=username, address="")[0])
