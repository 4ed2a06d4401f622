"""What the client sees of an upstream's failure, the same for every provider."""

from __future__ import annotations

from ..core import GatewayError

# What the client sees for each upstream failure: the upstream's own 4xx explanations pass through,
# while our credentials or the upstream's health are the operator's problem (5xx), not the client's.
_STATUS_MAP = {
    400: (400, "invalid_request_error"),
    401: (502, "upstream_error"),
    403: (502, "upstream_error"),
    404: (404, "invalid_request_error"),
    413: (413, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    529: (503, "overloaded_error"),
}


def upstream_error(status: int, error_type: str, message: str, retry_after: int | None = None) -> GatewayError:
    client_status, kind = _STATUS_MAP.get(status, (502, "upstream_error"))
    if client_status == 502:
        message = f"The upstream provider failed ({status} {error_type}): {message}"
    elif status == 529:
        message = "The upstream provider is overloaded. Please retry shortly."
    code = {429: "rate_limit_exceeded", 529: "upstream_overloaded", 404: "model_not_found"}.get(status)
    return GatewayError(client_status, message, code=code, type=kind, retry_after=retry_after)
