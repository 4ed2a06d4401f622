"""Key extraction per protocol; the key itself is checked by accounts.selectors.api_key_authenticate."""

from __future__ import annotations

from accounts import keys
from accounts.selectors import KeyPrincipal, ManagementPrincipal, api_key_authenticate, management_principal_async


class ApiKey:
    """`Authorization: Bearer sk_cdx_...`, or the header (or query parameter) the protocol's SDK uses.

    Refusals are accounts' (common.errors), rendered by each API in its protocol's shape.
    """

    is_async = True
    openapi_type = "apiKey"

    def __init__(self, *, header: str, query: str | None = None, how: str) -> None:
        self.header, self.query, self.how = header, query, how

    async def __call__(self, request) -> KeyPrincipal:
        presented = _presented(request, self.header) or (self.query and request.GET.get(self.query))
        return await api_key_authenticate(presented, how=self.how, address=request.META.get("REMOTE_ADDR", ""))


def _presented(request, header: str) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return (token.strip() if scheme.lower() == "bearer" else None) or request.headers.get(header)


class AdminKey:
    """A tenant admin key (`sk_cdx_admin_...`), for the admin usage and cost APIs: `Authorization: Bearer`
    as OpenAI's admin clients send it, or `x-api-key` as Anthropic's do. API keys are refused."""

    is_async = True
    openapi_type = "apiKey"

    async def __call__(self, request) -> ManagementPrincipal:
        return await management_principal_async(_presented(request, "x-api-key"), kinds=(keys.ADMIN,))


ADMIN_KEY = AdminKey()  # each protocol's ApiKey is in its entry (gateway/api/registry.py)
