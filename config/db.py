from collections.abc import Callable

import orjson
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.db.models import JSONField


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


def insert_sql(model, names: tuple[str, ...], rows: list[tuple], *,
               ignore_conflicts: bool = False) -> tuple[str, list] | None:
    """A multi-row INSERT of plain values (JSON encoded with orjson) as (sql, params), for the request
    path's writes: bulk_create's per-instance work cost more CPU than the rest of a stored turn
    (docs/performance.md). `names` are model field names or attnames (`tenant_id`)."""
    if not rows:
        return None
    connection = transaction.get_connection()
    fields = [model._meta.get_field(name) for name in names]
    json_cast = "::jsonb" if connection.vendor == "postgresql" else ""
    marks = ["%s" + json_cast if isinstance(field, JSONField) else "%s" for field in fields]
    params = [orjson.dumps(value).decode() if isinstance(field, JSONField) else field.get_db_prep_save(value, connection)
              for row in rows for field, value in zip(fields, row)]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    values = ", ".join(["(" + ", ".join(marks) + ")"] * len(rows))
    conflicts = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    return (f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) VALUES {values}{conflicts}",
            params)
