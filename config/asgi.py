"""ASGI entry point: `config.asgi:application`.

API paths go to a lean Django handler without the middleware stack (see gateway/handler.py); the
admin and the dashboard get the full one, and the dashboard's WebSockets go to channels.
"""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

import gateway.providers.anthropic  # noqa: E402,F401 - import the SDK now, not on the first request
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from billing.consumers import UsageConsumer  # noqa: E402
from gateway.api.registry import lean_prefixes  # noqa: E402
from gateway.handler import ApiHandler  # noqa: E402

_full = ASGIHandler()
_api = ApiHandler()
_api_prefixes = lean_prefixes()
_websockets = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([path("ws/usage/", UsageConsumer.as_asgi())])))


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith(_api_prefixes):
        return await _api(scope, receive, send)
    if scope["type"] == "websocket":
        return await _websockets(scope, receive, send)
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    return await _full(scope, receive, send)


async def _lifespan(receive, send):
    from billing import scheduler
    from gateway import metrics, shutdown, tracing
    from gateway.admission import admission
    from gateway.batches import executor as batch_executor
    from gateway.metering import spool
    from gateway.metering.recorder import usage_recorder
    from gateway.providers import close_providers

    billing_scheduler = batch_sweeper = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            tracing.configure()  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
            shutdown.watch()  # SIGTERM starts the grace, after which open streams are cut
            spool_replayer = spool.start()  # usage the database could not take, from this run or the last
            if settings.CELERY_TASK_ALWAYS_EAGER:  # embedded mode: no broker, no beat; run the schedule here
                billing_scheduler = scheduler.start()
                batch_sweeper = batch_executor.start_sweeper()  # and batches, on this loop
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if billing_scheduler is not None:
                await scheduler.stop(billing_scheduler)
                await batch_executor.stop_sweeper(batch_sweeper)
            await usage_recorder.drain()  # rows of the last requests, before the spool's last replay
            await spool.stop(spool_replayer)
            await admission.drain()
            await close_providers()
            metrics.process_exit()
            await send({"type": "lifespan.shutdown.complete"})
            return


# What is loaded by now lives as long as the process: keep it out of the collector's way, so that
# full collections under load walk only per-request garbage. They took ~120 ms each without this,
# which made the c=32 tail (docs/performance.md).
gc.collect()
gc.freeze()
