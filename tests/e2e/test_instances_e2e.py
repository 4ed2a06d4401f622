"""Several gateway instances on one PostgreSQL and one Redis: three launchers of two granian workers each.

What they share and how soon (README and docs/operations.md, "Running several instances"): rate limits,
budgets and balances count in Redis at once; a deployment's cooldown reaches every process within
GATEWAY_COOLDOWN_SYNC_SECONDS; a revoked key stops everywhere within GATEWAY_AUTH_CACHE_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
import redis
from django.conf import settings

from accounts.services import api_key_issue, api_key_revoke
from billing.models import UsageEvent
from tests.support.e2e import (
    HAIKU,
    REDIS_PREFIX,
    burst,
    chat,
    make_persona,
    say,
    start_gateway,
    stop_process,
    usage_row,
)
from tests.support.env import requires_redis

pytestmark = [pytest.mark.e2e, requires_redis]

INSTANCES = 3
COOLDOWN = 15  # seconds: long enough for the checks below on a loaded machine
SYNC = 0.5  # GATEWAY_COOLDOWN_SYNC_SECONDS' default
AUTH_CACHE = 1.0  # GATEWAY_AUTH_CACHE_SECONDS' default


@pytest.fixture(scope="module")
def instances(gateway_db_url, fake_upstream):
    started = []
    try:
        for _ in range(INSTANCES):
            started.append(start_gateway(gateway_db_url, fake_upstream, WEB_CONCURRENCY="2",
                                         GATEWAY_CATALOG_CACHE_SECONDS="0", UPSTREAM_RETRIES="1",
                                         UPSTREAM_MAX_BACKOFF_SECONDS="0.5"))
        yield [url for url, _ in started]
    finally:
        for _, process in started:
            stop_process(process)


def new_persona(django_db_blocker, **key_settings):
    with django_db_blocker.unblock():
        return make_persona(f"i-{uuid.uuid4().hex[:10]}", **key_settings)


def spread(instances: list[str], count: int) -> list[str]:
    """`count` base URLs round-robin over the instances (each launcher spreads over its workers)."""
    return [instances[i % len(instances)] for i in range(count)]


def test_an_rpm_limit_holds_across_instances(instances, django_db_blocker):
    rpm = 6
    persona = new_persona(django_db_blocker, rpm_limit=rpm)
    started = time.monotonic()
    responses = asyncio.run(burst([(base, persona.key, {"model": HAIKU, "max_tokens": 16, "messages": say(3)})
                                   for base in spread(instances, 4 * rpm)]))
    elapsed = time.monotonic() - started
    admitted = sum(r.status_code == 200 for r in responses)
    assert {r.status_code for r in responses} == {200, 429}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"rate_limit_exceeded"}
    # The bucket refills rpm per minute: whatever refilled while the burst ran, and nothing per process.
    assert rpm <= admitted <= rpm + int(elapsed * rpm / 60)


def test_a_budget_is_not_overspent_across_instances(instances, django_db_blocker):
    probe = new_persona(django_db_blocker)
    body = {"model": HAIKU, "max_tokens": 16, "messages": say(3, ",delay_ms=300")}
    cost = usage_row(chat(instances[0], probe.key, **body).headers["x-request-id"], django_db_blocker).cost_nano
    budget = 8 * cost
    with django_db_blocker.unblock():
        key = api_key_issue(tenant=probe.tenant, name="budgeted", budget_nano=budget, budget_period="day")
    responses = asyncio.run(burst([(base, key.plaintext, {**body, "messages": say(3, ",delay_ms=300")})
                                   for base in spread(instances, 48)]))
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert admitted and refused and {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    # Settled reservations give back what the answers did not use: the next requests, on any instance,
    # spend what is left, until every instance has refused one.
    refusals = set()
    for base in spread(instances, 60):
        response = chat(base, key.plaintext, **{**body, "messages": say(3)})
        if response.status_code == 200:
            admitted.append(response)
        else:
            assert response.json()["error"]["code"] == "insufficient_quota"
            refusals.add(base)
            if len(refusals) == INSTANCES:
                break
    assert refusals == set(instances)
    for response in admitted:
        usage_row(response.headers["x-request-id"], django_db_blocker)
    with django_db_blocker.unblock():
        rows = list(UsageEvent.objects.filter(api_key=key.api_key))
    assert sorted(row.request_id for row in rows) == sorted(r.headers["x-request-id"] for r in admitted)
    # admission.py's bound, across instances as within one: the budget plus one request's reservation
    # (the input estimate, at most the body's length / 4, plus max_tokens, at haiku's prices).
    reservation = (len(str(body)) // 4 + 1) * 1000 + 16 * 5000
    assert sum(row.cost_nano for row in rows) <= budget + reservation


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _cooldown_end_ms(field: str) -> int | None:
    value = _redis().hget(f"{REDIS_PREFIX}cooldowns", field)
    return None if value is None else int(value)


def _wait_past(end_ms: int) -> None:
    """Until Redis's clock (the one cooldowns are kept in) is past `end_ms`, then one sync interval more."""
    while True:
        seconds, micros = _redis().time()
        if seconds * 1000 + micros // 1000 > end_ms:
            break
        time.sleep(0.1)
    time.sleep(SYNC)


