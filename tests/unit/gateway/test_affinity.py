"""gateway/affinity.py and routing's use of it: a thread sticks to its target while that one is healthy."""

from __future__ import annotations

import pytest

from gateway import affinity, routing
from gateway.core import GatewayError

from tests.unit.providers.test_routing import deployment, model, no_cooldowns  # noqa: F401 (autouse)


@pytest.fixture(autouse=True)
def local_affinity(monkeypatch, no_cooldowns):
    store = affinity.Affinity.__new__(affinity.Affinity)
    store.local, store.redis, store._redis_down_until = affinity.LocalAffinity(100, 3600), None, 0.0
    monkeypatch.setattr(routing, "affinities", store)
    return store


def test_thread_keys_prefer_the_header_then_the_conversation_then_the_prompt():
    key = lambda **kw: affinity.thread_key(**{"tenant_id": 1, "model": "m", "thread_id": None, "conversation_id": None,
                                            "params": {}, **kw})
    assert key() is None  # no system, no tools: no thread, plain weighted routing
    prompt = {"system": "You are terse.", "tools": [{"name": "t"}], "messages": [{"role": "user", "content": "a"}]}
    assert key(params=prompt) == key(params={**prompt, "messages": []})  # the turns do not matter
    assert key(params=prompt) != key(params={**prompt, "system": "Other"})
    assert key(thread_id="th", params=prompt) == key(thread_id="th") != key(conversation_id="th")
    assert key(thread_id="th") != key(thread_id="th", tenant_id=2) != key(thread_id="th", model="n")
    assert len(key(thread_id="x" * 128)) == 32


def test_the_local_map_is_bounded_and_forgets_idle_threads(monkeypatch):
    store = affinity.LocalAffinity(max_entries=3, ttl=10)
    now = [0.0]
    monkeypatch.setattr(affinity.time, "monotonic", lambda: now[0])

    async def run():
        for i in range(5):
            await store.put(f"k{i}", (i, 0))
        assert [await store.get(f"k{i}") for i in range(5)] == [None, None, (2, 0), (3, 0), (4, 0)]
        now[0] = 11
        assert await store.get("k4") is None

    import asyncio
    asyncio.run(run())


async def test_a_thread_sticks_to_one_target_and_requests_without_one_spread():
    m = model(deployment(1), deployment(2), deployment(3, credentials=(1, 2)))
    seen = []

    async def operation(provider, upstream_model, target):
        seen.append(target.key)
        return "ok"

    for _ in range(30):
        await routing.call(m, operation, affinity="thread-a")
    assert len(set(seen)) == 1
    seen.clear()
    for _ in range(60):
        await routing.call(m, operation)
    assert len(set(seen)) == 4  # weighted choice as before (each of 4 targets missed with p < 1e-7)


async def test_a_cooling_target_moves_the_thread_which_then_sticks_to_the_new_one(local_affinity):
    m = model(deployment(1), deployment(2))
    broken: set = set()
    seen = []

    async def operation(provider, upstream_model, target):
        seen.append(target.key)
        if target.key in broken:
            raise GatewayError(503, "overloaded")
        return "ok"

    await routing.call(m, operation, affinity="t")
    first = seen[-1]
    broken.add(first)
    seen.clear()
    await routing.call(m, operation, affinity="t")
    other = seen[-1]
    assert other != first and seen == [first, first, other]  # tried, retried, then moved
    broken.clear()
    routing._cooling.clear()  # the old target is healthy again: the thread stays where its cache now is
    seen.clear()
    for _ in range(10):
        await routing.call(m, operation, affinity="t")
    assert set(seen) == {other}


async def test_priority_wins_over_a_thread_on_a_fallback():
    m = model(deployment(1), deployment(2, priority=1))
    await routing.affinities.put("t", (2, 1))  # the thread fell back while deployment 1 was cooling
    seen = []

    async def operation(provider, upstream_model, target):
        seen.append(target.key)
        return "ok"

    await routing.call(m, operation, affinity="t")
    await routing.call(m, operation, affinity="t")
    assert seen == [(1, 1), (1, 1)]


def test_only_models_with_a_choice_have_threads():
    assert not routing.has_choice(model(deployment(1)))
    assert routing.has_choice(model(deployment(1, credentials=(1, 2))))
    assert routing.has_choice(model(deployment(1), deployment(2)))


@pytest.mark.skipif(not __import__("django.conf").conf.settings.REDIS_URL, reason="needs Redis (REDIS_URL)")
async def test_with_redis_every_process_sees_the_same_thread_and_an_outage_falls_back(settings, monkeypatch):
    import uuid

    settings.GATEWAY_REDIS_PREFIX = f"test-affinity-{uuid.uuid4().hex[:8]}:"
    one, other = affinity.Affinity(), affinity.Affinity()  # two processes' stores
    await one.put("thread", (7, 3))
    assert await other.get("thread") == (7, 3)
    assert await other.local.get("thread") is None  # it came from Redis
    other.redis.url = "redis://127.0.0.1:1/0"  # Redis unreachable: this process's own map, no error
    other.redis._loop = None
    await other.put("thread", (8, 1))
    assert await other.get("thread") == (8, 1) and await other.local.get("thread") == (8, 1)


def test_a_claimed_probe_still_goes_before_a_threads_target():
    m = model(deployment(1), deployment(2))
    assert routing.plan(m, 0.0, probes=frozenset({(1, 1)}), prefer=(2, 1))[0][1].key == (1, 1)
    assert routing.plan(m, 0.0, prefer=(2, 1))[0][1].key == (2, 1)
