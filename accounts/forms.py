"""Forms shared by the operators' console, the operator commands and the customer dashboard.

They parse and check input, then hand plain values to the services; they never write. Money is typed in
USD and converted exactly to integer nano-USD (common.money), never through a float.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.utils import timezone

from common.money import NANO_PER_USD, nano_to_usd, usd_string, usd_to_nano

from . import catalog
from .models import ApiKey, Membership, Tenant
from .services import KEY_SETTINGS, MAX_ROTATION_GRACE, key_settings_validate

# Far beyond any real amount, and far enough below the BigIntegerField maximum (9.2e18 nano) that
# balances and sums of such amounts cannot overflow.
MAX_AMOUNT_NANO = 10**9 * NANO_PER_USD
MAX_LIMIT = 2**31 - 1  # PositiveIntegerField on PostgreSQL
REASON_MAX_LENGTH = 450  # LedgerEntry.reason is 500; a reversal prefixes "Reverses #<seq>: "


class UsdField(forms.Field):
    """An amount in USD ("12.50"), cleaned to integer nano-USD with usd_to_nano (exact).

    Input and initial values are USD (text or Decimal; `usd_string(nano)` for a stored amount); only the
    cleaned value is nano-USD.
    """

    widget = forms.TextInput

    def __init__(self, *, min_nano: int | None = None, max_nano: int = MAX_AMOUNT_NANO, **kwargs: Any) -> None:
        self.min_nano, self.max_nano = min_nano, max_nano
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values or (isinstance(value, str) and not value.strip()):
            return None
        try:
            return usd_to_nano(value)
        except ValueError as exc:
            raise ValidationError(f"{exc} For example: 12.50.", code="invalid") from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        # Compared as amounts: "12.5" and "12.50" are the same.
        if self.disabled:
            return False
        try:
            return self.to_python(initial) != self.to_python(data)
        except ValidationError:
            return True

    def validate(self, value: int | None) -> None:
        super().validate(value)
        if value is None:
            return
        if self.min_nano is not None and value < self.min_nano:
            raise ValidationError("The amount cannot be negative." if self.min_nano == 0 else
                                  f"The amount cannot be less than {usd_string(self.min_nano)} USD.", code="min_value")
        if abs(value) > self.max_nano:
            raise ValidationError(f"The amount cannot be more than {usd_string(self.max_nano)} USD.",
                                  code="max_value")


class ServiceModelForm(forms.ModelForm):
    """A ModelForm for a model only services write: the instance is read (initial values), never changed.

    ModelForm copies cleaned values onto the instance while validating. The services compare what they
    are given with the instance to record what changed (api_key_update, tenant_update), so the instance
    must still hold what is stored; and the services are where the rules are checked, not Model.clean().
    """

    def _post_clean(self) -> None:
        pass


class TenantForm(ServiceModelForm):
    credit_limit_usd = UsdField(
        required=False, min_nano=0, initial="0", label="Credit limit (USD)",
        help_text="How far below zero the balance may go. 0: prepaid. Empty: no balance check (invoiced).",
    )

    class Meta:
        model = Tenant
        fields = ("slug", "name", "credit_limit_usd", "store_conversations", "conversation_retention_days",
                  "log_requests", "auto_cache_control")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            limit = self.instance.credit_limit_nano
            self.initial["credit_limit_usd"] = None if limit is None else usd_string(limit)

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if Tenant.objects.filter(slug=slug).exclude(pk=self.instance.pk).exists():
            raise ValidationError(f"A tenant with slug {slug!r} already exists.")
        return slug


# Form field -> key setting (KEY_SETTINGS in accounts.services), where the names differ.
_SETTING_FOR_FIELD = {"models": "allowed_models", "budget_usd": "budget_nano",
                      "end_user_budget_usd": "end_user_budget_nano"}
_FIELD_FOR_SETTING = {setting: field for field, setting in _SETTING_FOR_FIELD.items()}


class ApiKeySettingsForm(ServiceModelForm):
    """A key's name and limits, as the admin, `create_key` and the dashboard all take them.

    The fields parse the input; the rules are key_settings_validate's, and its errors land on the fields
    they concern. Pass `key_settings()` to api_key_issue, or to api_key_update with the key given as
    `instance` (this form leaves it untouched, so the service still sees what changed).
    """

    models = forms.CharField(
        required=False, label="Models",
        help_text="Comma-separated model ids or aliases this key may call. Empty: all models.",
    )
    rpm_limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, label="Requests per minute",
                                   help_text="Empty: unlimited.")
    tpm_limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, label="Tokens per minute",
                                   help_text="Empty: unlimited.")
    budget_usd = forms.DecimalField(
        required=False, max_digits=19, decimal_places=9, max_value=Decimal(MAX_AMOUNT_NANO // NANO_PER_USD),
        label="Budget (USD)", help_text=(
            "Spend allowed per budget period. Empty: no budget. Each request first reserves its largest possible "
            "cost (max_tokens at the model's price) and is refused once the spend reaches the budget, so requests "
            "in flight can take a key over its budget by at most one request's reservation."),
    )

    end_user_rpm_limit = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_LIMIT, label="Requests per minute per end user",
        help_text="For requests that name their end user (OpenAI user or safety_identifier, Anthropic "
                  "metadata.user_id). Empty: unlimited.")
    end_user_budget_usd = forms.DecimalField(
        required=False, max_digits=19, decimal_places=9, max_value=Decimal(MAX_AMOUNT_NANO // NANO_PER_USD),
        label="Budget per end user (USD)", help_text="Spend allowed to each end user per budget period. Empty: none.")

    class Meta:
        model = ApiKey
        fields = ("name", "models", "rpm_limit", "tpm_limit", "budget_usd", "budget_period", "end_user_rpm_limit",
                  "end_user_budget_usd", "expires_at", "auto_cache_control")
        help_texts = {"expires_at": "The key stops working then. Empty: never."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings: dict[str, Any] | None = None
        if self.instance.pk:
            self.initial.setdefault("models", ", ".join(self.instance.allowed_models))
            if self.instance.budget_nano is not None:
                self.initial.setdefault("budget_usd", nano_to_usd(self.instance.budget_nano))
            if self.instance.end_user_budget_nano is not None:
                self.initial.setdefault("end_user_budget_usd", nano_to_usd(self.instance.end_user_budget_nano))

    def clean_models(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["models"].split(",") if name.strip()]

    def clean_end_user_budget_usd(self) -> int | None:
        value = self.cleaned_data["end_user_budget_usd"]
        if value is None:
            return None
        if value <= 0:
            raise ValidationError("A budget must be more than 0 USD; leave it empty for no budget.")
        return usd_to_nano(value)

    def clean_budget_usd(self) -> int | None:
        value = self.cleaned_data["budget_usd"]
        if value is None:
            return None
        if value <= 0:
            raise ValidationError("A budget must be more than 0 USD; leave it empty for no budget.")
        return usd_to_nano(value)

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        # Only a newly typed expiry must lie ahead: editing another limit of an expired key is fine.
        if value is not None and "expires_at" in self.changed_data and value <= timezone.now():
            raise ValidationError("The expiry must be in the future.")
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # Fields that failed to parse are missing here; the rest are still checked, so that every
        # mistake is reported at once.
        settings = {_SETTING_FOR_FIELD.get(field, field): value for field, value in cleaned.items()
                    if _SETTING_FOR_FIELD.get(field, field) in KEY_SETTINGS}
        try:
            self._settings = key_settings_validate(settings)
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                self.add_error(None, exc)
                return cleaned
            for setting, errors in exc.error_dict.items():
                field = _FIELD_FOR_SETTING.get(setting, setting)
                self.add_error(field if field in self.fields else None, errors)
        return cleaned

    def key_settings(self) -> dict[str, Any]:
        """Keyword arguments for api_key_issue (every setting) or api_key_update (the changed ones)."""
        if not self.is_valid() or self._settings is None:
            raise ValueError("key_settings() needs a valid form.")
        if not self.instance.pk:
            return dict(self._settings)
        changed = {_SETTING_FOR_FIELD.get(field, field) for field in self.changed_data}
        return {setting: value for setting, value in self._settings.items() if setting in changed}


# --- Admin intermediate pages and operator commands ------------------------------------------------------


class ConfirmForm(forms.Form):
    confirm = forms.BooleanField(label="Yes, delete them", help_text="This cannot be undone.")


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=REASON_MAX_LENGTH, help_text="Recorded in the ledger and the audit log.",
                             widget=forms.TextInput(attrs={"size": 60}))


class CreditForm(ReasonForm):
    amount = UsdField(label="Amount (USD)", help_text="Added to the balance, e.g. 25 or 12.50.")
    field_order = ("amount", "reason")

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount <= 0:
            raise ValidationError("A credit must be a positive amount.")
        return amount


class AdjustmentForm(ReasonForm):
    amount = UsdField(label="Amount (USD)",
                      help_text="Positive adds to the balance, negative takes from it, e.g. -3.20.")
    field_order = ("amount", "reason")

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise ValidationError("An adjustment cannot be zero.")
        return amount


class RotateKeyForm(forms.Form):
    grace_hours = forms.IntegerField(
        min_value=0, max_value=MAX_ROTATION_GRACE // timedelta(hours=1), initial=24, label="Grace period (hours)",
        help_text="How long the old secret keeps working, so deployments can switch over. 0: it stops at once.",
    )


# --- Self-serve dashboard ------------------------------------------------------------------------------------


class SignupForm(forms.Form):
    email = forms.EmailField(label="E-mail", max_length=150,
                             widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}))
    password1 = forms.CharField(label="Password", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                                help_text=password_validation.password_validators_help_text_html())
    password2 = forms.CharField(label="Password again", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    workspace = forms.CharField(label="Workspace name", max_length=200,
                                help_text="Your company or team; you can rename it later.")

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", "The two passwords differ.")
        # The validators themselves run in the signup service, which knows the user they are checked against.
        return cleaned


class WorkspaceForm(forms.Form):
    workspace = forms.CharField(label="Workspace name", max_length=200)


class DashboardKeyForm(ApiKeySettingsForm):
    """ApiKeySettingsForm with a date picker for the expiry (browsers send 2025-01-31T12:00, parsed as UTC)
    and the models as a pick list of the enabled catalog, prices shown (key_settings_validate still checks
    whatever is posted)."""

    models = forms.MultipleChoiceField(
        required=False, label="Models", widget=forms.CheckboxSelectMultiple,
        help_text="The models this key may call, by id or alias. None ticked: every model.",
    )

    class Meta(ApiKeySettingsForm.Meta):
        widgets = {"expires_at": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")}
        labels = {"expires_at": "Expires (UTC)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = catalog.model_choices()
        if self.instance.pk:
            self.initial["models"] = list(self.instance.allowed_models)
            # A model disabled since it was allowed stays listed, so that saving other changes keeps it.
            offered = {name for name, _ in choices}
            choices += [(name, f"{name} (disabled in the catalog)") for name in self.instance.allowed_models
                        if name not in offered]
        self.fields["models"].choices = choices

    def clean_models(self) -> list[str]:
        return list(self.cleaned_data["models"])


class DashboardKeyCreateForm(DashboardKeyForm):
    """The create form carries a one-time token: a form sent twice (a double click, a retried POST) makes
    one key (api_key_issue's idempotency_key), never a second one whose secret would hide the first."""

    form_token = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["form_token"].initial = secrets.token_urlsafe(24)


class MemberInviteForm(forms.Form):
    email = forms.EmailField(label="E-mail", max_length=150)
    role = forms.ChoiceField(label="Role", choices=Membership.Role.choices, initial=Membership.Role.MEMBER)

    def __init__(self, *args: Any, roles: list[tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if roles is not None:
            self.fields["role"].choices = roles


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Membership.Role.choices)


class ProfileForm(forms.Form):
    first_name = forms.CharField(label="First name", max_length=150, required=False)
    last_name = forms.CharField(label="Last name", max_length=150, required=False)
    email = forms.EmailField(label="E-mail", max_length=150, help_text="You log in with this address.")


class AdminKeyForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, help_text="What the key is for, e.g. 'billing export'.")


class TenantNameForm(forms.Form):
    name = forms.CharField(label="Workspace name", max_length=200)


class TenantCacheForm(forms.Form):
    auto_cache_control = forms.BooleanField(
        required=False, label="Prompt-cache breakpoints for every key",
        help_text="OpenAI-format requests (chat completions, Responses) get Anthropic cache breakpoints after the "
                  "system prompt and tools and on the last stable turn, so repeated prefixes are billed at the "
                  "cache-read price. Keys can also turn it on one by one.")
