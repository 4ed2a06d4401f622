"""gateway/cooldowns.py on a real Redis: two SharedCooldowns stand for two gateway processes."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
import redis
from django.conf import settings

from gateway import cooldowns, routing
from gateway.core import GatewayError
from gateway.cooldowns import SharedCooldowns
from gateway.providers import UpstreamConfig
from gateway.selectors import DeploymentEntry, ModelEntry, Target
from tests.support.env import free_port, requires_redis

pytestmark = requires_redis

SYNC = 0.2


def deployment(id: int, priority: int = 0, cooldown: int = 30) -> DeploymentEntry:
    target = Target(key=(id, 1), weight=1.0, config=UpstreamConfig(kind="anthropic", base_url=f"http://d{id}",
                                                                   api_key="k"))
    return DeploymentEntry(id=id, provider=f"p{id}", upstream_model=f"u{id}", priority=priority, weight=1,
                           cooldown_seconds=cooldown, targets=(target,))


def model(*deployments: DeploymentEntry) -> ModelEntry:
    return ModelEntry(name="m", default_max_tokens=10, max_output_tokens=10, owned_by="x", created=0, aliases=(),
                      deployments=deployments, timeout=5.0)


@pytest.fixture(autouse=True)
def own_namespace(monkeypatch, settings):
    settings.GATEWAY_REDIS_PREFIX = f"gh-cooldowns-{uuid.uuid4().hex[:8]}:"
    monkeypatch.setattr(routing, "_cooling", {})
    monkeypatch.setattr(routing, "get_provider", lambda config: config.base_url)
    settings.UPSTREAM_RETRIES = 1
    settings.UPSTREAM_MAX_BACKOFF_SECONDS = 0.01
    monkeypatch.setattr(routing, "_FIRST_BACKOFF", 0.001)
    yield
    redis.Redis.from_url(settings.REDIS_URL).delete(f"{settings.GATEWAY_REDIS_PREFIX}cooldowns")


def process() -> SharedCooldowns:
    return SharedCooldowns(settings.REDIS_URL, SYNC)


async def fresh(shared: SharedCooldowns) -> None:
    shared._fresh_at = float("-inf")  # as an idle process: the next request reads the hash first
    pending = shared.fresh(time.monotonic())
    assert pending is not None
    await pending


async def settled(*processes: SharedCooldowns) -> None:
    for shared in processes:
        while shared._tasks:
            await asyncio.gather(*shared._tasks)


def failing_first(calls: list[str]):
    async def operation(provider, upstream_model, target):
        calls.append(provider)
        if provider == "http://d1":
            raise GatewayError(503, "overloaded", code="upstream_overloaded")
        return "ok"
    return operation


async def test_a_cooldown_one_process_sets_is_skipped_by_another(monkeypatch):
    a, b = process(), process()
    m = model(deployment(1, cooldown=30), deployment(2, priority=1))
    calls: list[str] = []
    monkeypatch.setattr(cooldowns, "shared", a)
    await routing.call(m, failing_first(calls))
    assert calls == ["http://d1", "http://d1", "http://d2"]
    await settled(a)

    monkeypatch.setattr(cooldowns, "shared", b)
    monkeypatch.setattr(routing, "_cooling", {})  # b's own: it never saw d1 fail
    calls.clear()
    await fresh(b)
    assert (await routing.call(m, failing_first(calls)))[0] == "ok" and calls == ["http://d2"]
    assert b.until[(1, 1)] > time.monotonic() + 25


async def test_at_the_end_of_a_cooldown_one_request_of_all_processes_probes(monkeypatch):
    processes = [process() for _ in range(4)]
    m = model(deployment(1, cooldown=1), deployment(2, priority=1))
    processes[0].cooled((1, 1), time.monotonic() + 0.3, time.monotonic())
    await settled(processes[0])
    await asyncio.sleep(0.4)
    for shared in processes:
        await fresh(shared)
    lease = 10.0
    claims = await asyncio.gather(*(shared.claim(shared.wanted([[(1, 1)], [(2, 1)]], time.monotonic()), lease)
                                    for shared in processes for _ in range(3)))
    assert sorted(len(c) for c in claims) == [0] * 11 + [1]
    # Everyone else keeps it last until the probe's outcome is known.
    assert sum(not shared.blocked((1, 1), time.monotonic(), probes) for shared, probes in
               zip([p for p in processes for _ in range(3)], claims, strict=True)) == 1

    prober = processes[[i for i, c in enumerate(claims) if c][0] // 3]
    prober.recovered((1, 1))  # the probe succeeded
    await settled(prober)
    for shared in processes:
        await fresh(shared)
        assert not shared.blocked((1, 1), time.monotonic())


async def test_a_failed_probe_cools_again_and_a_released_one_lets_the_next_request_probe():
    a, b = process(), process()
    a.cooled((1, 1), time.monotonic() + 0.2, time.monotonic())
    await settled(a)
    await asyncio.sleep(0.3)
    await fresh(a)
    await fresh(b)
    assert await a.claim(a.wanted([[(1, 1)]], time.monotonic()), 10) == {(1, 1)}
    assert await b.claim(b.wanted([[(1, 1)]], time.monotonic()), 10) == frozenset()
    a.released((1, 1))  # e.g. the client went away before the upstream answered
    await settled(a)
    await fresh(b)
    assert await b.claim(b.wanted([[(1, 1)]], time.monotonic()), 10) == {(1, 1)}
    b.cooled((1, 1), time.monotonic() + 30, time.monotonic())  # the probe failed
    await settled(b)
    await fresh(a)
    assert a.blocked((1, 1), time.monotonic()) and a.until[(1, 1)] > time.monotonic() + 25


async def test_a_healthy_primary_claims_nothing_for_a_fallbacks_ended_cooldown():
    a = process()
    a.cooled((2, 1), time.monotonic() + 0.1, time.monotonic())
    await settled(a)
    await asyncio.sleep(0.2)
    await fresh(a)
    assert a.wanted([[(1, 1)], [(2, 1)]], time.monotonic()) == []
    assert a.wanted([[(2, 1)]], time.monotonic()) == [(2, 1)]  # a fallback that is all there is


async def test_unreachable_redis_falls_back_to_per_process_with_one_log_line(monkeypatch, caplog):
    from common import metrics

    errors = []
    monkeypatch.setattr(metrics, "redis_error", errors.append)
    dead = SharedCooldowns(f"redis://127.0.0.1:{free_port()}/0", SYNC)
    monkeypatch.setattr(cooldowns, "shared", dead)
    monkeypatch.setattr(routing, "_cooling", {})
    m = model(deployment(1, cooldown=30), deployment(2, priority=1))
    calls: list[str] = []
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            await routing.call(m, failing_first(calls))
            await settled(dead)
            dead._down_until = 0.0  # as if each request came after the retry interval
    assert calls == ["http://d1", "http://d1"] + ["http://d2"] * 20  # per process, as without Redis
    lines = [r for r in caplog.records if "cooldowns are per process" in r.getMessage()]
    assert len(lines) == 1 and not any(r.exc_info for r in caplog.records)
    assert errors and set(errors) == {"cooldowns"}
