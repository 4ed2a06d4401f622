"""Reads for tenants and keys, including the gateway's cached key authentication."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.db.models.functions import Length

from common.aio import SingleFlight
from common.db import UNREACHABLE, db_unit
from common.errors import Forbidden, Throttled, Unauthenticated, database_unavailable
from common.outage import db_unavailable


from . import catalog, keys
from .models import AdminKey, ApiKey, Membership, OperatorToken, Tenant


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """Who is calling: what the request path needs about a key, cached per process."""

    key_id: int
    tenant_id: int
    tenant_slug: str
    secret_digest: str
    revoked: bool
    tenant_active: bool
    previous_digest: str = ""  # a rotated-out secret, valid until previous_expires (unix seconds)
    previous_expires: float = 0.0
    expires: float | None = None  # unix seconds
    allowed_models: frozenset[str] = frozenset()  # empty: every model
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    budget_nano: int | None = None
    budget_period: str = "month"
    end_user_rpm_limit: int | None = None
    end_user_budget_nano: int | None = None
    credit_limit_nano: int | None = None  # None: the tenant's balance is not checked
    store_conversations: bool = True
    log_requests: bool = False
    auto_cache_control: bool = False  # the key's or its tenant's opt-in (gateway/protocols/_common/cache_control.py)
    public_id: str = ""  # for the access log

    def secret_matches(self, secret: str, now: float) -> bool:
        if keys.matches(secret, self.secret_digest):
            return True
        return bool(self.previous_digest) and now < self.previous_expires and keys.matches(secret, self.previous_digest)


class _KeyCache:
    """public_id -> (fetched_at, principal or None), bounded, per process.

    Entries live GATEWAY_AUTH_CACHE_SECONDS (1 s by default): a revocation, rotation, suspension or
    change of limits reaches every process within that time without any cross-process invalidation,
    at the cost of at most one indexed lookup per key per second. Random ids never get here (their check
    value fails, accounts.keys); ids this server issued whose key is gone are cached too, and the bound
    keeps a flood of them from growing memory.
    """

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, KeyPrincipal | None]] = OrderedDict()

    def get(self, public_id: str, now: float) -> tuple[bool, KeyPrincipal | None]:
        entry = self._entries.get(public_id)
        if entry is None or now - entry[0] >= settings.GATEWAY_AUTH_CACHE_SECONDS:
            return False, None
        return True, entry[1]

    def stale(self, public_id: str, now: float) -> KeyPrincipal | None:
        """The expired entry while the database cannot be asked (for GATEWAY_STALE_GRACE_SECONDS more), else 503."""
        entry = self._entries.get(public_id)
        if entry is None or now - entry[0] >= settings.GATEWAY_AUTH_CACHE_SECONDS + settings.GATEWAY_STALE_GRACE_SECONDS:
            raise database_unavailable()
        return entry[1]

    def put(self, public_id: str, principal: KeyPrincipal | None, now: float) -> None:
        self._entries[public_id] = (now, principal)
        self._entries.move_to_end(public_id)
        while len(self._entries) > self.MAX_ENTRIES:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


key_cache = _KeyCache()


def key_principal(public_id: str) -> KeyPrincipal | None:
    """What the request path knows of a key (None: no such key); the dashboard's playground uses it too."""
    key = ApiKey.objects.filter(public_id=public_id).select_related("tenant").first()
    if key is None:
        return None
    return KeyPrincipal(
        key_id=key.pk,
        tenant_id=key.tenant_id,
        tenant_slug=key.tenant.slug,
        secret_digest=key.secret_digest,
        revoked=key.revoked_at is not None,
        tenant_active=key.tenant.status == Tenant.Status.ACTIVE,
        previous_digest=key.previous_secret_digest,
        previous_expires=key.previous_secret_expires_at.timestamp() if key.previous_secret_expires_at else 0.0,
        expires=key.expires_at.timestamp() if key.expires_at else None,
        allowed_models=frozenset(key.allowed_models or ()),
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
        budget_nano=key.budget_nano,
        budget_period=key.budget_period,
        end_user_rpm_limit=key.end_user_rpm_limit,
        end_user_budget_nano=key.end_user_budget_nano,
        credit_limit_nano=key.tenant.credit_limit_nano,
        store_conversations=key.tenant.store_conversations,
        log_requests=key.tenant.log_requests,
        auto_cache_control=key.auto_cache_control or key.tenant.auto_cache_control,
        public_id=key.public_id,
    )


def legacy_public_ids() -> frozenset[str]:
    """The public ids of keys issued before ids carried a check value (accounts.keys)."""
    return frozenset(ApiKey.objects.annotate(length=Length("public_id"))
                     .filter(length=keys.LEGACY_PUBLIC_ID_LENGTH).values_list("public_id", flat=True))


