from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"

    def ready(self) -> None:
        _scope_connection_signals()
        from common import metrics

        from . import metrics as exposition  # noqa: F401 - registers the scrape-time values in the embedded mode

        metrics.connect_celery_signals()


def _scope_connection_signals() -> None:
    """Run Django's per-request connection housekeeping for Django's own handlers only.

    Signal receivers registered for a sender match that exact class, so gateway.handler.ApiHandler
    (a subclass) no longer pays two sync/async thread hops per request for them; its database code
    does the same housekeeping inside the sync units it already runs.
    """
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, reset_queries

    for signal, receivers in ((request_started, (reset_queries, close_old_connections)),
                              (request_finished, (close_old_connections,))):
        for receiver in receivers:
            if signal.disconnect(receiver):
                for sender in (ASGIHandler, WSGIHandler):
                    signal.connect(receiver, sender=sender)
