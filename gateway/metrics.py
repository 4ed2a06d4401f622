"""The exposition of the metrics defined in common/metrics.py: `GET /metrics`, the values computed at
scrape time, a Celery worker's own port.

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

import hmac
import os
import time

from django.conf import settings
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess,
                               start_http_server)
from prometheus_client.core import GaugeMetricFamily

from billing.models import UsageEvent
from common.db import UNREACHABLE
from common.metrics import MULTIPROC_ENV, database_error

from .metering import spool
from .serve import prepare_metrics_dir


def worker_serve() -> None:
    """A Celery worker's own /metrics, in its main process, before the pool forks."""
    if not settings.CELERY_METRICS_PORT:
        return
    registry = REGISTRY
    if os.environ.get(MULTIPROC_ENV):
        prepare_metrics_dir(os.environ[MULTIPROC_ENV])
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(settings.CELERY_METRICS_PORT, registry=registry)


# --- Scrape time ----------------------------------------------------------------------------------------


def _lag_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("gatehouse_usage_rollup_lag_seconds", "Age of the oldest usage row not yet rolled "
                             "up and debited (0: none).")


def _spool_family(**value) -> GaugeMetricFamily:
    return GaugeMetricFamily("gatehouse_usage_spool_depth", "Entries waiting in the usage spool.", **value)


class ScrapeCollector:
    """Values read when Prometheus scrapes, shared by all processes (so not summed across them)."""

    def describe(self):
        # What registering asks for: without it the registry would collect (query the database) at import.
        return [_lag_family(), _spool_family()]

    def collect(self):
        lag = _lag_family()
        try:
            # The partial index usage_not_rolled_up holds only these rows.
            oldest = UsageEvent.objects.filter(rolled_up_at__isnull=True).order_by("created_at").values_list(
                "created_at", flat=True).first()
        except UNREACHABLE:
            database_error()
        else:
            lag.add_metric([], 0 if oldest is None else max(0.0, time.time() - oldest.timestamp()))
            yield lag
        yield _spool_family(value=spool.depth())


_scrape = ScrapeCollector()
if not os.environ.get(MULTIPROC_ENV):
    REGISTRY.register(_scrape)


def process_exit() -> None:
    """A worker going away: its live gauges stop counting (they would otherwise stay in the sum)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())


def authorized(header: str) -> bool:
    """`Authorization: Bearer <METRICS_TOKEN>`, compared in constant time."""
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


def render() -> tuple[bytes, str]:
    """The exposition: every process's values summed in multiprocess mode, plus the scrape-time values."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_scrape)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
