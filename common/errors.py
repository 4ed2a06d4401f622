"""The domain apps' refusals, in their own terms rather than a protocol's.

accounts and conversations raise these (a wrong key, a busy conversation, an unknown response, an
unreachable database) and import nothing of the gateway. The kind of refusal is the class; `status` is
the HTTP status that kind has everywhere (as Django's Http404 and PermissionDenied carry theirs) and
`type` the error class that OpenAI's and Anthropic's clients both know it by. The gateway turns them
into its protocols' errors in one place (gateway.core.protocol_error), the management API into DRF's
(management.authentication), the dashboard into a page.
"""

from __future__ import annotations

DATABASE_RETRY_AFTER_SECONDS = 5


class AppError(Exception):
    status = 500
    type = "server_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param, self.retry_after = message, code, param, retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, param={self.param!r})"


class Invalid(AppError):
    status, type = 400, "invalid_request_error"


class Unauthenticated(AppError):
    status, type = 401, "authentication_error"


class Forbidden(AppError):
    status, type = 403, "permission_error"


class NotFound(AppError):
    status, type = 404, "invalid_request_error"


class Conflict(AppError):
    status, type = 409, "invalid_request_error"


class Throttled(AppError):
    status, type = 429, "rate_limit_error"


class Unavailable(AppError):
    status, type = 503, "server_error"


def database_unavailable() -> Unavailable:
    """What a request that needs the database sees while it is unreachable (the rest keeps working)."""
    return Unavailable("The gateway's database is temporarily unavailable; retry shortly.",
                       code="database_unavailable", retry_after=DATABASE_RETRY_AFTER_SECONDS)
