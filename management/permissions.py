"""Who may call what: operators everything (read-only tokens: reads), tenant admins their own tenant.

Tenant scoping itself is in views.TenantScoped (another tenant is a 404); these classes decide by the
kind of credential and the method.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Membership
from accounts.selectors import ManagementPrincipal


def _principal(request) -> ManagementPrincipal | None:
    user = request.user
    return user if isinstance(user, ManagementPrincipal) else None


class _WritesNeedFullToken(BasePermission):
    message = "This operator token is read-only."

    def has_permission(self, request, view) -> bool:
        principal = _principal(request)
        return principal is not None and (request.method in SAFE_METHODS or not principal.read_only)


class IsOperator(_WritesNeedFullToken):
    """Operator tokens only; a read-only token may only read."""

    def has_permission(self, request, view) -> bool:
        principal = _principal(request)
        if principal is not None and not principal.is_operator:
            self.message = "This needs an operator token; tenant admin keys manage their own tenant only."
            return False
        return super().has_permission(request, view)


class IsOperatorOrTenantAdmin(_WritesNeedFullToken):
    """Operators, or a tenant admin key (its tenant is checked by the view's lookup)."""


class IsTenantOwner(BasePermission):
    """What only a tenant's owners do (an admin's key is refused); operators pass."""

    message = "Only a key created by an owner of this tenant can do this."

    def has_permission(self, request, view) -> bool:
        principal = _principal(request)
        return principal is not None and (principal.is_operator or principal.role == Membership.Role.OWNER)
