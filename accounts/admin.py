"""Operators' console for members, keys and the audit log, and the helpers every console page shares
(the tenant page, which composes billing and conversations, is management.admin).

Every write goes through accounts.services or billing.services with actor=request.user and via="admin",
so the console writes the same audit rows as the commands and the dashboard. A key's secret is shown
once, in a message right after it is issued or rotated; no page renders a secret or its digest.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from common.money import format_usd

from .forms import ApiKeySettingsForm, RotateKeyForm
from .models import AdminKey, ApiKey, AuditEntry, Membership, OperatorToken, Tenant
from .services import (
    api_key_issue,
    api_key_revoke,
    api_key_rotate,
    api_key_update,
    credential_revoke,
    operator_token_issue,
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


SETTINGS_FIELDS = ("name", "models", "rpm_limit", "tpm_limit", "budget_usd", "budget_period", "end_user_rpm_limit",
                   "end_user_budget_usd", "expires_at", "auto_cache_control")
# The same settings on a read-only page (a revoked key), where the form's USD and text fields are absent.
SETTINGS_SHOWN = ("name", "allowed_models", "rpm_limit", "tpm_limit", "budget", "budget_period", "end_user_rpm_limit",
                  "end_user_budget", "expires_at", "auto_cache_control")
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

    @admin.display(description="Budget per end user")
    def end_user_budget(self, api_key):
        return "none" if api_key.end_user_budget_nano is None else format_usd(api_key.end_user_budget_nano)

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
