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

    def sql(self) -> str:
        return f'COPY {self.model._meta.db_table} ({", ".join(self.columns)}) FROM STDIN'

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


def seed(*, rows: int, days: int = 60, tenants: int = 200, keys_per_tenant: int = 3, messages: int = 0,
         request_logs: int = 0, unrolled_minutes: int = 2, minute_bucket_days: int = 8, conversation_days: int = 6,
         prefix: str = "seed", now: datetime | None = None, random_seed: int = 18, log=print) -> dict:
    """Load the data (see the module docstring); returns what was written, counted."""
    from django.db import connection, transaction

    from billing.buckets import DAY as DAY_WIDTH, HOUR, MINUTE, bucket_floor
    from billing.models import AttributionRollup, LedgerEntry, UsageBucket, UsageEvent, UsageRollup
    from common.money import usage_cost_nano
    from common.partitions import is_partitioned, month_floor, partitions_ensure
    from conversations.models import Conversation, Message, RequestLog

    if connection.vendor != "postgresql":
        raise SystemExit("bench/seed.py loads with PostgreSQL COPY: set DATABASE_URL to a PostgreSQL database")
    rng = random.Random(random_seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    start = now - timedelta(days=days)
    unrolled_from = now - timedelta(minutes=unrolled_minutes)
    # From a midnight: the hourly reconciliation checks the last 7 days' buckets from the midnight before.
    minute_from = (now - timedelta(days=minute_bucket_days)).replace(hour=0, minute=0, second=0)
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
    price_of = {name: (p.input_nano_per_mtok, p.output_nano_per_mtok, p.cache_write_nano_per_mtok,
                       p.cache_read_nano_per_mtok, p.pk) if p else (0, 0, 0, 0, None) for name, p in prices.items()}

    usage = Table(UsageEvent, ("request_id", "tenant_id", "api_key_id", "endpoint", "requested_model", "model",
                               "upstream_model", "provider", "stream", "input_tokens", "output_tokens",
                               "cache_creation_input_tokens", "cache_read_input_tokens", "web_search_requests",
                               "cost_nano", "price_id", "status", "http_status", "error_type", "latency_ms",
                               "ttft_ms", "created_at", "trace_id", "thread_id", "client_request_id",
                               "rolled_up_at", "ledger_entry_id"))
    summed = ("requests", "errors", "input_tokens", "output_tokens", "cache_creation_input_tokens",
              "cache_read_input_tokens", "web_search_requests", "cost_nano")
    rollup = Table(UsageRollup, ("day", "tenant_id", "api_key_id", "model", *summed))
    bucket = Table(UsageBucket, ("width", "start", "tenant_id", "api_key_id", "model", "endpoint", *summed))
    # Seeded rows name no end user and no tag: each daily rollup is also its "" attribution row of both.
    attribution = Table(AttributionRollup, ("day", "tenant_id", "api_key_id", "model", "dimension", "value", *summed))
    with connection.cursor() as cursor:  # the months of the history, which a fresh database does not have
        for table in (UsageEvent._meta.db_table, RequestLog._meta.db_table):
            if is_partitioned(cursor, table):
                partitions_ensure(cursor, table, first=month_floor(start), last=month_floor(now))
    counts = defaultdict(int)
    started = time.perf_counter()
    span = (now - start).total_seconds()
    day_start = start.replace(hour=0, minute=0, second=0)
    written = 0
    with connection.cursor() as django_cursor:
        cursor = django_cursor.connection.cursor()  # psycopg's own, for COPY
        while day_start < now:
            day_end = day_start + DAY
            lo, hi = max(day_start, start), min(day_end, now)
            n = round(rows * (hi - start).total_seconds() / span) - written
            written += n
            offsets = sorted(rng.random() * (hi - lo).total_seconds() for _ in range(n))
            picks = rng.choices(range(len(accounts)), cum_weights=cumulative, k=n)
            sums: dict[tuple, list[int]] = defaultdict(lambda: [0] * 8)
            lines_by_tenant: dict[int, list[str]] = defaultdict(list)
            tail: list[str] = []
            cost_by_tenant: dict[int, int] = defaultdict(int)
            count_by_tenant: dict[int, int] = defaultdict(int)
            lo_ts = lo.timestamp()
            rolled_at = _text(min(day_end, now))
            for offset, pick in zip(offsets, picks):
                tenant_id, keys = accounts[pick]
                key_id = keys[int(rng.random() * len(keys))]
                model = MODELS[int(rng.random() ** 2 * len(MODELS))]
                endpoint = ENDPOINTS[int(rng.random() * len(ENDPOINTS))]
                created = datetime.fromtimestamp(lo_ts + offset, UTC)
                error = rng.random() < 0.02
                input_tokens = int(rng.random() * 4000) + 10
                output_tokens = 0 if error else int(rng.random() * 800) + 1
                cache_read = int(rng.random() * 2000) if rng.random() < 0.3 else 0
                pin, pout, pcw, pcr, price_id = price_of[model]
                cost = usage_cost_nano(input_tokens=input_tokens, output_tokens=output_tokens, cache_write_tokens=0,
                                       cache_read_tokens=cache_read, input_price=pin, output_price=pout,
                                       cache_write_price=pcw, cache_read_price=pcr)
                stream = rng.random() < 0.5
                values = {
                    "request_id": "req_%024x" % rng.getrandbits(96), "tenant_id": str(tenant_id),
                    "api_key_id": str(key_id), "endpoint": endpoint, "requested_model": model, "model": model,
                    "upstream_model": model, "provider": "anthropic", "stream": "t" if stream else "f",
                    "input_tokens": str(input_tokens), "output_tokens": str(output_tokens),
                    "cache_creation_input_tokens": "0", "cache_read_input_tokens": str(cache_read),
                    "web_search_requests": "0", "cost_nano": str(cost), "price_id": _text(price_id),
                    "status": "error" if error else "ok", "http_status": "502" if error else "200",
                    "error_type": "upstream_unreachable" if error else "",
                    "latency_ms": str(int(rng.random() * 3000) + 50),
                    "ttft_ms": str(int(rng.random() * 500) + 20) if stream else r"\N",
                    "created_at": created.isoformat(),
                    # 2 % of requests in traces of a few requests each, as agents send them (AH-Trace-Id).
                    "trace_id": f"trace-{tenant_id}-{int(offset) // 600}" if rng.random() < 0.02 else "",
                    "thread_id": "", "client_request_id": "",
                }
                if created >= unrolled_from:
                    values["rolled_up_at"] = values["ledger_entry_id"] = r"\N"
                    tail.append(usage.line(values))
                    continue
                values["rolled_up_at"] = rolled_at
                values["ledger_entry_id"] = DEBIT  # the day's debit, known once the day is summed
                lines_by_tenant[tenant_id].append(usage.line(values))
                cost_by_tenant[tenant_id] += cost
                count_by_tenant[tenant_id] += 1
                added = (1, error, input_tokens, output_tokens, 0, cache_read, 0, cost)
                targets = [("rollup", created.date(), tenant_id, key_id, model),
                           ("bucket", HOUR, bucket_floor(created, HOUR), tenant_id, key_id, model, endpoint),
                           ("bucket", DAY_WIDTH, bucket_floor(created, DAY_WIDTH), tenant_id, key_id, model, endpoint)]
                if created >= minute_from:
                    targets.append(("bucket", MINUTE, bucket_floor(created, MINUTE), tenant_id, key_id, model,
                                    endpoint))
                for target in targets:
                    row = sums[target]
                    for i, value in enumerate(added):
                        row[i] += value
            # One debit per tenant and day, continuing each tenant's chain (the triggers check every entry).
            debits = []
            for tenant_id in sorted(cost_by_tenant):
                seq, balance = chain[tenant_id]
                amount = -cost_by_tenant[tenant_id]
                if not amount:
                    continue
                chain[tenant_id] = (seq + 1, balance + amount)
                debits.append(LedgerEntry(tenant_id=tenant_id, seq=seq + 1, kind=LedgerEntry.Kind.DEBIT,
                                          amount_nano=amount, balance_after_nano=balance + amount,
                                          reason=f"Usage: {count_by_tenant[tenant_id]} requests (seeded)"))
            atomic = transaction.atomic()  # a day's debits, rows and rollups, all or none
            atomic.__enter__()
            entry_of = {entry.tenant_id: entry.pk for entry in LedgerEntry.objects.bulk_create(debits)}
            counts["debits"] += len(debits)

            def usage_lines():
                for tenant_id, tenant_lines in lines_by_tenant.items():
                    entry = _text(entry_of.get(tenant_id))
                    for line in tenant_lines:
                        yield line.replace(DEBIT, entry)
                yield from tail

            counts["usage_rows"] += _copy(cursor, usage, usage_lines())
            counts["unrolled_rows"] += len(tail)

            def sum_lines(kind):
                for target, row in sums.items():
                    if target[0] != kind:
                        continue
                    values = dict(zip(summed, map(str, row)))
                    if kind == "rollup":
                        values |= {"day": target[1].isoformat(), "tenant_id": str(target[2]),
                                   "api_key_id": str(target[3]), "model": target[4]}
                    else:
                        values |= {"width": target[1], "start": target[2].isoformat(), "tenant_id": str(target[3]),
                                   "api_key_id": str(target[4]), "model": target[5], "endpoint": target[6]}
                    yield (rollup if kind == "rollup" else bucket).line(values)

            counts["rollups"] += _copy(cursor, rollup, sum_lines("rollup"))
            counts["buckets"] += _copy(cursor, bucket, sum_lines("bucket"))

            def attribution_lines():
                for target, row in sums.items():
                    if target[0] == "rollup":
                        for dimension in ("end_user", "tag"):
                            yield attribution.line(dict(zip(summed, map(str, row))) | {
                                "day": target[1].isoformat(), "tenant_id": str(target[2]),
                                "api_key_id": str(target[3]), "model": target[4], "dimension": dimension,
                                "value": ""})

            _copy(cursor, attribution, attribution_lines())
            atomic.__exit__(None, None, None)
            log(f"{day_start:%Y-%m-%d}: {n} rows ({counts['usage_rows']:,} in {time.perf_counter() - started:.0f} s)")
            day_start = day_end
        counts |= _seed_conversations(cursor, accounts, cumulative, rng, messages, request_logs, now,
                                      conversation_days, Conversation, Message, RequestLog)
    with connection.cursor() as cursor:
        for model in (UsageEvent, UsageRollup, UsageBucket, AttributionRollup, LedgerEntry, Conversation, Message,
                      RequestLog):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    counts["seconds"] = round(time.perf_counter() - started, 1)
    log(f"seeded {dict(counts)}")
    return dict(counts)


def _seed_conversations(cursor, accounts, cumulative, rng, messages, request_logs, now, days, Conversation,
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
    args = parser.parse_args(argv)
    _setup()
    seed(**{name: value for name, value in vars(args).items()})


if __name__ == "__main__":
    main()
