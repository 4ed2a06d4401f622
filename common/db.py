from collections.abc import Callable
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import JSONField


# A database that cannot be reached (stopped, restarting, network), as opposed to one refusing a statement.
UNREACHABLE = (OperationalError, InterfaceError)


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


NUL = "\x00"
_NUL_ESCAPE = b"\\u0000"  # how JSON spells NUL, the one character PostgreSQL's jsonb and text cannot hold


def nul_free(value: Any) -> Any:
    """`value` with every NUL in its strings (keys too) replaced by U+FFFD, the replacement character."""
    if isinstance(value, str):
        return value.replace(NUL, "\ufffd")
    if isinstance(value, dict):
        return {nul_free(key): nul_free(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [nul_free(item) for item in value]
    return value


def json_nul_free(body: bytes, value: Any) -> Any:
    """The decoded JSON `value` of `body`, without NULs: a substring test first, so bodies without the
    escape (all but hostile ones) cost nothing more."""
    return nul_free(value) if _NUL_ESCAPE in body else value


def _json_param(value: Any) -> str:
    encoded = orjson.dumps(value)
    return orjson.dumps(nul_free(value)).decode() if _NUL_ESCAPE in encoded else encoded.decode()


def _param(field, value: Any, connection) -> Any:
    if isinstance(value, str) and NUL in value:
        value = nul_free(value)
    return field.get_db_prep_save(value, connection)


def typed_values_sql(model, names: tuple[str, ...], rows: list[tuple]) -> tuple[str, str, list]:
    """(columns, VALUES list, params) of `rows` with each value cast to its column's type, for a VALUES
    list that has no target column to take its types from (a CTE); NULs as in `insert_sql`."""
    connection = transaction.get_connection()
    fields = [model._meta.get_field(name) for name in names]
    marks = "(" + ", ".join(f"%s::{field.cast_db_type(connection)}" for field in fields) + ")"
    params = [_json_param(value) if isinstance(field, JSONField) else _param(field, value, connection)
              for row in rows for field, value in zip(fields, row)]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    return columns, ", ".join([marks] * len(rows)), params


def insert_sql(model, names: tuple[str, ...], rows: list[tuple], *,
               ignore_conflicts: bool = False) -> tuple[str, list] | None:
    """A multi-row INSERT of plain values (JSON encoded with orjson) as (sql, params), for the request
    path's writes: bulk_create's per-instance work cost more CPU than the rest of a stored turn
    (docs/performance.md). `names` are model field names or attnames (`tenant_id`).

    NULs become U+FFFD: PostgreSQL refuses them in jsonb and text, and an upstream's answer may
    carry one that no request sanitising could catch; one such row would fail its whole batch."""
    if not rows:
        return None
    connection = transaction.get_connection()
    fields = [model._meta.get_field(name) for name in names]
    json_cast = "::jsonb" if connection.vendor == "postgresql" else ""
    marks = ["%s" + json_cast if isinstance(field, JSONField) else "%s" for field in fields]
    params = [_json_param(value) if isinstance(field, JSONField) else _param(field, value, connection)
              for row in rows for field, value in zip(fields, row)]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    values = ", ".join(["(" + ", ".join(marks) + ")"] * len(rows))
    conflicts = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    return (f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) VALUES {values}{conflicts}",
            params)
