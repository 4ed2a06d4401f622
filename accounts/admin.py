"""Operators' console for tenants, members, keys and the audit log.

Every write goes through accounts.services or billing.services with actor=request.user and via="admin",
so the console writes the same audit rows as the commands and the dashboard. A key's secret is shown
once, in a message right after it is issued or rotated; no page renders a secret or its digest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

# The operator's tenant page composes billing's balance and ledger actions and conversations' deletion:
# the one module of accounts above its layer, an exception listed in pyproject.toml's import contract.
from billing.models import LedgerEntry
from billing.selectors import tenant_available_nano
from billing.services import credit_grant, ledger_adjust
from common.money import format_usd
from conversations.services import tenant_conversations_delete

from .forms import AdjustmentForm, ApiKeySettingsForm, ConfirmForm, CreditForm, ReasonForm, RotateKeyForm, TenantForm
from .models import AdminKey, ApiKey, AuditEntry, Membership, OperatorToken, Tenant
from .services import (
    api_key_issue,
    api_key_revoke,
    api_key_rotate,
    api_key_update,
    credential_revoke,
    membership_remove,
    membership_set,
    operator_token_issue,
    tenant_create,
    tenant_set_status,
    tenant_update,
)
from .views import AdminLoginForm

# The console's login refuses, like the dashboard's, after LOGIN_ATTEMPTS failures (accounts.views.admin_login).
admin.site.login_form = AdminLoginForm

admin.site.site_header = "Gatehouse console"
admin.site.site_title = "Gatehouse console"
admin.site.index_title = "Operations"

# --- Shared by the console's admin modules ---------------------------------------------------------------


def action_form_page(modeladmin: admin.ModelAdmin, request, queryset, *, form: forms.Form, title: str,
                     description: str, submit_label: str) -> TemplateResponse:
    """The intermediate page of an action that needs input (amount, reason, grace period).

    It posts back to the changelist with the same action and selection plus `apply`; the action then
    binds its form to the post and, when valid, does the work.
    """
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "description": description,
        "submit_label": submit_label,
        "form": form,
        "queryset": queryset,
        "opts": opts,
        "action": request.POST.get("action", ""),
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "return_to": request.POST.get("return_to", ""),
        "media": modeladmin.media + form.media,
    }
    return TemplateResponse(request, "admin/gatehouse/action_form.html", context)


def bound_action_form(request, form_class: type[forms.Form]) -> forms.Form:
    """The action's form, bound once the intermediate page was submitted."""
    return form_class(request.POST if "apply" in request.POST else None)


def back_to_page(request) -> HttpResponseRedirect | None:
    """After an action started from an object's page (its buttons send `return_to`), go back there;
    otherwise (None) the admin returns to the list."""
    url = request.POST.get("return_to", "")
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}):
        return HttpResponseRedirect(url)
    return None


def error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def usd_details(details: dict) -> str:
    """An audit entry's details for people: amounts (`*_nano`, alone or as [before, after]) in USD."""
    def shown(key, value):
        if "_nano" in key:
            amounts = value if isinstance(value, list) else [value]
            value = " → ".join("none" if amount is None else format_usd(amount) for amount in amounts)
            key = key.replace("_nano", "")
        return key.replace("_", " "), value

    return "; ".join(f"{key}: {value}" for key, value in (shown(k, v) for k, v in (details or {}).items()))


def _usd_display(field):
    @admin.display(description=field.verbose_name.removesuffix(" nano").replace(" nano ", " "), ordering=field.name)
    def display(obj):
        value = getattr(obj, field.name)
        return "none" if value is None else format_usd(value)
    return display


