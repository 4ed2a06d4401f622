"""The usage rows' INSERTs, with the same requests' conversation turns and request logs: one statement per
kind for a whole batch (gateway/metering/recorder.py gathers the batch; the spool replays what failed)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from django.db import DatabaseError, transaction
from django.utils import timezone

from accounts.models import ApiKey
from billing.models import UsageEvent
from common.db import UNREACHABLE, insert_sql, refresh_connections, typed_values_sql
from common.outage import db_unavailable
from conversations.services import request_logs_write, turns_replay, turns_write

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    tenant_id: int
    api_key_id: int
    endpoint: str
    requested_model: str
    model: str
    upstream_model: str
    stream: bool
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_nano: int
    price_id: int | None
    status: str
    http_status: int
    error_type: str
    latency_ms: int
    ttft_ms: int | None
    created_at: datetime
    provider: str = ""
    trace_id: str = ""
    thread_id: str = ""
    client_request_id: str = ""
    web_search_requests: int = 0
    batch_id: str = ""
    end_user: str = ""
    tags: str = ""  # comma-joined (no tag holds a comma)


_USAGE_COLUMNS = tuple(f.name for f in fields(UsageRecord))  # UsageEvent field names (attnames for keys)
_REQUEST_ID = _USAGE_COLUMNS.index("request_id")

# last_used_at is written at most this often per key: a write per request would double the path's queries.
LAST_USED_RESOLUTION = timedelta(seconds=60)
_last_used_written: dict[int, datetime] = {}


def usage_events_write(records: list[UsageRecord], turns: list | None = None, logs: list | None = None, *,
                       replay: bool = False) -> list:
    """Insert the rows; a request id already written is skipped, so a retried write never double-bills.

    `turns` (conversations.services.TurnRecord) are written right after, before the requests waiting on
    this write go on: a client's next turn always finds the previous one. `logs` (request logs of
    tenants that keep them) come last. Each kind is one statement for the whole batch; if that fails
    for a reason of the data, its rows are written one by one, so a bad row (logged and dropped) never
    takes the others with it. Returns the rows, turns and logs that could not be written because the
    database is unreachable, for the spool (gateway/metering/spool.py). `replay`: they come from the spool,
    and a turn already written is skipped (turns have no request-id key to conflict on).
    """
    now = records[-1].created_at if records else timezone.now()
    return [
        *_isolated(_usage_write, records, "usage row"),
        *_isolated(lambda items: (turns_replay if replay else turns_write)(items, now), turns or [],
                   "conversation turn"),
        *_isolated(lambda items: request_logs_write(items, now), logs or [], "request log"),
    ]


def _isolated(write, items: list, what: str) -> list:
    """`write(items)`, then row by row if the batch is refused; returns the items left unwritten because
    the database is unreachable."""
    if not items:
        return []
    try:
        try:
            refresh_connections()
            write(items)
        except UNREACHABLE:
            # A connection broken since the last request (database restart): reconnect and try once more.
            refresh_connections()
            write(items)
    except UNREACHABLE as exc:
        db_unavailable.failed(exc)
        return items
    except DatabaseError as exc:  # about the rows themselves: a value a column refuses, a constraint
        if len(items) == 1:
            logger.error("%s refused by the database, dropped (%s): %r", what, exc, items[0])
            return []
        unwritten = []
        for item in items:
            unwritten += _isolated(write, [item], what)
        return unwritten
    return []


def _usage_write(records: list[UsageRecord]) -> None:
    rows = [tuple(getattr(record, name) for name in _USAGE_COLUMNS) for record in records]
    now = records[-1].created_at
    stale = {record.api_key_id for record in records
             if now - _last_used_written.get(record.api_key_id, datetime.min.replace(tzinfo=UTC)) >= LAST_USED_RESOLUTION}
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        statement = _claimed_insert_sql(connection, rows)
    else:  # a plain table: request_id is unique by itself
        statement = insert_sql(UsageEvent, _USAGE_COLUMNS, rows, ignore_conflicts=True)
    if stale:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(*statement)
            ApiKey.objects.filter(pk__in=stale).update(last_used_at=now)
    else:  # the common case: one autocommitted statement, no BEGIN/COMMIT round trips
        with connection.cursor() as cursor:
            cursor.execute(*statement)
    for key_id in stale:
        _last_used_written[key_id] = now
    if len(_last_used_written) > 10_000:  # keys idle for a minute need no entry
        for key_id in [k for k, at in _last_used_written.items() if now - at >= LAST_USED_RESOLUTION]:
            del _last_used_written[key_id]


def _claimed_insert_sql(connection, rows: list[tuple]) -> tuple[str, list]:
    """The rows' INSERT on PostgreSQL, where usage rows are partitioned by month (billing migration 0010):
    each request id is first claimed in billing_usageclaim, in the same statement, and only the rows whose
    claim is new are inserted; UNIQUE (request_id, created_at) refuses the same record written again after
    its claim expired. One request id, one row, whatever the retries (the migration says why both)."""
    seen, unique_rows = set(), []
    for row in rows:  # a batch holding one request twice (a replay) would pass the claim with both copies
        if row[_REQUEST_ID] not in seen:
            seen.add(row[_REQUEST_ID])
            unique_rows.append(row)
    columns, values, params = typed_values_sql(UsageEvent, _USAGE_COLUMNS, unique_rows)
    table = connection.ops.quote_name(UsageEvent._meta.db_table)
    return (f"WITH incoming ({columns}) AS (VALUES {values}), "
            "claimed AS (INSERT INTO billing_usageclaim (request_id, claimed_at) "
            "SELECT request_id, statement_timestamp() FROM incoming ON CONFLICT DO NOTHING RETURNING request_id) "
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM incoming "
            "WHERE request_id IN (SELECT request_id FROM claimed) ON CONFLICT DO NOTHING", params)
