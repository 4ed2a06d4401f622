from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"

    def ready(self) -> None:
        _scope_connection_signals()
        _provide_to_the_apps_below()
        from common import metrics

        from . import metrics as exposition  # noqa: F401 - registers the scrape-time values in the embedded mode

        metrics.connect_celery_signals()


def _provide_to_the_apps_below() -> None:
    """What accounts and billing need from the gateway without importing it (common/hooks.py): the
    catalog's reads, and the admission counters a ledger entry moves and the budget bars read."""
    from accounts import catalog
    from billing import selectors as billing_selectors
    from billing import services as billing_services

    from . import selectors
    from .admission import admission, ledger_balance_changed

    catalog.known_models.provide(selectors.known_models)
    catalog.model_choices.provide(selectors.model_choices)
    catalog.first_chat_model.provide(selectors.first_chat_model)
    catalog.model_names.provide(selectors.model_names)
    billing_services.balance_changed.connect(ledger_balance_changed)
    billing_selectors.budget_in_flight_nano.provide(admission.budget_in_flight_nano)


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