class _LegacyIds:
    """Per process, the ids of legacy keys, so that an unknown legacy-shaped id costs no query either.

    No legacy key is issued any more, so the set only changes in a rolling upgrade (an old process
    still issuing them): an id not in the set reloads it, at most once per RELOAD_SECONDS.
    """

    RELOAD_SECONDS = 60.0

    def __init__(self) -> None:
        self.ids: frozenset[str] | None = None
        self.loaded_at = 0.0

    async def contains(self, public_id: str, now: float) -> bool:
        if self.ids is None or (public_id not in self.ids and now - self.loaded_at >= self.RELOAD_SECONDS):
            self.ids = await _principal_fetches.run("legacy-ids", _legacy_ids_async)
            self.loaded_at = now
        return public_id in self.ids


class _AuthFailures:
    """Failed authentications per client address, per process: once GATEWAY_AUTH_FAILURES failed within
    GATEWAY_AUTH_FAILURES_WINDOW_SECONDS, the address's failures are 429s with retry-after.

    In process memory, not Redis: counting costs nothing, not even a round trip, under a flood; with N
    processes an address gets up to N times the limit. Keys still authenticate from a throttled
    address (a client behind the same NAT as an attacker keeps working); what the throttle stops is the
    address's further guessing. A fixed window from the first failure, like the dashboard's login.
    """

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def retry_after(self, address: str, now: float) -> int | None:
        """Seconds until `address` may fail again, or None if it is not throttled."""
        started, count = self._entries.get(address, (0.0, 0))
        left = started + settings.GATEWAY_AUTH_FAILURES_WINDOW_SECONDS - now
        return math.ceil(left) if left > 0 and count >= settings.GATEWAY_AUTH_FAILURES else None

    def record(self, address: str, now: float) -> None:
        started, count = self._entries.pop(address, (now, 0))
        if now - started >= settings.GATEWAY_AUTH_FAILURES_WINDOW_SECONDS:
            started, count = now, 0
        self._entries[address] = (started, count + 1)
        if len(self._entries) > self.MAX_ENTRIES:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


_fetch_principal_async = db_unit(key_principal)
_legacy_ids_async = db_unit(legacy_public_ids)
_principal_fetches = SingleFlight()
legacy_ids = _LegacyIds()
auth_failures = _AuthFailures()

_INVALID_KEY = "Incorrect API key provided. Keys look like sk_cdx_..., issued from the dashboard or by an operator."
_MANAGEMENT_KEY_ON_MODEL_API = ("This is a management credential ({prefix}...): it manages Gatehouse through "
                                "/api/v1 and cannot call models. Use an API key (sk_cdx_...).")


async def api_key_authenticate(presented: str | None, *, how: str = "'Authorization: Bearer sk_cdx_...'",
                               address: str = "") -> KeyPrincipal:
    """The principal for a presented key, or Unauthenticated / Forbidden (Throttled for an `address` past its
    failures).

    Usually no database round trip; never one for an id this server did not issue (a failed check
    value, or a legacy-shaped id not among the legacy keys). `how` tells a client without a key where
    its protocol carries one."""
    now = time.monotonic()
    try:
        return await _authenticate(presented, how, now)
    except Unauthenticated:
        retry_after = auth_failures.retry_after(address, now)
        auth_failures.record(address, now)
        if retry_after is None:
            raise
        raise Throttled(f"Too many failed authentications from your address. Retry in {retry_after} s.",
                        code="too_many_auth_failures", retry_after=retry_after) from None


async def _authenticate(presented: str | None, how: str, now: float) -> KeyPrincipal:
    if not presented:
        raise Unauthenticated(f"You didn't provide an API key. Send it as {how}.", code="missing_api_key")
    parsed = keys.parse(presented)
    if parsed is None:
        kind = keys.kind_of(presented)
        message = (_MANAGEMENT_KEY_ON_MODEL_API.format(prefix=keys.PREFIXES[kind]) if kind in (keys.ADMIN, keys.OPERATOR)
                   else _INVALID_KEY)
        raise Unauthenticated(message, code="invalid_api_key")
    public_id, secret = parsed
    hit, principal = key_cache.get(public_id, now)
    if not hit and (await legacy_ids.contains(public_id, now) if keys.is_legacy(public_id)
                    else keys.public_id_verifies(public_id)):
        try:
            principal = await _principal_fetches.run(public_id, lambda: _fetch_principal_async(public_id))
        except UNREACHABLE as exc:
            db_unavailable.failed(exc)
            principal = key_cache.stale(public_id, now)
        else:
            key_cache.put(public_id, principal, now)
    wall = time.time()
    if principal is None or not principal.secret_matches(secret, wall):
        raise Unauthenticated(_INVALID_KEY, code="invalid_api_key")
    return principal_check(principal, wall)


