"""The usage page's filters: a date range (validated here, so a bad URL gets a form error, not a 500 or a
year-long query) and one key and one model. The Billing page's forms: a top-up amount and the
auto-recharge settings, typed in USD (exact)."""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from accounts.forms import UsdField
from common.money import format_usd


DEFAULT_DAYS = 30
MAX_DAYS = 366  # one query per page over the usage rows themselves: a year is the most a page shows


class UsageFilterForm(forms.Form):
    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    key = forms.TypedChoiceField(required=False, label="Key", coerce=int, empty_value=None)
    model = forms.ChoiceField(required=False, label="Model")

    def __init__(self, data, *, keys: list[tuple[int, str]], models: list[str], today: date):
        super().__init__(data.copy())  # mutable: clean() fills in the default range, for the picker to show
        self.today = today
        self.fields["key"].choices = [("", "All keys"), *((pk, name or "(unnamed key)") for pk, name in keys)]
        self.fields["model"].choices = [("", "All models"), *((name, name) for name in models)]
        for name in ("start", "end"):
            self.fields[name].widget.attrs["max"] = today.isoformat()

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        end = cleaned.get("end") or self.today
        start = cleaned.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if end > self.today:
            self.add_error("end", "The range cannot end after today (UTC).")
        elif start > end:
            self.add_error("start", "The start must be on or before the end.")
        elif (end - start).days + 1 > MAX_DAYS:
            raise ValidationError(f"Choose at most {MAX_DAYS} days.")
        cleaned["start"], cleaned["end"] = start, end
        self.data["start"], self.data["end"] = start.isoformat(), end.isoformat()
        return cleaned

    def window(self) -> tuple[date, date]:
        """The valid range, or the default last 30 days when the form has errors."""
        if self.is_valid():
            return self.cleaned_data["start"], self.cleaned_data["end"]
        return self.today - timedelta(days=DEFAULT_DAYS - 1), self.today


class TopupForm(forms.Form):
    amount = UsdField(label="Amount (USD)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["amount"]
        field.min_nano, field.max_nano = settings.TOPUP_MIN_NANO, settings.TOPUP_MAX_NANO
        field.help_text = f"Between {format_usd(settings.TOPUP_MIN_NANO)} and {format_usd(settings.TOPUP_MAX_NANO)}."


class AutoRechargeForm(forms.Form):
    prefix = "recharge"  # on one page with TopupForm: its "amount" needs another id
    enabled = forms.BooleanField(required=False, label="Recharge automatically")
    threshold = UsdField(label="When the balance falls below (USD)", min_nano=0)
    amount = UsdField(label="Charge the saved card (USD)")
    max_per_month = forms.IntegerField(label="At most, times a month", min_value=1, max_value=100, initial=3)
