from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import connections


def refresh_connections() -> None:
    """Django's per-request connection housekeeping, for the sync units the API handler runs.

    The API handler skips the request signals that normally do this (gateway/handler.py). Connections
    inside an atomic block are left alone: the block (or a test's transaction) owns them.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def db_unit(function: Callable) -> Callable:
    """`function` as an awaitable for the API handler's operations: run on the thread that owns the
    database connection, after the connection housekeeping the handler skips."""

    def unit(*args, **kwargs):
        refresh_connections()
        return function(*args, **kwargs)

    return sync_to_async(unit, thread_sensitive=True)
