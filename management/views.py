"""The management API's views: parse with a serializer, call one service, render.

The rules live in the accounts, billing and gateway services, which every write goes through with
via="api" and the credential's user as the actor. A view only scopes what the caller may see: a
tenant admin key sees its own tenant, and any other tenant's URL is a 404 (its existence is not
confirmed). Errors are DRF's: 400 {"field": ["message"]}, 401, 403, 404.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import orjson
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from accounts import services as accounts
from accounts.models import ApiKey, AuditEntry, Membership, Tenant
from billing import alerts
from billing import services as billing
from billing.models import AlertRule, LedgerEntry, UsageEvent
from billing.selectors import budget_period_bounds, key_spend_nano, tenant_balance_nano, tenant_unbilled_cost_nano
from gateway import services as gateway
from gateway.models import CatalogModel, Credential, Deployment, Provider

from . import serializers as s
from .pagination import Cursor
from .permissions import IsOperator, IsOperatorOrTenantAdmin, IsTenantAdmin
from .services import idempotent_run

VIA = "api"
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Retrying with the same key returns the first answer and writes nothing twice; the same key "
                "with a different request is a 422. Kept for MANAGEMENT_IDEMPOTENCY_HOURS.")


def _fingerprint(request) -> str:
    body = orjson.dumps(request.data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(f"{request.method} {request.path}\n".encode() + body).hexdigest()


class Api(GenericAPIView):
    """Shared by the views: input parsing, tenant scoping, idempotent creation."""

    permission_classes = [IsOperatorOrTenantAdmin]
    pagination_class = Cursor
    filter_class: type[s.Input] = s.Input  # the query parameters a list takes besides cursor and limit

    @property
    def principal(self):
        return self.request.user

    @property
    def actor(self):
        return self.principal.actor

    def parse(self, serializer_class: type[s.Input], data=None) -> dict:
        serializer = serializer_class(data=self.request.data if data is None else data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def filters(self) -> dict:
        params = {name: value for name, value in self.request.query_params.items() if name not in ("cursor", "limit")}
        return self.parse(self.filter_class, data=params)

    def tenant(self, slug: str) -> Tenant:
        principal = self.principal
        if not principal.is_operator and principal.tenant.slug != slug:
            raise NotFound("No such tenant.")
        return get_object_or_404(Tenant, slug=slug)

    def scoped_tenant_filter(self, rows: QuerySet, slug: str | None) -> QuerySet:
        """Rows of the tenant in the URL, or (operators, no tenant in the URL) of `?tenant=` or all."""
        if slug is not None:
            return rows.filter(tenant=self.tenant(slug))
        tenant_slug = self.filters().get("tenant")
        return rows.filter(tenant__slug=tenant_slug) if tenant_slug else rows

    def page(self, rows: QuerySet, serializer_class) -> Response:
        self.filters()  # an unknown query parameter is a 400, not ignored
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(serializer_class(page, many=True).data)

    def created(self, make) -> Response:
        """201 with `make()`'s body; with an Idempotency-Key, once per key (retries get the same answer)."""
        key = self.request.headers.get("Idempotency-Key")
        if key is None:
            return Response(make(), status=status.HTTP_201_CREATED)
        if not key or len(key) > 255:
            raise ValidationError({"Idempotency-Key": ["1 to 255 characters."]})
        credential = f"{self.principal.kind}:{self.principal.credential.public_id}"
        code, body, replayed = idempotent_run(credential=credential, key=key, fingerprint=_fingerprint(self.request),
                                              run=lambda: (status.HTTP_201_CREATED, make()))
        return Response(body, status=code, headers={"Idempotent-Replayed": "true"} if replayed else None)


# --- Who am I --------------------------------------------------------------------------------------------


class WhoAmI(Api):
    """The credential making the request: its kind, and for an admin key its tenant and role."""

    serializer_class = s.PrincipalOut

    @extend_schema(operation_id="whoami", summary="The calling credential")
    def get(self, request):
        return Response(s.PrincipalOut(request.user).data)


# --- Tenants ---------------------------------------------------------------------------------------------

# What a tenant admin may change about their tenant (the credit limit is the operator's), and what only
# its owners may (as in the dashboard, where only owners rename the workspace).
TENANT_ADMIN_SETTINGS = {"name", "store_conversations", "log_requests", "conversation_retention_days",
                         "auto_cache_control"}
