import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from common.money import format_usd


class ModelPrice(models.Model):
    """Prices of a catalog model per million tokens, in nano-USD, from `effective_from` on.

    Versioned, never edited once in force: a new price is a new row, so usage keeps the price it was
    charged at (each UsageEvent points at its price and stores its cost).
    """

    model = models.ForeignKey("gateway.CatalogModel", on_delete=models.PROTECT, related_name="prices")
    effective_from = models.DateTimeField()
    input_nano_per_mtok = models.BigIntegerField(validators=[MinValueValidator(0)])
    output_nano_per_mtok = models.BigIntegerField(validators=[MinValueValidator(0)])
    cache_write_nano_per_mtok = models.BigIntegerField(validators=[MinValueValidator(0)])
    cache_read_nano_per_mtok = models.BigIntegerField(validators=[MinValueValidator(0)])
    # Anthropic bills its web search server tool per search, on top of tokens ($10 per 1,000 searches).
    web_search_nano = models.BigIntegerField(default=0, validators=[MinValueValidator(0)],
                                             help_text="nano-USD per web search.")
    # Both vendors bill batch work at half price; what comes off the token cost of a batch item.
    batch_discount_bp = models.PositiveIntegerField(
        default=5000, validators=[MaxValueValidator(10_000)],
        help_text="Discount on batch items' token cost, in basis points (5000 = 50 %).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="price_unique_model_effective_from"),
            models.CheckConstraint(
                condition=Q(input_nano_per_mtok__gte=0, output_nano_per_mtok__gte=0,
                            cache_write_nano_per_mtok__gte=0, cache_read_nano_per_mtok__gte=0,
                            web_search_nano__gte=0, batch_discount_bp__lte=10_000),
                name="price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d %H:%M}"


class LedgerEntry(models.Model):
    """One movement of a tenant's money. Append-only; corrections are new entries.

    Entries of a tenant form a chain: `seq` counts 1, 2, 3 ... and `balance_after_nano` is the previous
    entry's balance plus `amount_nano`, so a tenant's balance is its last entry's `balance_after_nano`
    and always equals the sum of its entries. Database triggers (migration 0003) refuse an entry that
    breaks the chain and any UPDATE or DELETE, on PostgreSQL and SQLite alike.
    """

    class Kind(models.TextChoices):
        CREDIT = "credit"  # granted by an operator (or bought)
        DEBIT = "debit"  # usage, posted by the rollup task
        ADJUSTMENT = "adjustment"  # an operator's correction, either sign
        REFUND = "refund"  # money given back for a debit

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="ledger_entries")
    seq = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount_nano = models.BigIntegerField()
    balance_after_nano = models.BigIntegerField()
    reason = models.CharField(max_length=500)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # One-to-one: an entry can be reversed once (a mistaken reversal is itself reversed).
    reverses = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="reversed_by")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["tenant", "-seq"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "seq"], name="ledger_unique_tenant_seq"),
            models.CheckConstraint(
                condition=(Q(kind="credit", amount_nano__gt=0) | Q(kind="refund", amount_nano__gt=0)
                           | Q(kind="debit", amount_nano__lt=0) | Q(kind="adjustment") & ~Q(amount_nano=0)),
                name="ledger_amount_sign_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} #{self.seq} {self.kind} {format_usd(self.amount_nano)}"


class UsageEvent(models.Model):
    """One row per request that reached the upstream, with tokens exactly as the upstream reported them.

    Append-only; `request_id` is unique, so recording the same request twice cannot bill it twice.
    `cost_nano` is fixed at write time from `price`, the price in force then. The rollup task sets
    `rolled_up_at` and `ledger_entry` (the debit that billed it) once, in the transaction that counts it.

    On PostgreSQL the table is partitioned by month of `created_at` (migration 0010), where the database
    holds one row per request id with UNIQUE (request_id, created_at) and a claim table instead of a
    unique `request_id` (the migration says why); reads by time range look into their months only.
    """

    class Status(models.TextChoices):
        OK = "ok"
        PARTIAL = "partial"  # stream cut by the client: input plus output generated so far
        ERROR = "error"

    request_id = models.CharField(max_length=40, unique=True)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="usage_events")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.PROTECT, related_name="usage_events")
    endpoint = models.CharField(max_length=40)
    requested_model = models.CharField(max_length=128)
    model = models.CharField(max_length=128, help_text="Catalog model that served the request.")
    upstream_model = models.CharField(max_length=128, help_text="The deployment's model id that answered.")
    provider = models.CharField(max_length=64, blank=True, help_text="The provider that answered.")
    stream = models.BooleanField()
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_input_tokens = models.PositiveBigIntegerField(default=0)
    web_search_requests = models.PositiveIntegerField(default=0)
    cost_nano = models.BigIntegerField(default=0, validators=[MinValueValidator(0)])
    price = models.ForeignKey(ModelPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices)
    http_status = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField()
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token (streams).")
    created_at = models.DateTimeField(db_index=True)
    # The client's own ids (AH-Trace-Id, AH-Thread-Id, X-Request-Id headers), to find its requests by.
    trace_id = models.CharField(max_length=128, blank=True)
    thread_id = models.CharField(max_length=128, blank=True)
    client_request_id = models.CharField(max_length=128, blank=True)
    batch_id = models.CharField(max_length=40, blank=True, help_text="The batch this request was an item of.")
    # Attribution: the client's end user (OpenAI user / safety_identifier, Anthropic metadata.user_id) and
    # tags (AH-Tags, Gemini labels; comma-joined, no tag holds a comma), rolled up in AttributionRollup.
    end_user = models.CharField(max_length=256, blank=True)
    tags = models.TextField(blank=True)
    rolled_up_at = models.DateTimeField(null=True, blank=True)
    ledger_entry = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="usage_events")

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["api_key", "created_at"]),
            models.Index(fields=["tenant"], condition=Q(rolled_up_at__isnull=True), name="usage_not_rolled_up"),
            models.Index(fields=["tenant", "trace_id"], condition=~Q(trace_id=""), name="usage_by_trace"),
            models.Index(fields=["tenant", "thread_id"], condition=~Q(thread_id=""), name="usage_by_thread"),
            models.Index(fields=["batch_id"], condition=~Q(batch_id=""), name="usage_by_batch"),
            # A key's per-end-user budget counter is seeded from this (gateway/admission.py).
            models.Index(fields=["api_key", "end_user", "created_at"], condition=~Q(end_user=""),
                         name="usage_by_key_end_user"),
        ]
        constraints = [models.CheckConstraint(condition=Q(cost_nano__gte=0), name="usage_cost_not_negative")]

    def __str__(self) -> str:
        return self.request_id


