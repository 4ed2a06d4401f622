from django.db import connections


def refresh_connections() -> None:
    """Django's per-request connection housekeeping, for the sync units the API handler runs.

    The API handler skips the request signals that normally do this (gateway/handler.py). Connections
    inside an atomic block are left alone: the block (or a test's transaction) owns them.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