class ReadOnlyAdmin(admin.ModelAdmin):
    """For append-only records: viewable and filterable, never added, edited or deleted here.

    Amounts show in USD, never as raw nano-USD: each `*_nano` field appears as its `*_usd` display."""

    shown_as: dict[str, str] = {}  # field -> display method shown in its place

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        self.shown_as = dict(self.shown_as)
        for field in model._meta.fields:
            if field.name.endswith("_nano"):
                name = field.name.removesuffix("_nano") + "_usd"
                setattr(self, name, _usd_display(field))
                self.shown_as[field.name] = name

    def get_fields(self, request, obj=None):
        return [self.shown_as.get(name, name) for name in super().get_fields(request, obj)]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TenantKeyFilter(admin.SimpleListFilter):
    """Filter by key, offering only the keys of the tenant chosen in the tenant filter (or of the chosen
    key's tenant): every key of every tenant would be a list nobody can use."""

    title = "API key (choose a tenant first)"
    parameter_name = "api_key__id__exact"

    def lookups(self, request, model_admin):
        tenant_id = request.GET.get("tenant__id__exact", "")
        if not tenant_id.isdigit() and (self.value() or "").isdigit():
            tenant_id = str(ApiKey.objects.filter(pk=self.value()).values_list("tenant_id", flat=True).first() or "")
        if not tenant_id.isdigit():
            return ()
        return [(str(key.pk), f"{key.name or '(unnamed)'} · {key.display}")
                for key in ApiKey.objects.filter(tenant_id=tenant_id).order_by("name", "pk")]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(api_key_id=int(value)) if value.isdigit() else queryset.none()


def has_ledger_permission(request) -> bool:
    return request.user.has_perm("billing.add_ledgerentry")


# --- Tenants and members ---------------------------------------------------------------------------------


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ("user", "role")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # A row is one person's membership: moving it to another user would be a removal plus an
            # addition, which the operator should see as such.
            self.fields["user"].disabled = True