TENANT_OWNER_SETTINGS = {"name"}


class TenantList(Api):
    permission_classes = [IsOperator]
    serializer_class = s.TenantOut

    @extend_schema(operation_id="tenants_list", summary="List tenants")
    def get(self, request):
        return self.page(Tenant.objects.all(), s.TenantOut)

    @extend_schema(operation_id="tenants_create", summary="Create a tenant", request=s.TenantCreateIn,
                   responses={201: s.TenantOut},
                   examples=[OpenApiExample("tenant", request_only=True, value={
                       "slug": "acme", "name": "Acme Inc.", "credit_limit_nano": 0, "conversation_retention_days": 30})])
    def post(self, request):
        data = self.parse(s.TenantCreateIn)
        return self.created(lambda: s.TenantOut(accounts.tenant_create(actor=self.actor, via=VIA, **data)).data)


class TenantDetail(Api):
    serializer_class = s.TenantOut

    @extend_schema(operation_id="tenants_retrieve", summary="A tenant and its settings")
    def get(self, request, slug):
        return Response(s.TenantOut(self.tenant(slug)).data)

    @extend_schema(operation_id="tenants_update", summary="Change a tenant's name, credit limit or settings",
                   request=s.TenantUpdateIn, responses=s.TenantOut,
                   examples=[OpenApiExample("retention", request_only=True, value={
                       "store_conversations": True, "conversation_retention_days": 14})])
    def patch(self, request, slug):
        tenant = self.tenant(slug)
        changes = self.parse(s.TenantUpdateIn)
        principal = self.principal
        if not principal.is_operator:
            if refused := sorted(set(changes) - TENANT_ADMIN_SETTINGS):
                raise PermissionDenied(f"Only operators change {', '.join(refused)}.")
            if set(changes) & TENANT_OWNER_SETTINGS and principal.role != Membership.Role.OWNER:
                raise PermissionDenied("Only a key created by an owner renames the tenant.")
        return Response(s.TenantOut(accounts.tenant_update(tenant=tenant, actor=self.actor, via=VIA, **changes)).data)


class _TenantStatus(Api):
    permission_classes = [IsOperator]
    serializer_class = s.TenantOut
    new_status = ""

    def post(self, request, slug):
        tenant = accounts.tenant_set_status(tenant=self.tenant(slug), status=self.new_status, actor=self.actor, via=VIA)
        return Response(s.TenantOut(tenant).data)


@extend_schema_view(post=extend_schema(operation_id="tenants_suspend", request=None,
                                        summary="Suspend a tenant: its keys are refused (403)"))
class TenantSuspend(_TenantStatus):
    new_status = Tenant.Status.SUSPENDED


@extend_schema_view(post=extend_schema(operation_id="tenants_resume", summary="Resume a suspended tenant",
                                        request=None))
class TenantResume(_TenantStatus):
    new_status = Tenant.Status.ACTIVE


class TenantBalance(Api):
    serializer_class = s.BalanceOut

    @extend_schema(operation_id="tenants_balance", summary="Balance, unbilled usage and credit limit")
    def get(self, request, slug):
        tenant = self.tenant(slug)
        balance, unbilled = tenant_balance_nano(tenant.pk), tenant_unbilled_cost_nano(tenant.pk)
        return Response(s.BalanceOut({"tenant": tenant.slug, "balance_nano": balance, "unbilled_nano": unbilled,
                                      "available_nano": balance - unbilled,
                                      "credit_limit_nano": tenant.credit_limit_nano}).data)


# --- Money -----------------------------------------------------------------------------------------------


class _Posting(Api):
    permission_classes = [IsOperator]
    serializer_class = s.LedgerOut

    def post(self, request, slug):
        tenant = self.tenant(slug)
        data = self.parse(self.input_class)
        return self.created(lambda: s.LedgerOut(self.service(tenant=tenant, actor=self.actor, via=VIA, **data)).data)


@extend_schema_view(post=extend_schema(
    operation_id="tenants_credits_create", summary="Grant credit (a positive amount, with a reason)",
    request=s.CreditIn, responses={201: s.LedgerOut}, parameters=[IDEMPOTENCY_KEY],
    examples=[OpenApiExample("credit", request_only=True,
                             value={"amount_nano": 25_000_000_000, "reason": "Invoice 2026-114 paid"})]))
