"""Prometheus metrics: /metrics of a gateway with two worker processes counts exactly what happened.

The gateway runs as in production (gateway.serve, granian --workers 2, the multiprocess directory the
launcher prepares); the fake upstream answers, fails with 529 and streams on request.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from billing.models import UsageEvent
from tests.support.e2e import make_persona, start_gateway, stop_process
from tests.support.env import ROOT, free_port, requires_redis

pytestmark = pytest.mark.e2e

TOKEN = "metrics-" + uuid.uuid4().hex
HAIKU = "claude-haiku-4-5"
DASHBOARD = ROOT / "deploy" / "monitoring" / "grafana" / "dashboards" / "gatehouse.json"


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prometheus")


@pytest.fixture(scope="module")
def metered_gateway(gateway_db_url, fake_upstream, metrics_dir):
    url, process = start_gateway(gateway_db_url, fake_upstream, WEB_CONCURRENCY="2", METRICS_TOKEN=TOKEN,
                                 PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), UPSTREAM_RETRIES="1")
    yield url
    stop_process(process)


def scrape(base: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"{base}/metrics", headers=headers)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(values: dict, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and wanted <= ls)


def chat(base: str, key: str, content: str, **body) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": HAIKU, "messages": [{"role": "user", "content": content}], **body})


def test_metrics_endpoint_is_off_without_a_token_configured(gateway):
    assert scrape(gateway).status_code == 404


def test_metrics_endpoint_refuses_a_missing_or_wrong_token(metered_gateway):
    assert scrape(metered_gateway, token=None).status_code == 401
    assert scrape(metered_gateway, token="wrong").status_code == 401
    assert httpx.get(f"{metered_gateway}/metrics", headers={"Authorization": TOKEN}).status_code == 401
    answer = scrape(metered_gateway)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")


def test_metric_values_equal_what_happened_ok_refused_529_and_cut_stream(metered_gateway, django_db_blocker):
    with django_db_blocker.unblock():
        tenant = f"m-{uuid.uuid4().hex[:10]}"
        plain = make_persona(tenant)
        limited = make_persona(tenant, rpm_limit=1)
        restricted = make_persona(tenant, allowed_models=["claude-sonnet-4-6"])
    before = samples(scrape(metered_gateway).text)
    for _ in range(3):
        assert chat(metered_gateway, plain.key, f"[[fake:words=7]] {uuid.uuid4().hex}").status_code == 200
    # rpm 1: a second request in the minute is refused (without Redis each worker counts on its own,
    # so the third is the first one sure to be)
    limited_statuses = [chat(metered_gateway, limited.key, f"try {n}").status_code for n in range(3)]
    assert limited_statuses[0] == 200 and 429 in limited_statuses and set(limited_statuses) == {200, 429}
    admitted = 3 + limited_statuses.count(200)
    assert chat(metered_gateway, restricted.key, "three").status_code == 403  # model_not_allowed
    with httpx.stream("POST", f"{metered_gateway}/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {plain.key}"},
                      json={"model": HAIKU, "stream": True, "messages": [
                          {"role": "user", "content": f"[[fake:words=3000 chunk_delay_ms=5]] {uuid.uuid4().hex}"}]}
                      ) as cut:
        cut_id = cut.headers["request-id"]
        for n, _ in enumerate(cut.iter_lines()):
            if n > 10:
                break  # leaving the block closes the connection mid-stream
    # Last: the target then cools down (a later request would probe it and end the cooldown).
    failed = chat(metered_gateway, plain.key, f"[[fake:error=529]] {uuid.uuid4().hex}")
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "upstream_overloaded"
    with django_db_blocker.unblock():
        deadline = time.monotonic() + 10
        while (UsageEvent.objects.filter(api_key__tenant__slug=tenant).count() < admitted + 2
               and time.monotonic() < deadline):
            time.sleep(0.05)
        rows = list(UsageEvent.objects.filter(api_key__tenant__slug=tenant))
    assert sorted(row.status for row in rows) == ["error", *["ok"] * admitted, "partial"]
    assert next(row for row in rows if row.request_id == cut_id).status == "partial"

    after = samples(scrape(metered_gateway).text)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("gatehouse_requests_total", outcome="ok", model=HAIKU, endpoint="chat.completions") == admitted
    assert delta("gatehouse_requests_total", outcome="error") == 1
    assert delta("gatehouse_requests_total", outcome="partial") == 1
    assert delta("gatehouse_request_duration_seconds_count") == admitted + 2
    assert delta("gatehouse_time_to_first_token_seconds_count") == sum(row.ttft_ms is not None for row in rows) == 1
    assert delta("gatehouse_admission_refusals_total", reason="rpm") == limited_statuses.count(429)
    assert delta("gatehouse_admission_refusals_total", reason="model_not_allowed") == 1
    assert delta("gatehouse_tokens_total", kind="input") == sum(row.input_tokens for row in rows)
    assert delta("gatehouse_tokens_total", kind="output") == sum(row.output_tokens for row in rows)
    assert delta("gatehouse_cost_nano_usd_total") == sum(row.cost_nano for row in rows) > 0
    # The 529: tried, retried once (UPSTREAM_RETRIES=1), then the target cooled down.
    assert delta("gatehouse_upstream_errors_total", **{"class": "529"}) == 2
    assert delta("gatehouse_upstream_retries_total") == 1
    assert delta("gatehouse_upstream_fallbacks_total") == 1
    assert max(v for (n, _), v in after.items() if n == "gatehouse_deployment_cooldown_until_seconds") > time.time()
    assert delta("gatehouse_upstream_request_duration_seconds_count", outcome="ok") == admitted + 1  # + the stream
    # Nothing left open once every request is recorded.
    assert total(after, "gatehouse_requests_in_flight") == 0
    assert total(after, "gatehouse_open_streams") == 0
    assert total(after, "gatehouse_usage_queue_depth") == 0
    assert delta("gatehouse_usage_flush_duration_seconds_count") >= 1
    assert ("gatehouse_usage_rollup_lag_seconds", frozenset()) in after


def test_two_worker_processes_counts_are_summed(metered_gateway, metrics_dir, django_db_blocker):
    with django_db_blocker.unblock():
        persona = make_persona(f"w-{uuid.uuid4().hex[:10]}")
    before = total(samples(scrape(metered_gateway).text), "gatehouse_requests_total")
    sent = 40
    for n in range(sent):  # a new connection each: granian spreads connections over its workers
        assert chat(metered_gateway, persona.key, f"hello {n}").status_code == 200
    after = total(samples(scrape(metered_gateway).text), "gatehouse_requests_total")
    assert after - before == sent
    per_process = {}
    for path in metrics_dir.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)], accumulate=True)
        per_process[path.name] = sum(s.value for m in merged if m.name == "gatehouse_requests"
                                     for s in m.samples if s.name == "gatehouse_requests_total")
    serving = [name for name, count in per_process.items() if count > 0]
    assert len(serving) == 2, per_process
    assert sum(per_process.values()) == after


def _exported_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ())
        names.update(family.name + suffix for suffix in suffixes)
    return names


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    return {name for expr in exprs for name in re.findall(r"\b(gatehouse_[a-z0-9_]+)", expr)}


@pytest.mark.django_db
def test_every_metric_the_dashboard_queries_is_exported(client, settings):
    settings.METRICS_TOKEN = TOKEN
    # In-process: the default registry lists every metric, even those no request has touched yet.
    exported = _exported_names(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    queried = dashboard_metric_names()
    assert {"gatehouse_requests_total", "gatehouse_usage_rollup_lag_seconds"} <= queried
    assert queried <= exported, queried - exported


def test_compose_monitoring_profile_scrapes_the_gateway_with_the_token():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"] == services["grafana"]["profiles"]
    assert "web" in services and "profiles" not in services["web"]  # the default stack is unchanged
    prometheus = yaml.safe_load((ROOT / "deploy" / "monitoring" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["gatehouse"]["authorization"]["credentials_file"]
    assert jobs["gatehouse"]["static_configs"][0]["targets"] == ["web:8000"]
    assert jobs["gatehouse-worker"]["static_configs"][0]["targets"] == ["worker:9540"]
    provisioning = ROOT / "deploy" / "monitoring" / "grafana" / "provisioning"
    assert yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert yaml.safe_load((provisioning / "dashboards" / "gatehouse.yml").read_text())["providers"]


@pytest.mark.django_db
def test_metrics_in_process_need_the_token_and_count_rollup_lag_and_celery_tasks(client, settings):
    from datetime import timedelta

    from django.utils import timezone

    from billing.tasks import usage_rollup
    from conversations.tasks import conversations_expire

    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    persona = make_persona(f"r-{uuid.uuid4().hex[:10]}")
    UsageEvent.objects.create(request_id=f"req_{uuid.uuid4().hex}", tenant=persona.tenant, api_key=persona.api_key,
                              endpoint="chat.completions", requested_model=HAIKU, model=HAIKU, stream=False,
                              status="ok", http_status=200, latency_ms=1, cost_nano=5,
                              created_at=timezone.now() - timedelta(minutes=5))
    assert REGISTRY.get_sample_value("gatehouse_usage_rollup_lag_seconds") >= 300
    runs = {"task": "billing.tasks.usage_rollup", "outcome": "success"}
    before = REGISTRY.get_sample_value("gatehouse_celery_tasks_total", runs) or 0
    usage_rollup.apply(throw=True)  # as the embedded scheduler runs it
    assert REGISTRY.get_sample_value("gatehouse_celery_tasks_total", runs) == before + 1
    assert REGISTRY.get_sample_value("gatehouse_usage_rollup_lag_seconds") == 0
    conversations_expire.apply(throw=True)
    assert REGISTRY.get_sample_value("gatehouse_celery_task_duration_seconds_count",
                                     {"task": "conversations.tasks.conversations_expire"}) >= 1
    answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer.status_code == 200 and b"gatehouse_conversations_expired_total" in answer.content


@requires_redis
def test_a_celery_worker_serves_its_task_runs_on_its_metrics_port(gateway_db_url, tmp_path):
    from billing.tasks import usage_reconcile

    port, queue = free_port(), f"metrics-{uuid.uuid4().hex}"  # its own queue: the broker is shared
    env = {**os.environ, "DATABASE_URL": gateway_db_url, "DJANGO_SETTINGS_MODULE": "config.settings",
           "CELERY_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "2",
                               "-Q", queue, "--loglevel", "WARNING"], cwd=ROOT, env=env)
    try:
        usage_reconcile.apply_async(queue=queue)
        runs = {"task": "billing.tasks.usage_reconcile", "outcome": "success"}
        deadline, value = time.monotonic() + 120, 0
        while value < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                value = total(samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text),
                              "gatehouse_celery_tasks_total", **runs)
            except httpx.HTTPError:
                continue  # not listening yet
        assert value == 1
    finally:
        stop_process(worker)
