"""Prometheus metrics: what the gateway and its background work did. The exposition (`GET /metrics`,
the scrape-time values, a Celery worker's own port) is gateway/metrics.py.

Every metric is defined here, below the apps, so billing and conversations count their work too: the
request path calls the small functions below at the points where it already knows the outcome
(gateway.metering.meter.Meter, admission, routing, the usage writer, the spool, Celery tasks), one line per call site.

Several worker processes: prometheus-client's multiprocess mode. `gateway.serve` (the launcher, once,
before the workers start) creates and empties PROMETHEUS_MULTIPROC_DIR; each worker writes its values
to memory-mapped files there and `/metrics`, in whichever worker serves it, sums them
(MultiProcessCollector). Gauges of live state (in-flight requests, open streams, queue depth, leases)
are `livesum`: the sum over the processes alive, each worker removing its files at shutdown. Without
the directory (one process, the embedded mode) the default registry is used.

What is computed at scrape time, not counted (ScrapeCollector): the rollup lag (one query on the
partial index of rows not rolled up) and the spool depth (shared by every process: Redis or the spool
directory).

A Celery worker is a separate process tree: with CELERY_METRICS_PORT set, its main process serves its
own /metrics on that port (its pool children write to its own PROMETHEUS_MULTIPROC_DIR), scraped by
Prometheus next to the web's. Tasks run eagerly in the embedded mode count in the gateway's /metrics.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from bisect import bisect_left

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client.mmap_dict import MmapedDict, mmap_key

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _multiprocess_value_class():
    """prometheus-client's multiprocess value (`values.MultiProcessValue`), same files, with a shorter write.

    Every increment of the stock class checks the process id (a system call), then goes through two more
    Python calls to reach the memory-mapped file: ~7,000 instructions, 16 times per stream, most of what
    the metrics cost (docs/performance.md, "Cutting the cost of streaming instrumentation"). This one
    writes the value's 16 bytes straight into the file's map at the position the file gave it (the stock
    MmapedDict's layout, read by MultiProcessCollector), and resets its files after a fork instead of
    asking for the pid every time.
    """
    pack = struct.Struct("dd").pack
    files: dict[str, MmapedDict] = {}
    instances: list[MultiProcessValue] = []
    lock, pid = threading.Lock(), os.getpid()

    def file_for(prefix: str) -> MmapedDict:
        if (file := files.get(prefix)) is None:
            path = os.path.join(os.environ[MULTIPROC_ENV], f"{prefix}_{pid}.db")
            file = files[prefix] = MmapedDict(path)
        return file

    class MultiProcessValue:
        _multiprocess = True

        def __init__(self, typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode="",
                     **kwargs):
            self._prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
            self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
            with lock:
                self._reset()
                instances.append(self)

        def _reset(self) -> None:
            self._file = file_for(self._prefix)
            self._value, self._timestamp = self._file.read_value(self._key)  # allocates the entry if new
            position = self._file._positions[self._key]
            self._at = slice(position, position + 16)

        def inc(self, amount):
            with lock:
                self._value += amount
                # Assigned, not pack_into: that writes zeros first, which a concurrent scrape may read.
                self._file._m[self._at] = pack(self._value, 0.0)

        def set(self, value, timestamp=None):
            with lock:
                self._value, self._timestamp = value, timestamp or 0.0
                self._file._m[self._at] = pack(value, self._timestamp)

        def set_exemplar(self, exemplar):
            return  # not supported in multiprocess mode, as in the stock class

        def get(self):
            with lock:
                return self._value

        def get_exemplar(self):
            return None

    def after_fork() -> None:  # the child's values start from zero in files of its own, as with the stock class
        nonlocal lock, pid
        lock, pid = threading.Lock(), os.getpid()
        close()
        for value in instances:
            value._reset()

    def close() -> None:
        for file in files.values():
            file.close()
        files.clear()

    os.register_at_fork(after_in_child=after_fork)
    return MultiProcessValue


if os.environ.get(MULTIPROC_ENV):
    # Before the first metric below is created: values.ValueClass is what each metric instantiates.
    values.ValueClass = _multiprocess_value_class()


_TENANT = ("tenant",) if settings.METRICS_TENANT_LABEL else ()
_REQUEST = ("endpoint", "model", "provider", "outcome", *_TENANT)
# LLM calls take seconds to minutes; the default buckets stop at 10 s.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

REQUESTS = Counter("gatehouse_requests_total", "Model calls that reached routing, by outcome "
                   "(ok, partial: a stream cut short, error).", _REQUEST)
REQUEST_DURATION = Histogram("gatehouse_request_duration_seconds", "From the request's arrival to its "
                             "usage row (for a stream: its end).", _REQUEST, buckets=_LATENCY_BUCKETS)
TTFT = Histogram("gatehouse_time_to_first_token_seconds", "From the request's arrival to the first "
                 "generated token.", ("endpoint", "model", "provider", *_TENANT), buckets=_LATENCY_BUCKETS)
IN_FLIGHT = Gauge("gatehouse_requests_in_flight", "Model calls admitted and not yet recorded.", ("endpoint",),
                  multiprocess_mode="livesum")
OPEN_STREAMS = Gauge("gatehouse_open_streams", "Streams being relayed to clients.", ("endpoint",),
                     multiprocess_mode="livesum")
TOKENS = Counter("gatehouse_tokens_total", "Tokens billed, by kind (input, output, cache_write, cache_read).",
                 ("kind", "model", "provider", *_TENANT))
COST = Counter("gatehouse_cost_nano_usd_total", "Cost charged, in nano-USD.", ("model", "provider", *_TENANT))
REFUSALS = Counter("gatehouse_admission_refusals_total", "Requests refused before the upstream, by reason "
                   "(rpm, tpm, budget, balance, model_not_allowed).", ("reason", *_TENANT))
UPSTREAM_DURATION = Histogram("gatehouse_upstream_request_duration_seconds", "One upstream attempt: to the "
                              "answer, or for a stream to its first event.", ("provider", "model", "outcome"),
                              buckets=_LATENCY_BUCKETS)
UPSTREAM_ERRORS = Counter("gatehouse_upstream_errors_total", "Failed upstream attempts, by class "
                          "(429, 529, 5xx, timeout, connect, 4xx).", ("provider", "model", "class"))
RETRIES = Counter("gatehouse_upstream_retries_total", "Upstream attempts retried on the same target.",
                  ("provider", "model"))
FALLBACKS = Counter("gatehouse_upstream_fallbacks_total", "Targets given up for the next one after failing.",
                    ("provider", "model"))
COOLDOWN_UNTIL = Gauge("gatehouse_deployment_cooldown_until_seconds", "Unix time until which a deployment's "
                       "target cools down; in cooldown while it is in the future.",
                       ("deployment", "provider", "model"), multiprocess_mode="livemax")
USAGE_QUEUE = Gauge("gatehouse_usage_queue_depth", "Usage rows in or waiting for the current write.",
                    multiprocess_mode="livesum")
USAGE_FLUSH = Histogram("gatehouse_usage_flush_duration_seconds", "One batched write of usage rows.",
                        buckets=_FAST_BUCKETS)
SPOOLED = Counter("gatehouse_usage_spooled_total", "Usage rows, turns and request logs the database could "
                  "not take, put in the spool.")
DB_ERRORS = Counter("gatehouse_database_errors_total", "Database operations that failed: unreachable.")
REDIS_ERRORS = Counter("gatehouse_redis_errors_total", "Redis operations that failed.", ("component",))
LEASES = Gauge("gatehouse_conversation_leases", "Conversation turns in progress (each holds its "
               "conversation's lease).", multiprocess_mode="livesum")
TASKS = Counter("gatehouse_celery_tasks_total", "Celery task runs, by outcome (success, failure).",
                ("task", "outcome"))
TASK_DURATION = Histogram("gatehouse_celery_task_duration_seconds", "Celery task run time.", ("task",),
                          buckets=_LATENCY_BUCKETS)
CONVERSATIONS_EXPIRED = Counter("gatehouse_conversations_expired_total", "Conversations deleted after their "
                                "retention.")


def _tenant(principal) -> tuple[str, ...]:
    return (principal.tenant_slug,) if _TENANT else ()


class _HistogramCells:
    """A histogram child's value cells, observed without its per-call checks."""

    __slots__ = ("sum", "buckets", "bounds")

    def __init__(self, child) -> None:
        self.sum, self.buckets, self.bounds = child._sum, child._buckets, child._upper_bounds

    def observe(self, amount: float) -> None:
        self.sum.inc(amount)
        self.buckets[bisect_left(self.bounds, amount)].inc(1)  # the first bucket with amount <= its bound


_cells: dict[tuple, object] = {}


def _cell(metric, *labels: str):
    """The value cell of `metric.labels(*labels)` (a counter's or gauge's value; a histogram's sum and
    buckets), cached, and written to directly. labels() validates and locks on every call, and a child's
    inc() or observe() checks that it is one, then reaches the value through two more calls: together they
    were half of what a request's metrics cost (docs/performance.md, "Metrics on the hot path" and
    "Cutting the cost of streaming instrumentation")."""
    key = (metric, labels)
    cell = _cells.get(key)
    if cell is None:
        child = metric.labels(*labels) if labels else metric
        cell = _cells[key] = _HistogramCells(child) if isinstance(metric, Histogram) else child._value
    return cell


# --- The request path -----------------------------------------------------------------------------------


def request_started(endpoint: str) -> None:
    _cell(IN_FLIGHT, endpoint).inc(1)


def request_finished(meter, outcome: str, now: float, cost_nano: int) -> None:
    """One model call recorded by gateway.metering.meter.Meter.finish: its count, latency, TTFT, tokens and cost."""
    model, provider, tenant = meter.model.name, meter.deployment.provider if meter.deployment else "", _tenant(
        meter.principal)
    _cell(IN_FLIGHT, meter.endpoint).inc(-1)
    labels = (meter.endpoint, model, provider, outcome, *tenant)
    _cell(REQUESTS, *labels).inc(1)
    _cell(REQUEST_DURATION, *labels).observe(now - meter.started)
    if meter.first_token_at is not None:
        _cell(TTFT, meter.endpoint, model, provider, *tenant).observe(meter.first_token_at - meter.started)
    usage = meter.usage
    for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens),
                        ("cache_write", usage.cache_creation_input_tokens), ("cache_read", usage.cache_read_input_tokens)):
        if count:
            _cell(TOKENS, kind, model, provider, *tenant).inc(count)
    if cost_nano:
        _cell(COST, model, provider, *tenant).inc(cost_nano)


