"""The batch services and runner (gateway/batches/), with the request path replaced by a stub: claiming,
stopping on a budget refusal, cancelling, waiting out a rate limit, expiry, retention, the batch price."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from accounts.selectors import key_principal
from common.money import usage_cost_nano
from gateway import pipeline
from gateway.batches import executor, formats, services, storage
from gateway.batches.models import Batch, BatchFile, BatchItem
from gateway.core import GatewayError
from tests.support.e2e import make_persona


@pytest.fixture
def principal(django_db_setup, django_db_blocker, settings):
    settings.BATCH_CONCURRENCY = 1
    with django_db_blocker.unblock():
        persona = make_persona(f"u-{uuid.uuid4().hex[:12]}")
        yield key_principal(persona.api_key.public_id)
        # The runner's database work ran on asgiref's sync thread: its connection goes too.
        asyncio.run(sync_to_async(connections.close_all)())


def anthropic_batch(principal, n: int) -> Batch:
    lines = formats.anthropic_requests({"requests": [
        {"custom_id": f"r{i}", "params": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": str(i)}]}}
        for i in range(n)]})
    return services.batch_create_anthropic(principal=principal, lines=lines)


def results(batch: Batch) -> list[dict]:
    batch.refresh_from_db()
    return [json.loads(line) for line in storage.read(batch.results_name).splitlines()]


request_ids: list[str] = []


def stub(monkeypatch, answer):
    calls = []
    request_ids.clear()

    async def execute(*, principal, codec, endpoint, body, request_id, batch_id):
        calls.append(body["messages"][0]["content"])
        request_ids.append(request_id)
        return await answer(len(calls))

    monkeypatch.setattr(pipeline, "execute", execute)
    return calls


MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}


def test_the_batch_price_takes_the_discount_off_tokens_and_rounds_once():
    prices = dict(input_price=3 * 10**9, output_price=15 * 10**9, cache_write_price=0, cache_read_price=0)
    tokens = dict(input_tokens=333, output_tokens=77, cache_write_tokens=0, cache_read_tokens=0)
    live = usage_cost_nano(**tokens, **prices)
    assert live == 2_154_000
    assert usage_cost_nano(**tokens, **prices, discount_bp=5000) == 1_077_000
    # Half of an odd micro-amount rounds half up once, on the total; web searches keep their full price.
    assert usage_cost_nano(input_tokens=1, output_tokens=0, cache_write_tokens=0, cache_read_tokens=0,
                           input_price=1, output_price=0, cache_write_price=0, cache_read_price=0,
                           web_searches=1, web_search_price=10**7, discount_bp=5000) == 10**7
    assert usage_cost_nano(**tokens, **prices, discount_bp=10_000) == 0


def test_one_runner_claims_a_batch(principal):
    batch = anthropic_batch(principal, 1)
    assert services.batch_claim(batch.pk) is not None
    assert services.batch_claim(batch.pk) is None  # a task delivered twice does nothing
    Batch.objects.filter(pk=batch.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.batch_claim(batch.pk) is not None  # a runner that died lets it go within a minute


def test_an_item_is_counted_once(principal):
    batch = anthropic_batch(principal, 1)
    item = batch.items.get()
    for _ in range(2):
        services.batch_item_finish(item.pk, status=BatchItem.Status.SUCCEEDED, http_status=200, result=MESSAGE,
                                   request_id="req_1")
    batch.refresh_from_db()
    assert batch.succeeded == 1


async def test_a_budget_refusal_stops_the_batch_and_errors_what_did_not_run(principal, monkeypatch):
    async def answer(n):
        if n == 3:
            raise GatewayError(429, "Budget used up.", code="insufficient_quota", type="insufficient_quota")
        return MESSAGE

    calls = stub(monkeypatch, answer)
    batch = await sync_to_async(anthropic_batch)(principal, 5)
    assert await executor.batch_execute(batch.pk) == "stopped: insufficient_quota"
    assert calls == ["0", "1", "2"]  # nothing after the refusal reached the request path
    lines = await sync_to_async(results)(batch)
    assert [line["result"]["type"] for line in lines] == ["succeeded"] * 2 + ["errored"] * 3
    assert {line["result"]["error"]["error"]["type"] for line in lines[2:]} == {"billing_error"}
    batch = await Batch.objects.aget(pk=batch.pk)
    assert (batch.status, batch.succeeded, batch.errored, batch.lease_until) == ("completed", 2, 3, None)


async def test_cancelling_lets_the_item_in_flight_finish_and_cancels_the_rest(principal, monkeypatch):
    batch = await sync_to_async(anthropic_batch)(principal, 5)

    async def answer(n):
        if n == 2:
            await sync_to_async(services.batch_cancel)(batch=batch)
        return MESSAGE

    calls = stub(monkeypatch, answer)
    assert await executor.batch_execute(batch.pk) == "cancelled"
    assert len(calls) == 2
    lines = await sync_to_async(results)(batch)
    assert [line["result"]["type"] for line in lines] == ["succeeded"] * 2 + ["canceled"] * 3
    batch = await Batch.objects.aget(pk=batch.pk)
    assert (batch.status, batch.canceled) == ("cancelled", 3) and batch.cancelling_at is not None


async def test_a_rate_limit_is_waited_out_not_reported(principal, monkeypatch):
    async def answer(n):
        if n == 1:
            raise GatewayError(429, "Slow down.", code="rate_limit_exceeded", type="requests", retry_after=0)
        return MESSAGE

    calls = stub(monkeypatch, answer)
    batch = await sync_to_async(anthropic_batch)(principal, 2)
    assert await executor.batch_execute(batch.pk) == "completed"
    assert calls == ["0", "0", "1"]
    assert (await Batch.objects.aget(pk=batch.pk)).succeeded == 2
    # An item keeps its request id across attempts (and a resumed run): its usage row is written once.
    assert request_ids[0] == request_ids[1] != request_ids[2]
    assert request_ids[0] == executor.item_request_id(batch.public_id, 1)


async def test_an_item_error_is_its_own_result_and_the_batch_goes_on(principal, monkeypatch):
    async def answer(n):
        if n == 1:
            raise GatewayError(400, "max_tokens: Field required", type="invalid_request_error")
        return MESSAGE

    stub(monkeypatch, answer)
    batch = await sync_to_async(anthropic_batch)(principal, 2)
    assert await executor.batch_execute(batch.pk) == "completed"
    lines = await sync_to_async(results)(batch)
    assert lines[0]["result"]["error"]["error"] == {"type": "invalid_request_error",
                                                    "message": "max_tokens: Field required"}
    assert lines[1]["result"]["type"] == "succeeded"


async def test_past_its_window_a_batch_expires_what_did_not_run(principal, monkeypatch):
    calls = stub(monkeypatch, lambda n: MESSAGE)
    batch = await sync_to_async(anthropic_batch)(principal, 2)
    await Batch.objects.filter(pk=batch.pk).aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    assert await executor.batch_execute(batch.pk) == "expired"
    assert calls == []
    batch = await Batch.objects.aget(pk=batch.pk)
    assert (batch.status, batch.expired) == ("expired", 2)


def test_an_openai_batch_writes_output_and_error_files(principal):
    data = b"\n".join(json.dumps({"custom_id": c, "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "m"}}).encode() for c in ("a", "b", "c")) + b"\n{oops\n"
    file = services.file_create(principal=principal, filename="in.jsonl", content=data, size=len(data),
                                purpose="batch")
    batch = services.batch_create_openai(principal=principal, input_file=file, endpoint="/v1/chat/completions",
                                         metadata=None, output_expires_after=3600)
    a, b, c = batch.items.filter(status=BatchItem.Status.PENDING).order_by("line")
    services.batch_item_finish(a.pk, status="succeeded", http_status=200, result={"id": "x"}, request_id="req_a")
    services.batch_item_finish(b.pk, status="errored", http_status=404, result={"error": {"code": "model_not_found"}},
                               request_id="req_b")
    services.batch_settle_rest(batch.pk, kind="cancelled", error=None)
    batch = services.batch_finalize(batch.pk, outcome="cancelled")
    output = [json.loads(line) for line in storage.read(batch.output_file.storage_name).splitlines()]
    errors = [json.loads(line) for line in storage.read(batch.error_file.storage_name).splitlines()]
    assert [(o["custom_id"], o["response"]["status_code"], o["response"]["request_id"]) for o in output] == [
        ("a", 200, "req_a")]
    assert [(e["custom_id"], e["response"] and e["response"]["status_code"], e["error"] and e["error"]["code"])
            for e in errors] == [("b", 404, None), ("c", None, "batch_cancelled"), (None, None, "invalid_json_line")]
    assert batch.output_file.expires_at - batch.output_file.created_at == timedelta(seconds=3600)
    assert (batch.status, batch.succeeded, batch.errored, batch.canceled) == ("cancelled", 1, 2, 1)
    assert services.batch_finalize(batch.pk, outcome="completed") is None  # once


def test_retention_removes_expired_files_and_the_items_and_results_of_old_batches(principal, settings):
    file = services.file_create(principal=principal, filename="in.jsonl", content=b"{}\n", size=3, purpose="batch",
                                expires_after_seconds=3600)
    batch = anthropic_batch(principal, 1)
    services.batch_settle_rest(batch.pk, kind="cancelled", error=None)
    batch = services.batch_finalize(batch.pk, outcome="cancelled")
    assert services.batches_expire(now=timezone.now()) == 0
    later = timezone.now() + timedelta(days=settings.BATCH_RETENTION_DAYS + 1)
    assert services.batches_expire(now=later) >= 2
    assert not BatchFile.objects.filter(pk=file.pk).exists() and not BatchItem.objects.filter(batch=batch).exists()
    batch.refresh_from_db()
    assert batch.archived_at is not None and batch.results_name == ""
    with pytest.raises(FileNotFoundError):
        storage.read(file.storage_name)


def test_beat_runs_the_batch_entries_beside_the_billing_schedule(settings):
    from config.celery import app

    schedule = app.conf.beat_schedule
    assert {name: schedule[name]["task"] for name in settings.BATCH_BEAT_SCHEDULE} == {
        "batches-resume": "gateway.batches.tasks.batches_resume",
        "batches-expire": "gateway.batches.tasks.batches_expire"}
    assert set(settings.CELERY_BEAT_SCHEDULE) <= set(schedule)
    assert "batches-resume" not in settings.CELERY_BEAT_SCHEDULE  # the embedded scheduler's own list
