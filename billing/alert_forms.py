"""The dashboard's alert rule form: the kind's parameter, the key (for budgets) and the channels."""

from __future__ import annotations

from django import forms

from accounts.forms import UsdField
from accounts.models import ApiKey

from .models import AlertRule


class AlertRuleForm(forms.Form):
    kind = forms.ChoiceField(choices=AlertRule.Kind.choices, label="Alert when")
    amount = UsdField(min_nano=0, required=False, label="Amount (USD)",
                      help_text="For a balance below, or spend in one hour above, this amount.")
    percent = forms.TypedChoiceField(choices=[("", "—"), (50, "50 %"), (80, "80 %"), (100, "100 %")], coerce=int,
                                     empty_value=None, required=False, label="Key budget reached",
                                     help_text="For key budgets: the share of the budget spent in its period.")
    api_key = forms.ModelChoiceField(queryset=ApiKey.objects.none(), required=False, label="Key",
                                     empty_label="Every key with a budget")
    notify_email = forms.BooleanField(required=False, initial=True, label="Email the owners and admins")
    webhook_url = forms.URLField(required=False, assume_scheme="https", label="Webhook URL (https)",
                                 help_text="Receives a signed JSON POST; its secret is shown once.")

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["api_key"].queryset = ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True,
                                                                budget_nano__isnull=False)