class TenantCredits(_Posting):
    input_class = s.CreditIn
    service = staticmethod(billing.credit_grant)


@extend_schema_view(post=extend_schema(
    operation_id="tenants_adjustments_create", summary="Post an adjustment (either sign, with a reason)",
    request=s.AdjustmentIn, responses={201: s.LedgerOut}, parameters=[IDEMPOTENCY_KEY],
    examples=[OpenApiExample("refund", request_only=True,
                             value={"amount_nano": -1_500_000_000, "reason": "Double-charged test run"})]))
class TenantAdjustments(_Posting):
    input_class = s.AdjustmentIn
    service = staticmethod(billing.ledger_adjust)


class Ledger(Api):
    permission_classes = [IsOperator]
    serializer_class = s.LedgerOut
    filter_class = s.LedgerFilter

    @extend_schema(operation_id="ledger_list", summary="Every tenant's ledger entries, newest first",
                   parameters=[s.LedgerFilter])
    def get(self, request, slug=None):
        rows = self.scoped_tenant_filter(LedgerEntry.objects.select_related("tenant", "reverses"), slug)
        return self.page(_in_range(rows, self.filters(), kind="kind"), s.LedgerOut)


class TenantLedger(Ledger):
    permission_classes = [IsOperatorOrTenantAdmin]

    @extend_schema(operation_id="tenants_ledger_list", summary="A tenant's ledger entries, newest first",
                   parameters=[s.LedgerFilter])
    def get(self, request, slug):
        return super().get(request, slug)


def _in_range(rows: QuerySet, filters: dict, **exact: str) -> QuerySet:
    if "since" in filters:
        rows = rows.filter(created_at__gte=filters["since"])
    if "until" in filters:
        rows = rows.filter(created_at__lt=filters["until"])
    return rows.filter(**{lookup: filters[name] for name, lookup in exact.items() if name in filters})


# --- Keys ------------------------------------------------------------------------------------------------


class KeyList(Api):
    serializer_class = s.KeyOut

    @extend_schema(operation_id="keys_list", summary="A tenant's API keys")
    def get(self, request, slug):
        return self.page(ApiKey.objects.filter(tenant=self.tenant(slug)).select_related("tenant", "created_by"),
                         s.KeyOut)

    @extend_schema(operation_id="keys_create", summary="Issue an API key (its secret is in this response only)",
                   request=s.KeyCreateIn, responses={201: s.IssuedKeyOut}, parameters=[IDEMPOTENCY_KEY],
                   examples=[OpenApiExample("limited", request_only=True, value={
                       "name": "ci", "allowed_models": ["claude-sonnet-4-6"], "rpm_limit": 60,
                       "budget_nano": 10_000_000_000, "budget_period": "month"})])
    def post(self, request, slug):
        tenant = self.tenant(slug)
        data = self.parse(s.KeyCreateIn)

        def issue():
            issued = accounts.api_key_issue(tenant=tenant, created_by=self.actor, via=VIA, **data)
            return _issued(issued)

        return self.created(issue)


def _issued(issued: accounts.IssuedKey) -> dict:
    """The key and, this once, its secret (s.IssuedKeyOut)."""
    return {**s.KeyOut(issued.api_key).data, "key": issued.plaintext}


class _KeyView(Api):
    serializer_class = s.KeyOut

    def key(self, slug: str, key_id: str) -> ApiKey:
        return get_object_or_404(ApiKey.objects.select_related("tenant", "created_by"), tenant=self.tenant(slug),
                                 public_id=key_id)


class KeyDetail(_KeyView):
    @extend_schema(operation_id="keys_retrieve", summary="An API key")
    def get(self, request, slug, key_id):
        return Response(s.KeyOut(self.key(slug, key_id)).data)

    @extend_schema(operation_id="keys_update", summary="Change a key's name, models, limits, budget or expiry",
                   request=s.KeyUpdateIn, responses=s.KeyOut,
                   examples=[OpenApiExample("limits", request_only=True,
                                            value={"rpm_limit": 120, "tpm_limit": None, "budget_nano": 5_000_000_000})])
    def patch(self, request, slug, key_id):
        api_key = self.key(slug, key_id)
        if api_key.is_revoked:
            raise ValidationError({"non_field_errors": ["A revoked key cannot be changed."]})
        changes = self.parse(s.KeyUpdateIn)
        return Response(s.KeyOut(accounts.api_key_update(api_key=api_key, actor=self.actor, via=VIA, **changes)).data)