class MembershipFormSet(BaseInlineFormSet):
    def clean(self):
        # The services' rule, checked on the whole inline so the operator gets a form error, not a 500
        # halfway through saving the rows.
        super().clean()
        if any(self.errors):
            return
        had_owner = any(form.initial.get("role") == Membership.Role.OWNER for form in self.initial_forms)
        owners = [form for form in self.forms
                  if form.cleaned_data.get("role") == Membership.Role.OWNER
                  and not (self.can_delete and self._should_delete_form(form))]
        if had_owner and not owners:
            raise ValidationError("A tenant must keep at least one owner.")


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipForm
    formset = MembershipFormSet
    extra = 0
    raw_id_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = ("slug", "name", "status", "balance", "credit_limit", "created_at")
    list_filter = ("status",)
    search_fields = ("slug", "name", "memberships__user__email")
    search_help_text = "Slug, name or a member's e-mail."
    ordering = ("slug",)
    inlines = [MembershipInline]
    actions = ("suspend", "resume", "grant_credit", "post_adjustment", "delete_conversations")

    def get_queryset(self, request):
        # tenant_balance_nano as a column: one query per page rather than one per row.
        last_balance = (LedgerEntry.objects.filter(tenant=OuterRef("pk")).order_by("-seq")
                        .values("balance_after_nano")[:1])
        return super().get_queryset(request).annotate(balance_nano=Coalesce(Subquery(last_balance), 0))

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("slug", "name", "credit_limit_usd", "store_conversations", "conversation_retention_days",
                    "log_requests")
        limit = "credit_limit_usd" if self.has_change_permission(request, obj) else "credit_limit"
        return ("slug", "name", "status", limit, "balance", "available", "records", "store_conversations",
                "conversation_retention_days", "log_requests", "created_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("slug", "status", "balance", "available", "records", "created_at")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        tenant = self.get_object(request, object_id)
        actions = [("grant_credit", "Grant credit…"), ("post_adjustment", "Adjust balance…")] \
            if has_ledger_permission(request) else []
        if tenant is not None:
            actions.append(("suspend", "Suspend…") if tenant.status == Tenant.Status.ACTIVE else ("resume", "Resume…"))
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "tenant_actions": actions})

    @admin.display(description="Records")
    def records(self, tenant):
        pages = (("Keys", "accounts_apikey"), ("Usage", "billing_usageevent"), ("Daily usage", "billing_usagerollup"),
                 ("Ledger", "billing_ledgerentry"), ("Audit log", "accounts_auditentry"),
                 ("Conversations", "conversations_conversation"))
        return format_html_join(" · ", '<a href="{}?tenant__id__exact={}">{}</a>',
                                ((reverse(f"admin:{name}_changelist"), tenant.pk, label) for label, name in pages))

    def has_delete_permission(self, request, obj=None):
        return False  # keys, usage and the ledger reference tenants; suspend instead

    @admin.display(description="Balance", ordering="balance_nano")
    def balance(self, tenant):
        return format_usd(tenant.balance_nano)

    @admin.display(description="Available")
    def available(self, tenant):
        return f"{format_usd(tenant_available_nano(tenant.pk))} (balance less usage not yet debited)"

    @admin.display(description="Credit limit", ordering="credit_limit_nano")
    def credit_limit(self, tenant):
        return "none (invoiced)" if tenant.credit_limit_nano is None else format_usd(tenant.credit_limit_nano)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            tenant_update(tenant=obj, actor=request.user, via="admin", name=data["name"],
                          credit_limit_nano=data["credit_limit_usd"], store_conversations=data["store_conversations"],
                          conversation_retention_days=data["conversation_retention_days"],
                          log_requests=data["log_requests"])
            return
        tenant = tenant_create(slug=data["slug"], name=data["name"], credit_limit_nano=data["credit_limit_usd"],
                               store_conversations=data["store_conversations"],
                               conversation_retention_days=data["conversation_retention_days"],
                               log_requests=data["log_requests"], actor=request.user, via="admin")
        obj.__dict__.update(tenant.__dict__)  # the admin goes on with `obj` (inlines, log, redirect)

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)  # sorts the rows into new, changed and deleted; the services write
        tenant = form.instance
        upserts = formset.new_objects + [membership for membership, _ in formset.changed_objects]
        # Owners first: the services refuse to demote or remove the last owner, so a handover has to
        # add the new owner before the old one steps down.
        for membership in sorted(upserts, key=lambda m: m.role != Membership.Role.OWNER):
            membership_set(tenant=tenant, user=membership.user, role=membership.role, actor=request.user,
                           via="admin")
        for membership in formset.deleted_objects:
            # As stored: the row's form may have changed the role in memory too.
            membership_remove(membership=Membership.objects.get(pk=membership.pk), actor=request.user, via="admin")

    @admin.action(description="Suspend selected tenants… (their keys stop working within seconds)",
                  permissions=["change"])
    def suspend(self, request, queryset):
        return self._set_status(request, queryset, Tenant.Status.SUSPENDED, "Suspend", "Suspended",
                                "Every key of the selected tenants, and their Playground, stop working within "
                                "seconds (403 account_suspended), until resumed.")

    @admin.action(description="Resume selected tenants…", permissions=["change"])
    def resume(self, request, queryset):
        return self._set_status(request, queryset, Tenant.Status.ACTIVE, "Resume", "Resumed",
                                "The selected tenants' keys work again within seconds.")

    def _set_status(self, request, queryset, status, verb, done, description):
        form = bound_action_form(request, ReasonForm)
        if not form.is_valid():
            form.fields["reason"].help_text = "Recorded in the audit log."
            return action_form_page(self, request, queryset, form=form, title=f"{verb} tenants",
                                    description=description, submit_label=verb)
        tenants = list(queryset.exclude(status=status))
        for tenant in tenants:
            tenant_set_status(tenant=tenant, status=status, reason=form.cleaned_data["reason"], actor=request.user,
                              via="admin")
        self.message_user(request, f"{done} {len(tenants)} tenant(s).", messages.SUCCESS)
        return back_to_page(request)

    def has_ledger_permission(self, request):
        return has_ledger_permission(request)

    @admin.action(description="Delete stored conversations…", permissions=["change"])
    def delete_conversations(self, request, queryset):
        form = bound_action_form(request, ConfirmForm)
        if not form.is_valid():
            return action_form_page(self, request, queryset, form=form, title="Delete stored conversations",
                                    submit_label="Delete", description="Every stored conversation and message of "
                                    "the selected tenants is deleted for good. Usage and billing records stay.")
        for tenant in queryset:
            deleted = tenant_conversations_delete(tenant=tenant, actor=request.user, via="admin")
            self.message_user(request, f"Deleted {deleted} conversation(s) of {tenant}.", messages.SUCCESS)
        return None

    @admin.action(description="Grant credit…", permissions=["ledger"])
    def grant_credit(self, request, queryset):
        return self._post_to_ledger(
            request, queryset, CreditForm, credit_grant, title="Grant credit",
            description="Each selected tenant gets a ledger credit of this amount.", verb="Granted",
        )

    @admin.action(description="Post adjustment…", permissions=["ledger"])
    def post_adjustment(self, request, queryset):
        return self._post_to_ledger(
            request, queryset, AdjustmentForm, ledger_adjust, title="Post a ledger adjustment",
            description="A correction on each selected tenant's ledger: positive adds, negative takes away.",
            verb="Adjusted by",
        )

    def _post_to_ledger(self, request, queryset, form_class, service: Callable, *, title, description, verb):
        form = bound_action_form(request, form_class)
        if not form.is_valid():
            return action_form_page(self, request, queryset, form=form, title=title, description=description,
                                    submit_label=title)
        amount, reason = form.cleaned_data["amount"], form.cleaned_data["reason"]
        for tenant in queryset:
            try:
                entry = service(tenant=tenant, amount_nano=amount, reason=reason, actor=request.user, via="admin")
            except ValidationError as exc:
                self.message_user(request, f"{tenant}: {error_text(exc)}", messages.ERROR)
                continue
            self.message_user(request, f"{verb} {format_usd(amount)} for {tenant}: ledger entry #{entry.seq}, "
                                       f"balance {format_usd(entry.balance_after_nano)}.", messages.SUCCESS)
        return back_to_page(request)


