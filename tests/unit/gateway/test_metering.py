"""Usage rows: one per request id, written durably even when the waiting request is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import threading
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync

from accounts.services import api_key_issue, tenant_create
from billing.models import UsageEvent
from gateway.core import Usage
from gateway.metering.recorder import UsageRecorder
from gateway.metering.writes import UsageRecord, usage_events_write
from tests.support.env import requires_postgres, requires_redis


@pytest.fixture
def principal(db):
    tenant = tenant_create(slug="meterco")
    return tenant, api_key_issue(tenant=tenant).api_key


def record(principal, request_id: str, **overrides) -> UsageRecord:
    tenant, api_key = principal
    fields = dict(
        request_id=request_id, tenant_id=tenant.pk, api_key_id=api_key.pk, endpoint="chat.completions",
        requested_model="gpt-4o", model="claude-sonnet-4-6", upstream_model="claude-sonnet-4-6", stream=False,
        input_tokens=10, output_tokens=5, cache_creation_input_tokens=0, cache_read_input_tokens=0,
        cost_nano=105000, price_id=None, status="ok", http_status=200, error_type="", latency_ms=3, ttft_ms=None, created_at=datetime.now(UTC),
    )
    return UsageRecord(**{**fields, **overrides})


def test_writing_the_same_request_twice_bills_it_once(principal):
    usage_events_write([record(principal, "req_same")])
    usage_events_write([record(principal, "req_same", output_tokens=999), record(principal, "req_other")])
    assert UsageEvent.objects.filter(request_id="req_same").get().output_tokens == 5
    assert UsageEvent.objects.count() == 2


def test_concurrent_records_share_round_trips_and_are_all_durable(principal, django_assert_max_num_queries):
    recorder = UsageRecorder()

    async def fifty():
        await asyncio.gather(*(recorder.record(record(principal, f"req_{n}")) for n in range(50)))

    with django_assert_max_num_queries(10):  # group commit: far fewer INSERTs than requests
        async_to_sync(fifty)()
    assert UsageEvent.objects.count() == 50


def test_a_cancelled_waiter_still_gets_its_row_written(principal):
    recorder = UsageRecorder()

    async def cancel_while_waiting():
        waiter = asyncio.ensure_future(recorder.record(record(principal, "req_cancelled")))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await recorder._flusher  # the write goes on without its waiter

    async_to_sync(cancel_while_waiting)()
    assert UsageEvent.objects.filter(request_id="req_cancelled").exists()


@requires_postgres  # no test transaction: the writers' own connections must see alice
def test_racing_writers_of_one_request_id_leave_one_row_on_postgres(personas, django_db_blocker):
    alice = personas["alice"]
    barrier = threading.Barrier(8)
    errors = []

    def write():
        from django.db import connection

        try:
            barrier.wait()
            usage_events_write([record((alice.tenant, alice.api_key), "req_race")])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    with django_db_blocker.unblock():
        threads = [threading.Thread(target=write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert UsageEvent.objects.filter(request_id="req_race").count() == 1


def test_usage_takes_the_last_cumulative_value_never_the_sum():
    usage = Usage()
    usage.update({"input_tokens": 100, "output_tokens": 1, "cache_read_input_tokens": 20})
    usage.update({"output_tokens": 10})
    usage.update({"output_tokens": 42})
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (100, 42, 20)
    assert usage.prompt_tokens == 120


def test_last_used_at_is_written_with_usage_at_most_once_a_minute(principal):
    from datetime import timedelta

    from accounts.models import ApiKey
    from gateway.metering import writes

    tenant, api_key = principal
    writes._last_used_written.pop(api_key.pk, None)
    first = record(principal, "req_used_1")
    usage_events_write([first])
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first.created_at
    usage_events_write([record(principal, "req_used_2", created_at=first.created_at + timedelta(seconds=30))])
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first.created_at
    later = record(principal, "req_used_3", created_at=first.created_at + timedelta(seconds=61))
    usage_events_write([later])
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == later.created_at


# --- Isolation and the spool -----------------------------------------------------------------------------


def test_a_row_the_database_refuses_is_dropped_alone_and_the_rest_of_its_batch_is_written(db_access, caplog):
    # Committed, outside a test transaction: a refused statement would abort that transaction, and a
    # transactional test would flush the rows the session's server processes rely on.
    tenant = tenant_create(slug=f"meter-{uuid.uuid4().hex[:8]}")
    committed = (tenant, api_key_issue(tenant=tenant).api_key)
    ids = [f"req_{uuid.uuid4().hex[:12]}" for _ in range(3)]
    bad = record(committed, ids[1], tenant_id=10**9)  # no such tenant: the foreign key refuses it
    assert usage_events_write([record(committed, ids[0]), bad, record(committed, ids[2])]) == []
    assert set(UsageEvent.objects.filter(tenant=tenant).values_list("request_id", flat=True)) == {ids[0], ids[2]}
    assert [r.message for r in caplog.records if "refused" in r.message][0].startswith("usage row refused")


def test_nul_in_a_usage_row_is_stored_as_the_replacement_character(principal):
    usage_events_write([record(principal, "req_nul", requested_model="gpt\x00-4o", error_type="\x00")])
    row = UsageEvent.objects.get(request_id="req_nul")
    assert (row.requested_model, row.error_type) == ("gpt\ufffd-4o", "\ufffd")


@pytest.fixture(params=["file", pytest.param("redis", marks=requires_redis)])
def spool_backend(request, settings, tmp_path):
    """The spool in a directory of this test's (or, for "redis", the session's Redis namespace)."""
    from gateway.metering import spool

    settings.GATEWAY_USAGE_SPOOL_DIR = str(tmp_path / "spool")
    if request.param == "file":
        settings.REDIS_URL = ""
    else:
        settings.GATEWAY_REDIS_PREFIX = f"{settings.GATEWAY_REDIS_PREFIX}{uuid.uuid4().hex[:8]}:"
    yield request.param
    spool._file_spool.retire()


def test_rows_the_database_cannot_reach_are_spooled_and_replayed_exactly_once(principal, spool_backend, monkeypatch):
    from django.db import OperationalError

    from gateway.metering import spool, writes

    def unreachable(records):
        raise OperationalError("connection refused")

    monkeypatch.setattr(writes, "_usage_write", unreachable)
    recorder = UsageRecorder()

    async def three():
        await asyncio.gather(*(recorder.record(record(principal, f"req_spooled_{n}")) for n in range(3)))

    async_to_sync(three)()  # the requests go on: their rows are durable in the spool
    assert UsageEvent.objects.count() == 0 and spool.depth() == 3
    assert spool.replay() == 0 and spool.depth() == 3  # still unreachable: kept

    monkeypatch.undo()
    if spool_backend == "file":
        saved = {path: path.read_bytes() for path in spool._file_spool.paths()}
    assert spool.replay() == 3 and spool.depth() == 0
    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == [f"req_spooled_{n}" for n in range(3)]
    assert UsageEvent.objects.get(request_id="req_spooled_0").cost_nano == 105000
    if spool_backend == "file":  # a crash between the write and the file's removal: replayed again, billed once
        for path, data in saved.items():
            path.write_bytes(data)
        assert spool.replay() == 3
        assert UsageEvent.objects.count() == 3


def test_one_tenants_nul_and_a_refused_turn_never_cost_other_tenants_turns_in_their_batch(db_access):
    from conversations.models import Message
    from conversations.services import conversation_begin

    from tests.support.rows import turn_record

    # Committed, outside a test transaction: a refused statement would abort that transaction, and a
    # transactional test would flush the rows the session's server processes rely on.
    a, b = (tenant_create(slug=f"nul-{uuid.uuid4().hex[:8]}") for _ in range(2))
    key_a, key_b = api_key_issue(tenant=a).api_key, api_key_issue(tenant=b).api_key
    hostile = turn_record(a, key_a, "evil\x00text")
    refused = turn_record(a, key_a, "continues a conversation that does not exist", created=False)
    innocent = [turn_record(b, key_b, f"turn {n}") for n in range(5)]
    assert usage_events_write([], [innocent[0], hostile, *innocent[1:3], refused, *innocent[3:]]) == []
    for turn in innocent:  # each continuable
        history = conversation_begin(tenant_id=b.pk, conversation_id=turn.conversation_id, lease=True,
                                     now=datetime.now(UTC))
        assert history.next_seq == 2
    assert Message.objects.get(conversation_id=hostile.conversation_id, seq=0).content[0]["text"] == "evil\ufffdtext"
    assert not Message.objects.filter(conversation_id=refused.conversation_id).exists()


class _StubMeter:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.finished: list[tuple] = []

    def observe(self, event: dict) -> None:
        self.seen.append(event["type"])

    async def finish(self, status: str, http_status: int, error_type: str = "", content=None) -> None:
        self.finished.append((status, http_status, error_type))


async def test_a_stream_abandoned_before_its_body_was_sent_closes_upstream_and_is_recorded_client_left():
    from gateway.pipeline import _Relay

    closed = []
    exits = contextlib.AsyncExitStack()
    exits.callback(closed.append, "upstream stream")
    meter = _StubMeter()
    first = [{"type": "message_start", "message": {"usage": {"input_tokens": 12}}}, {"type": "message_stop"}]
    relay = _Relay(exits, None, first, None, meter)
    relay.body()  # as pipeline._open_stream does: the body generator exists, but the client left before it ran
    await relay.abandon()
    await relay.abandon()
    assert closed == ["upstream stream"]
    assert meter.seen == ["message_start", "message_stop"]  # billed what the upstream reported
    assert meter.finished == [(UsageEvent.Status.PARTIAL, 499, "client_left")]
