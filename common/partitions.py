"""Monthly range partitions of PostgreSQL tables (native declarative partitioning), for the tables that grow
with traffic: usage rows (billing) and request logs (conversations).

A partitioned table is the Django model's table: the ORM reads and writes it as before, PostgreSQL routes
each row to its month (`<table>_pYYYY_MM`) and prunes the months a query's `created_at` range excludes. A
DEFAULT partition takes a row whose month has no partition yet (a clock far off, a spooled row of a month
already dropped), so an INSERT never fails for want of a partition. Months are created ahead (at migrate
and by the hourly maintenance task) and old ones dropped whole by retention: a DROP of a month instead of
a DELETE of millions of rows, no bloat, no vacuum debt. SQLite has no partitioning: every function here is
for PostgreSQL only, and callers check the vendor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

_NAME = re.compile(r"_p(\d{4})_(\d{2})$")


def month_floor(moment: date | datetime) -> date:
    return date(moment.year, moment.month, 1)


def month_add(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _bound(month: date) -> str:
    return datetime(month.year, month.month, 1, tzinfo=UTC).isoformat()


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y_%m}"


@dataclass(frozen=True)
class Partition:
    name: str
    month: date | None  # None: the DEFAULT partition

    @property
    def end(self) -> date | None:
        return None if self.month is None else month_add(self.month, 1)


def is_partitioned(cursor, table: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [table])
    return cursor.fetchone() is not None


def partitions(cursor, table: str) -> list[Partition]:
    """The table's partitions, months in order, then the DEFAULT one."""
    cursor.execute("""SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
                      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                      WHERE i.inhparent = to_regclass(%s)""", [table])
    found = []
    for name, default in cursor.fetchall():
        match = None if default else _NAME.search(name)
        found.append(Partition(name, date(int(match[1]), int(match[2]), 1) if match else None))
    return sorted(found, key=lambda p: (p.month is None, p.month or date.min))


