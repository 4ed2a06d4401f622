"""The access log: one line per API request, from one place, with no prompt, answer or secret in it.

A model call's line is written by its Meter once the usage row is (it knows tokens, cost, TTFT and the
outcome, also of a cut stream); any other API request (a 401, a 404, a refusal before metering, a
listing) gets its line from the API handler after its response went out. The handler marks each request
in a context variable that the Meter, running in the request's task or one it spawned, flags as metered.
Off (one level check per request) unless LOG_FORMAT=json enables the logger.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from contextvars import ContextVar

access_log = logging.getLogger("gatehouse.access")
_current: ContextVar[dict | None] = ContextVar("gateway_access", default=None)
# Per thread: the attributes every access record of that thread shares (see _write).
_templates: dict[int, dict] = {}
os.register_at_fork(after_in_child=_templates.clear)  # they hold the process id


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
    """`access_log.info("request", extra={"fields": fields})`, with the record made for a quarter of the cost.

    Making the LogRecord (the caller's frame, the path split into file and module, thread and process
    names) was a third of an access line's instructions (docs/performance.md, "Cutting the cost of
    streaming instrumentation"), and every record a thread makes here has the same values but its time.
    The first record of each thread is made by the logger; later ones copy its attributes and take their
    own time, then go to the logger's handlers as any record does."""
    thread = threading.get_ident()
    if (template := _templates.get(thread)) is None:
        first = access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, "request", (), None, "_write")
        template = _templates[thread] = dict(vars(first))
    record = logging.LogRecord.__new__(logging.LogRecord)
    attributes = vars(record)
    attributes.update(template)
    created = time.time()
    attributes["created"] = created
    attributes["msecs"] = int((created - int(created)) * 1000) + 0.0  # as LogRecord.__init__
    attributes["relativeCreated"] = template["relativeCreated"] + (created - template["created"]) * 1000
    if "taskName" in template:  # Python 3.12+: the asyncio task's name, a per-record value
        attributes["taskName"] = _task_name() if getattr(logging, "logAsyncioTasks", False) else None
    attributes["fields"] = fields
    access_log.handle(record)


def _task_name() -> str | None:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return None
    return task.get_name() if task is not None else None
