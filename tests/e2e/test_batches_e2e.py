"""Batches and files end to end: the official SDKs against a gateway process, a Celery worker process
running the batches (its own queue), and the fake upstream. The same items live cost twice as much."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import anthropic
import httpx
import openai
import pytest

from billing.models import UsageEvent
from tests.support.e2e import REDIS_PREFIX, make_persona, start_gateway, stop_process as _stop
from tests.support.env import ROOT, requires_redis
from tests.support.openapi import spec_available, validate

pytestmark = requires_redis
QUEUE = f"gh-test-batches-{os.getpid()}"
WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def batch_env(gateway_db_url, fake_upstream) -> dict[str, str]:
    return {"BATCH_QUEUE": QUEUE, "BATCH_CONCURRENCY": "1", "GATEWAY_CATALOG_CACHE_SECONDS": "0",
            "BATCH_FILE_MAX_BYTES": str(1024 * 1024)}


@pytest.fixture(scope="module")
def worker(gateway_db_url, fake_upstream, batch_env):
    env = {**os.environ, "DATABASE_URL": gateway_db_url, "ANTHROPIC_BASE_URL": fake_upstream,
           "ANTHROPIC_API_KEY": "test-upstream-key", "DJANGO_SETTINGS_MODULE": "config.settings",
           "GATEWAY_REDIS_PREFIX": REDIS_PREFIX, **batch_env}
    process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-Q", QUEUE,
                                "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "WARNING"],
                               cwd=ROOT, env=env, start_new_session=True)
    yield process
    _stop(process)


@pytest.fixture(scope="module")
def batch_gateway(gateway_db_url, fake_upstream, worker, batch_env):
    url, process = start_gateway(gateway_db_url, fake_upstream, **batch_env)
    yield url
    _stop(process)


def new_persona(django_db_blocker, **key_settings):
    with django_db_blocker.unblock():
        return make_persona(f"b-{uuid.uuid4().hex[:12]}", **key_settings)


def rows(django_db_blocker, **filters) -> list[UsageEvent]:
    with django_db_blocker.unblock():
        return list(UsageEvent.objects.filter(**filters).order_by("id"))


def wait_ended(get, is_ended):
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        batch = get()
        if is_ended(batch):
            return batch
        assert time.monotonic() < deadline, f"batch did not end: {batch}"
        time.sleep(0.2)


def message(text: str, **extra) -> dict:
    return {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": text}], **extra}


def anthropic_client(url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{url}/anthropic", api_key=key, max_retries=0)


# --- Anthropic -------------------------------------------------------------------------------------------


def test_an_anthropic_batch_runs_every_item_through_the_pipeline_at_half_price(batch_gateway, django_db_blocker):
    persona = new_persona(django_db_blocker)
    client = anthropic_client(batch_gateway, persona.key)
    batch = client.messages.batches.create(requests=[
        {"custom_id": "a-1", "params": message("one")},
        {"custom_id": "a-2", "params": message("two")},
        {"custom_id": "bad", "params": {"model": "claude-sonnet-4-6", "messages": "nope", "max_tokens": 5}},
        {"custom_id": "unknown-model", "params": message("x", model="no-such-model")},
    ])
    assert batch.type == "message_batch" and batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 4 and batch.results_url is None
    ended = wait_ended(lambda: client.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    counts = ended.request_counts
    assert (counts.succeeded, counts.errored, counts.canceled, counts.expired, counts.processing) == (2, 2, 0, 0, 0)
    assert ended.ended_at is not None and ended.results_url.endswith(f"/anthropic/v1/messages/batches/{batch.id}/results")

    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["a-1"].type == "succeeded" and "You said: one" in results["a-1"].message.content[0].text
    assert results["a-1"].message.model == "claude-sonnet-4-6"
    assert results["bad"].type == "errored" and results["bad"].error.error.type == "invalid_request_error"
    assert results["unknown-model"].type == "errored" and results["unknown-model"].error.error.type == "not_found_error"

    batch_rows = rows(django_db_blocker, batch_id=batch.id)
    assert len(batch_rows) == 2 and all(row.endpoint == "messages" and row.status == "ok" for row in batch_rows)
    # The same request live costs twice as much: the batch price is the price version's 50 % discount.
    live = client.messages.create(**message("one"))
    live_row = rows(django_db_blocker, request_id=live._request_id)[0]
    one = next(row for row in batch_rows if row.input_tokens == live_row.input_tokens)
    assert live_row.batch_id == "" and abs(live_row.cost_nano - 2 * one.cost_nano) <= 1 and one.cost_nano > 0

    listed = client.messages.batches.list(limit=10)
    assert [b.id for b in listed.data] == [batch.id]


def test_anthropic_batches_of_another_tenant_are_not_found_and_duplicates_refused(batch_gateway, django_db_blocker):
    alice, bob = new_persona(django_db_blocker), new_persona(django_db_blocker)
    batch = anthropic_client(batch_gateway, alice.key).messages.batches.create(
        requests=[{"custom_id": "x", "params": message("hi")}])
    other = anthropic_client(batch_gateway, bob.key)
    for call in (lambda: other.messages.batches.retrieve(batch.id), lambda: other.messages.batches.cancel(batch.id),
                 lambda: other.messages.batches.delete(batch.id)):
        with pytest.raises(anthropic.NotFoundError) as caught:
            call()
        assert caught.value.body["error"]["type"] == "not_found_error"
    assert other.messages.batches.list().data == []
    with pytest.raises(anthropic.BadRequestError) as caught:
        other.messages.batches.create(requests=[{"custom_id": "x", "params": message("a")},
                                                {"custom_id": "x", "params": message("b")}])
    assert "Duplicate custom_id" in caught.value.message
    # At the root too, for an SDK whose base_url is ours.
    root = anthropic.Anthropic(base_url=batch_gateway, api_key=alice.key, max_retries=0)
    assert root.messages.batches.retrieve(batch.id).id == batch.id


def test_a_cancelled_batch_bills_the_items_that_ran_and_no_others(batch_gateway, fake_upstream, django_db_blocker):
    persona = new_persona(django_db_blocker)
    client = anthropic_client(batch_gateway, persona.key)
    marker = uuid.uuid4().hex[:8]
    requests = [{"custom_id": "fast", "params": message("fast")},
                {"custom_id": "slow", "params": message(f"slow {marker} [[fake:delay_ms=3000]]")}]
    requests += [{"custom_id": f"later-{i}", "params": message(f"later {i}")} for i in range(3)]
    batch = client.messages.batches.create(requests=requests)

    def slow_in_flight() -> bool:
        log = httpx.get(f"{fake_upstream}/_fake/requests").json()
        return any(marker in json.dumps(entry["body"]) and entry["outcome"] == "in_progress" for entry in log)

    wait_ended(lambda: None, lambda _: slow_in_flight())
    cancelling = client.messages.batches.cancel(batch.id)
    assert cancelling.processing_status == "canceling" and cancelling.cancel_initiated_at is not None
    ended = wait_ended(lambda: client.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (2, 3)
    results = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
    assert results == {"fast": "succeeded", "slow": "succeeded", **{f"later-{i}": "canceled" for i in range(3)}}
    assert len(rows(django_db_blocker, batch_id=batch.id)) == 2  # the two that ran; the cancelled cost nothing
    deleted = client.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"


def test_a_batch_over_budget_stops_and_is_billed_exactly_for_what_ran(batch_gateway, django_db_blocker):
    persona = new_persona(django_db_blocker, budget_nano=1, budget_period="day")
    client = anthropic_client(batch_gateway, persona.key)
    batch = client.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": message(f"item {i}")}
                                                     for i in range(5)])
    ended = wait_ended(lambda: client.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    # The first item is admitted (nothing spent yet), which uses the budget up; the rest are refused.
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 4)
    results = [r.result for r in client.messages.batches.results(batch.id)]
    assert [r.type for r in results] == ["succeeded"] + ["errored"] * 4
    assert all(r.error.error.type == "billing_error" for r in results[1:])
    batch_rows = rows(django_db_blocker, batch_id=batch.id)
    key_rows = rows(django_db_blocker, api_key_id=persona.api_key.pk)
    assert len(batch_rows) == 1 and key_rows == batch_rows and batch_rows[0].cost_nano > 0


# --- OpenAI ----------------------------------------------------------------------------------------------


def jsonl(*lines) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


def chat_line(custom_id: str, text: str, url: str = "/v1/chat/completions") -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": "gpt-4o", "max_tokens": 32, "messages": [{"role": "user", "content": text}]}}


def openai_wait(client: openai.OpenAI, batch_id: str):
    return wait_ended(lambda: client.batches.retrieve(batch_id),
                      lambda b: b.status in ("completed", "failed", "cancelled", "expired"))


def raw(client: openai.OpenAI, path: str) -> dict:
    response = httpx.get(str(client.base_url).rstrip("/") + path, headers={"Authorization": f"Bearer {client.api_key}"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.skipif(not spec_available(), reason="needs the OpenAI OpenAPI spec: set OPENAI_OPENAPI_SPEC")
def test_an_openai_chat_batch_reports_malformed_lines_on_their_own_and_runs_the_rest(batch_gateway,
                                                                                       django_db_blocker):
    persona = new_persona(django_db_blocker)
    client = openai.OpenAI(base_url=f"{batch_gateway}/v1", api_key=persona.key, max_retries=0)
    content = jsonl(chat_line("c-1", "first"), b'{"custom_id": "broken", "method": "POST", ', chat_line("c-2", "second"),
                    chat_line("wrong-url", "x", url="/v1/embeddings"), chat_line("c-3", "third"))
    uploaded = client.files.create(file=("requests.jsonl", content), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(content)
    validate("OpenAIFile", raw(client, f"/files/{uploaded.id}"))
    assert client.files.content(uploaded.id).content == content

    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"job": "nightly"})
    validate("Batch", raw(client, f"/batches/{batch.id}"))
    done = openai_wait(client, batch.id)
    assert done.status == "completed" and done.metadata == {"job": "nightly"}
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 3, 2)
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    validate("Batch", raw(client, f"/batches/{batch.id}"))

    output = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    assert [line["custom_id"] for line in output] == ["c-1", "c-2", "c-3"]
    for line in output:
        assert line["response"]["status_code"] == 200 and line["error"] is None
        validate("CreateChatCompletionResponse", line["response"]["body"])
    errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert [(e["custom_id"], e["error"]["line"], e["error"]["code"]) for e in errors] == [
        (None, 2, "invalid_json_line"), ("wrong-url", 4, "invalid_url")]
    assert {row.request_id for row in rows(django_db_blocker, batch_id=batch.id)} == {
        line["response"]["request_id"] for line in output}

    listed = raw(client, "/files")
    validate("ListFilesResponse", listed)
    assert {f["id"] for f in listed["data"]} == {uploaded.id, done.output_file_id, done.error_file_id}
    assert {f["purpose"] for f in listed["data"]} == {"batch", "batch_output"}
    validate("ListBatchesResponse", raw(client, "/batches"))
    assert [b.id for b in client.batches.list()] == [batch.id]
    deleted = httpx.delete(f"{batch_gateway}/v1/files/{uploaded.id}", headers={"Authorization": f"Bearer {persona.key}"})
    validate("DeleteFileResponse", deleted.json())
    assert client.files.delete(done.output_file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def test_openai_responses_and_embeddings_batches(batch_gateway, fake_openai_upstream, django_db_blocker):
    from billing.services import model_price_add
    from django.utils import timezone
    from gateway.models import CatalogModel, Credential, Deployment, Provider
    from gateway.services import credential_save

    suffix = uuid.uuid4().hex[:8]
    with django_db_blocker.unblock():
        jina = Provider.objects.create(name=f"jina-{suffix}", kind="jina", base_url=f"{fake_openai_upstream}/v1")
        credential_save(credential=Credential(provider=jina, name="main"), secret="jina-key-0001")
        embed = CatalogModel.objects.create(name=f"embed-{suffix}", capability="embeddings")
        model_price_add(model=embed, effective_from=timezone.now(), input_nano_per_mtok=10**9, output_nano_per_mtok=0,
                        cache_write_nano_per_mtok=0, cache_read_nano_per_mtok=0)
        Deployment.objects.create(model=embed, provider=jina, upstream_model="jina-embeddings-v3")
    persona = new_persona(django_db_blocker)
    client = openai.OpenAI(base_url=f"{batch_gateway}/v1", api_key=persona.key, max_retries=0)

    responses = client.files.create(file=("r.jsonl", jsonl(*(
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses",
         "body": {"model": "gpt-4o", "input": f"question {i}", "max_output_tokens": 32}} for i in range(2)))),
        purpose="batch")
    embeddings = client.files.create(file=("e.jsonl", jsonl(*(
        {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": embed.name, "input": [f"text {i}"], "dimensions": 4}} for i in range(2)))), purpose="batch")
    r_batch = client.batches.create(input_file_id=responses.id, endpoint="/v1/responses", completion_window="24h")
    e_batch = client.batches.create(input_file_id=embeddings.id, endpoint="/v1/embeddings", completion_window="24h")
    for batch, schema, endpoint in ((r_batch, "Response", "responses"), (e_batch, "CreateEmbeddingResponse", "embeddings")):
        done = openai_wait(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 2, done
        lines = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
        for line in lines:
            if spec_available():
                validate(schema, line["response"]["body"])
        assert [row.endpoint for row in rows(django_db_blocker, batch_id=batch.id)] == [endpoint] * 2


def test_openai_files_and_batches_are_validated_and_scoped_to_the_tenant(batch_gateway, django_db_blocker):
    alice, bob = new_persona(django_db_blocker), new_persona(django_db_blocker)
    client = openai.OpenAI(base_url=f"{batch_gateway}/v1", api_key=alice.key, max_retries=0)
    other = openai.OpenAI(base_url=f"{batch_gateway}/v1", api_key=bob.key, max_retries=0)
    file = client.files.create(file=("a.jsonl", jsonl(chat_line("a", "hi"))), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
    assert caught.value.body["param"] == "purpose"
    for call in (lambda: other.files.retrieve(file.id), lambda: other.files.content(file.id),
                 lambda: other.files.delete(file.id),
                 lambda: other.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                              completion_window="24h")):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.body["type"] == "invalid_request_error"
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    for call in (lambda: other.batches.retrieve(batch.id), lambda: other.batches.cancel(batch.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id=file.id, endpoint="/v1/completions", completion_window="24h")
    assert caught.value.body["param"] == "endpoint"

    duplicate = client.files.create(file=("d.jsonl", jsonl(chat_line("same", "a"), chat_line("same", "b"))),
                                    purpose="batch")
    failed = client.batches.create(input_file_id=duplicate.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert failed.status == "failed" and failed.errors.data[0].code == "duplicate_custom_id"
    assert failed.errors.data[0].line == 2

    big = httpx.post(f"{batch_gateway}/v1/files", headers={"Authorization": f"Bearer {alice.key}"},
                     data={"purpose": "batch"}, files={"file": ("big.jsonl", b"x" * (2 * 1024 * 1024))})
    assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"


@pytest.fixture(scope="module")
def embedded_gateway(gateway_db_url, fake_upstream):
    """The embedded mode: no Redis, so no broker; the gateway runs batches on its own event loop."""
    url, process = start_gateway(gateway_db_url, fake_upstream, REDIS_URL="", BATCH_CONCURRENCY="2")
    yield url
    _stop(process)


def test_in_the_embedded_mode_the_gateway_runs_batches_itself(embedded_gateway, django_db_blocker):
    persona = new_persona(django_db_blocker)
    client = anthropic.Anthropic(base_url=embedded_gateway, api_key=persona.key, max_retries=0)
    batch = client.messages.batches.create(requests=[{"custom_id": f"e{i}", "params": message(f"embedded {i}")}
                                                     for i in range(3)])
    ended = wait_ended(lambda: client.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    assert ended.request_counts.succeeded == 3 and ended.results_url.startswith(f"{embedded_gateway}/v1/messages/")
    assert sorted(r.custom_id for r in client.messages.batches.results(batch.id)) == ["e0", "e1", "e2"]
    assert len(rows(django_db_blocker, batch_id=batch.id)) == 3


def test_a_hundred_item_batch_costs_half_of_the_same_requests_live(batch_gateway, django_db_blocker, capsys):
    """The figures of docs/batches.md: printed, not asserted (no timed assertions)."""
    persona = new_persona(django_db_blocker)
    client = anthropic_client(batch_gateway, persona.key)
    requests = [{"custom_id": f"n{i}", "params": message(f"item number {i} [[fake:words=20]]")} for i in range(100)]
    started = time.monotonic()
    batch = client.messages.batches.create(requests=requests)
    ended = wait_ended(lambda: client.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    batch_seconds = time.monotonic() - started
    assert ended.request_counts.succeeded == 100
    started = time.monotonic()
    live_ids = [client.messages.create(**request["params"])._request_id for request in requests]
    live_seconds = time.monotonic() - started
    batch_cost = sum(row.cost_nano for row in rows(django_db_blocker, batch_id=batch.id))
    live_cost = sum(row.cost_nano for row in rows(django_db_blocker, request_id__in=live_ids))
    assert abs(live_cost - 2 * batch_cost) <= 100  # at most one nano-USD of rounding per item
    with capsys.disabled():
        print(f"\n100-item batch: {batch_seconds:.2f} s (BATCH_CONCURRENCY=1, one worker), cost {batch_cost} nano-USD;"
              f" the same 100 requests live, one after another: {live_seconds:.2f} s, {live_cost} nano-USD"
              f" ({batch_cost / live_cost:.4f} of live)")
