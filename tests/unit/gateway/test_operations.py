"""The operations surface: health endpoints, structured access logs, traces, graceful shutdown, Kubernetes."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpResponse
from django.db.migrations.recorder import MigrationRecorder

from gateway.api import ops
from tests.support.e2e import marker, start_gateway, stop_process
from tests.support.env import ROOT


def test_health_live_answers_without_touching_the_database(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_health_ready_checks_database_migrations_and_spool(client, settings):
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["database"] == body["checks"]["migrations"] == "ok"
    assert ("redis" in body["checks"]) == bool(settings.REDIS_URL)
    assert body["usage_spool"]["depth"] <= body["usage_spool"]["max"]


@pytest.mark.django_db
def test_health_ready_is_unavailable_while_a_migration_is_unapplied(client, monkeypatch):
    monkeypatch.setattr(ops, "_migrations_applied", False)
    last = MigrationRecorder.Migration.objects.filter(app="billing").order_by("-id").first()
    last.delete()
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "down"
    assert client.get("/health").status_code == 200  # /health is as before: no migrations check


@pytest.mark.django_db
def test_health_ready_is_unavailable_when_the_spool_overflows(client, settings):
    settings.GATEWAY_USAGE_SPOOL_MAX = 1
    from gateway.metering import spool

    depth = spool.depth
    try:
        spool.depth = lambda: 2
        response = client.get("/health/ready")
    finally:
        spool.depth = depth
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def _stream_request(client: httpx.AsyncClient, key: str, tag: str):
    return client.post("/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                       json={"model": "claude-haiku-4-5", "max_tokens": 1000, "stream": True,
                             "messages": [{"role": "user", "content": f"{tag} [[fake:words=200, chunk_delay_ms=20]]"}]})


def test_sigterm_lets_open_streams_finish_and_writes_every_usage_row(gateway_db_url, fake_upstream, persona,
                                                                      db_access, tmp_path):
    tag = marker()
    url, process = start_gateway(gateway_db_url, fake_upstream, log=tmp_path / "gateway.log", SHUTDOWN_GRACE_SECONDS="60")
    answers: list[httpx.Response | Exception] = []

    async def run():
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=200)) as client:
            async def one():
                try:
                    response = await _stream_request(client, persona.key, tag)
                    answers.append(response)
                except httpx.HTTPError as exc:
                    answers.append(exc)

            tasks = [asyncio.create_task(one()) for _ in range(100)]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # every stream open at the upstream, then the signal
                seen = [r for r in httpx.get(f"{fake_upstream}/_fake/requests").json() if tag in str(r["body"])]
                if len(seen) == 100:
                    break
                await asyncio.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            await asyncio.gather(*tasks)

    try:
        asyncio.run(run())
        process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    reached = [r for r in httpx.get(f"{fake_upstream}/_fake/requests").json() if tag in str(r["body"])]
    assert len(reached) == 100
    completed = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 200 and "message_stop" in a.text]
    assert len(completed) == 100, [str(a)[:200] for a in answers if a not in completed][:3]
    from billing.models import UsageEvent

    assert UsageEvent.objects.filter(tenant_id=persona.tenant.pk).count() == 100


def test_requests_outlasting_the_shutdown_grace_are_cut_and_their_usage_rows_written(gateway_db_url, fake_upstream,
                                                                                    persona, db_access, tmp_path):
    log = tmp_path / "gateway.log"
    url, process = start_gateway(gateway_db_url, fake_upstream, log=log, SHUTDOWN_GRACE_SECONDS="2")
    headers = {"x-api-key": persona.key, "anthropic-version": "2023-06-01"}
    waiting_tag, events, answers = marker(), [], []

    def wait_for_answer():  # an upstream that answers after a minute, far past the grace
        answers.append(httpx.post(f"{url}/v1/messages", headers=headers, timeout=120, json={
            "model": "claude-haiku-4-5", "max_tokens": 100,
            "messages": [{"role": "user", "content": f"{waiting_tag} [[fake:delay_ms=60000]]"}]}))

    waiting = threading.Thread(target=wait_for_answer)
    try:
        waiting.start()
        deadline = time.monotonic() + 60
        while not any(waiting_tag in str(r["body"]) for r in httpx.get(f"{fake_upstream}/_fake/requests").json()):
            assert time.monotonic() < deadline, "the waiting request never reached the upstream"
            time.sleep(0.1)
        # 2,000 words at 20 ms a word: about 40 s.
        body = {"model": "claude-haiku-4-5", "max_tokens": 5000, "stream": True,
                "messages": [{"role": "user", "content": f"{marker()} [[fake:words=2000, chunk_delay_ms=20]]"}]}
        with httpx.stream("POST", f"{url}/v1/messages", json=body, headers=headers, timeout=120) as response:
            assert response.status_code == 200
            request_id = response.headers["request-id"]
            lines = response.iter_lines()
            try:
                for line in lines:
                    if line.startswith("event: "):
                        events.append(line.removeprefix("event: "))
                    if events.count("content_block_delta") == 5:
                        process.send_signal(signal.SIGTERM)
                        break
                for line in lines:  # the rest, until the gateway cuts it
                    if line.startswith("event: "):
                        events.append(line.removeprefix("event: "))
            except httpx.HTTPError:
                pass  # the connection closed under the stream: it is cut either way
        waiting.join(timeout=120)
        process.wait(timeout=90)  # the worker exits after the grace: generous, not a timing claim
    finally:
        if process.poll() is None:
            stop_process(process)
    assert "message_stop" not in events, "the stream was not cut"
    # Cut by the worker itself at the end of the grace, which wrote the rows below then: before granian's
    # kill, 5 s later, could have come (whether that kill is needed depends on the machine's load).
    assert "cutting 2 open request(s)" in log.read_text()
    from billing.models import UsageEvent

    row = UsageEvent.objects.get(request_id=request_id)
    assert (row.status, row.error_type, row.http_status) == (UsageEvent.Status.PARTIAL, "server_shutdown", 200)
    assert row.input_tokens > 0 and row.output_tokens >= 5  # billed what was generated before the cut
    assert row.cost_nano > 0
    [answer] = answers
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "server_shutdown"
    row = UsageEvent.objects.get(request_id=answer.headers["request-id"])
    assert (row.status, row.error_type, row.http_status) == (UsageEvent.Status.PARTIAL, "server_shutdown", 503)
    assert row.input_tokens > 0  # the upstream had the prompt


def test_json_access_log_has_one_line_per_request_and_no_prompt_answer_or_secret(gateway_db_url, fake_upstream,
                                                                                  persona, tmp_path):
    log = tmp_path / "gateway.log"
    url, process = start_gateway(gateway_db_url, fake_upstream, log=log, LOG_FORMAT="json")
    prompt = f"secret-prompt-{marker()}"
    headers = {"x-api-key": persona.key, "anthropic-version": "2023-06-01"}
    try:
        plain = httpx.post(f"{url}/v1/messages", headers=headers, timeout=30, json={
            "model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": prompt}]})
        answer = plain.json()["content"][0]["text"]
        streamed = httpx.post(f"{url}/v1/messages", headers=headers, timeout=30, json={
            "model": "claude-haiku-4-5", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": prompt}]})
        refused = httpx.post(f"{url}/v1/messages", headers={**headers, "x-api-key": persona.key + "x"}, timeout=30,
                             json={"model": "claude-haiku-4-5", "max_tokens": 100,
                                   "messages": [{"role": "user", "content": prompt}]})
        assert (plain.status_code, streamed.status_code, refused.status_code) == (200, 200, 401)
    finally:
        process.terminate()
        process.wait(timeout=60)
    text = log.read_text()
    assert prompt not in text and answer not in text and persona.key not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = {line["request_id"]: line for line in lines if line["logger"] == "gatehouse.access"}
    assert set(access) == {plain.headers["request-id"], streamed.headers["request-id"], refused.headers["request-id"]}
    ok = access[plain.headers["request-id"]]
    assert ok["tenant"] == persona.tenant.slug and ok["key"] == persona.api_key.public_id
    assert (ok["endpoint"], ok["model"], ok["provider"], ok["status"], ok["outcome"]) == (
        "messages", "claude-haiku-4-5", "anthropic", 200, "ok")
    assert ok["input_tokens"] > 0 and ok["output_tokens"] > 0 and ok["cost_nano_usd"] > 0 and ok["latency_ms"] >= 0
    assert access[streamed.headers["request-id"]]["ttft_ms"] is not None
    denied = access[refused.headers["request-id"]]
    assert (denied["status"], denied["outcome"], denied["tenant"]) == (401, "error", None)


def test_json_log_time_is_the_records_time_in_utc_to_the_millisecond():
    import random
    from datetime import UTC, datetime

    from config.logging import iso_time

    moments = [random.uniform(0, 4e9) for _ in range(20_000)]
    # Around the rounding edges: datetime rounds to the microsecond (half to even), then truncates to ms.
    moments += [1796188393 + edge for edge in (0, 0.0005, 0.9995, 0.9999994999, 0.9999995, 0.99999950001)]
    for moment in moments:
        assert iso_time(moment) == datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds"), moment


def test_an_access_record_is_the_record_the_logger_would_make(monkeypatch):
    import logging

    from gateway import observability

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    monkeypatch.setattr(observability.access_log, "level", logging.INFO)
    observability.access_log.addHandler(handler)
    try:
        for n in range(3):  # the first makes the thread's template, the next ones copy it
            observability._write({"request_id": f"req_{n}"})
        observability.access_log.info("request", extra={"fields": {"request_id": "req_logger"}})
    finally:
        observability.access_log.removeHandler(handler)
    *ours, theirs = records
    timed, caller = {"created", "msecs", "relativeCreated"}, {"pathname", "filename", "module", "lineno", "funcName"}
    for n, record in enumerate(ours):
        assert type(record) is logging.LogRecord and record.fields == {"request_id": f"req_{n}"}
        assert {k: v for k, v in vars(record).items() if k not in timed | caller | {"fields"}} == {
            k: v for k, v in vars(theirs).items() if k not in timed | caller | {"fields"}}
        assert record.created <= theirs.created and record.msecs == int((record.created % 1) * 1000)
        assert abs(record.relativeCreated - (theirs.relativeCreated - (theirs.created - record.created) * 1000)) < 1
        assert record.getMessage() == "request" and record.filename == "observability.py"


def test_traces_continue_the_callers_traceparent_with_admission_upstream_and_usage_spans(
        fake_upstream, persona, db_access, settings, monkeypatch):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import config.asgi
    from gateway import providers, tracing

    exporter = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "_tracer", None)
    tracing.configure(exporter)
    settings.ANTHROPIC_BASE_URL, settings.ANTHROPIC_API_KEY = fake_upstream, "test-upstream-key"
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    tag = marker()

    async def call():
        try:
            transport = httpx.ASGITransport(app=config.asgi.application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.post("/v1/messages", json={
                    "model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": tag}]},
                    headers={"x-api-key": persona.key, "anthropic-version": "2023-06-01",
                             "traceparent": f"00-{trace_id}-{parent_id}-01"})
        finally:
            await providers.close_providers()  # its clients belong to this event loop
            await sync_to_async(connections.close_all)()  # the request path's, so the test database can go

    try:
        assert asyncio.run(call()).status_code == 200
    finally:
        monkeypatch.setattr(tracing, "_tracer", None)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    request = spans["POST /v1/messages"]
    assert format(request.context.trace_id, "032x") == trace_id
    assert format(request.parent.span_id, "016x") == parent_id
    for child in ("gateway.admission", "gateway.upstream_attempt", "gateway.usage_write"):
        assert spans[child].parent.span_id == request.context.span_id
        assert spans[child].context.trace_id == request.context.trace_id
    upstream = [r for r in httpx.get(f"{fake_upstream}/_fake/requests").json() if tag in str(r["body"])]
    attempt = spans["gateway.upstream_attempt"].context
    assert upstream[0]["headers"]["traceparent"] == f"00-{trace_id}-{format(attempt.span_id, '016x')}-01"


def test_tracing_is_off_without_an_otlp_endpoint(monkeypatch):
    from gateway import tracing

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setattr(tracing, "_tracer", None)
    tracing.configure()
    assert tracing.span("x") is tracing.request_span({"path": "/v1/messages"}) is tracing._NULL
    assert tracing.upstream_headers() == {}


KUBERNETES_VERSION = "1.30.0"  # the oldest version the manifests target (sleep preStop hooks are 1.30)


def _manifests() -> dict[tuple[str, str], dict]:
    import yaml

    resources = {}
    for path in sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml")):
        for resource in yaml.safe_load_all(path.read_text()):
            resources[resource["kind"], resource["metadata"]["name"]] = resource
    return resources


def test_kubernetes_manifests_validate_against_the_pinned_version():
    import kubernetes_validate

    resources = _manifests()
    for resource in resources.values():
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    assert {kind for kind, _ in resources} >= {"Deployment", "Service", "ConfigMap", "Secret", "Job",
                                              "PodDisruptionBudget", "HorizontalPodAutoscaler"}


def test_kubernetes_web_probes_the_health_endpoints_and_beat_runs_once():
    resources = _manifests()
    web = resources["Deployment", "gatehouse-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert web["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert web["resources"]["requests"] and resources["ConfigMap", "gatehouse-config"]["data"]["WEB_CONCURRENCY"]
    beat = resources["Deployment", "gatehouse-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    assert "HorizontalPodAutoscaler" not in {kind for kind, name in resources if name == "gatehouse-beat"}
    grace = int(resources["ConfigMap", "gatehouse-config"]["data"]["SHUTDOWN_GRACE_SECONDS"])
    assert resources["Deployment", "gatehouse-web"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace
    # The pod outlives the preStop sleep, the grace and the settling time before granian's kill.
    from gateway.shutdown import SETTLE_SECONDS

    pre_stop = web["lifecycle"]["preStop"]["sleep"]["seconds"]
    termination = resources["Deployment", "gatehouse-web"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert termination > pre_stop + grace + SETTLE_SECONDS


@pytest.mark.django_db
def test_an_api_error_logs_once_with_its_request_id_and_a_clients_mistake_not_at_all(client, caplog):
    from accounts.services import api_key_issue, tenant_create

    key = api_key_issue(tenant=tenant_create(slug="logs-once")).plaintext
    with caplog.at_level("INFO"):
        unknown = client.get("/v1/models/no-such-model", headers={"Authorization": f"Bearer {key}"})
        refused = client.get("/v1/models", headers={"Authorization": "Bearer sk_cdx_nope"})
    assert (unknown.status_code, refused.status_code) == (404, 401)
    assert not [r for r in caplog.records if r.name == "django.request"]  # Django's line per response, id-less

    from gateway.api.base import error_response
    from gateway.core import GatewayError

    request = client.get("/health/live").wsgi_request
    request.gateway_request_id = "req_logged_once"
    caplog.clear()
    error_response(request, GatewayError(502, "upstream failed", code="upstream_cut"), lambda *a: HttpResponse())
    [line] = [r.getMessage() for r in caplog.records]
    assert "502 upstream_cut" in line and "req_logged_once" in line
