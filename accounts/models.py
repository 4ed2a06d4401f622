from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Prepaid by default: requests are refused once the balance is at or below -credit_limit.
    credit_limit_nano = models.BigIntegerField(
        null=True, blank=True, default=0, validators=[MinValueValidator(0)],
        help_text="How far below zero the balance may go, in nano-USD. Empty: no balance check (invoiced).",
    )
    store_conversations = models.BooleanField(
        default=True, help_text="Keep chat history on the server (clients may still opt out per request).")
    log_requests = models.BooleanField(
        default=False, help_text="Keep each request's prompt and answer, shown in its traces (same retention as "
                                 "conversations). Off: traces show only model, tokens, cost, latency and status.")
    auto_cache_control = models.BooleanField(
        default=False, help_text="Add prompt-cache breakpoints to OpenAI-format requests (chat completions, Responses) "
                                 "of every key: after the system prompt and tools, and on the last stable turn.")
    conversation_retention_days = models.PositiveIntegerField(
        default=7, validators=[MinValueValidator(1)], help_text="Stored conversations expire this long after their "
                                                                "last activity.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


class ApiKey(models.Model):
    """An `sk_cdx_<public_id>_<secret>` key. Only a SHA-256 digest of the secret is stored.

    The secret has 190 bits of entropy, so a plain digest cannot be brute-forced and needs no salt;
    `public_id` is the lookup index, so a presented key is checked against one row. Rotation replaces
    the secret in place (limits, budget and usage stay with the key); the old digest keeps working
    until `previous_secret_expires_at`.
    """

    class BudgetPeriod(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    public_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_digest = models.CharField(max_length=64, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    previous_secret_digest = models.CharField(max_length=64, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.JSONField(default=list, blank=True,
                                      help_text="Model ids or aliases this key may call; empty: all.")
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                            help_text="Requests per minute; empty: unlimited.")
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                            help_text="Tokens per minute; empty: unlimited.")
    budget_nano = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                         help_text="Spend budget per period in nano-USD; empty: none.")
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    auto_cache_control = models.BooleanField(
        default=False, verbose_name="Prompt-cache breakpoints",
        help_text="Add prompt-cache breakpoints to this key's OpenAI-format requests (on for every key when the "
                  "tenant turned it on).")
    # Limits of each end user of the key (a request's OpenAI user / safety_identifier, Anthropic
    # metadata.user_id); the budget runs over the key's budget_period. Requests without an end user skip them.
    end_user_rpm_limit = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                                     help_text="Requests per minute per end user; empty: unlimited.")
    end_user_budget_nano = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                                  help_text="Spend per end user per budget period in nano-USD; empty: none.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The issuing request's one-time token (the dashboard's create form): the same token twice is one key.
    idempotency_key = models.CharField(max_length=64, null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(condition=models.Q(budget_nano__isnull=True) | models.Q(budget_nano__gt=0),
                                   name="apikey_budget_positive"),
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="apikey_unique_idempotency_key"),
        ]

    def __str__(self) -> str:
        return self.display

    @property
    def display(self) -> str:
        return f"sk_cdx_{self.public_id}_...{self.last4}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class AuditEntry(models.Model):
    """Who did what, when: written in the same transaction as the change it records. Append-only."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    via = models.CharField(max_length=16, help_text="admin, command, dashboard, api or system.")
    action = models.CharField(max_length=32)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"


class ManagementCredential(models.Model):
    """What operator tokens and tenant admin keys share: stored like ApiKey (a lookup id, a SHA-256
    digest of a 190-bit secret, the last four characters for recognition), shown once, revoked one-way."""

    kind = ""  # accounts.keys.OPERATOR or ADMIN
    name = models.CharField(max_length=100)
    public_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_digest = models.CharField(max_length=64, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.display

    @property
    def display(self) -> str:
        from .keys import PREFIXES

        return f"{PREFIXES[self.kind]}{self.public_id}_...{self.last4}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class OperatorToken(ManagementCredential):
    """`sk_cdx_op_...`: the management API for the whole installation (every tenant, the catalog, the
    providers). Created with `create_operator_token` or in the admin; read-only tokens cannot write."""

    kind = "operator"
    read_only = models.BooleanField(default=False, help_text="Only GET requests: for dashboards and exports.")
    # The audit log's actor for the token's writes (AuditEntry.actor is a user); empty: no user named.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+", help_text="Named as the actor of this token's writes in the audit log.")


class AdminKey(ManagementCredential):
    """`sk_cdx_admin_...`: the management API for one tenant, acting as the owner or admin who created it.

    The key has its creator's current role, never more: an admin's key cannot do what only owners do,
    and the key stops working when its creator is no longer an owner or admin of the tenant.
    """

    kind = "admin"
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="admin_keys")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = "tenant admin key"