class UsageSums(models.Model):
    """What rollups add up from UsageEvents: requests (failed ones among them), tokens and cost."""

    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_input_tokens = models.PositiveBigIntegerField(default=0)
    web_search_requests = models.PositiveBigIntegerField(default=0)
    cost_nano = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class UsageRollup(UsageSums):
    """Usage per key, model and UTC day, summed from UsageEvents by the rollup task."""

    day = models.DateField()
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=128)

    class Meta:
        ordering = ["-day", "tenant", "model"]
        constraints = [
            models.UniqueConstraint(fields=["day", "api_key", "model"], name="rollup_unique_day_key_model"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.api_key_id} {self.model}"


class AttributionRollup(UsageSums):
    """Usage per key, model and UTC day, and per end user or per tag (`dimension`), summed from UsageEvents by
    the rollup task in the transaction that fills UsageRollup. `value` "" counts the requests without an end
    user (or without tags). A request with several tags adds to each tag's row, so a tag's figures are exact
    and the tags of a day together may count a request more than once."""

    class Dimension(models.TextChoices):
        END_USER = "end_user"
        TAG = "tag"

    day = models.DateField()
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=128)
    dimension = models.CharField(max_length=8, choices=Dimension.choices)
    value = models.CharField(max_length=256, blank=True)

    class Meta:
        ordering = ["-day", "tenant", "dimension", "value"]
        constraints = [
            models.UniqueConstraint(fields=["dimension", "day", "api_key", "model", "value"],
                                    name="attribution_unique_dimension_day_key_model_value"),
        ]
        indexes = [models.Index(fields=["tenant", "dimension", "day"], name="attribution_by_tenant_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.api_key_id} {self.model} {self.dimension}={self.value!r}"


class UsageBucket(UsageSums):
    """Usage per UTC minute, hour and day, per key, model and endpoint: what the admin usage and cost APIs
    (gateway/api/admin_usage.py) read, so that a 30-day report sums at most a few thousand rows whatever the
    traffic. Filled by the rollup task in the transaction that rolls the events up, as UsageRollup is."""

    class Width(models.TextChoices):
        MINUTE = "1m"
        HOUR = "1h"
        DAY = "1d"

    width = models.CharField(max_length=2, choices=Width.choices)
    start = models.DateTimeField(help_text="The bucket's first instant (UTC); it lasts one `width`.")
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=128)
    endpoint = models.CharField(max_length=40)

    class Meta:
        ordering = ["width", "-start"]
        constraints = [
            models.UniqueConstraint(fields=["width", "start", "api_key", "model", "endpoint"],
                                    name="bucket_unique_width_start_key_model_endpoint"),
        ]
        indexes = [models.Index(fields=["tenant", "width", "start"], name="bucket_by_tenant_width_start")]

    def __str__(self) -> str:
        return f"{self.width} {self.start:%Y-%m-%d %H:%M} {self.api_key_id} {self.model} {self.endpoint}"


class BillingProfile(models.Model):
    """A tenant's Stripe side: its Customer, the card saved by its last top-up, and auto-recharge.

    `recharge_claimed_at` is the one-at-a-time lock of auto-recharge: set by a conditional UPDATE
    (only where it is empty or stale), so of many workers noticing the low balance together exactly one
    charges the card (billing/payments.py auto_recharge_run).
    """

    tenant = models.OneToOneField("accounts.Tenant", on_delete=models.CASCADE, related_name="billing_profile")
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    payment_method_id = models.CharField(max_length=255, blank=True, help_text="Saved off-session by a top-up.")
    auto_recharge_enabled = models.BooleanField(default=False)
    auto_recharge_threshold_nano = models.BigIntegerField(
        default=0, validators=[MinValueValidator(0)], help_text="Recharge when the available balance falls below this.")
    auto_recharge_amount_cents = models.PositiveIntegerField(default=0)
    auto_recharge_max_per_month = models.PositiveSmallIntegerField(default=3)
    recharge_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Stripe's Idempotency-Key for creating the Customer: unique across databases sharing a Stripe account.
    idempotency_key = models.UUIDField(default=uuid.uuid4, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.tenant} billing"


class Payment(models.Model):
    """One payment through Stripe: a Checkout top-up or an off-session auto-recharge.

    `ledger_entry` is the credit it bought, set once (under a row lock) by whichever webhook or API
    answer proves the payment first, so a payment is credited exactly once. Refunds and disputes are
    negative adjustments in the ledger; `refunded_cents` and `disputed_cents` are Stripe's running totals.
    """

    class Kind(models.TextChoices):
        CHECKOUT = "checkout"
        AUTO_RECHARGE = "auto_recharge"

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="payments")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    amount_cents = models.PositiveBigIntegerField(validators=[MinValueValidator(1)])
    currency = models.CharField(max_length=3, default="usd")
    stripe_checkout_session_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    ledger_entry = models.OneToOneField(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="payment")
    refunded_cents = models.PositiveBigIntegerField(default=0)
    disputed_cents = models.PositiveBigIntegerField(default=0)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # Stripe's Idempotency-Key for the charge or session: a retried call never pays twice, and ids reused by
    # another database on the same Stripe account (staging, a restored backup) never replay our answer.
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "kind", "created_at"])]

    def __str__(self) -> str:
        return f"{self.tenant} {self.kind} {self.amount_cents / 100:.2f} {self.status}"