# --- API keys --------------------------------------------------------------------------------------------


class ApiKeyAdminForm(ApiKeySettingsForm):
    def clean_tenant(self):
        tenant = self.cleaned_data["tenant"]
        if tenant.status != Tenant.Status.ACTIVE:
            raise ValidationError(f"Tenant {tenant.slug} is {tenant.status}; no keys can be issued.")
        return tenant


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now, revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


SETTINGS_FIELDS = ("name", "models", "rpm_limit", "tpm_limit", "budget_usd", "budget_period", "expires_at")
# The same settings on a read-only page (a revoked key), where the form's USD and text fields are absent.
SETTINGS_SHOWN = ("name", "allowed_models", "rpm_limit", "tpm_limit", "budget", "budget_period", "expires_at")
KEY_INFO_FIELDS = ("display", "tenant", "status", "created_by", "created_at", "last_used_at", "revoked_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Issue (the plaintext is shown once), edit limits, rotate and revoke. Never shows a secret again."""

    form = ApiKeyAdminForm
    list_display = ("display", "name", "tenant", "created_at", "last_used_at", "expires_at", "limits", "status")
    list_filter = (KeyStatusFilter, "tenant")
    list_select_related = ("tenant",)
    search_fields = ("public_id", "name", "tenant__slug", "created_by__email")
    search_help_text = "Public id, name, tenant slug or the creator's e-mail."
    ordering = ("-created_at",)
    actions = ("revoke", "rotate")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", *SETTINGS_FIELDS)
        if not self.has_change_permission(request, obj):
            return (*KEY_INFO_FIELDS, *SETTINGS_SHOWN)
        return (*KEY_INFO_FIELDS, *SETTINGS_FIELDS)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else KEY_INFO_FIELDS

    def has_change_permission(self, request, obj=None):
        # A revoked key is only history: its page is read-only.
        return super().has_change_permission(request, obj) and not (obj is not None and obj.is_revoked)

    def has_delete_permission(self, request, obj=None):
        return False  # usage rows reference keys; revoke instead

    @admin.display(description="Status")
    def status(self, api_key):
        if api_key.is_revoked:
            return "revoked"
        if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
            return "expired"
        if api_key.tenant.status != Tenant.Status.ACTIVE:
            return f"tenant {api_key.tenant.status}"
        return "active"

    @admin.display(description="Budget")
    def budget(self, api_key):
        return "none" if api_key.budget_nano is None else format_usd(api_key.budget_nano)

    @admin.display(description="Limits")
    def limits(self, api_key):
        parts = [f"{api_key.rpm_limit} rpm" if api_key.rpm_limit else "",
                 f"{api_key.tpm_limit} tpm" if api_key.tpm_limit else "",
                 f"{format_usd(api_key.budget_nano)}/{api_key.budget_period}" if api_key.budget_nano else "",
                 ", ".join(api_key.allowed_models)]
        return " · ".join(part for part in parts if part) or "none"

    def save_model(self, request, obj, form, change):
        if change:
            api_key_update(api_key=obj, actor=request.user, via="admin", **form.key_settings())
            return
        issued = api_key_issue(tenant=form.cleaned_data["tenant"], created_by=request.user, via="admin",
                               **form.key_settings())
        obj.__dict__.update(issued.api_key.__dict__)  # the admin goes on with `obj` (log, redirect)
        self._show_plaintext_once(request, issued, "Issued")

    def _show_plaintext_once(self, request, issued, verb):
        self.message_user(
            request, f"{verb} {issued.api_key.display}. Copy the key now; it will not be shown again: "
                     f"{issued.plaintext}", messages.WARNING,
        )

    @admin.action(description="Revoke selected keys (one-way)", permissions=["change"])
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for api_key in keys:
            api_key_revoke(api_key=api_key, actor=request.user, via="admin")
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)

    @admin.action(description="Rotate…", permissions=["change"])
    def rotate(self, request, queryset):
        form = bound_action_form(request, RotateKeyForm)
        if not form.is_valid():
            return action_form_page(
                self, request, queryset, form=form, title="Rotate keys", submit_label="Rotate",
                description="Each selected key gets a new secret, shown once on the next page. Its limits, "
                            "budget and usage stay. The old secret keeps working for the grace period.",
            )
        grace = timedelta(hours=form.cleaned_data["grace_hours"])
        for api_key in queryset:
            try:
                issued = api_key_rotate(api_key=api_key, grace=grace, actor=request.user, via="admin")
            except ValidationError as exc:
                self.message_user(request, f"{api_key}: {error_text(exc)}", messages.ERROR)
                continue
            self._show_plaintext_once(request, issued, "Rotated")
        return None