def test_a_deployment_cooled_down_by_one_instance_is_skipped_by_all_until_one_probe(
        instances, persona, setup, fault_proxy, django_db_blocker):
    from gateway.models import Credential, Deployment

    fallback = setup.provider("anthropic")  # the gateways' ANTHROPIC_BASE_URL: the fake upstream, directly
    flaky = setup.provider("anthropic", fault_proxy.url, key="sk-ant-flaky-0001", cooldown=COOLDOWN)
    name = setup.model((flaky, "claude-sonnet-4-6", 0, 1), (fallback, "claude-sonnet-4-6", 1, 1))
    with django_db_blocker.unblock():
        field = f"{Deployment.objects.get(provider=flaky).pk}:{Credential.objects.get(provider=flaky).pk}"

    def ask(base: str) -> str:
        response = chat(base, persona.key, model=name, max_tokens=16, messages=say(3))
        assert response.status_code == 200, response.text
        return usage_row(response.headers["x-request-id"], django_db_blocker).provider

    fault_proxy.set("reset")
    first = instances[0]
    cooled_at = time.monotonic()
    assert ask(first) == fallback.name
    assert len(fault_proxy.requests()) == 2  # tried, retried, then given up for the fallback
    end = _cooldown_end_ms(field)
    assert end is not None  # in Redis, for every instance
    time.sleep(SYNC + 0.2)  # every process's view is at most GATEWAY_COOLDOWN_SYNC_SECONDS old

    served = [ask(base) for base in spread(instances, 12)]
    assert time.monotonic() - cooled_at < COOLDOWN, "the checks outlasted the cooldown: raise COOLDOWN"
    assert served == [fallback.name] * 12
    assert len(fault_proxy.requests()) == 2  # no instance, no worker sent it anything meanwhile

    # At the cooldown's end one request, of one instance, probes it (and its retry); the rest go on
    # to the fallback until the outcome is known, here a failure: a new cooldown.
    _wait_past(end)
    responses = asyncio.run(burst([(base, persona.key, {"model": name, "max_tokens": 16, "messages": say(3)})
                                   for base in spread(instances, 12)]))
    assert [r.status_code for r in responses] == [200] * 12
    assert len(fault_proxy.requests()) == 4
    again = _cooldown_end_ms(field)
    assert again is not None and again > end

    # Healed: the next probe succeeds, clears the cooldown in Redis, and every instance uses it again.
    fault_proxy.set("pass")
    _wait_past(again)
    deadline = time.monotonic() + 60
    while ask(first) != flaky.name:
        assert time.monotonic() < deadline, "the healed deployment was never probed back"
        time.sleep(0.1)
    assert _cooldown_end_ms(field) is None
    time.sleep(SYNC + 0.2)
    assert {ask(base) for base in spread(instances, 12)} == {flaky.name}


def test_a_revoked_key_is_refused_by_every_instance_after_the_key_cache_delay(instances, django_db_blocker):
    persona = new_persona(django_db_blocker)

    def status(base: str) -> int:
        return httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {persona.key}"}).status_code

    # Both workers of every instance cache the key (a launcher spreads connections over its workers).
    assert {status(base) for base in spread(instances, 4 * INSTANCES)} == {200}
    with django_db_blocker.unblock():
        api_key_revoke(api_key=persona.api_key)
    time.sleep(AUTH_CACHE)  # GATEWAY_AUTH_CACHE_SECONDS: the documented revocation delay
    deadline = time.monotonic() + 30  # generous: only a broken cache would need it
    for base in instances:
        refused = 0
        while refused < 4:  # several in a row, so that both workers have answered
            code = status(base)
            refused = refused + 1 if code == 401 else 0
            assert time.monotonic() < deadline, f"{base} still accepts a key revoked {AUTH_CACHE} s ago"
