"""Per-end-user RPM and budget on a key: each end user of the key has counters of its own, through the same
backends (Redis or the in-process fallback) as the key's own limits, which still apply."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from gateway import admission as admission_module
from gateway.admission import Admission, EndUserLimits, RedisCounters
from gateway.core import GatewayError
from tests.support.env import requires_redis
from tests.support.rows import principal


@pytest.fixture(params=["local", pytest.param("redis", marks=requires_redis)])
def gate(request, monkeypatch):
    """An Admission on one backend; every request reserves cost 100, seeds say nothing was spent before."""
    spent = {"end_user": 0, "key": 0}

    async def fake_seed(who, missing, now):
        return (spent["end_user" if isinstance(who, EndUserLimits) else "key"] if missing & 1 else None,
                0 if missing & 2 else None)

    monkeypatch.setattr(admission_module, "_seed_async", fake_seed)
    monkeypatch.setattr(admission_module, "plan_request", lambda who, model, params, now, **_: (10, 100))
    gate = Admission()
    gate.redis = RedisCounters(settings.REDIS_URL) if request.param == "redis" else None
    gate.spent = spent
    return gate


async def attempt(gate, who, end_user: str):
    try:
        return await gate.admit(who, model=None, params={}, end_user=end_user)
    except GatewayError as error:
        return error


def test_each_end_user_has_its_own_rpm_and_requests_without_one_skip_it(gate):
    who = principal(end_user_rpm_limit=2)

    async def scenario():
        alice = [await attempt(gate, who, "alice") for _ in range(3)]
        bob = await attempt(gate, who, "bob")
        anonymous = [await attempt(gate, who, "") for _ in range(5)]
        return alice, bob, anonymous

    alice, bob, anonymous = asyncio.run(scenario())
    assert [isinstance(outcome, GatewayError) for outcome in alice] == [False, False, True]
    refusal = alice[2]
    assert refusal.status == 429 and refusal.code == "rate_limit_exceeded" and refusal.retry_after >= 1
    assert "end user" in refusal.message
    assert not isinstance(bob, GatewayError)
    assert not any(isinstance(outcome, GatewayError) for outcome in anonymous)


def test_an_end_users_budget_is_refused_once_spent_and_settles_like_the_keys(gate):
    who = principal(end_user_budget_nano=250, budget_period="day")
    gate.spent["end_user"] = 100

    async def scenario():
        first = await attempt(gate, who, "alice")  # 100 spent + 100 reserved
        second = await attempt(gate, who, "alice")  # 200 < 250: admitted, 300 counted
        third = await attempt(gate, who, "alice")
        await gate.settle(second, tokens=1, cost_nano=0)  # the second cost nothing: 200 counted
        await gate.drain()
        fourth = await attempt(gate, who, "alice")
        other = await attempt(gate, who, "carol")
        return first, second, third, fourth, other

    first, second, third, fourth, other = asyncio.run(scenario())
    assert first.end_user is not None and not isinstance(second, GatewayError)
    assert isinstance(third, GatewayError) and third.code == "insufficient_quota"
    assert third.headers["x-should-retry"] == "false" and "end user" in third.message
    assert not isinstance(fourth, GatewayError)
    assert not isinstance(other, GatewayError)


def test_the_keys_own_limit_still_applies_and_its_refusal_gives_the_end_users_reservation_back(gate):
    who = principal(rpm_limit=1, end_user_budget_nano=150)

    async def scenario():
        first = await attempt(gate, who, "alice")  # alice: 100 reserved
        refused = await attempt(gate, who, "bob")  # the key's rpm: bob's reservation is given back
        await gate.drain()
        return first, refused

    first, refused = asyncio.run(scenario())
    assert not isinstance(first, GatewayError)
    assert isinstance(refused, GatewayError) and "this key" in refused.message and "end user" not in refused.message
    bob = EndUserLimits(key_id=who.key_id, tenant_id=who.tenant_id, end_user="bob", rpm_limit=None, budget_nano=150,
                        budget_period=who.budget_period)
    keys, _ = admission_module._counter_keys(bob, 1.0)
    if gate.redis is not None:
        assert gate.redis.counter(keys[2]) in (None, 0)
    else:
        assert gate.local.reserved.get(keys[2], 0) == 0


def test_end_user_counters_are_named_by_a_digest_of_the_end_user():
    limits = EndUserLimits(key_id=7, tenant_id=1, end_user="x" * 256 + " ;\n", rpm_limit=1, budget_nano=None,
                           budget_period="month")
    keys, _ = admission_module._counter_keys(limits, 1_000_000.0)
    assert keys[0].startswith(f"{settings.GATEWAY_REDIS_PREFIX}rpm:7:eu:") and len(keys[0]) < 60
    assert keys[1] == keys[3] == ""
