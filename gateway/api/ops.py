"""The operations endpoints: /health, /health/ready and /health/live for load balancers and Kubernetes
(on the lean API handler, config/asgi.py), /metrics for Prometheus."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import Http404, HttpResponse

from common.db import refresh_connections

from .. import metrics
from ..metering import spool
from ..pipeline import json_response
from ..providers import pool_status


def _database_ok() -> bool:
    refresh_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


async def _redis_ok() -> bool:
    import redis.asyncio as redis

    client = redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


_migrations_applied = False  # once true it stays true: migrations do not come undone under a running process


def _migrations_ok() -> bool:
    """No migration of the code's left unapplied; computed until it first succeeds, then cached."""
    global _migrations_applied
    if not _migrations_applied:
        from django.db.migrations.executor import MigrationExecutor

        refresh_connections()
        try:
            executor = MigrationExecutor(connection)
            _migrations_applied = not executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception:
            return False
    return _migrations_applied


async def _readiness(*, migrations: bool):
    """The checks /health and /health/ready share: the database (and Redis, if configured) answer, the
    usage spool is not overflowing, no upstream connection pool of this process has been saturated for
    UPSTREAM_POOL_SATURATED_SECONDS, and (`migrations`) every migration is applied."""
    checks = {"database": sync_to_async(_database_ok, thread_sensitive=True)()}
    if settings.REDIS_URL:
        checks["redis"] = _redis_ok()
    if migrations:
        checks["migrations"] = sync_to_async(_migrations_ok, thread_sensitive=True)()
    spooled, *answers = await asyncio.gather(sync_to_async(spool.depth, thread_sensitive=False)(), *checks.values())
    checks_out = {k: "ok" if v else "down" for k, v in zip(checks, answers)}
    checks_out["usage_spool"] = "ok" if spooled <= settings.GATEWAY_USAGE_SPOOL_MAX else "overflowing"
    pools = pool_status()
    checks_out["upstream_pool"] = "saturated" if any(pool["saturated"] for pool in pools.values()) else "ok"
    healthy = all(v == "ok" for v in checks_out.values())
    payload = {"status": "ok" if healthy else "unavailable", "checks": checks_out,
               "usage_spool": {"depth": spooled, "max": settings.GATEWAY_USAGE_SPOOL_MAX}, "upstream_pools": pools}
    return json_response(payload, status=200 if healthy else 503)


async def health(request):
    """No auth. 200 when every check of `_readiness` but migrations passes; 503 otherwise."""
    return await _readiness(migrations=False)


async def health_ready(request):
    """No auth. As /health, and the database has every migration of this code: a load balancer's (or
    Kubernetes') cue to send traffic here."""
    return await _readiness(migrations=True)


async def health_live(request):
    """No auth, no I/O: the process is up and its event loop answers. A database outage must not get
    every pod restarted, so this checks nothing else."""
    return json_response({"status": "ok"})


def metrics_view(request):
    """Prometheus exposition: 404 unless METRICS_TOKEN is set, then 401 without it as a bearer token.
    Sync: the scrape-time rollup lag is a database query."""
    if not settings.METRICS_TOKEN:
        raise Http404("Metrics are off: set METRICS_TOKEN.")
    if not metrics.authorized(request.headers.get("Authorization", "")):
        return HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)