class StripeEvent(models.Model):
    """A webhook event processed: its unique id makes a replayed or duplicated delivery a no-op."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=64)
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    ledger_entry = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class Statement(models.Model):
    """A tenant's monthly statement, generated once after the month ends (billing/statements.py).

    Figures are the ledger's, to the nano-USD: `closing_nano` = `opening_nano` + the month's entries, and the
    usage lines sum to its debits. The PDF and CSV are stored as generated, so a download is always the
    document first issued.
    """

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="statements")
    month = models.DateField(help_text="The first day of the month (UTC).")
    opening_nano = models.BigIntegerField()
    closing_nano = models.BigIntegerField()
    credits_nano = models.BigIntegerField()
    usage_nano = models.BigIntegerField(help_text="The month's debits (negative).")
    refunds_nano = models.BigIntegerField()
    adjustments_nano = models.BigIntegerField()
    pdf = models.BinaryField()
    csv = models.TextField()
    generated_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "-month"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month"], name="statement_unique_tenant_month"),
            models.CheckConstraint(
                condition=Q(closing_nano=models.F("opening_nano") + models.F("credits_nano") + models.F("usage_nano")
                            + models.F("refunds_nano") + models.F("adjustments_nano")),
                name="statement_balances_reconcile"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.month:%Y-%m}"


class AlertRule(models.Model):
    """A tenant's alert: a condition checked after each usage rollup, delivered by email and/or webhook.

    Each rule fires at most once per period (AlertFiring is unique per rule and period): balance below
    `threshold_nano` once per UTC day, spend above `threshold_nano` once per UTC hour, a key budget at
    `percent` once per key and budget period, auto-recharge failed once per failed payment.
    """

    class Kind(models.TextChoices):
        BALANCE_BELOW = "balance_below", "balance below an amount"
        KEY_BUDGET = "key_budget", "key budget reached a percentage"
        HOURLY_SPEND = "hourly_spend", "spend in an hour above an amount"
        AUTO_RECHARGE_FAILED = "auto_recharge_failed", "auto-recharge failed"

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="alert_rules")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    threshold_nano = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    percent = models.PositiveSmallIntegerField(null=True, blank=True, choices=[(50, "50 %"), (80, "80 %"),
                                                                              (100, "100 %")])
    # key_budget: one key, or empty for every key of the tenant that has a budget.
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    notify_email = models.BooleanField(default=True, help_text="Email the tenant's owners and admins.")
    webhook_url = models.URLField(blank=True)
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "kind", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind__in=["balance_below", "hourly_spend"], threshold_nano__isnull=False)
                           | Q(kind="key_budget", percent__in=[50, 80, 100])
                           | Q(kind="auto_recharge_failed")),
                name="alert_rule_has_its_parameter"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.kind} #{self.pk}"


class AlertFiring(models.Model):
    """One alert sent: the claim that makes a rule fire once per period, whatever the number of checks."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="firings")
    period = models.CharField(max_length=64)
    payload = models.JSONField()
    fired_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-fired_at"]
        constraints = [models.UniqueConstraint(fields=["rule", "period"], name="alert_fires_once_per_period")]


class AlertDelivery(models.Model):
    """The delivery log: one row per firing and channel, with its attempts and outcome."""

    class Channel(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    class Status(models.TextChoices):
        PENDING = "pending"
        RETRYING = "retrying"  # an attempt failed; the next is due at next_attempt_at
        SENT = "sent"
        FAILED = "failed"  # out of attempts

    firing = models.ForeignKey(AlertFiring, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    target = models.CharField(max_length=500, help_text="The addresses or the webhook URL.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    last_http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "alert deliveries"
        ordering = ["-created_at"]
