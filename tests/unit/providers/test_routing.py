"""gateway/routing.py without a network: the order of attempts, retries, backoff and cooldown."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway import routing
from gateway.core import GatewayError
from gateway.providers import UpstreamConfig
from gateway.selectors import DeploymentEntry, ModelEntry, Target


def deployment(id: int, priority: int = 0, weight: int = 1, credentials=(1,), cooldown: int = 30) -> DeploymentEntry:
    targets = tuple(Target(key=(id, c), weight=1 / len(credentials),
                           config=UpstreamConfig(kind="anthropic", base_url=f"http://d{id}", api_key=f"k{c}"))
                    for c in credentials)
    return DeploymentEntry(id=id, provider=f"p{id}", upstream_model=f"u{id}", priority=priority, weight=weight,
                           cooldown_seconds=cooldown, targets=targets)


def model(*deployments: DeploymentEntry) -> ModelEntry:
    return ModelEntry(name="m", default_max_tokens=10, max_output_tokens=10, owned_by="x", created=0, aliases=(),
                      deployments=deployments, timeout=5.0)


@pytest.fixture(autouse=True)
def no_cooldowns(monkeypatch, settings):
    monkeypatch.setattr(routing, "_cooling", {})
    monkeypatch.setattr(routing.cooldowns, "shared", None)  # per process here; shared: test_cooldowns.py
    monkeypatch.setattr(routing, "get_provider", lambda config: config.base_url)
    settings.UPSTREAM_RETRIES = 1
    settings.UPSTREAM_MAX_BACKOFF_SECONDS = 0.01
    monkeypatch.setattr(routing, "_FIRST_BACKOFF", 0.001)


def test_priorities_come_in_order_and_weights_spread_within_one():
    m = model(deployment(1, priority=1), deployment(2, weight=3), deployment(3, weight=1))
    firsts = Counter(routing.plan(m, 0.0, random.Random(seed))[0][0].id for seed in range(2000))
    assert set(firsts) == {2, 3} and 0.7 < firsts[2] / 2000 < 0.8  # 3:1
    assert all(routing.plan(m, 0.0, random.Random(seed))[-1][0].id == 1 for seed in range(50))


async def test_retryable_failures_retry_then_fall_back_and_cool_down():
    calls = []

    async def operation(provider, upstream_model, target):
        calls.append(provider)
        if provider == "http://d1":
            raise GatewayError(503, "overloaded", code="upstream_overloaded")
        return "ok"

    m = model(deployment(1), deployment(2, priority=1))
    assert await routing.call(m, operation) == ("ok", m.deployments[1])
    assert calls == ["http://d1", "http://d1", "http://d2"]  # one retry, then the fallback
    calls.clear()
    assert (await routing.call(m, operation))[0] == "ok" and calls == ["http://d2"]  # d1 cools down


async def test_client_errors_are_never_retried():
    calls = []

    async def operation(provider, upstream_model, target):
        calls.append(provider)
        raise GatewayError(400, "bad request")

    with pytest.raises(GatewayError) as raised:
        await routing.call(model(deployment(1), deployment(2, priority=1)), operation)
    assert raised.value.status == 400 and calls == ["http://d1"]


async def test_a_long_retry_after_moves_on_at_once_and_sets_the_cooldown():
    calls = []

    async def operation(provider, upstream_model, target):
        calls.append(provider)
        if provider == "http://d1":
            raise GatewayError(429, "slow down", retry_after=120)
        return "ok"

    m = model(deployment(1, cooldown=5), deployment(2, priority=1))
    await routing.call(m, operation)
    assert calls == ["http://d1", "http://d2"]
    assert routing._cooling[(1, 1)] > routing.time.monotonic() + 100  # the upstream's 120 s, not our 5


async def test_every_target_failing_raises_the_last_error_and_timeouts_are_504():
    async def operation(provider, upstream_model, target):
        if provider == "http://d1":
            await routing.asyncio.sleep(1)
        raise GatewayError(502, "down")

    with pytest.raises(GatewayError) as raised:
        await routing.call(model(deployment(1), deployment(2, priority=1)), operation, first_byte_timeout=0.05)
    assert raised.value.status == 502
    routing._cooling.clear()
    with pytest.raises(GatewayError) as raised:
        await routing.call(model(deployment(1)), operation, first_byte_timeout=0.05)
    assert (raised.value.status, raised.value.code) == (504, "first_byte_timeout")
