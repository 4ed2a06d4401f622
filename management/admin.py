"""The operator's tenant page: accounts' Tenant admin composed with billing's balance, credit and
adjustment actions and conversations' deletion.

It lives here, above the domain apps, because it composes three of them (accounts may not import
billing or conversations: pyproject.toml's import contract). The helpers it shares with the other
console pages stay in accounts.admin.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html_join

from accounts.admin import (
    MembershipInline,
    action_form_page,
    back_to_page,
    bound_action_form,
    error_text,
    has_ledger_permission,
)
from accounts.forms import AdjustmentForm, ConfirmForm, CreditForm, ReasonForm, TenantForm
from accounts.models import Membership, Tenant
from accounts.services import membership_remove, membership_set, tenant_create, tenant_set_status, tenant_update
from billing.models import LedgerEntry
from billing.selectors import tenant_available_nano
from billing.services import credit_grant, ledger_adjust
from common.money import format_usd
from conversations.services import tenant_conversations_delete


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
                    "log_requests", "auto_cache_control")
        limit = "credit_limit_usd" if self.has_change_permission(request, obj) else "credit_limit"
        return ("slug", "name", "status", limit, "balance", "available", "records", "store_conversations",
                "conversation_retention_days", "log_requests", "auto_cache_control", "created_at")

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
                          log_requests=data["log_requests"], auto_cache_control=data["auto_cache_control"])
            return
        tenant = tenant_create(slug=data["slug"], name=data["name"], credit_limit_nano=data["credit_limit_usd"],
                               store_conversations=data["store_conversations"],
                               conversation_retention_days=data["conversation_retention_days"],
                               log_requests=data["log_requests"], auto_cache_control=data["auto_cache_control"],
                               actor=request.user, via="admin")
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