def stream_opened(endpoint: str) -> None:
    _cell(OPEN_STREAMS, endpoint).inc(1)


def stream_closed(endpoint: str) -> None:
    _cell(OPEN_STREAMS, endpoint).inc(-1)


def refused(reason: str, principal=None) -> None:
    _cell(REFUSALS, reason, *(_tenant(principal) if principal is not None else ("",) * len(_TENANT))).inc(1)


def lease_taken() -> None:
    LEASES.inc()


def lease_ended() -> None:
    LEASES.dec()


# --- Routing --------------------------------------------------------------------------------------------


# Providers report an overload (Anthropic's 529, an OpenAI-compatible 503) as a 503 with this code.
_CLASS_BY_CODE = {"upstream_timeout": "timeout", "first_byte_timeout": "timeout", "upstream_unreachable": "connect",
                  "upstream_overloaded": "529"}


def error_class(error) -> str:
    """A GatewayError from an upstream attempt -> its class on gatehouse_upstream_errors_total."""
    if error.code in _CLASS_BY_CODE:
        return _CLASS_BY_CODE[error.code]
    if error.status == 429:
        return "429"
    return "5xx" if error.status >= 500 else "4xx"


def upstream_attempt(model, deployment, started: float, error=None) -> None:
    labels = (deployment.provider, model.name)
    _cell(UPSTREAM_DURATION, *labels, "ok" if error is None else error_class(error)).observe(
        time.perf_counter() - started)
    if error is not None:
        _cell(UPSTREAM_ERRORS, *labels, error_class(error)).inc(1)