def principal_check(principal: KeyPrincipal, wall: float) -> KeyPrincipal:
    """The refusals every way into the request path applies to a known key, whether its secret was
    presented (the APIs) or not (the dashboard's playground): revoked, expired, tenant suspended."""
    if principal.revoked:
        # Said plainly only to a caller who presented the right secret (or the key's own user): an unknown
        # or wrong key still gets the one invalid_api_key answer, at the same cost.
        raise Unauthenticated("This API key has been revoked. Create a new one in the dashboard.",
                              code="revoked_api_key")
    if principal.expires is not None and wall >= principal.expires:
        raise Unauthenticated("This API key has expired. Create a new one in the dashboard.",
                              code="expired_api_key")
    if not principal.tenant_active:
        raise Forbidden("This account is suspended. Contact your operator.", code="account_suspended")
    return principal


# --- Management API credentials ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ManagementPrincipal:
    """Who is calling the management API (or the admin usage APIs): an operator or one tenant's admin.

    `actor` is the user audit entries name: the operator token's user, or the admin key's creator.
    `role` is that creator's current role in `tenant` (owner or admin); operators have none.
    """

    kind: str  # keys.OPERATOR or keys.ADMIN
    credential: OperatorToken | AdminKey
    actor: object | None
    read_only: bool = False
    tenant: Tenant | None = None
    role: str | None = None
    is_authenticated = True  # for DRF's IsAuthenticated: DRF stores the principal as request.user

    @property
    def is_operator(self) -> bool:
        return self.kind == keys.OPERATOR


_MANAGEMENT_MODELS = {keys.OPERATOR: OperatorToken, keys.ADMIN: AdminKey}
_INVALID_MANAGEMENT_KEY = "Incorrect management credential. Send an operator token (sk_cdx_op_...) or a tenant admin key (sk_cdx_admin_...)."
_LAST_USED_RESOLUTION_SECONDS = 60


def management_principal(presented: str | None, *,
                         kinds: tuple[str, ...] = (keys.OPERATOR, keys.ADMIN)) -> ManagementPrincipal:
    """The principal of a presented operator token or tenant admin key, or Unauthenticated / Forbidden.

    Looked up on every request (no cache): management traffic is light, and a revocation or a creator's
    lost role takes effect on the next request. API keys are refused with a message saying what to use.
    """
    from django.utils import timezone

    accepted = " or ".join(f"{keys.PREFIXES[kind]}..." for kind in kinds)
    if not presented:
        raise Unauthenticated(f"You didn't provide a management credential ({accepted}). Send it as "
                              f"'Authorization: Bearer {keys.PREFIXES[kinds[0]]}...'.", code="missing_api_key")
    kind = keys.kind_of(presented)
    if kind not in kinds:
        message = (f"API keys (sk_cdx_...) call the model APIs only; this API takes {accepted}."
                   if kind == keys.API else f"This API takes {accepted} only.")
        raise Unauthenticated(message if kind else _INVALID_MANAGEMENT_KEY, code="invalid_api_key")
    parsed = keys.credential_parse(presented, kind)
    model = _MANAGEMENT_MODELS[kind]
    credential = parsed and model.objects.filter(public_id=parsed[0]).select_related(
        *(("tenant", "created_by") if kind == keys.ADMIN else ("user",))).first()
    if not credential or not keys.matches(parsed[1], credential.secret_digest) or credential.is_revoked:
        raise Unauthenticated(_INVALID_MANAGEMENT_KEY, code="invalid_api_key")
    if kind == keys.OPERATOR:
        principal = ManagementPrincipal(kind=kind, credential=credential, actor=credential.user,
                                        read_only=credential.read_only)
    else:
        role = credential.created_by_id and Membership.objects.filter(
            tenant_id=credential.tenant_id, user_id=credential.created_by_id).values_list("role", flat=True).first()
        if role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
            raise Forbidden("The user who created this admin key is no longer an owner or admin of "
                            f"{credential.tenant.slug}; the key has no rights left. Create a new one.",
                            code="admin_key_creator_not_manager")
        principal = ManagementPrincipal(kind=kind, credential=credential, actor=credential.created_by,
                                        tenant=credential.tenant, role=role)
    now = timezone.now()
    # At most one write a minute per credential: reads stay reads.
    if credential.last_used_at is None or (now - credential.last_used_at).total_seconds() >= _LAST_USED_RESOLUTION_SECONDS:
        model.objects.filter(pk=credential.pk).update(last_used_at=now)
    return principal


management_principal_async = db_unit(management_principal)


# --- Self-serve dashboard --------------------------------------------------------------------------------