class KeyRotate(_KeyView):
    @extend_schema(operation_id="keys_rotate", summary="Give a key a new secret; the old one works for the grace",
                   request=s.RotateIn, responses={201: s.IssuedKeyOut}, parameters=[IDEMPOTENCY_KEY],
                   examples=[OpenApiExample("a day", request_only=True, value={"grace_seconds": 86400})])
    def post(self, request, slug, key_id):
        api_key = self.key(slug, key_id)
        grace = timedelta(seconds=self.parse(s.RotateIn)["grace_seconds"])

        def rotate():
            issued = accounts.api_key_rotate(api_key=api_key, grace=grace, actor=self.actor, via=VIA)
            return _issued(issued)

        return self.created(rotate)


class KeyRevoke(_KeyView):
    @extend_schema(operation_id="keys_revoke", summary="Revoke a key (one-way; gateways notice within seconds)",
                   request=None)
    def post(self, request, slug, key_id):
        return Response(s.KeyOut(accounts.api_key_revoke(api_key=self.key(slug, key_id), actor=self.actor,
                                                         via=VIA)).data)


class Budgets(Api):
    serializer_class = s.BudgetOut

    @extend_schema(operation_id="budgets_list", summary="Each live key's budget and its spend this period")
    def get(self, request, slug):
        tenant, now = self.tenant(slug), timezone.now()
        rows = []
        self.filters()
        page = self.paginate_queryset(ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True))
        for api_key in page:
            start, end = budget_period_bounds(api_key.budget_period, now)
            spent = key_spend_nano(api_key.pk, start)
            rows.append({"key": api_key.public_id, "name": api_key.name, "budget_nano": api_key.budget_nano,
                         "budget_period": api_key.budget_period, "period_start": start, "period_end": end,
                         "spent_nano": spent,
                         "remaining_nano": None if api_key.budget_nano is None else api_key.budget_nano - spent})
        return self.get_paginated_response(s.BudgetOut(rows, many=True).data)


# --- Members ---------------------------------------------------------------------------------------------


class MemberList(Api):
    serializer_class = s.MemberOut

    @extend_schema(operation_id="members_list", summary="A tenant's team")
    def get(self, request, slug):
        return self.page(Membership.objects.filter(tenant=self.tenant(slug)).select_related("user"), s.MemberOut)

    @extend_schema(operation_id="members_create", summary="Operators: add an existing user with a role",
                   request=s.MemberIn, responses={201: s.MemberOut},
                   examples=[OpenApiExample("admin", request_only=True,
                                            value={"email": "dana@example.com", "role": "admin"})])
    def post(self, request, slug):
        if not self.principal.is_operator:
            raise PermissionDenied("Tenant admins add people with POST .../invitations.")
        tenant = self.tenant(slug)
        data = self.parse(s.MemberIn)
        user = get_user_model().objects.filter(email__iexact=data["email"]).order_by("pk").first()
        if user is None:
            raise ValidationError({"email": ["No user has this e-mail address: a tenant admin can invite them."]})
        if Membership.objects.filter(tenant=tenant, user=user).exists():
            raise ValidationError({"email": [f"{data['email']} is already in this tenant; PATCH the member."]})
        membership = accounts.membership_set(tenant=tenant, user=user, role=data["role"], actor=self.actor, via=VIA)
        return Response(s.MemberOut(membership).data, status=status.HTTP_201_CREATED)


class Invitations(Api):
    permission_classes = [IsTenantAdmin]
    serializer_class = s.MemberOut

    @extend_schema(operation_id="invitations_create", summary="Tenant admins: invite someone by e-mail",
                   description="An unknown address gets an account and an e-mail with a link to set its password; "
                               "a known one is added and told. Only owners invite owners.",
                   request=s.MemberIn, responses={201: s.MemberOut},
                   examples=[OpenApiExample("member", request_only=True,
                                            value={"email": "erin@example.com", "role": "member"})])
    def post(self, request, slug):
        tenant = self.tenant(slug)
        data = self.parse(s.MemberIn)
        invitation = accounts.member_invite(tenant=tenant, email=data["email"], role=data["role"], actor=self.actor,
                                            site_url=request.build_absolute_uri("/"), via=VIA)
        return Response(s.MemberOut(invitation.membership).data, status=status.HTTP_201_CREATED)