def upstream_retry(model, deployment) -> None:
    _cell(RETRIES, deployment.provider, model.name).inc(1)


def upstream_cooldown(model, deployment, until_monotonic: float) -> None:
    """A target given up on: a fallback to the next one, and its cooldown's end (as wall-clock time)."""
    _cell(FALLBACKS, deployment.provider, model.name).inc(1)
    _cell(COOLDOWN_UNTIL, str(deployment.id), deployment.provider, model.name).set(
        time.time() + until_monotonic - time.monotonic())


def upstream_recovered(model, deployment) -> None:
    _cell(COOLDOWN_UNTIL, str(deployment.id), deployment.provider, model.name).set(0.0)


# --- Usage writer, spool, outages ---------------------------------------------------------------------


def usage_queue(depth: int) -> None:
    _cell(USAGE_QUEUE).set(float(depth))


def usage_flushed(started: float, waiting: int) -> None:
    _cell(USAGE_FLUSH).observe(time.perf_counter() - started)
    _cell(USAGE_QUEUE).set(float(waiting))


def spooled(count: int) -> None:
    SPOOLED.inc(count)


def database_error() -> None:
    DB_ERRORS.inc()


def redis_error(component: str) -> None:
    _cell(REDIS_ERRORS, component).inc(1)


# --- Background work ------------------------------------------------------------------------------------

_task_started: dict[str, float] = {}  # task id -> perf_counter at prerun


def _task_prerun(task_id=None, **_) -> None:
    _task_started[task_id] = time.perf_counter()


def _task_postrun(task_id=None, task=None, state=None, **_) -> None:
    started = _task_started.pop(task_id, None)
    TASKS.labels(task.name, "success" if state == "SUCCESS" else "failure").inc()
    if started is not None:
        TASK_DURATION.labels(task.name).observe(time.perf_counter() - started)


def conversations_expired(count: int) -> None:
    CONVERSATIONS_EXPIRED.inc(count)


def connect_celery_signals() -> None:
    """Count every task run: in a worker, and run eagerly in the embedded mode (the same signals)."""
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_task_prerun, weak=False)
    task_postrun.connect(_task_postrun, weak=False)
