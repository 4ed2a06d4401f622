"""What the client sees of an upstream's failure, the same for every provider.

Upstream error text is never relayed as it came: a client gets our own message (the status the
client should see, a type from our vocabulary) with at most a short upstream reason, passed through
`upstream_reason`. An upstream, or a proxy in front of it, may echo the request's headers in an
error body, and those carry the operator's credential; so the reason has every credential-looking
token redacted (Bearer tokens, sk-.../sk-ant-.../sk_cdx_... keys, api-key and authorization values)
and, whatever their shape, the credentials this process was configured with.
"""

from __future__ import annotations

import re

from django.conf import settings

from ..core import GatewayError

# What the client sees for each upstream failure: the upstream's own 4xx explanations pass through
# (redacted), while our credentials or the upstream's health are the operator's problem (5xx), not the client's.
_STATUS_MAP = {
    400: (400, "invalid_request_error"),
    401: (502, "upstream_error"),
    403: (502, "upstream_error"),
    404: (404, "invalid_request_error"),
    413: (413, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    529: (503, "overloaded_error"),
}

REASON_MAX_CHARS = 300
REDACTED = "[redacted]"
_REDACTIONS = (
    # `Authorization: Bearer x`, `"x-api-key": "x"`, `api_key=x`: the value after the name.
    (re.compile(r"(?i)((?:proxy-)?authorization|x-api-key|x-goog-api-key|api[-_]?key|access[-_]?token)"
                r"([\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',;}&]+"), rf"\1\2{REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;}&]+"), rf"\1 {REDACTED}"),
    (re.compile(r"\bsk[-_][A-Za-z0-9_\-]{6,}"), REDACTED),  # sk-..., sk-ant-..., sk_cdx_... keys
)
_MIN_CREDENTIAL_CHARS = 8  # shorter "credentials" (placeholders) would redact ordinary words
_ERROR_TYPE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

# Every upstream credential a provider of this process was built with (gateway.providers.get_provider).
_credentials: set[str] = set()


def credential_register(credential: str) -> None:
    if len(credential) >= _MIN_CREDENTIAL_CHARS:
        _credentials.add(credential)


def redact(text: str) -> str:
    """`text` with credentials and anything that looks like one replaced by [redacted]."""
    for credential in (*_credentials, settings.ANTHROPIC_API_KEY):
        if len(credential) >= _MIN_CREDENTIAL_CHARS:
            text = text.replace(credential, REDACTED)
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def upstream_reason(text: object) -> str:
    """An upstream's explanation fit to show a client: one line, redacted, at most REASON_MAX_CHARS."""
    reason = redact(" ".join(str(text).split()))
    return reason if len(reason) <= REASON_MAX_CHARS else reason[:REASON_MAX_CHARS - 1] + "…"


def upstream_error(status: int, error_type: str, message: str, retry_after: int | None = None) -> GatewayError:
    client_status, kind = _STATUS_MAP.get(status, (502, "upstream_error"))
    error_type = error_type if _ERROR_TYPE_RE.match(error_type) else "api_error"
    reason = upstream_reason(message) or "(no reason given)"
    if client_status == 502:
        message = f"The upstream provider failed ({status} {error_type}): {reason}"
    elif status == 529:
        message = "The upstream provider is overloaded. Please retry shortly."
    else:
        message = f"The upstream provider refused the request ({status} {error_type}): {reason}"
    code = {429: "rate_limit_exceeded", 529: "upstream_overloaded", 404: "model_not_found"}.get(status)
    return GatewayError(client_status, message, code=code, type=kind, retry_after=retry_after)