class MemberDetail(Api):
    serializer_class = s.MemberOut

    def membership(self, slug: str, member_id: int) -> Membership:
        return get_object_or_404(Membership.objects.select_related("user", "tenant"), tenant=self.tenant(slug),
                                 pk=member_id)

    @extend_schema(operation_id="members_update", summary="Change a member's role", request=s.MemberUpdateIn,
                   responses=s.MemberOut,
                   examples=[OpenApiExample("promote", request_only=True, value={"role": "admin"})])
    def patch(self, request, slug, member_id):
        membership = self.membership(slug, member_id)
        role = self.parse(s.MemberUpdateIn)["role"]
        if self.principal.is_operator:
            membership = accounts.membership_set(tenant=membership.tenant, user=membership.user, role=role,
                                                 actor=self.actor, via=VIA)
        else:
            membership = accounts.member_role_change(membership=membership, role=role, actor=self.actor, via=VIA)
        return Response(s.MemberOut(membership).data)

    @extend_schema(operation_id="members_destroy", summary="Take someone off the team (their keys stay)",
                   responses={204: None})
    def delete(self, request, slug, member_id):
        membership = self.membership(slug, member_id)
        if self.principal.is_operator:
            accounts.membership_remove(membership=membership, actor=self.actor, via=VIA)
        else:
            accounts.member_remove(membership=membership, actor=self.actor, via=VIA)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Usage and audit -------------------------------------------------------------------------------------


class Usage(Api):
    permission_classes = [IsOperator]
    serializer_class = s.UsageOut
    filter_class = s.UsageFilter

    @extend_schema(operation_id="usage_list", summary="Every tenant's usage rows (one per request), newest first",
                   parameters=[s.UsageFilter])
    def get(self, request, slug=None):
        rows = self.scoped_tenant_filter(UsageEvent.objects.select_related("tenant", "api_key"), slug)
        return self.page(_in_range(rows, self.filters(), api_key="api_key__public_id", model="model",
                                   status="status"), s.UsageOut)


class TenantUsage(Usage):
    permission_classes = [IsOperatorOrTenantAdmin]

    @extend_schema(operation_id="tenants_usage_list", summary="A tenant's usage rows (one per request), newest first",
                   parameters=[s.UsageFilter])
    def get(self, request, slug):
        return super().get(request, slug)


class Audit(Api):
    permission_classes = [IsOperator]
    serializer_class = s.AuditOut
    filter_class = s.AuditFilter

    @extend_schema(operation_id="audit_list", summary="The audit log, newest first", parameters=[s.AuditFilter])
    def get(self, request):
        rows = AuditEntry.objects.select_related("actor", "tenant", "api_key")
        return self.page(_in_range(rows, self.filters(), tenant="tenant__slug", action="action", via="via"),
                         s.AuditOut)


# --- Catalog, prices, providers, deployments (operators) -------------------------------------------------


class _Upstream(Api):
    """List and create (no `lookup` in the URL), or read and change, catalog models, providers or
    deployments, through gateway.services.upstream_object_save."""

    permission_classes = [IsOperator]
    rows: QuerySet
    create_in: type[s.Input]
    update_in: type[s.Input]
    lookup = "name"

    def object(self, key):
        return get_object_or_404(self.rows, **{self.lookup: key})

    def save(self, instance, changes: dict, code: int = status.HTTP_200_OK) -> Response:
        instance = gateway.upstream_object_save(instance=instance, changes=changes, actor=self.actor, via=VIA)
        return Response(self.serializer_class(instance).data, status=code)


class _UpstreamList(_Upstream):
    def get(self, request):
        return self.page(self.rows.all(), self.serializer_class)

    def post(self, request):
        return self.save(self.rows.model(), self.parse(self.create_in), status.HTTP_201_CREATED)


class _UpstreamDetail(_Upstream):
    def get(self, request, key):
        return Response(self.serializer_class(self.object(key)).data)

    def patch(self, request, key):
        return self.save(self.object(key), self.parse(self.update_in))


