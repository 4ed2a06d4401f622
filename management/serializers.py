"""Serializers of the management API: they validate input and shape output; they never write.

Input is strict JSON: a field of the wrong JSON type (a string for a number, 1 for true) or a field the
operation does not take is a 400 naming it, rather than coerced or ignored. Bounds are the console's
(accounts.forms); the rules beyond them are the services'.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rest_framework import serializers

from accounts.forms import MAX_AMOUNT_NANO, MAX_LIMIT, REASON_MAX_LENGTH
from accounts.models import ApiKey, AuditEntry, Membership, Tenant
from accounts.selectors import api_key_status
from accounts.services import MAX_ROTATION_GRACE
from billing.models import AlertRule, LedgerEntry, ModelPrice, UsageEvent
from gateway.models import CatalogModel, Credential, Deployment, Provider, provider_choices

# Dates outside these years are typing mistakes, not plans (and year 9999 overflows on conversion).
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


class WholeNumber(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class Flag(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class Text(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Moment(serializers.DateTimeField):
    """An ISO 8601 date and time (with offset; naive times are UTC) in the years 2000 to 2099."""

    def to_internal_value(self, value):
        if not isinstance(value, str):
            self.fail("invalid", format="ISO 8601")
        moment = super().to_internal_value(value)
        if not EARLIEST <= moment < LATEST:
            raise serializers.ValidationError("Must be between 2000-01-01 and 2099-12-31.")
        return moment


class Input(serializers.Serializer):
    """Refuses fields it does not declare (a typo must not silently do nothing)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - {name for name, field in self.fields.items() if not field.read_only})
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def money(**kwargs) -> WholeNumber:
    return WholeNumber(max_value=MAX_AMOUNT_NANO, min_value=-MAX_AMOUNT_NANO, **kwargs)


# --- Credentials -----------------------------------------------------------------------------------------


class PrincipalOut(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["operator", "admin"])
    credential = serializers.CharField(source="credential.display")
    name = serializers.CharField(source="credential.name")
    read_only = serializers.BooleanField()
    tenant = serializers.SlugField(source="tenant.slug", allow_null=True, default=None)
    role = serializers.CharField(allow_null=True)


# --- Tenants ---------------------------------------------------------------------------------------------


