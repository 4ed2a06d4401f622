"""OpenTelemetry traces: a span per API request, children for admission, each upstream attempt and the
usage write; the caller's W3C `traceparent` is continued and passed on to the upstream.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (the standard OTEL_* variables then configure the OTLP/HTTP
exporter, e.g. OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_HEADERS). Off, every helper here is a flag check and
a shared null context: the SDK is not even imported.
"""

from __future__ import annotations

import contextlib
import os

_NULL = contextlib.nullcontext()
_tracer = None  # set by configure(): None means tracing is off


def configure(exporter=None) -> None:
    """Start tracing: with `exporter` (tests: the SDK's InMemorySpanExporter, spans exported as they end),
    or the OTLP/HTTP one when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise stay off."""
    global _tracer
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                      "gatehouse")}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracer = provider.get_tracer("gatehouse")


def request_span(scope):
    """The request's span (current for its task and the tasks it starts), continuing the caller's trace."""
    if _tracer is None:
        return _NULL
    from opentelemetry.propagate import extract

    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())}
    return _tracer.start_as_current_span(f"{scope.get('method', '')} {scope['path']}", context=extract(carrier),
                                         kind=_server_kind(), attributes={"http.route": scope["path"]})


def span(name: str, **attributes):
    """A child of the current span (admission, an upstream attempt, the usage write)."""
    if _tracer is None:
        return _NULL
    return _tracer.start_as_current_span(name, attributes=attributes)


def upstream_headers() -> dict[str, str]:
    """The current span's `traceparent` (and `tracestate`) for an upstream call; empty when off."""
    if _tracer is None:
        return {}
    from opentelemetry.propagate import inject

    headers: dict[str, str] = {}
    inject(headers)
    return headers


def _server_kind():
    from opentelemetry.trace import SpanKind

    return SpanKind.SERVER
