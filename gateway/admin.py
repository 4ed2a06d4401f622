from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.utils import timezone

from accounts.forms import UsdField
from billing.models import ModelPrice
from billing.money import usd_string
from billing.services import model_price_add

from .models import CatalogModel, ModelAlias


class ModelAliasInline(admin.TabularInline):
    model = ModelAlias
    extra = 1


# Form field (USD per million tokens) -> ModelPrice field (nano-USD per million tokens).
PRICE_FIELDS = {
    "input_usd": "input_nano_per_mtok",
    "output_usd": "output_nano_per_mtok",
    "cache_write_usd": "cache_write_nano_per_mtok",
    "cache_read_usd": "cache_read_nano_per_mtok",
}


class ModelPriceForm(forms.ModelForm):
    """A price row in USD per million tokens. A price in force is read-only: usage was charged at it."""

    input_usd = UsdField(min_nano=0, label="Input $/MTok")
    output_usd = UsdField(min_nano=0, label="Output $/MTok")
    cache_write_usd = UsdField(min_nano=0, label="Cache write $/MTok")
    cache_read_usd = UsdField(min_nano=0, label="Cache read $/MTok")

    class Meta:
        model = ModelPrice
        fields = ("effective_from", *PRICE_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_force = self.instance.pk is not None and self.instance.effective_from <= timezone.now()
        self.fields["effective_from"].required = False
        self.fields["effective_from"].help_text = "Empty: now."
        if self.instance.pk:
            for field, attr in PRICE_FIELDS.items():
                self.initial[field] = usd_string(getattr(self.instance, attr))
        if self.in_force:
            for field in self.fields.values():
                field.disabled = True

    def clean_effective_from(self):
        value = self.cleaned_data.get("effective_from")
        if self.in_force:
            return value
        if value is None:
            return timezone.now()
        if value <= timezone.now():
            raise ValidationError("A price cannot start in the past: usage until now was charged at the price "
                                  "then in force. Leave it empty to start now.")
        return value

    def clean(self):
        cleaned = super().clean()
        if not self.in_force:
            for field, attr in PRICE_FIELDS.items():
                if cleaned.get(field) is not None:
                    setattr(self.instance, attr, cleaned[field])
        return cleaned


class ModelPriceFormSet(BaseInlineFormSet):
    def add_fields(self, form, index):
        super().add_fields(form, index)
        if getattr(form, "in_force", False) and "DELETE" in form.fields:
            form.fields["DELETE"].disabled = True


class ModelPriceInline(admin.TabularInline):
    """Prices are versioned: a change of price is a new row from a future (or the current) time on."""

    model = ModelPrice
    form = ModelPriceForm
    formset = ModelPriceFormSet
    fields = ("effective_from", *PRICE_FIELDS)
    extra = 1
    verbose_name = "price (USD per million tokens)"
    verbose_name_plural = "prices (USD per million tokens; prices in force are read-only)"


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ("name", "upstream_model", "provider", "default_max_tokens", "max_output_tokens", "enabled")
    list_filter = ("enabled", "provider")
    list_editable = ("enabled",)
    search_fields = ("name", "upstream_model", "aliases__name")
    inlines = [ModelAliasInline, ModelPriceInline]

    def save_formset(self, request, form, formset, change):
        if formset.model is not ModelPrice:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)  # new rows only: prices in force are read-only, scheduled ones editable
        for price in formset.new_objects:
            model_price_add(model=form.instance, effective_from=price.effective_from, actor=request.user,
                            via="admin", **{attr: getattr(price, attr) for attr in PRICE_FIELDS.values()})
        for price, _ in formset.changed_objects:
            price.save()
        for price in formset.deleted_objects:
            price.delete()
