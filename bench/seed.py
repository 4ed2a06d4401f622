#!/usr/bin/env python
"""Months of data for the scale benchmarks: usage rows, their rollups and debits, conversations, request logs.

    DATABASE_URL=postgres://... .venv/bin/python bench/seed.py [--rows 20000000] [--days 60] [--tenants 200]
        [--keys-per-tenant 3] [--messages 2000000] [--request-logs 100000] [--unrolled-minutes 2]

PostgreSQL only: every table is loaded with COPY (psycopg 3's `cursor.copy`), one UTC day at a time, so memory
is bounded by a day's rows whatever `--rows` says. The rows are what the gateway would have written and the
rollup task would have made of them: daily rollups, 1h and 1d usage buckets (1m buckets for the last
`--minute-bucket-days`, 8 by default: the week the hourly reconciliation checks, without millions of
minute buckets for older days), and one debit per tenant and day
posted to the ledger chain, with each row marked rolled up and linked to its debit. Only the last
`--unrolled-minutes` are left for the rollup task, so `usage_reconcile` finds no drift and the next rollup has
a minute's work. Tenants `<prefix>-001`... are skewed (tenant k has weight 1/k^0.8: the first has ~9 % of
the rows), each with a large credit and `--keys-per-tenant` keys; they are created if missing and reused.

Conversations (20 messages each) and request logs are spread over the last `--conversation-days` (within
the default 7-day retention, as a deployment in its steady state has them).

Speed (docs/performance.md, "Months of data"): each row is one `str.format` of a prebuilt line and is summed
once, at its finest bucket (the coarser buckets and the rollups are sums of those); triggers are off during
the COPYs (`session_replication_role = replica`: no deferred foreign-key check per row; the ledger's chain
triggers stay on for the debits); and unless `--indexes-during-load`, the empty months of the usage table
are detached and loaded as plain heaps, their indexes built by ATTACH PARTITION at the end, and the empty
bucket table's secondary indexes dropped and rebuilt after the load.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-6")
ENDPOINTS = ("chat.completions", "messages", "responses")
MESSAGES_PER_CONVERSATION = 20
DAY = timedelta(days=1)
DEBIT = "\x00debit"  # stands for the ledger entry id in a row's line until the day's debits are posted


def _setup() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _text(value) -> str:
    """One COPY text-format field."""
    if value is None:
        return r"\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"))
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class Table:
    """COPY into a model's table: the columns given, and every other concrete column at its default, so the
    seed keeps working when a column with a default is added to the model."""

    def __init__(self, model, given: tuple[str, ...]) -> None:
        self.model = model
        fields = [f for f in model._meta.concrete_fields if not f.primary_key or f.attname in given]
        self.columns = [f.column for f in fields]
        self.order = [f.attname for f in fields]
        self.defaults = {f.attname: _text(None if f.null and not f.has_default() else f.get_default())
                         for f in fields if f.attname not in given}
        self.given = given

    def sql(self, table: str | None = None) -> str:
        return f'COPY "{table or self.model._meta.db_table}" ({", ".join(self.columns)}) FROM STDIN'

    def template(self, fields: dict[str, str]) -> str:
        """A line as a `str.format` template: `fields` gives each given column's text or `{n}` field, the other
        columns are their defaults."""
        assert set(fields) == set(self.given), set(fields) ^ set(self.given)
        return "\t".join(fields[name] if name in fields else self.defaults[name].replace("{", "{{").replace("}", "}}")
                         for name in self.order) + "\n"

    def line(self, values: dict) -> str:
        return "\t".join(values[name] if name in values else self.defaults[name] for name in self.order) + "\n"


def _copy(cursor, table: Table, lines) -> int:
    count = 0
    with cursor.copy(table.sql()) as copy:
        buffer = io.StringIO()
        for line in lines:
            buffer.write(line)
            count += 1
            if count % 20000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    return count


def _tenants(prefix: str, count: int, keys_per_tenant: int):
    from accounts.models import ApiKey, Tenant
    from accounts.services import api_key_issue, tenant_create
    from billing.services import credit_grant

    tenants = []
    for k in range(1, count + 1):
        slug = f"{prefix}-{k:03d}"
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = tenant_create(slug=slug, name=f"Seeded tenant {k}")
            credit_grant(tenant=tenant, amount_nano=10**6 * 10**9, reason="seed credit")
        keys = list(ApiKey.objects.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True))
        while len(keys) < keys_per_tenant:
            keys.append(api_key_issue(tenant=tenant, name=f"seed key {len(keys) + 1}").api_key.pk)
        tenants.append((tenant.pk, keys[:keys_per_tenant]))
    return tenants


def _prices():
    from billing.models import ModelPrice
    from gateway.models import CatalogModel

    prices = {}
    for name in MODELS:
        model = CatalogModel.objects.filter(name=name).first()
        price = model and ModelPrice.objects.filter(model=model).order_by("-effective_from").first()
        prices[name] = price
    return prices


def _replica(cursor) -> None:
    """Skip triggers for the rest of the transaction: the deferred foreign-key checks, two or three per
    row queued until commit, were a third of PostgreSQL's share of the load; the seed's rows point at the
    tenants, keys and debits it has just read or written. Needs a superuser, as a scratch database has."""
    cursor.execute("SET LOCAL session_replication_role = replica")


def _indexes_drop(cursor, table: str, *, keep_primary_key: bool = True) -> list[str]:
    """Drop `table`'s indexes (and the unique and primary-key constraints they back); returns the SQL that
    rebuilds them. A b-tree built once, sorted, after the load costs a fraction of ten b-trees grown row by
    row (two of them random: request ids), and leaves them packed."""
    cursor.execute("""SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint
                      WHERE conrelid = to_regclass(%s) AND contype IN ('p', 'u')""", [table])
    restore = []
    for name, definition, kind in cursor.fetchall():
        if kind == "p" and keep_primary_key:
            continue
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
        restore.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    cursor.execute("""SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                      WHERE x.indrelid = to_regclass(%s) AND NOT x.indisprimary
                        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)""", [table])
    for name, definition in cursor.fetchall():
        cursor.execute(f'DROP INDEX "{name}"')
        restore.append(definition)
    return restore


def _months_detach(cursor, table: str, first, last) -> dict:
    """Detach the empty month partitions of `table` from `first` to `last` and drop their indexes, so the load
    writes plain heaps; `_months_attach` puts them back, and ATTACH PARTITION builds each of the parent's
    indexes on them in one sorted pass. Returns {month: (partition, bound)}."""
    from common.partitions import partitions

    detached = {}
    for part in partitions(cursor, table):
        if part.month is None or not first <= part.month <= last:
            continue
        cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{part.name}")')
        if cursor.fetchone()[0]:
            continue  # rows of an earlier seed: load through the parent, indexes kept
        cursor.execute("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = to_regclass(%s)", [part.name])
        bound = cursor.fetchone()[0]
        cursor.execute(f'ALTER TABLE "{table}" DETACH PARTITION "{part.name}"')
        _indexes_drop(cursor, part.name, keep_primary_key=False)
        detached[part.month] = (part.name, bound)
    return detached


def _months_attach(cursor, table: str, detached: dict, log) -> None:
    for name, bound in detached.values():
        started = time.perf_counter()
        cursor.execute(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" {bound}')
        log(f"attached {name} (indexes built) in {time.perf_counter() - started:.0f} s")


def seed(*, rows: int, days: int = 60, tenants: int = 200, keys_per_tenant: int = 3, messages: int = 0,
         request_logs: int = 0, unrolled_minutes: int = 2, minute_bucket_days: int = 8, conversation_days: int = 6,
         prefix: str = "seed", now: datetime | None = None, random_seed: int = 18, indexes_after: bool = True,
         log=print) -> dict:
    """Load the data (see the module docstring); returns what was written, counted."""
    from django.db import connection, transaction

    from billing.buckets import DAY as DAY_WIDTH, HOUR, MINUTE
    from billing.models import AttributionRollup, LedgerEntry, UsageBucket, UsageEvent, UsageRollup
    from common.partitions import is_partitioned, month_floor, partitions_ensure
    from conversations.models import Conversation, Message, RequestLog

    if connection.vendor != "postgresql":
        raise SystemExit("bench/seed.py loads with PostgreSQL COPY: set DATABASE_URL to a PostgreSQL database")
    rng = random.Random(random_seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    start = now - timedelta(days=days)
    unrolled_from = (now - timedelta(minutes=unrolled_minutes)).timestamp()
    # From a midnight: the hourly reconciliation checks the last 7 days' buckets from the midnight before.
    minute_from = (now - timedelta(days=minute_bucket_days)).replace(hour=0, minute=0, second=0).timestamp()
    accounts = _tenants(prefix, tenants, keys_per_tenant)
    if UsageEvent.objects.filter(tenant_id__in=[tenant_id for tenant_id, _ in accounts]).exists():
        raise SystemExit(f"tenants {prefix}-... already have usage rows: seed others (--prefix)")
    prices = _prices()
    weights = [1 / (k ** 0.8) for k in range(1, len(accounts) + 1)]
    cumulative = []
    total_weight = 0.0
    for w in weights:
        total_weight += w
        cumulative.append(total_weight)
    chain = {tenant_id: tuple(LedgerEntry.objects.filter(tenant_id=tenant_id).order_by("-seq")
                              .values_list("seq", "balance_after_nano").first() or (0, 0))
             for tenant_id, _ in accounts}
    # Cost of each model per token kind, looked up once: the row loop is what the seed's time goes to.
    price_of = {name: (p.input_nano_per_mtok, p.output_nano_per_mtok, p.cache_read_nano_per_mtok,
                       _text(p.pk)) if p else (0, 0, 0, r"\N") for name, p in prices.items()}
    tenant_of_key = {key_id: tenant_id for tenant_id, keys in accounts for key_id in keys}

    usage = Table(UsageEvent, ("id", "request_id", "tenant_id", "api_key_id", "endpoint", "requested_model", "model",
                               "upstream_model", "provider", "stream", "input_tokens", "output_tokens",
                               "cache_creation_input_tokens", "cache_read_input_tokens", "web_search_requests",
                               "cost_nano", "price_id", "status", "http_status", "error_type", "latency_ms",
                               "ttft_ms", "created_at", "trace_id", "thread_id", "client_request_id",
                               "rolled_up_at", "ledger_entry_id"))
    # One str.format per row: the row's varying fields by position, the constant ones and the defaults
    # written into the template once, instead of a dict and a join a row (docs/performance.md: the seed CPU).
    usage_line = usage.template({
        "request_id": "req_{0:024x}", "tenant_id": "{1}", "api_key_id": "{2}", "endpoint": "{3}",
        "requested_model": "{4}", "model": "{4}", "upstream_model": "{4}", "provider": "anthropic",
        "stream": "{5}", "input_tokens": "{6}", "output_tokens": "{7}", "cache_creation_input_tokens": "0",
        "cache_read_input_tokens": "{8}", "web_search_requests": "0", "cost_nano": "{9}", "price_id": "{10}",
        "status": "{11}", "http_status": "{12}", "error_type": "{13}", "latency_ms": "{14}", "ttft_ms": "{15}",
        "created_at": "{16}", "trace_id": "{17}", "thread_id": "", "client_request_id": "",
        "rolled_up_at": "{18}", "ledger_entry_id": "{19}", "id": "{20}"}).format
    summed = ("requests", "errors", "input_tokens", "output_tokens", "cache_creation_input_tokens",
              "cache_read_input_tokens", "web_search_requests", "cost_nano")
    rollup = Table(UsageRollup, ("day", "tenant_id", "api_key_id", "model", *summed))
    bucket = Table(UsageBucket, ("width", "start", "tenant_id", "api_key_id", "model", "endpoint", *summed))
    bucket_line = bucket.template({name: f"{{{i}}}" for i, name in enumerate(bucket.given)}).format
    # Seeded rows name no end user and no tag: each daily rollup is also its "" attribution row of both.
    attribution = Table(AttributionRollup, ("day", "tenant_id", "api_key_id", "model", "dimension", "value", *summed))
    usage_table = UsageEvent._meta.db_table
    detached: dict = {}
    restore: list[str] = []
    with connection.cursor() as cursor:  # the months of the history, which a fresh database does not have
        for table in (usage_table, RequestLog._meta.db_table):
            if is_partitioned(cursor, table):
                partitions_ensure(cursor, table, first=month_floor(start), last=month_floor(now))
        cursor.execute("SET maintenance_work_mem = '512MB'")  # the index builds after the load
        if indexes_after:
            if is_partitioned(cursor, usage_table):
                detached = _months_detach(cursor, usage_table, month_floor(start), month_floor(now))
            cursor.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {UsageBucket._meta.db_table})")
            if cursor.fetchone()[0]:
                restore = _indexes_drop(cursor, UsageBucket._meta.db_table)
    counts = defaultdict(int)
    started = time.perf_counter()
    span = (now - start).total_seconds()
    day_start = start.replace(hour=0, minute=0, second=0)
    written = 0
    fromtimestamp = datetime.fromtimestamp
    random_ = rng.random
    bits = rng.getrandbits
    models = [(name, *price_of[name]) for name in MODELS]
    try:
        with connection.cursor() as django_cursor:
            cursor = django_cursor.connection.cursor()  # psycopg's own, for COPY
            while day_start < now:
                day_end = day_start + DAY
                lo, hi = max(day_start, start), min(day_end, now)
                n = round(rows * (hi - start).total_seconds() / span) - written
                written += n
                lo_ts = lo.timestamp()
                offsets = sorted(random_() * (hi - lo).total_seconds() for _ in range(n))
                picks = rng.choices(range(len(accounts)), cum_weights=cumulative, k=n)
                # Debit ids drawn before the rows, so each row's line is final when made (one debit per tenant
                # and day; a tenant without rows that day leaves a gap in the ids, as a rollback would).
                cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                               [LedgerEntry._meta.db_table, len(accounts)])
                entry_of = {tenant_id: str(entry_id)
                            for (tenant_id, _), (entry_id,) in zip(accounts, cursor.fetchall())}
                # The rows' ids too, as a range of the identity: a detached month has no default for them.
                cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), nextval(pg_get_serial_sequence(%s, 'id'))"
                               " + %s - 1)", [usage_table, usage_table, max(n, 1)])
                next_id = cursor.fetchone()[0] - max(n, 1) + 1
                # Usage summed once per row, at the finest bucket (a minute in the reconciliation's week, else an
                # hour), keyed by the bucket's epoch second; the coarser buckets and the rollups are sums of those.
                fine: dict[tuple, list[int]] = {}
                cost_by_tenant: dict[int, int] = defaultdict(int)
                count_by_tenant: dict[int, int] = defaultdict(int)
                rolled_at = _text(min(day_end, now))
                month = detached.get(month_floor(lo))  # a detached month is loaded directly
                with transaction.atomic():  # a day's debits, rows and rollups, all or none
                    _replica(django_cursor)
                    with cursor.copy(usage.sql(month[0] if month else None)) as copy:
                        chunk: list[str] = []
                        for offset, pick in zip(offsets, picks):
                            tenant_id, keys = accounts[pick]
                            key_id = keys[int(random_() * len(keys))]
                            model, pin, pout, pcr, price_id = models[int(random_() ** 2 * 3)]
                            endpoint = ENDPOINTS[int(random_() * 3)]
                            ts = lo_ts + offset
                            error = random_() < 0.02
                            input_tokens = int(random_() * 4000) + 10
                            output_tokens = 0 if error else int(random_() * 800) + 1
                            cache_read = int(random_() * 2000) if random_() < 0.3 else 0
                            # common.money.usage_cost_nano with no cache writes, searches or discount, inlined.
                            cost = ((input_tokens * pin + output_tokens * pout + cache_read * pcr) * 2 + 1_000_000) \
                                // 2_000_000
                            stream = random_() < 0.5
                            latency = int(random_() * 3000) + 50
                            if ts >= unrolled_from:
                                rolled, entry = r"\N", r"\N"
                                counts["unrolled_rows"] += 1
                            else:
                                rolled, entry = rolled_at, entry_of[tenant_id]
                                cost_by_tenant[tenant_id] += cost
                                count_by_tenant[tenant_id] += 1
                                second = int(ts)
                                key = (second - second % (60 if ts >= minute_from else 3600), key_id, model, endpoint)
                                row = fine.get(key)
                                if row is None:
                                    row = fine[key] = [0, 0, 0, 0, 0, 0, 0, 0]
                                row[0] += 1
                                row[1] += error
                                row[2] += input_tokens
                                row[3] += output_tokens
                                row[5] += cache_read
                                row[7] += cost
                            chunk.append(usage_line(
                                bits(96), tenant_id, key_id, endpoint, model, "t" if stream else "f", input_tokens,
                                output_tokens, cache_read, cost, price_id, "error" if error else "ok",
                                502 if error else 200, "upstream_unreachable" if error else "", latency,
                                int(random_() * 500) + 20 if stream else r"\N",
                                fromtimestamp(ts, UTC).isoformat(),
                                # 2 % of requests in traces of a few requests each, as agents send them (AH-Trace-Id).
                                f"trace-{tenant_id}-{int(offset) // 600}" if random_() < 0.02 else "",
                                rolled, entry, next_id))
                            next_id += 1
                            if len(chunk) == 50_000:
                                copy.write("".join(chunk))
                                chunk = []
                        copy.write("".join(chunk))
                    counts["usage_rows"] += n
                    # One debit per tenant and day, continuing each tenant's chain (the triggers check every entry).
                    django_cursor.execute("SET LOCAL session_replication_role = origin")
                    debits = []
                    for tenant_id in sorted(cost_by_tenant):
                        seq, balance = chain[tenant_id]
                        amount = -cost_by_tenant[tenant_id]
                        if not amount:
                            continue
                        chain[tenant_id] = (seq + 1, balance + amount)
                        debits.append(LedgerEntry(id=int(entry_of[tenant_id]), tenant_id=tenant_id, seq=seq + 1,
                                                  kind=LedgerEntry.Kind.DEBIT, amount_nano=amount,
                                                  balance_after_nano=balance + amount,
                                                  reason=f"Usage: {count_by_tenant[tenant_id]} requests (seeded)"))
                    LedgerEntry.objects.bulk_create(debits)
                    counts["debits"] += len(debits)
                    _replica(django_cursor)
                    sums = _coarser(fine, minute_from, HOUR, MINUTE, DAY_WIDTH)
                    counts["buckets"] += _copy(cursor, bucket, (
                        bucket_line(width, fromtimestamp(at, UTC).isoformat(), tenant_of_key[key_id], key_id, model,
                                    endpoint, *row)
                        for (width, at, key_id, model, endpoint), row in sums.items() if width != "rollup"))
                    daily = [(at, key_id, model, row) for (width, at, key_id, model, _), row in sums.items()
                             if width == "rollup"]
                    counts["rollups"] += _copy(cursor, rollup, (
                        rollup.line(dict(zip(summed, map(str, row))) | {
                            "day": datetime.fromtimestamp(at, UTC).date().isoformat(),
                            "tenant_id": str(tenant_of_key[key_id]), "api_key_id": str(key_id), "model": model})
                        for at, key_id, model, row in daily))
                    _copy(cursor, attribution, (
                        attribution.line(dict(zip(summed, map(str, row))) | {
                            "day": datetime.fromtimestamp(at, UTC).date().isoformat(),
                            "tenant_id": str(tenant_of_key[key_id]), "api_key_id": str(key_id), "model": model,
                            "dimension": dimension, "value": ""})
                        for at, key_id, model, row in daily for dimension in ("end_user", "tag")))
                log(f"{day_start:%Y-%m-%d}: {n} rows ({counts['usage_rows']:,} in {time.perf_counter() - started:.0f} s)")
                day_start = day_end
            counts |= _seed_conversations(django_cursor, cursor, accounts, cumulative, rng, messages, request_logs,
                                          now, conversation_days, Conversation, Message, RequestLog)
        loaded = time.perf_counter()
        counts["load_seconds"] = round(loaded - started, 1)
    finally:
        with connection.cursor() as cursor:
            _months_attach(cursor, usage_table, detached, log)
            for sql in restore:
                cursor.execute(sql)
    counts["index_seconds"] = round(time.perf_counter() - loaded, 1)
    with connection.cursor() as cursor:
        for model in (UsageEvent, UsageRollup, UsageBucket, AttributionRollup, LedgerEntry, Conversation, Message,
                      RequestLog):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    counts["seconds"] = round(time.perf_counter() - started, 1)
    counts["rows_per_s"] = round(counts["usage_rows"] / counts["seconds"])
    log(f"seeded {dict(counts)}")
    return dict(counts)


def _coarser(fine: dict, minute_from: float, hour: str, minute: str, day: str) -> dict:
    """The day's buckets and rollups from its finest sums {(epoch second, key, model, endpoint): sums}: minute
    buckets (from `minute_from`), hour and day buckets, and daily rollups (width "rollup", endpoint "")."""
    out: dict[tuple, list[int]] = {}

    def add(target, row):
        into = out.get(target)
        if into is None:
            out[target] = row.copy()
        else:  # the seeded rows have no cache writes or web searches (sums 4 and 6)
            into[0] += row[0]
            into[1] += row[1]
            into[2] += row[2]
            into[3] += row[3]
            into[5] += row[5]
            into[7] += row[7]

    for (at, key_id, model, endpoint), row in fine.items():
        if at >= minute_from:
            add((minute, at, key_id, model, endpoint), row)
        add((hour, at - at % 3600, key_id, model, endpoint), row)
        add((day, at - at % 86400, key_id, model, endpoint), row)
        add(("rollup", at - at % 86400, key_id, model, ""), row)
    return out


def _seed_conversations(django_cursor, cursor, accounts, cumulative, rng, messages, request_logs, now, days, Conversation,
                        Message, RequestLog) -> dict:
    conversation = Table(Conversation, ("id", "tenant_id", "api_key_id", "metadata", "created_at",
                                        "last_activity_at", "message_count", "busy_until"))
    message = Table(Message, ("conversation_id", "seq", "role", "content", "model", "input_tokens",
                              "output_tokens", "request_id", "created_at"))
    log_table = Table(RequestLog, ("request_id", "tenant_id", "created_at", "request", "response"))
    span = days * 86400
    n_conversations = messages // MESSAGES_PER_CONVERSATION
    made = []  # (id, tenant, key, first, last): ~100 bytes each, 100k for 2M messages
    for _ in range(n_conversations):
        tenant_id, keys = accounts[rng.choices(range(len(accounts)), cum_weights=cumulative)[0]]
        last = now - timedelta(seconds=rng.random() * span)
        first = last - timedelta(seconds=rng.random() * 3600)
        made.append(("conv_%032x" % rng.getrandbits(128), tenant_id, keys[0], first, last))

    def conversation_lines():
        for conv_id, tenant_id, key_id, first, last in made:
            yield conversation.line({"id": conv_id, "tenant_id": str(tenant_id), "api_key_id": str(key_id),
                                     "metadata": "{}", "created_at": first.isoformat(),
                                     "last_activity_at": last.isoformat(),
                                     "message_count": str(MESSAGES_PER_CONVERSATION), "busy_until": r"\N"})

    def message_lines():
        for conv_id, _, _, first, last in made:
            step = (last - first) / MESSAGES_PER_CONVERSATION
            for seq in range(1, MESSAGES_PER_CONVERSATION + 1):
                user = seq % 2
                text = f"{'question' if user else 'answer'} {seq} of a seeded conversation " + "lorem " * 20
                yield message.line({
                    "conversation_id": conv_id, "seq": str(seq), "role": "user" if user else "assistant",
                    "content": _text([{"type": "text", "text": text}]), "model": "" if user else MODELS[0],
                    "input_tokens": "0" if user else "120", "output_tokens": "0" if user else "60",
                    "request_id": "" if user else "req_%024x" % rng.getrandbits(96),
                    "created_at": (first + step * seq).isoformat()})

    def log_lines():
        for _ in range(request_logs):
            tenant_id, _ = accounts[rng.choices(range(len(accounts)), cum_weights=cumulative)[0]]
            yield log_table.line({
                "request_id": "req_%024x" % rng.getrandbits(96), "tenant_id": str(tenant_id),
                "created_at": (now - timedelta(seconds=rng.random() * span)).isoformat(),
                "request": _text({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 100}),
                "response": _text([{"type": "text", "text": "Hello! How can I help?"}])})

    from django.db import transaction

    with transaction.atomic():
        _replica(django_cursor)
        return {"conversations": _copy(cursor, conversation, conversation_lines()),
                "messages": _copy(cursor, message, message_lines()),
                "request_logs": _copy(cursor, log_table, log_lines())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--keys-per-tenant", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--request-logs", type=int, default=100_000)
    parser.add_argument("--unrolled-minutes", type=int, default=2)
    parser.add_argument("--minute-bucket-days", type=int, default=8)
    parser.add_argument("--conversation-days", type=int, default=6)
    parser.add_argument("--prefix", default="seed")
    parser.add_argument("--indexes-during-load", dest="indexes_after", action="store_false",
                        help="keep the indexes while loading (the old way: to compare)")
    args = parser.parse_args(argv)
    _setup()
    seed(**{name: value for name, value in vars(args).items()})


if __name__ == "__main__":
    main()