# --- Management API credentials ---------------------------------------------------------------------------

CREDENTIAL_INFO_FIELDS = ("display", "created_at", "last_used_at", "revoked_at")


class ManagementCredentialAdmin(admin.ModelAdmin):
    """Revoke (one-way); never shows a secret or its digest."""

    search_fields = ("public_id", "name")
    ordering = ("-created_at",)
    actions = ("revoke",)

    def has_delete_permission(self, request, obj=None):
        return False  # audit entries name it; revoke instead

    @admin.display(description="Status")
    def status(self, credential):
        return "revoked" if credential.is_revoked else "active"

    @admin.action(description="Revoke selected (one-way)", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = list(queryset.filter(revoked_at__isnull=True))
        for credential in revoked:
            credential_revoke(credential=credential, actor=request.user, via="admin")
        self.message_user(request, f"Revoked {len(revoked)}.", messages.SUCCESS)


@admin.register(OperatorToken)
class OperatorTokenAdmin(ManagementCredentialAdmin):
    """Issue (the plaintext is shown once) and revoke operator tokens of the management API."""

    list_display = ("display", "name", "read_only", "user", "created_at", "last_used_at", "status")
    list_filter = ("read_only",)

    def get_fields(self, request, obj=None):
        return ("name", "read_only", "user") if obj is None else (*CREDENTIAL_INFO_FIELDS, "name", "read_only", "user")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            return  # every field is read-only once issued
        issued = operator_token_issue(name=obj.name, read_only=obj.read_only, user=obj.user, actor=request.user,
                                      via="admin")
        obj.__dict__.update(issued.credential.__dict__)
        self.message_user(request, f"Issued {issued.credential.display}. Copy the token now; it will not be shown "
                                   f"again: {issued.plaintext}", messages.WARNING)


@admin.register(AdminKey)
class AdminKeyAdmin(ManagementCredentialAdmin):
    """Tenant admin keys are created by the tenant's owners and admins in the dashboard; here they are listed
    and can be revoked."""

    list_display = ("display", "name", "tenant", "created_by", "created_at", "last_used_at", "status")
    list_filter = ("tenant",)
    list_select_related = ("tenant", "created_by")
    fields = (*CREDENTIAL_INFO_FIELDS, "name", "tenant", "created_by")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False


# --- Audit log -------------------------------------------------------------------------------------------


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "action", "via", "actor", "tenant", "api_key", "details_shown")
    list_filter = ("action", "via", "tenant")
    list_select_related = ("actor", "tenant", "api_key")
    search_fields = ("action", "tenant__slug", "actor__username", "actor__email", "api_key__public_id")
    search_help_text = "Action, tenant slug, the actor's user name or e-mail, or a key's public id."
    date_hierarchy = "created_at"
    shown_as = {"details": "details_shown"}

    @admin.display(description="Details")
    def details_shown(self, entry):
        return usd_details(entry.details)
