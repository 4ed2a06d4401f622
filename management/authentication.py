"""DRF authentication for the management API: operator tokens and tenant admin keys.

The credentials themselves are checked by accounts.selectors.management_principal; these classes only
find the presented secret and turn its refusal (common.errors) into DRF's 401/403. `request.user` becomes the
ManagementPrincipal (`request.auth` too).
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from accounts import keys
from accounts.selectors import ManagementPrincipal, management_principal
from common.errors import AppError, Forbidden


def presented_credential(request) -> str | None:
    """`Authorization: Bearer ...`, else `x-api-key` (the header Anthropic's admin API uses)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return (token.strip() if scheme.lower() == "bearer" else None) or request.headers.get("x-api-key") or None


class ManagementCredentialAuthentication(BaseAuthentication):
    """An operator token (`sk_cdx_op_...`) or a tenant admin key (`sk_cdx_admin_...`)."""

    kinds: tuple[str, ...] = (keys.OPERATOR, keys.ADMIN)

    def authenticate(self, request) -> tuple[ManagementPrincipal, ManagementPrincipal] | None:
        presented = presented_credential(request)
        if presented is None:
            return None  # IsAuthenticated then answers 401 with authenticate_header
        try:
            principal = management_principal(presented, kinds=self.kinds)
        except AppError as exc:
            error = exceptions.PermissionDenied if isinstance(exc, Forbidden) else exceptions.AuthenticationFailed
            raise error(exc.message, code=exc.code) from None
        return principal, principal

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="gatehouse"'


class OperatorTokenAuthentication(ManagementCredentialAuthentication):
    kinds = (keys.OPERATOR,)


class TenantAdminKeyAuthentication(ManagementCredentialAuthentication):
    kinds = (keys.ADMIN,)
