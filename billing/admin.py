from django.contrib import admin

from .models import UsageEvent


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    """Read-only: usage rows are append-only billing records."""

    list_display = ("created_at", "request_id", "tenant", "api_key", "model", "stream", "status",
                    "input_tokens", "output_tokens", "latency_ms")
    list_filter = ("status", "stream", "model", "endpoint", "tenant")
    search_fields = ("request_id",)
    date_hierarchy = "created_at"
    list_select_related = ("tenant", "api_key")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