def login_attempt_keys(*, username: str, address: str) -> tuple[str, str]:
    """Cache keys of the failed-login counters of a username and of a client address."""
    import hashlib

    # Hashed: usernames are e-mail addresses and should not sit in the cache in clear; lower-cased, so
    # that case variants of one name share a counter.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    return f"login-failures:user:{name}", f"login-failures:addr:{address}"


def login_refused(*, username: str, address: str) -> bool:
    """True once LOGIN_ATTEMPTS logins failed for this username, or from this address, within the window."""
    from django.core.cache import cache

    counts = cache.get_many(login_attempt_keys(username=username, address=address))
    return any(count >= settings.LOGIN_ATTEMPTS for count in counts.values())


def api_key_status(api_key: ApiKey, *, now=None, over_budget: bool = False) -> str:
    """active, revoked, expired or over budget (its requests refused until the period resets or the budget
    is raised), as customers see it; `over_budget` from billing.selectors.key_budget_states."""
    from django.utils import timezone

    if api_key.is_revoked:
        return "revoked"
    if api_key.expires_at is not None and api_key.expires_at <= (now or timezone.now()):
        return "expired"
    return "over budget" if over_budget else "active"


def example_model(api_key: ApiKey | None = None) -> str:
    """A model id for code snippets: one the key may call, else the first enabled chat model."""
    if api_key is not None and api_key.allowed_models:
        return api_key.allowed_models[0]
    return catalog.first_chat_model() or "claude-sonnet-4-6"


# --- Admin usage APIs: a tenant's keys as OpenAI and Anthropic list them ---------------------------------


def _creators(tenant_id: int, user_ids: set) -> dict[int, dict]:
    """The creators of a tenant's credentials with their role in the tenant (None: no longer a member)."""
    from django.contrib.auth import get_user_model

    roles = dict(Membership.objects.filter(tenant_id=tenant_id, user_id__in=user_ids).values_list("user_id", "role"))
    return {user.pk: {"id": user.pk, "name": user.get_full_name() or user.get_username(), "email": user.email,
                      "created_at": user.date_joined, "role": roles.get(user.pk)}
            for user in get_user_model().objects.filter(pk__in=user_ids)}


def credentials_listed(rows, *, tenant_id: int, limit: int, after: str | None = None, before: str | None = None,
                       descending: bool = False, status=lambda item: "active") -> tuple[list[dict], bool]:
    """A page of `rows` (a tenant's ApiKey or AdminKey queryset) in creation order (newest first when
    `descending`), after or before the one with that public id (unknown: an empty page), and whether more
    follow in that direction. `status(item)` names each one's state."""
    toward_older = descending != bool(before)
    if after or before:
        anchor = rows.filter(public_id=after or before).values_list("pk", flat=True).first()
        if anchor is None:
            return [], False
        rows = rows.filter(pk__lt=anchor) if toward_older else rows.filter(pk__gt=anchor)
    page = list(rows.select_related("created_by").order_by("-pk" if toward_older else "pk")[:limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    if before:
        page.reverse()
    creators = _creators(tenant_id, {item.created_by_id for item in page if item.created_by_id})
    return [{"public_id": item.public_id, "name": item.name, "display": item.display, "created_at": item.created_at,
             "last_used_at": item.last_used_at, "creator": creators.get(item.created_by_id), "status": status(item)}
            for item in page], has_more


def api_keys_listed(*, tenant_id: int, limit: int, after: str | None = None, before: str | None = None,
                    status: str | None = None, now=None) -> tuple[list[dict], bool]:
    """A tenant's API keys with Anthropic's key status: active, expired, or archived (revoked);
    `status` keeps one of them (`inactive`, a state our keys do not have, keeps none)."""
    from django.db.models import Q
    from django.utils import timezone

    now = now or timezone.now()
    rows = ApiKey.objects.filter(tenant_id=tenant_id)
    expired = Q(expires_at__isnull=False, expires_at__lte=now)
    rows = {None: rows, "active": rows.filter(revoked_at__isnull=True).exclude(expired),
            "expired": rows.filter(expired, revoked_at__isnull=True), "archived": rows.filter(revoked_at__isnull=False),
            "inactive": rows.none()}[status]
    return credentials_listed(rows, tenant_id=tenant_id, limit=limit, after=after, before=before,
                              status=lambda key: api_key_status(key, now=now).replace("revoked", "archived"))


def admin_keys_listed(*, tenant_id: int, limit: int, after: str | None = None,
                      descending: bool = False) -> tuple[list[dict], bool]:
    """A tenant's admin keys in use (not revoked)."""
    rows = AdminKey.objects.filter(tenant_id=tenant_id, revoked_at__isnull=True)
    return credentials_listed(rows, tenant_id=tenant_id, limit=limit, after=after, descending=descending)