def _upstream_schema(noun: str, out, create_in, update_in, create_example: dict, update_example: dict):
    """The list/create and retrieve/update schemas of one kind of upstream object."""
    plural = f"{noun}s"
    listing = extend_schema_view(
        get=extend_schema(operation_id=f"{plural}_list", summary=f"List {plural}"),
        post=extend_schema(operation_id=f"{plural}_create", summary=f"Add a {noun}", request=create_in,
                           responses={201: out},
                           examples=[OpenApiExample(noun, request_only=True, value=create_example)]))
    detail = extend_schema_view(
        get=extend_schema(operation_id=f"{plural}_retrieve", summary=f"A {noun}"),
        patch=extend_schema(operation_id=f"{plural}_update", summary=f"Change a {noun}", request=update_in,
                            responses=out, examples=[OpenApiExample("change", request_only=True, value=update_example)]))
    return listing, detail


_models_schema = _upstream_schema(
    "model", s.CatalogModelOut, s.CatalogModelCreateIn, s.CatalogModelUpdateIn,
    {"name": "deepseek-chat", "owned_by": "deepseek", "default_max_tokens": 4096, "max_output_tokens": 8192},
    {"enabled": False})
_providers_schema = _upstream_schema(
    "provider", s.ProviderOut, s.ProviderCreateIn, s.ProviderUpdateIn,
    {"name": "deepseek", "kind": "openai", "base_url": "https://api.deepseek.com/v1"}, {"cooldown_seconds": 60})
_deployments_schema = _upstream_schema(
    "deployment", s.DeploymentOut, s.DeploymentCreateIn, s.DeploymentUpdateIn,
    {"model": "claude-sonnet-4-6", "provider": "anthropic", "upstream_model": "claude-sonnet-4-6", "priority": 1},
    {"weight": 3, "enabled": True})


class _Models:
    serializer_class, create_in, update_in = s.CatalogModelOut, s.CatalogModelCreateIn, s.CatalogModelUpdateIn
    rows = CatalogModel.objects.prefetch_related("aliases")


class _Providers:
    serializer_class, create_in, update_in = s.ProviderOut, s.ProviderCreateIn, s.ProviderUpdateIn
    rows = Provider.objects.all()


class _Deployments:
    serializer_class, create_in, update_in = s.DeploymentOut, s.DeploymentCreateIn, s.DeploymentUpdateIn
    rows = Deployment.objects.select_related("model", "provider")
    lookup = "pk"


@_models_schema[0]
class ModelList(_Models, _UpstreamList):
    pass


@_models_schema[1]
class ModelDetail(_Models, _UpstreamDetail):
    pass


@_providers_schema[0]
class ProviderList(_Providers, _UpstreamList):
    pass


@_providers_schema[1]
class ProviderDetail(_Providers, _UpstreamDetail):
    pass


@_deployments_schema[0]
class DeploymentList(_Deployments, _UpstreamList):
    pass


@_deployments_schema[1]
class DeploymentDetail(_Deployments, _UpstreamDetail):
    @extend_schema(operation_id="deployments_destroy", summary="Stop serving a model from this deployment",
                   responses={204: None})
    def delete(self, request, key):
        gateway.deployment_delete(deployment=self.object(key), actor=self.actor, via=VIA)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PriceList(Api):
    permission_classes = [IsOperator]
    serializer_class = s.PriceOut

    @extend_schema(operation_id="prices_list", summary="A model's prices, newest first")
    def get(self, request, name):
        return self.page(get_object_or_404(CatalogModel, name=name).prices.select_related("model"), s.PriceOut)

    @extend_schema(operation_id="prices_create", summary="Add a price from a time on (prices are never edited)",
                   request=s.PriceIn, responses={201: s.PriceOut},
                   examples=[OpenApiExample("per MTok", request_only=True, value={
                       "input_nano_per_mtok": 3_000_000_000, "output_nano_per_mtok": 15_000_000_000,
                       "cache_write_nano_per_mtok": 3_750_000_000, "cache_read_nano_per_mtok": 300_000_000})])
    def post(self, request, name):
        model = get_object_or_404(CatalogModel, name=name)
        data = self.parse(s.PriceIn)
        data.setdefault("effective_from", timezone.now())
        price = billing.model_price_add(model=model, actor=self.actor, via=VIA, **data)
        return Response(s.PriceOut(price).data, status=status.HTTP_201_CREATED)


