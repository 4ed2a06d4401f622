"""Key extraction per protocol; the key itself is checked by accounts.selectors.api_key_authenticate."""

from __future__ import annotations

from accounts.selectors import KeyPrincipal, api_key_authenticate


class ApiKey:
    """`Authorization: Bearer sk_cdx_...`, or the header (or query parameter) the protocol's SDK uses.

    Errors are GatewayErrors, rendered by each API in its protocol's shape.
    """

    is_async = True
    openapi_type = "apiKey"

    def __init__(self, *, header: str, query: str | None = None, how: str) -> None:
        self.header, self.query, self.how = header, query, how

    async def __call__(self, request) -> KeyPrincipal:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        presented = token.strip() if scheme.lower() == "bearer" else None
        presented = presented or request.headers.get(self.header) or (self.query and request.GET.get(self.query))
        return await api_key_authenticate(presented, how=self.how, address=request.META.get("REMOTE_ADDR", ""))


# The OpenAI API also takes `x-api-key`, so that the Anthropic SDK can list models at our /v1 root.
OPENAI_KEY = ApiKey(header="x-api-key", how="'Authorization: Bearer sk_cdx_...'")
ANTHROPIC_KEY = ApiKey(header="x-api-key", how="'x-api-key: sk_cdx_...'")
GOOGLE_KEY = ApiKey(header="x-goog-api-key", query="key", how="'x-goog-api-key: sk_cdx_...' or '?key=sk_cdx_...'")
