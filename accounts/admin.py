from django.contrib import admin, messages

from .models import ApiKey, Tenant
from .services import api_key_revoke, tenant_set_status


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("slug", "name")
    readonly_fields = ("status", "created_at")
    actions = ("suspend", "resume")

    @admin.action(description="Suspend selected tenants (their keys stop working within seconds)")
    def suspend(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)
        self.message_user(request, f"Suspended {queryset.count()} tenant(s).", messages.SUCCESS)

    @admin.action(description="Resume selected tenants")
    def resume(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.Status.ACTIVE)
        self.message_user(request, f"Resumed {queryset.count()} tenant(s).", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are issued by `create_key` (the plaintext is shown once there); the admin can only revoke."""

    list_display = ("display", "name", "tenant", "created_at", "revoked_at")
    list_filter = ("revoked_at", "tenant")
    search_fields = ("public_id", "name", "tenant__slug")
    fields = ("display", "name", "tenant", "created_by", "created_at", "revoked_at")
    readonly_fields = ("display", "tenant", "created_by", "created_at", "revoked_at")
    actions = ("revoke",)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # usage rows reference keys; revoke instead

    @admin.action(description="Revoke selected keys (one-way)")
    def revoke(self, request, queryset):
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)
