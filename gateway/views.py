from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from accounts.dashboard import dashboard_view, membership_for, visible_keys
from accounts.selectors import key_principal, principal_check
from billing import spool
from billing.models import UsageEvent
from billing.money import format_usd
from config.db import UNREACHABLE, refresh_connections
from config.outage import db_unavailable

from . import metrics
from .api import openai_error_response
from .core import GatewayError, database_unavailable
from .models import CatalogModel
from .pipeline import json_response, serve
from .providers import pool_status
from .protocols import openai_chat
from .selectors import catalog_load
from .services import playground_key


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


def index(request):
    return render(request, "index.html", {"base_url": request.build_absolute_uri("/v1")})


def _prices_context() -> dict:
    now = time.time()
    return {"models": [{"entry": entry, "price": entry.price_at(now)} for entry in catalog_load().models]}


@dashboard_view()
def models_prices(request):
    """Every enabled model with its aliases, limits and the price in force (what `/v1/models` carries)."""
    return render(request, "dashboard/models.html", {"section": "models", **_prices_context()})


def public_prices(request):
    """The same list without signing in, when the operator publishes it (PUBLIC_PRICES)."""
    if not settings.PUBLIC_PRICES:
        raise Http404("Prices are not published.")
    return render(request, "dashboard/models.html", _prices_context())


@dashboard_view()
def playground(request):
    models = CatalogModel.objects.filter(enabled=True, capability=CatalogModel.Capability.CHAT).order_by("name")
    return render(request, "dashboard/playground.html", {"section": "playground", "models": models})


def _playground_principal(request):
    """The signed-in user's playground key in their current tenant, as the request path sees a key, with
    the same refusals as a presented key (a suspended tenant is refused here as on the API)."""
    membership = membership_for(request) if request.user.is_authenticated else None
    if membership is None:
        raise GatewayError(401, "Log in to use the playground.", code="login_required", type="authentication_error")
    principal = key_principal(playground_key(tenant=membership.tenant, user=request.user).public_id)
    return principal_check(principal, time.time())


@require_POST
async def playground_chat(request):
    """The playground's chat: a same-origin, session- and CSRF-checked door to the chat completions path,
    billed to the user's playground key, so no key ever reaches the browser. Admission (limits, budget,
    balance, allowed models) is the request path's own, as for any key."""
    try:
        request.auth = await sync_to_async(_playground_principal)(request)
        return await serve(request, codec=openai_chat, endpoint="chat.completions")
    except GatewayError as error:  # as the API renders it: OpenAI's shape, retry-after, rate-limit headers
        return openai_error_response(request, error)
    except UNREACHABLE as exc:
        db_unavailable.failed(exc)
        return openai_error_response(request, database_unavailable())


@dashboard_view()
def playground_usage(request, request_id: str):
    """What one playground turn cost, from its usage row (written before the answer's last bytes)."""
    row = UsageEvent.objects.filter(tenant=request.tenant, request_id=request_id,
                                    api_key__in=visible_keys(request)).first()
    if row is None:
        raise Http404("No such request.")
    return json_response({"input_tokens": row.input_tokens + row.cache_creation_input_tokens + row.cache_read_input_tokens,
                          "output_tokens": row.output_tokens, "cost": format_usd(row.cost_nano),
                          "status": row.status})
