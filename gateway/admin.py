from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.models import BaseInlineFormSet
from django.utils import formats, timezone
from django.utils.html import format_html

from accounts.forms import UsdField
from billing.models import ModelPrice
from common.money import format_usd_exact, usd_string
from billing.services import model_price_add

from .models import CatalogModel, Credential, Deployment, ModelAlias, Provider
from .services import credential_save


class ModelAliasInline(admin.TabularInline):
    model = ModelAlias
    extra = 1


class DeploymentInline(admin.TabularInline):
    model = Deployment
    fields = ("provider", "upstream_model", "priority", "weight", "enabled")
    extra = 1
    verbose_name_plural = "deployments (lowest priority number first, spread by weight; the next priority is the fallback)"


class CredentialForm(forms.ModelForm):
    """The key is write-only: typed once, stored encrypted, never shown again (only its last four)."""

    secret = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False, strip=True,
                             label="API key", help_text="Leave empty to keep the current key.")

    class Meta:
        model = Credential
        fields = ("name", "secret", "weight", "enabled")

    def clean_secret(self):
        secret = self.cleaned_data["secret"]
        if not secret and self.instance.pk is None:
            raise ValidationError("A new credential needs its API key.")
        if secret and (len(secret) < 8 or any(c.isspace() for c in secret)):
            raise ValidationError("That does not look like an API key (8+ characters, no spaces).")
        return secret


class CredentialInline(admin.TabularInline):
    model = Credential
    form = CredentialForm
    fields = ("name", "secret", "hint", "weight", "enabled", "created_at")
    readonly_fields = ("hint", "created_at")
    extra = 1


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "base_url", "cooldown_seconds", "enabled", "credential_count")
    list_filter = ("kind", "enabled")
    inlines = [CredentialInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="credentials")
    def credential_count(self, obj):
        return obj.credentials.count()

    def save_formset(self, request, form, formset, change):
        if formset.model is not Credential:
            return super().save_formset(request, form, formset, change)
        # Sorts the rows into new, changed and deleted (the admin's change message reads those lists);
        # credentials are then written by the service: encryption and the audit entry, never the key.
        formset.save(commit=False)
        touched = {id(obj) for obj in formset.new_objects} | {id(obj) for obj, _ in formset.changed_objects}
        for credential_form in formset.forms:
            if id(credential_form.instance) in touched:
                credential_save(credential=credential_form.instance, actor=request.user, via="admin",
                                secret=credential_form.cleaned_data.get("secret") or None)
        for credential in formset.deleted_objects:
            credential.delete()


# Form field (USD per million tokens) -> ModelPrice field (nano-USD per million tokens).
PRICE_FIELDS = {
    "input_usd": "input_nano_per_mtok",
    "output_usd": "output_nano_per_mtok",
    "cache_write_usd": "cache_write_nano_per_mtok",
    "cache_read_usd": "cache_read_nano_per_mtok",
    "web_search_usd": "web_search_nano",
}


class ShownAsText(forms.Widget):
    """A price in force is a fact, not an input: its value as text (the field is disabled, so the
    admin ignores anything posted for it)."""

    def __init__(self, text, css_class="price-in-force"):
        super().__init__()
        self.text, self.css_class = text, css_class

    def render(self, name, value, attrs=None, renderer=None):
        return format_html('<span class="{}">{}</span>', self.css_class, self.text)


class ModelPriceForm(forms.ModelForm):
    """A price row in USD per million tokens. A price in force is read-only: usage was charged at it."""

    input_usd = UsdField(min_nano=0, label="Input $/MTok")
    output_usd = UsdField(min_nano=0, label="Output $/MTok")
    cache_write_usd = UsdField(min_nano=0, label="Cache write $/MTok")
    cache_read_usd = UsdField(min_nano=0, label="Cache read $/MTok")
    web_search_usd = UsdField(min_nano=0, label="Web search $/search", required=False)

    class Meta:
        model = ModelPrice
        fields = ("effective_from", *PRICE_FIELDS, "batch_discount_bp")
        labels = {"batch_discount_bp": "Batch discount (bp)"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_force = self.instance.pk is not None and self.instance.effective_from <= timezone.now()
        self.fields["effective_from"].required = False
        self.fields["effective_from"].help_text = "Empty: now."
        self.fields["batch_discount_bp"].required = False
        self.fields["batch_discount_bp"].help_text = "Off batch items' token cost; 5000 = 50 % (empty: 5000)."
        if self.instance.pk:
            for field, attr in PRICE_FIELDS.items():
                self.initial[field] = usd_string(getattr(self.instance, attr))
        if self.in_force:
            shown = {"effective_from": formats.localize(timezone.template_localtime(self.instance.effective_from)) + " UTC",
                     **{field: format_usd_exact(getattr(self.instance, attr)) for field, attr in PRICE_FIELDS.items()}}
            # A plain field in place of the split date and time one: its value is shown, not entered.
            self.fields["effective_from"] = forms.DateTimeField(required=False)
            for name, field in self.fields.items():
                field.disabled = True
                field.widget = ShownAsText(shown[name]) if name in shown else ShownAsText(
                    f"{self.instance.batch_discount_bp / 100:g} % off batches", "batch-discount-in-force")

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

    def clean_batch_discount_bp(self):
        value = self.cleaned_data.get("batch_discount_bp")
        return ModelPrice._meta.get_field("batch_discount_bp").default if value is None else value

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
            form.fields["DELETE"].widget = ShownAsText("in force")


class ModelPriceInline(admin.TabularInline):
    """Prices are versioned: a change of price is a new row from a future (or the current) time on."""

    model = ModelPrice
    form = ModelPriceForm
    formset = ModelPriceFormSet
    fields = ("effective_from", *PRICE_FIELDS, "batch_discount_bp")
    extra = 1
    verbose_name = "price (USD per million tokens)"
    verbose_name_plural = "prices (USD per million tokens; prices in force are read-only)"


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ("name", "capability", "served_by", "default_max_tokens", "max_output_tokens", "enabled")
    list_filter = ("enabled", "capability", "deployments__provider")
    list_editable = ("enabled",)
    search_fields = ("name", "deployments__upstream_model", "aliases__name")
    inlines = [DeploymentInline, ModelAliasInline, ModelPriceInline]

    @admin.display(description="deployments")
    def served_by(self, obj):
        return ", ".join(f"{d.provider.name}:{d.upstream_model}" for d in obj.deployments.select_related("provider"))

    def save_formset(self, request, form, formset, change):
        if formset.model is not ModelPrice:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)  # new rows only: prices in force are read-only, scheduled ones editable
        for price in formset.new_objects:
            model_price_add(model=form.instance, effective_from=price.effective_from, actor=request.user,
                            via="admin", batch_discount_bp=price.batch_discount_bp,
                            **{attr: getattr(price, attr) for attr in PRICE_FIELDS.values()})
        for price, _ in formset.changed_objects:
            price.save()
        for price in formset.deleted_objects:
            price.delete()