class TenantOut(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ("slug", "name", "status", "credit_limit_nano", "store_conversations", "log_requests", "auto_cache_control",
                  "conversation_retention_days", "created_at")


class TenantUpdateIn(Input):
    name = Text(max_length=200, required=False)
    credit_limit_nano = WholeNumber(min_value=0, max_value=MAX_AMOUNT_NANO, allow_null=True, required=False,
                                    help_text="How far below zero the balance may go; null: not checked (invoiced). "
                                              "Operators only.")
    store_conversations = Flag(required=False)
    log_requests = Flag(required=False)
    auto_cache_control = Flag(required=False, help_text="Prompt-cache breakpoints on every key's OpenAI-format "
                                                        "requests.")
    conversation_retention_days = WholeNumber(min_value=1, max_value=3650, required=False)


class TenantCreateIn(TenantUpdateIn):
    slug = serializers.SlugField(max_length=64)


class BalanceOut(serializers.Serializer):
    tenant = serializers.SlugField()
    balance_nano = serializers.IntegerField(help_text="The ledger's balance.")
    unbilled_nano = serializers.IntegerField(help_text="Cost of usage not yet debited (the rollup runs each minute).")
    available_nano = serializers.IntegerField(help_text="balance - unbilled: what admission checks.")
    credit_limit_nano = serializers.IntegerField(allow_null=True)


# --- Money -----------------------------------------------------------------------------------------------


class CreditIn(Input):
    amount_nano = WholeNumber(min_value=1, max_value=MAX_AMOUNT_NANO, help_text="nano-USD (10^-9 USD), positive.")
    reason = Text(max_length=REASON_MAX_LENGTH)


class AdjustmentIn(CreditIn):
    amount_nano = money(help_text="nano-USD, either sign, not zero.")


class LedgerOut(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    reverses = serializers.IntegerField(source="reverses.seq", allow_null=True, default=None)

    class Meta:
        model = LedgerEntry
        fields = ("id", "tenant", "seq", "kind", "amount_nano", "balance_after_nano", "reason", "reverses",
                  "created_at")


# --- Keys ------------------------------------------------------------------------------------------------


class KeyUpdateIn(Input):
    name = Text(max_length=100, allow_blank=True, required=False)
    allowed_models = serializers.ListField(child=Text(max_length=128), max_length=200, required=False,
                                           help_text="Model ids or aliases; empty: all.")
    rpm_limit = WholeNumber(min_value=1, max_value=MAX_LIMIT, allow_null=True, required=False)
    tpm_limit = WholeNumber(min_value=1, max_value=MAX_LIMIT, allow_null=True, required=False)
    budget_nano = WholeNumber(min_value=1, max_value=MAX_AMOUNT_NANO, allow_null=True, required=False,
                              help_text="Spend allowed per budget period, nano-USD; null: none.")
    budget_period = serializers.ChoiceField(choices=ApiKey.BudgetPeriod.choices, required=False)
    end_user_rpm_limit = WholeNumber(min_value=1, max_value=MAX_LIMIT, allow_null=True, required=False,
                                     help_text="Requests per minute per end user; null: unlimited.")
    end_user_budget_nano = WholeNumber(min_value=1, max_value=MAX_AMOUNT_NANO, allow_null=True, required=False,
                                       help_text="Spend allowed to each end user per budget period, nano-USD; null: none.")
    expires_at = Moment(allow_null=True, required=False)
    auto_cache_control = Flag(required=False, help_text="Prompt-cache breakpoints on this key's OpenAI-format "
                                                        "requests.")


class KeyCreateIn(KeyUpdateIn):
    pass


class RotateIn(Input):
    grace_seconds = WholeNumber(min_value=0, max_value=int(MAX_ROTATION_GRACE.total_seconds()), default=0,
                                help_text="How long the old secret keeps working.")


class KeyOut(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", help_text="The key's public id.")
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApiKey
        fields = ("id", "display", "name", "tenant", "status", "allowed_models", "rpm_limit", "tpm_limit",
                  "budget_nano", "budget_period", "end_user_rpm_limit", "end_user_budget_nano", "expires_at",
                  "auto_cache_control", "created_by", "created_at", "last_used_at", "revoked_at")

    def get_status(self, api_key) -> str:
        return api_key_status(api_key)


class IssuedKeyOut(KeyOut):
    key = serializers.CharField(help_text="The secret: shown in this response only.")

    class Meta(KeyOut.Meta):
        fields = (*KeyOut.Meta.fields, "key")


class BudgetOut(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    budget_nano = serializers.IntegerField(allow_null=True)
    budget_period = serializers.ChoiceField(choices=ApiKey.BudgetPeriod.choices)
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    spent_nano = serializers.IntegerField()
    remaining_nano = serializers.IntegerField(allow_null=True)


# --- Members ---------------------------------------------------------------------------------------------


class MemberOut(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email")
    invited = serializers.SerializerMethodField(help_text="True until the user has set a password.")

    class Meta:
        model = Membership
        fields = ("id", "username", "email", "role", "invited", "created_at")

    def get_invited(self, membership) -> bool:
        return not membership.user.has_usable_password()


class MemberIn(Input):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberUpdateIn(Input):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


# --- Usage and audit -------------------------------------------------------------------------------------


class UsageOut(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    api_key = serializers.CharField(source="api_key.public_id")

    class Meta:
        model = UsageEvent
        fields = ("id", "request_id", "created_at", "tenant", "api_key", "endpoint", "requested_model", "model",
                  "provider", "stream", "status", "http_status", "error_type", "input_tokens", "output_tokens",
                  "cache_creation_input_tokens", "cache_read_input_tokens", "cost_nano", "latency_ms", "ttft_ms")


class RangeFilter(Input):
    since = Moment(required=False, help_text="From this time on (inclusive).")
    until = Moment(required=False, help_text="Before this time.")

    def validate(self, attrs):
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        return attrs


class UsageFilter(RangeFilter):
    tenant = serializers.SlugField(required=False, help_text="Operators: one tenant's usage.")
    api_key = serializers.CharField(max_length=16, required=False, help_text="A key's public id.")
    model = serializers.CharField(max_length=128, required=False)
    status = serializers.ChoiceField(choices=UsageEvent.Status.choices, required=False)


class LedgerFilter(RangeFilter):
    tenant = serializers.SlugField(required=False, help_text="Operators: one tenant's entries.")
    kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices, required=False)


class AuditFilter(RangeFilter):
    tenant = serializers.SlugField(required=False)
    action = serializers.CharField(max_length=32, required=False)
    via = serializers.ChoiceField(choices=["admin", "command", "dashboard", "api", "system"], required=False)


class AuditOut(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    api_key = serializers.SlugRelatedField(slug_field="public_id", read_only=True)
    details = serializers.JSONField()

    class Meta:
        model = AuditEntry
        fields = ("id", "created_at", "actor", "via", "action", "tenant", "api_key", "details")


# --- Catalog and upstreams -------------------------------------------------------------------------------


class CatalogModelOut(serializers.ModelSerializer):
    aliases = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = CatalogModel
        fields = ("name", "capability", "enabled", "owned_by", "default_max_tokens", "max_output_tokens",
                  "connect_timeout_seconds", "first_token_timeout_seconds", "timeout_seconds", "aliases", "created_at")


def _seconds(**kwargs) -> serializers.FloatField:
    return serializers.FloatField(min_value=0.1, max_value=3600, allow_null=True, required=False, **kwargs)


class CatalogModelUpdateIn(Input):
    capability = serializers.ChoiceField(choices=CatalogModel.Capability.choices, required=False)
    enabled = Flag(required=False)
    owned_by = Text(max_length=64, required=False)
    default_max_tokens = WholeNumber(min_value=1, max_value=MAX_LIMIT, required=False)
    max_output_tokens = WholeNumber(min_value=1, max_value=MAX_LIMIT, required=False)
    connect_timeout_seconds = _seconds()
    first_token_timeout_seconds = _seconds()
    timeout_seconds = _seconds()


class CatalogModelCreateIn(CatalogModelUpdateIn):
    name = Text(max_length=128)


class PriceIn(Input):
    effective_from = Moment(required=False, help_text="Default: now. Never in the past: usage was charged.")
    input_nano_per_mtok = WholeNumber(min_value=0, max_value=MAX_AMOUNT_NANO)
    output_nano_per_mtok = WholeNumber(min_value=0, max_value=MAX_AMOUNT_NANO)
    cache_write_nano_per_mtok = WholeNumber(min_value=0, max_value=MAX_AMOUNT_NANO)
    cache_read_nano_per_mtok = WholeNumber(min_value=0, max_value=MAX_AMOUNT_NANO)
    batch_discount_bp = WholeNumber(min_value=0, max_value=10_000, required=False,
                                    help_text="Taken off batch items' token cost, in basis points. Default: 5000 (50 %).")


class PriceOut(serializers.ModelSerializer):
    model = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ModelPrice
        fields = ("id", "model", "effective_from", "input_nano_per_mtok", "output_nano_per_mtok",
                  "cache_write_nano_per_mtok", "cache_read_nano_per_mtok", "batch_discount_bp", "created_at")


class ProviderOut(serializers.ModelSerializer):
    class Meta:
        model = Provider
        fields = ("name", "kind", "base_url", "cooldown_seconds", "enabled")


class ProviderUpdateIn(Input):
    kind = serializers.ChoiceField(choices=[], required=False)
    base_url = serializers.URLField(allow_blank=True, max_length=200, required=False)
    cooldown_seconds = WholeNumber(min_value=0, max_value=86400, required=False)
    enabled = Flag(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [name for name, _ in provider_choices()]


class ProviderCreateIn(ProviderUpdateIn):
    name = Text(max_length=64)


class CredentialOut(serializers.ModelSerializer):
    hint = serializers.CharField(help_text="The key's last four characters; the key itself is never shown.")

    class Meta:
        model = Credential
        fields = ("id", "name", "hint", "weight", "enabled", "created_at")


class CredentialUpdateIn(Input):
    secret = Text(write_only=True, min_length=8, max_length=4096, required=False,
                  help_text="The provider's API key: write-only, stored encrypted.")
    weight = WholeNumber(min_value=1, max_value=32767, required=False)
    enabled = Flag(required=False)

    def validate_secret(self, value: str) -> str:
        if any(c.isspace() for c in value):
            raise serializers.ValidationError("An API key has no spaces.")
        return value


class CredentialCreateIn(CredentialUpdateIn):
    name = Text(max_length=64)
    secret = Text(write_only=True, min_length=8, max_length=4096,
                  help_text="The provider's API key: write-only, stored encrypted.")


class DeploymentOut(serializers.ModelSerializer):
    model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    provider = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Deployment
        fields = ("id", "model", "provider", "upstream_model", "priority", "weight", "enabled")


class DeploymentUpdateIn(Input):
    upstream_model = Text(max_length=128, required=False)
    priority = WholeNumber(min_value=0, max_value=32767, required=False)
    weight = WholeNumber(min_value=1, max_value=32767, required=False)
    enabled = Flag(required=False)


class DeploymentCreateIn(DeploymentUpdateIn):
    model = serializers.SlugRelatedField(slug_field="name", queryset=CatalogModel.objects.all())
    provider = serializers.SlugRelatedField(slug_field="name", queryset=Provider.objects.all())
    upstream_model = Text(max_length=128)


# --- Alert rules -----------------------------------------------------------------------------------------


class AlertRuleOut(serializers.ModelSerializer):
    api_key = serializers.CharField(source="api_key.public_id", allow_null=True, default=None)
    webhook_secret = serializers.SerializerMethodField(help_text="The webhook's signing secret: in the answer "
                                                                 "that creates the rule, once; null afterwards.")

    class Meta:
        model = AlertRule
        fields = ("id", "kind", "threshold_nano", "percent", "api_key", "notify_email", "webhook_url", "enabled",
                  "created_at", "webhook_secret")

    def get_webhook_secret(self, rule) -> str | None:
        return self.context.get("webhook_secret")


class AlertRuleIn(Input):
    kind = serializers.ChoiceField(choices=AlertRule.Kind.choices)
    threshold_nano = WholeNumber(min_value=0, max_value=MAX_AMOUNT_NANO, required=False, allow_null=True,
                                 help_text="balance_below and hourly_spend: the amount, nano-USD.")
    percent = serializers.ChoiceField(choices=[50, 80, 100], required=False, allow_null=True,
                                      help_text="key_budget: the share of the budget.")
    api_key = Text(max_length=16, required=False, allow_null=True,
                   help_text="key_budget: one key's public id; absent: every key with a budget.")
    notify_email = Flag(required=False, default=True)
    webhook_url = serializers.URLField(max_length=200, required=False, allow_blank=True, default="")
