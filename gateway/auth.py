"""Key extraction per protocol; the key itself is checked by accounts.selectors.api_key_authenticate."""

from __future__ import annotations

from accounts.selectors import KeyPrincipal, api_key_authenticate


class BearerKey:
    """`Authorization: Bearer sk_cdx_...` (OpenAI clients). Errors are GatewayErrors, rendered by the API."""

    is_async = True
    openapi_type = "http"

    async def __call__(self, request) -> KeyPrincipal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return await api_key_authenticate(token.strip() if scheme.lower() == "bearer" else None)