def partitions_ensure(cursor, table: str, *, first: date, last: date) -> list[str]:
    """Create the monthly partitions from `first` to `last` (months) that are missing; returns their names.

    A month whose rows already sit in the DEFAULT partition (written before its partition existed) cannot be
    attached while they are there: they are moved into the new month in the same transaction."""
    existing = {p.month for p in partitions(cursor, table)}
    has_default = None in existing
    created = []
    month = month_floor(first)
    while month <= last:
        if month not in existing:
            name = partition_name(table, month)
            bounds = f"FROM ('{_bound(month)}') TO ('{_bound(month_add(month, 1))}')"
            if has_default:
                cursor.execute(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
                cursor.execute(f'WITH moved AS (DELETE FROM "{table}_default" WHERE created_at >= %s AND created_at < %s '
                               f'RETURNING *) INSERT INTO "{name}" SELECT * FROM moved',
                               [_bound(month), _bound(month_add(month, 1))])
                cursor.execute(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" FOR VALUES {bounds}')
            else:
                cursor.execute(f'CREATE TABLE "{name}" PARTITION OF "{table}" FOR VALUES {bounds}')
            created.append(name)
        month = month_add(month, 1)
    return created


def partition_drop(cursor, table: str, partition: Partition) -> None:
    # Foreign-key checks deferred to the commit of rows written in this transaction (a test's) would
    # refuse the DROP; checked now instead. Rows written by others are long committed.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(f'ALTER TABLE "{table}" DETACH PARTITION "{partition.name}"')
    cursor.execute(f'DROP TABLE "{partition.name}"')


def _indexes(cursor, table: str) -> list[tuple[str, str, str | None]]:
    """(name, definition, constraint type or None) of the table's indexes."""
    cursor.execute("""SELECT i.relname, pg_get_indexdef(i.oid), con.contype
                      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                      LEFT JOIN pg_constraint con ON con.conindid = i.oid AND con.conrelid = x.indrelid
                      WHERE x.indrelid = to_regclass(%s) ORDER BY i.relname""", [table])
    return cursor.fetchall()


def _foreign_keys(cursor, table: str) -> list[tuple[str, str]]:
    cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                   "WHERE conrelid = to_regclass(%s) AND contype = 'f' ORDER BY conname", [table])
    return cursor.fetchall()


def _rebuild(cursor, table: str, *, partitioned: bool, primary_key: tuple[str, ...],
             unique: dict[str, tuple[str, ...]], drop_unique: tuple[str, ...], drop_indexes: tuple[str, ...],
             months_ahead: int, today: date) -> None:
    """Copy `table` into a new table of the same columns, partitioned by month of created_at or plain, with
    `primary_key`, the `unique` constraints given (name: columns) instead of the columns of `drop_unique`'s,
    and every other index and foreign key as it was (same names, so later migrations find them)."""
    old = f"{table}_before_rebuild"
    cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{old}"')
    indexes = [(name, definition) for name, definition, kind in _indexes(cursor, old)
               if kind not in ("p", "u") and name not in drop_indexes
               # Django's LIKE index of a unique or primary-key text column: the lookups it served go by
               # the new keys, and nobody searches request ids by prefix.
               and not (name.endswith("_like") and "varchar_pattern_ops" in definition)]
    foreign_keys = _foreign_keys(cursor, old)
    cursor.execute(f'ALTER TABLE "{old}" DROP CONSTRAINT IF EXISTS "{table}_pkey"')
    for name, _, kind in _indexes(cursor, old):  # free the names for the new table's
        if kind == "u":
            cursor.execute(f'ALTER TABLE "{old}" DROP CONSTRAINT "{name}"')
        elif kind is None:
            cursor.execute(f'DROP INDEX "{name}"')
    for name, _ in foreign_keys:
        cursor.execute(f'ALTER TABLE "{old}" DROP CONSTRAINT "{name}"')
    like = "INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING STORAGE"
    cursor.execute(f'CREATE TABLE "{table}" (LIKE "{old}" {like})'
                   + (' PARTITION BY RANGE ("created_at")' if partitioned else ""))
    if partitioned:
        cursor.execute(f'SELECT min(created_at), max(created_at) FROM "{old}"')
        low, high = cursor.fetchone()
        first = month_floor(min(low.date(), today) if low else today)
        last = month_add(month_floor(max(high.date(), today) if high else today), months_ahead)
        cursor.execute(f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT')
        partitions_ensure(cursor, table, first=first, last=last)
    cursor.execute(f'INSERT INTO "{table}" SELECT * FROM "{old}"')
    cursor.execute("SELECT pg_get_serial_sequence(%s, attname) FROM pg_attribute "
                   "WHERE attrelid = to_regclass(%s) AND attidentity <> ''", [table, table])
    for (sequence,) in cursor.fetchall():
        cursor.execute(f'SELECT setval(%s, GREATEST((SELECT max(id) FROM "{table}"), 1))', [sequence])
    cursor.execute(f'DROP TABLE "{old}"')
    cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY ({", ".join(primary_key)})')
    for name, columns in unique.items():
        cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" UNIQUE ({", ".join(columns)})')
    for name, definition in indexes:
        cursor.execute(definition.replace(f" ON public.{old} ", f" ON public.{table} ")
                       .replace(f' ON public."{old}" ', f" ON public.{table} "))
    for name, definition in foreign_keys:
        cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')


def partition_by_month(cursor, table: str, *, primary_key: tuple[str, ...], unique: dict[str, tuple[str, ...]],
                       drop_indexes: tuple[str, ...] = (), months_ahead: int = 3, today: date | None = None) -> None:
    """Turn the plain `table` into one partitioned by month of `created_at`, rows kept (copied: the
    migration holds the table for the time of the copy)."""
    if is_partitioned(cursor, table):
        return
    _rebuild(cursor, table, partitioned=True, primary_key=primary_key, unique=unique, drop_unique=(),
             drop_indexes=drop_indexes, months_ahead=months_ahead, today=today or datetime.now(UTC).date())


def unpartition(cursor, table: str, *, primary_key: tuple[str, ...], unique: dict[str, tuple[str, ...]],
                drop_indexes: tuple[str, ...] = ()) -> None:
    """The reverse: a plain table again, rows kept."""
    if not is_partitioned(cursor, table):
        return
    _rebuild(cursor, table, partitioned=False, primary_key=primary_key, unique=unique, drop_unique=(),
             drop_indexes=drop_indexes, months_ahead=0, today=datetime.now(UTC).date())