class CredentialList(Api):
    permission_classes = [IsOperator]
    serializer_class = s.CredentialOut

    @extend_schema(operation_id="credentials_list", summary="A provider's credentials (last four characters only)")
    def get(self, request, name):
        return self.page(get_object_or_404(Provider, name=name).credentials.all(), s.CredentialOut)

    @extend_schema(operation_id="credentials_create", summary="Add a credential (the key is write-only)",
                   request=s.CredentialCreateIn, responses={201: s.CredentialOut},
                   examples=[OpenApiExample("key", request_only=True,
                                            value={"name": "primary", "secret": "sk-live-0123456789abcdef"})])
    def post(self, request, name):
        provider = get_object_or_404(Provider, name=name)
        data = self.parse(s.CredentialCreateIn)
        secret = data.pop("secret")
        credential = gateway.credential_save(credential=Credential(provider=provider, **data), secret=secret,
                                             actor=self.actor, via=VIA)
        return Response(s.CredentialOut(credential).data, status=status.HTTP_201_CREATED)


class CredentialDetail(Api):
    permission_classes = [IsOperator]
    serializer_class = s.CredentialOut

    @extend_schema(operation_id="credentials_update", summary="Replace a credential's key or change its weight",
                   request=s.CredentialUpdateIn, responses=s.CredentialOut,
                   examples=[OpenApiExample("rotate", request_only=True, value={"secret": "sk-live-fedcba9876543210"})])
    def patch(self, request, name, credential_id):
        credential = get_object_or_404(Credential.objects.select_related("provider"), provider__name=name,
                                       pk=credential_id)
        data = self.parse(s.CredentialUpdateIn)
        secret = data.pop("secret", None)
        for field, value in data.items():
            setattr(credential, field, value)
        credential = gateway.credential_save(credential=credential, secret=secret, actor=self.actor, via=VIA)
        return Response(s.CredentialOut(credential).data)


# --- Alert rules -----------------------------------------------------------------------------------------


class AlertRuleList(Api):
    serializer_class = s.AlertRuleOut

    @extend_schema(operation_id="alert_rules_list", summary="A tenant's alert rules")
    def get(self, request, slug):
        rules = AlertRule.objects.filter(tenant=self.tenant(slug)).select_related("api_key").order_by("id")
        return self.page(rules, s.AlertRuleOut)

    @extend_schema(operation_id="alert_rules_create", summary="Add an alert rule (e-mail and/or a signed webhook)",
                   description="Each rule fires once per period (balance: a UTC day, hourly spend: the hour, key "
                               "budget: the key's budget period, auto-recharge: each failed payment). A webhook's "
                               "signing secret is in this answer only.",
                   request=s.AlertRuleIn, responses={201: s.AlertRuleOut},
                   examples=[OpenApiExample("low balance", request_only=True,
                                            value={"kind": "balance_below", "threshold_nano": 5_000_000_000}),
                             OpenApiExample("budget webhook", request_only=True,
                                            value={"kind": "key_budget", "percent": 80, "notify_email": False,
                                                   "webhook_url": "https://hooks.example.com/gatehouse"})])
    def post(self, request, slug):
        tenant = self.tenant(slug)
        data = self.parse(s.AlertRuleIn)
        key_id = data.pop("api_key", None)
        api_key = get_object_or_404(ApiKey, tenant=tenant, public_id=key_id) if key_id else None

        def make():
            rule, secret = alerts.alert_rule_create(tenant=tenant, api_key=api_key, actor=self.actor, via=VIA, **data)
            return s.AlertRuleOut(rule, context={"webhook_secret": secret}).data

        return self.created(make)


class AlertRuleDetail(Api):
    serializer_class = s.AlertRuleOut

    @extend_schema(operation_id="alert_rules_destroy", summary="Delete an alert rule", responses={204: None})
    def delete(self, request, slug, rule_id):
        rule = get_object_or_404(AlertRule, tenant=self.tenant(slug), pk=rule_id)
        alerts.alert_rule_delete(rule=rule, actor=self.actor, via=VIA)
        return Response(status=status.HTTP_204_NO_CONTENT)
