"""Admission rules (gateway/admission.py), the same for the Redis script and the per-process counters."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from accounts.selectors import KeyPrincipal
from gateway import admission as admission_module
from gateway.admission import LocalCounters, RedisCounters, Ticket, _duration, _refusal
from gateway.core import GatewayError, estimate_input_tokens
from tests.support.env import requires_redis
from tests.support.rows import principal


@pytest.fixture(params=["local", pytest.param("redis", marks=requires_redis)])
def backend(request, monkeypatch):
    seeds = {"spent": 0, "available": 0}

    async def fake_seed(principal, missing, now):
        return (seeds["spent"] if missing & 1 else None, seeds["available"] if missing & 2 else None)

    monkeypatch.setattr(admission_module, "_seed_async", fake_seed)
    counters = LocalCounters() if request.param == "local" else RedisCounters(settings.REDIS_URL)
    counters.seeds = seeds
    return counters


def run(coro):
    return asyncio.run(coro)


async def settle(counters, ticket: Ticket, tokens: int, cost: int) -> None:
    await counters.settle(ticket, tokens, cost)
    if isinstance(counters, RedisCounters):
        await counters.drain()  # Redis settles are batched off the request path


async def admit(counters, who: KeyPrincipal, tokens: int = 10, cost: int = 100, now: float = 1_000_000.0):
    keys, outcome = await counters.admit(who, tokens, cost, now)
    return Ticket(who, tokens, cost, keys, counters), outcome


def test_rpm_admits_the_limit_then_refuses_with_the_time_to_the_next_slot(backend):
    who = principal(rpm_limit=3)

    async def scenario():
        outcomes = [(await admit(backend, who))[1] for _ in range(4)]
        later = (await admit(backend, who, now=1_000_000.0 + 20))[1]  # a third of a minute refills one
        return outcomes, later

    outcomes, later = run(scenario())
    assert [o[0] for o in outcomes] == [0, 0, 0, 2]
    assert [o[1] for o in outcomes[:3]] == [2, 1, 0]  # remaining requests
    assert outcomes[3][1:] == ("rpm", 20_000)
    assert later[0] == 0


def test_tpm_counts_reserved_tokens_and_settling_gives_back_the_unused(backend):
    who = principal(tpm_limit=1000)

    async def scenario():
        ticket, first = await admit(backend, who, tokens=800)
        _, refused = await admit(backend, who, tokens=300)
        await settle(backend, ticket, 100, 100)  # used 100 of the 800 reserved
        _, after_settle = await admit(backend, who, tokens=300)
        _, too_large = await admit(backend, who, tokens=1001)
        return first, refused, after_settle, too_large

    first, refused, after_settle, too_large = run(scenario())
    assert first[0] == 0 and first[3] == 200
    assert refused[:2] == (2, "tpm")
    assert after_settle[0] == 0
    assert too_large == (3, "tpm")


def test_budget_admits_while_anything_is_left_and_counts_reservations(backend):
    who = principal(budget_nano=1000)
    backend.seeds["spent"] = 700

    async def scenario():
        ticket, first = await admit(backend, who, cost=400)  # 700 < 1000: admitted, now 1100 reserved
        _, second = await admit(backend, who, cost=1)
        await settle(backend, ticket, 10, 100)  # the request cost 100: 800 spent
        _, third = await admit(backend, who, cost=1)
        return first, second, third

    first, second, third = run(scenario())
    assert first[0] == 0
    assert second == (4, "budget", 1100)
    assert third[0] == 0


def test_balance_is_refused_at_the_credit_limit(backend):
    who = principal(credit_limit_nano=500)
    backend.seeds["available"] = -400

    async def scenario():
        _, first = await admit(backend, who, cost=200)
        _, second = await admit(backend, who, cost=1)
        return first, second

    first, second = run(scenario())
    assert first[0] == 0
    assert second == (4, "balance", -600)


def test_refusals_are_openai_shaped_429s():
    who = principal(rpm_limit=10, tpm_limit=100, budget_nano=5 * 10**9, budget_period="day")
    rate = _refusal(who, "rpm", 5500, 1)
    assert (rate.status, rate.code, rate.type, rate.retry_after) == (429, "rate_limit_exceeded", "requests", 6)
    assert rate.headers["x-ratelimit-remaining-requests"] == "0"
    quota = _refusal(who, "budget", 5 * 10**9, 1)
    assert (quota.status, quota.code) == (429, "insufficient_quota") and "$5.00" in quota.message
    assert quota.headers == {"x-should-retry": "false"}
    assert isinstance(_refusal(who, "tpm", -1, 500), GatewayError)


@pytest.mark.parametrize("ms, text", [(0, "0ms"), (120, "120ms"), (1500, "1.5s"), (6000, "6s"), (360_000, "6m0s")])
def test_reset_durations_use_openais_format(ms, text):
    assert _duration(ms) == text


def test_input_estimate_counts_text_and_a_fixed_amount_per_image():
    params = {"system": "x" * 40, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "y" * 400},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}},
    ]}]}
    assert 110 <= estimate_input_tokens(params) - 1600 <= 130


def test_local_counters_forget_idle_keys_and_ended_periods():
    counters = LocalCounters()
    counters.counters = {"old": (5, 0.0), "fresh": (5, 9_000.0), "busy": (5, 0.0)}
    counters.reserved = {"busy": 100}
    counters.buckets = {"idle": (3.0, 0.0), "recent": (3.0, 9_000_000.0)}
    counters._prune(9_000.0)
    assert set(counters.counters) == {"fresh", "busy"} and set(counters.buckets) == {"recent"}


def test_usage_is_priced_at_the_price_in_force_when_it_happened():
    from gateway.selectors import ModelEntry, PriceEntry

    launch = PriceEntry(id=1, effective_from=1_000.0, input=3 * 10**9, output=15 * 10**9, cache_write=0, cache_read=0)
    cheaper = PriceEntry(id=2, effective_from=2_000.0, input=10**9, output=5 * 10**9, cache_write=0, cache_read=0)
    model = ModelEntry(name="m", default_max_tokens=10,
                       max_output_tokens=10, owned_by="x", created=0, aliases=(), prices=(cheaper, launch))
    assert model.price_at(999.0) is None
    assert model.price_at(1_500.0) is launch and model.price_at(2_000.0) is cheaper
    # 1,000 input + 100 output tokens: $0.003 + $0.0015 at launch prices, exact in nano-USD.
    assert launch.cost_nano(input_tokens=1000, output_tokens=100) == 4_500_000
    assert cheaper.cost_nano(input_tokens=1000, output_tokens=100) == 1_500_000


@pytest.mark.parametrize("when, period, name, left", [
    ("2026-11-21T23:59:30", "day", "20261121", 30), ("2026-11-21T00:00:00", "day", "20261121", 86400),
    ("2026-12-31T23:00:00", "month", "202612", 3600), ("2026-02-01T00:00:00", "month", "202602", 28 * 86400),
])
def test_budget_counters_are_named_by_their_utc_period(when, period, name, left):
    from datetime import datetime

    from gateway.admission import _counter_keys

    now = datetime.fromisoformat(when + "+00:00").timestamp()
    keys, seconds_left = _counter_keys(principal(budget_period=period), now)
    assert keys[2].endswith(f":{name}") and seconds_left == left


@requires_redis
def test_a_settle_rides_along_with_the_next_admission():
    counters = RedisCounters(settings.REDIS_URL)
    who = principal(tpm_limit=1000)

    async def scenario():
        ticket, _ = await admit(counters, who, tokens=800)
        await counters.settle(ticket, 100, 0)  # queued, not sent
        assert len(counters._settles) == 1
        _, outcome = await admit(counters, who, tokens=300)  # 700 given back first, in the same call
        assert counters._settles == []
        return outcome

    assert run(scenario())[0] == 0


def test_local_budget_and_balance_keep_counting_through_a_database_outage(monkeypatch):
    from django.db import OperationalError

    counters, spent = LocalCounters(), {"nano": 0}

    async def seed(principal, missing, now):
        if spent["nano"] is None:
            raise OperationalError("connection refused")
        return (spent["nano"] if missing & 1 else None, 10**9 if missing & 2 else None)

    monkeypatch.setattr(admission_module, "_seed_async", seed)
    seen, unseen = principal(budget_nano=250, credit_limit_nano=0), principal(budget_nano=250, credit_limit_nano=0)

    async def scenario():
        first = (await admit(counters, seen, cost=100))[1]
        spent["nano"] = None  # the database goes away
        later = [(await admit(counters, seen, cost=100, now=1_000_000.0 + n * 2))[1][0] for n in range(1, 4)]
        return first, later, (await admit(counters, unseen, cost=100))[1]

    first, later, unchecked = run(scenario())
    assert first[0] == 0
    assert later == [0, 0, 4]  # the counters this process has still refuse at the budget
    assert unchecked[0] == 0  # a key it has none for is not refused for want of the database
