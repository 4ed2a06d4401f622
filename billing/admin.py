"""Operators' console for usage and the ledger: records to read and filter, never to edit.

The only write is "Reverse selected entries…", which posts correcting entries through ledger_reverse.
Payments are listed with "Reconcile with Stripe", which compares Stripe's record with the ledger's credits.
"""

from datetime import UTC, datetime, time, timedelta

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.utils import timezone
from django.utils.functional import cached_property

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
from common.partitions import is_partitioned, month_add, month_floor, partitions

from .models import BillingProfile, LedgerEntry, ModelPrice, Payment, StripeEvent, UsageEvent, UsageRollup
from .payments import payments_configured, payments_reconcile
from .services import ledger_reverse


# The gateway's endpoints as its operations record them (gateway/api/): offered as filter choices without a
# DISTINCT over the table; a value not listed still filters when given in the URL.
USAGE_ENDPOINTS = ("chat.completions", "responses", "messages", "gemini.generateContent",
                   "gemini.streamGenerateContent", "embeddings", "rerank")
COUNT_CAP = 10_000  # rows counted at most for the pages: 100 pages of 100, a few ms of index or heap reads


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows (`SELECT count(*) FROM (... LIMIT 10001)`): the full count of the
    usage table read every row of every month (9.5-18 s at 6 million rows). Past the cap the list says
    "more than 10,000" and offers its first 100 pages; filters narrow it."""

    @cached_property
    def count(self) -> int:
        counted = self.object_list.order_by()[:COUNT_CAP + 1].count()  # any COUNT_CAP + 1 rows: no order
        self.capped = counted > COUNT_CAP
        return min(counted, COUNT_CAP)

    capped = False


class ChoicesFilter(admin.SimpleListFilter):
    """Filter on a field by exact value, with fixed choices: Django's default for a plain field lists
    `SELECT DISTINCT` over the whole table."""

    field = ""

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(**{self.field: value})


class UsageModelFilter(ChoicesFilter):
    title = "model"
    parameter_name = field = "model"

    def lookups(self, request, model_admin):
        # The catalog (a few rows), reached through the price's relation: billing does not import the gateway.
        catalog = ModelPrice._meta.get_field("model").related_model
        return [(name, name) for name in catalog.objects.order_by("name").values_list("name", flat=True)]


class UsageEndpointFilter(ChoicesFilter):
    title = "endpoint"
    parameter_name = field = "endpoint"

    def lookups(self, request, model_admin):
        return [(name, name) for name in USAGE_ENDPOINTS]


class UsagePeriodFilter(admin.SimpleListFilter):
    """Rows by period of created_at, the partition key: a month or a recent window reads only its
    partitions. Replaces the date hierarchy, whose year and month links were a DISTINCT over every row.
    The months offered are the partitions' (PostgreSQL) or the last twelve (SQLite); `period=YYYY-MM-DD`
    selects a day."""

    title = "period"
    parameter_name = "period"
    WINDOWS = {"24h": ("Last 24 hours", timedelta(hours=24)), "7d": ("Last 7 days", timedelta(days=7)),
               "30d": ("Last 30 days", timedelta(days=30))}

    def lookups(self, request, model_admin):
        this_month = month_floor(timezone.now())
        months = [month_add(this_month, -i) for i in range(12)]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                if is_partitioned(cursor, UsageEvent._meta.db_table):
                    months = [p.month for p in reversed(partitions(cursor, UsageEvent._meta.db_table))
                              if p.month is not None and p.month <= this_month]
        return [(key, label) for key, (label, _) in self.WINDOWS.items()] + [
            (f"{month:%Y-%m}", f"{month:%B %Y}") for month in months]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if value in self.WINDOWS:
            return queryset.filter(created_at__gte=timezone.now() - self.WINDOWS[value][1])
        try:
            if len(value) == 7:
                start = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
                end = datetime.combine(month_add(start.date(), 1), time(), tzinfo=UTC)
            else:
                start = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
                end = start + timedelta(days=1)
        except ValueError:
            return queryset.none()
        return queryset.filter(created_at__gte=start, created_at__lt=end)


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    """Usage rows are append-only billing records, tens of millions of them: nothing on this page reads the
    whole table (docs/performance.md, "Months of data"). No full count (CappedCountPaginator), fixed filter
    choices, a period filter on the partition key, newest first by the created_at index and only that
    order (a sort by cost would sort every row), and search by exact request id (its unique index)."""

    list_display = ("created_at", "request_id", "tenant", "api_key", "model", "stream", "status",
                    "input_tokens", "output_tokens", "cost", "latency_ms")
    list_filter = (UsagePeriodFilter, "status", "stream", UsageModelFilter, UsageEndpointFilter, "tenant",
                   TenantKeyFilter)
    search_fields = ("request_id",)
    search_help_text = "An exact request id (req_…)."
    list_select_related = ("tenant", "api_key")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    paginator = CappedCountPaginator
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        # Exact: Django's search is `UPPER(request_id) LIKE UPPER('%term%')`, which no index serves.
        term = search_term.strip()
        return (queryset.filter(request_id=term) if term else queryset), False

    @admin.display(description="Cost")
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
