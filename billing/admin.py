"""Operators' console for usage and the ledger: records to read and filter, never to edit.

The only write is "Reverse selected entries…", which posts correcting entries through ledger_reverse.
Payments are listed with "Reconcile with Stripe", which compares Stripe's record with the ledger's credits.
"""

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from accounts.admin import (
    ReadOnlyAdmin,
    TenantKeyFilter,
    action_form_page,
    bound_action_form,
    error_text,
    has_ledger_permission,
)
from accounts.forms import ReasonForm
from common.money import cents_to_nano, format_usd

from .models import BillingProfile, LedgerEntry, Payment, StripeEvent, UsageEvent, UsageRollup
from .payments import payments_configured, payments_reconcile
from .services import ledger_reverse


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    """Usage rows are append-only billing records."""

    list_display = ("created_at", "request_id", "tenant", "api_key", "model", "stream", "status",
                    "input_tokens", "output_tokens", "cost", "latency_ms")
    list_filter = ("status", "stream", "model", "endpoint", "tenant", TenantKeyFilter)
    search_fields = ("request_id",)
    date_hierarchy = "created_at"
    list_select_related = ("tenant", "api_key")

    @admin.display(description="Cost", ordering="cost_nano")
    def cost(self, event):
        return format_usd(event.cost_nano)


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = ("day", "tenant", "api_key", "model", "requests", "errors", "input_tokens", "output_tokens",
                    "cache_creation_input_tokens", "cache_read_input_tokens", "cost")
    list_filter = ("model", "tenant", TenantKeyFilter)
    date_hierarchy = "day"
    list_select_related = ("tenant", "api_key")

    @admin.display(description="Cost", ordering="cost_nano")
    def cost(self, rollup):
        return format_usd(rollup.cost_nano)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Append-only (database triggers refuse UPDATE and DELETE); corrections are new entries."""

    list_display = ("tenant", "seq", "created_at", "kind", "amount", "balance_after", "reason", "created_by")
    list_filter = ("kind", "tenant")
    list_select_related = ("tenant", "created_by")
    search_fields = ("reason", "tenant__slug")
    date_hierarchy = "created_at"
    actions = ("reverse_entries",)

    @admin.display(description="Amount", ordering="amount_nano")
    def amount(self, entry):
        return format_usd(entry.amount_nano)

    @admin.display(description="Balance after", ordering="balance_after_nano")
    def balance_after(self, entry):
        return format_usd(entry.balance_after_nano)

    def has_reverse_permission(self, request):
        return has_ledger_permission(request)

    @admin.action(description="Reverse selected entries…", permissions=["reverse"])
    def reverse_entries(self, request, queryset):
        form = bound_action_form(request, ReasonForm)
        if not form.is_valid():
            return action_form_page(
                self, request, queryset, form=form, title="Reverse ledger entries", submit_label="Reverse",
                description="Each selected entry gets an opposite entry (a refund for a debit, an adjustment "
                            "otherwise); the entries themselves stay as they are.",
            )
        for entry in queryset.order_by("tenant_id", "seq"):
            try:
                reversal = ledger_reverse(entry=entry, reason=form.cleaned_data["reason"], actor=request.user,
                                          via="admin")
            except ValidationError as exc:
                self.message_user(request, f"{entry}: {error_text(exc)}", messages.ERROR)
                continue
            self.message_user(request, f"Reversed {entry.tenant} #{entry.seq} with #{reversal.seq} "
                                       f"({format_usd(reversal.amount_nano)}).", messages.SUCCESS)
        return None


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "tenant", "kind", "amount", "status", "ledger_entry", "refunded", "disputed",
                    "stripe_payment_intent_id", "failure_message")
    list_filter = ("status", "kind", "tenant")
    search_fields = ("stripe_payment_intent_id", "stripe_checkout_session_id", "tenant__slug")
    date_hierarchy = "created_at"
    list_select_related = ("tenant", "ledger_entry")
    actions = ("reconcile",)

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, payment):
        return format_usd(cents_to_nano(payment.amount_cents))

    @admin.display(description="Refunded")
    def refunded(self, payment):
        return format_usd(cents_to_nano(payment.refunded_cents))

    @admin.display(description="Disputed")
    def disputed(self, payment):
        return format_usd(cents_to_nano(payment.disputed_cents))

    def has_reconcile_permission(self, request):
        return has_ledger_permission(request)

    @admin.action(description="Reconcile with Stripe (since the oldest selected)", permissions=["reconcile"])
    def reconcile(self, request, queryset):
        if not payments_configured():
            self.message_user(request, "Stripe is not configured (STRIPE_SECRET_KEY).", messages.ERROR)
            return
        # A little slack: Stripe stamps its PaymentIntent a moment after our Payment row.
        since = min(queryset.values_list("created_at", flat=True)) - timedelta(minutes=5)
        drift = payments_reconcile(since=since)
        for line in drift:
            self.message_user(request, line, messages.ERROR)
        if not drift:
            self.message_user(request, f"Stripe and the ledger agree on every payment since {since:%Y-%m-%d %H:%M} UTC.",
                              messages.SUCCESS)


@admin.register(BillingProfile)
class BillingProfileAdmin(ReadOnlyAdmin):
    list_display = ("tenant", "stripe_customer_id", "payment_method_id", "auto_recharge_enabled",
                    "auto_recharge_threshold_nano", "auto_recharge_amount_cents", "auto_recharge_max_per_month")
    list_filter = ("auto_recharge_enabled",)
    search_fields = ("tenant__slug", "stripe_customer_id")


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "event_id", "type", "payment", "ledger_entry")
    list_filter = ("type",)
    search_fields = ("event_id",)
