from django.contrib import admin

from .models import CatalogModel, ModelAlias


class ModelAliasInline(admin.TabularInline):
    model = ModelAlias
    extra = 1


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ("name", "upstream_model", "provider", "default_max_tokens", "max_output_tokens", "enabled")
    list_filter = ("enabled", "provider")
    list_editable = ("enabled",)
    search_fields = ("name", "upstream_model", "aliases__name")
    inlines = [ModelAliasInline]
