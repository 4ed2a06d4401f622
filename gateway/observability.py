"""The access log: one line per API request, from one place, with no prompt, answer or secret in it.

A model call's line is written by its Meter once the usage row is (it knows tokens, cost, TTFT and the
outcome, also of a cut stream); any other API request (a 401, a 404, a refusal before metering, a
listing) gets its line from the API handler after its response went out. The handler marks each request
in a context variable that the Meter, running in the request's task or one it spawned, flags as metered.
Off (one level check per request) unless LOG_FORMAT=json enables the logger.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

access_log = logging.getLogger("gatehouse.access")
_current: ContextVar[dict | None] = ContextVar("gateway_access", default=None)


def request_started() -> dict | None:
    """Called by the API handler for each request; None when the access log is off."""
    if not access_log.isEnabledFor(logging.INFO):
        return None
    state = {"metered": False, "started": time.perf_counter()}
    _current.set(state)
    return state


def metered() -> None:
    """The request reached the Meter: its line comes from there."""
    if (state := _current.get()) is not None:
        state["metered"] = True


def model_call_finished(meter, record) -> None:
    """A metered request's line, from its usage record (gateway.metering.meter.Meter.finish)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    _write({"request_id": record.request_id, "tenant": meter.principal.tenant_slug,
            "key": meter.principal.public_id, "endpoint": record.endpoint, "model": record.model,
            "requested_model": record.requested_model, "provider": record.provider, "stream": record.stream,
            "status": record.http_status, "outcome": record.status, "error_type": record.error_type or None,
            "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
            "cache_creation_input_tokens": record.cache_creation_input_tokens,
            "cache_read_input_tokens": record.cache_read_input_tokens, "cost_nano_usd": record.cost_nano,
            "latency_ms": record.latency_ms, "ttft_ms": record.ttft_ms})


def request_finished(state: dict | None, request, response) -> None:
    """An unmetered API request's line (gateway.handler), after its response."""
    if state is None or state["metered"] or request is None or request.path.startswith("/health"):
        return  # probes every few seconds are not traffic
    principal = getattr(request, "auth", None)
    status = response.status_code
    _write({"request_id": response.get("request-id"), "tenant": getattr(principal, "tenant_slug", None),
            "key": getattr(principal, "public_id", None), "endpoint": request.path, "method": request.method,
            "status": status, "outcome": "ok" if status < 400 else "error",
            "latency_ms": round((time.perf_counter() - state["started"]) * 1000)})


def _write(fields: dict) -> None:
    access_log.info("request", extra={"fields": fields})
