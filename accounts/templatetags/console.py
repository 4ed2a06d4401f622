"""The console's home page lists the latest audit entries as its "Recent actions": every operator write
goes through a service that records one, while Django's own admin log sees only some of them."""

from django import template

from accounts.models import AuditEntry

register = template.Library()


@register.simple_tag
def recent_audit_entries(limit: int = 10):
    return AuditEntry.objects.select_related("actor", "tenant").order_by("-created_at", "-id")[:limit]
