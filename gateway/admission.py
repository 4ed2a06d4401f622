"""Admission: a key's rate limits, its spend budget and its tenant's balance, decided in one step.

Before the upstream call a request reserves what it may use: one request and `input estimate +
max_tokens` tokens from the key's per-minute buckets, and the cost of those tokens at the model's
price from the key's budget for the period and from the tenant's available balance. After the call
it settles: the reservation is replaced by what the upstream reported (a cut stream by what was
generated). So concurrent requests can overshoot a budget by at most the reservation of the last one
admitted, and a budget or balance is refused as soon as it is used up (`used >= budget`,
`available <= -credit_limit`).

Two backends apply the same rules:

- `RedisCounters` (when REDIS_URL is set): one Lua script, one round trip, atomic across every
  gateway process; settles ride along with the process's next admission.
- `LocalCounters`: the same rules in process memory. Used in the embedded mode, and for a while
  whenever Redis is unreachable, so that an outage degrades limits instead of failing every request:
  each process then limits on its own (an RPM of N admits up to N per process), and budgets and
  balances are read from the database, re-read every second, with this process's reservations kept.

Counters live in the backend, derived from the database: a budget counter starts at the key's spend
for the period (a new period has a new counter, so budgets reset by construction), a balance counter
at the ledger balance minus usage not yet debited. Redis counters expire after an hour and are then
re-derived, which heals any drift (a crash between admit and settle, a lost settle); a request in
flight at that instant may be counted once too few or too many, bounded by its reservation.
Ledger credits and adjustments move the balance counters when they commit (`balance_changed`).
"""

from __future__ import annotations

import asyncio
import hashlib
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from django.conf import settings

from accounts.selectors import KeyPrincipal
from common.money import format_usd
from billing.selectors import budget_period_bounds, end_user_spend_nano, key_spend_nano, tenant_available_nano
from common import metrics
from common.aio import SingleFlight
from common.db import UNREACHABLE, db_unit
from common.outage import db_unavailable
from common.redis_wire import RespClient, RespError

from .core import GatewayError, estimate_input_tokens
from .selectors import ModelEntry

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000  # RPM and TPM are token buckets that refill their limit over a minute
COUNTER_RESYNC_SECONDS = 3600
LOCAL_RESEED_SECONDS = 1.0
REDIS_RETRY_SECONDS = 5.0  # after a Redis failure, use the local counters this long before trying again
SETTLE_DELAY_SECONDS = 0.05  # how long a settle waits for an admission to carry it
SETTLES_PER_CALL = 200

# One script for admission and settlement, so that settles ride along with admissions: each call is
# a round trip, and at low load every round trip is also an idle-and-wake of the event loop (which cost
# more CPU than the script itself, docs/performance.md).
#
# First the settles carried along: KEYS[5..] per request its tpm bucket, budget and balance counters,
# ARGV[12..] per request tpm, token_delta, cost_delta (actual - reserved). Counters that expired
# meanwhile are left alone: they are re-derived from the database, which holds the request's usage row.
#
# Then the admission: KEYS[1..4] the rpm bucket, tpm bucket, budget and balance counters;
# ARGV[1..11] now_ms, rpm, tpm, tokens, budget, reserve, floor, budget_seed, budget_ttl, balance_seed,
# balance_ttl ("" = no such limit / seed unknown; no limits at all = settle only). Returns
# {0, rpm_left, rpm_reset_ms, tpm_left, tpm_reset_ms}, {1, missing seeds bitmask}, {2, "rpm"|"tpm",
# retry_ms}, {3, "tpm"} (larger than the limit) or {4, "budget"|"balance", value}. Nothing of the
# admission is written unless the request is admitted.
_COUNTERS_LUA = """
local now = tonumber(ARGV[1])
for k = 5, #KEYS, 3 do
  local a = 12 + (k - 5)
  local tpm, delta, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  if tpm and delta ~= 0 and redis.call('EXISTS', KEYS[k]) == 1 then
    local state = redis.call('HMGET', KEYS[k], 'v', 't')
    local left = math.min(tpm, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * tpm / 60000) - delta
    left = math.min(tpm, left)
    redis.call('HSET', KEYS[k], 'v', left, 't', now)
    redis.call('PEXPIRE', KEYS[k], math.ceil((tpm - left) * 60000 / tpm) + 1000)
  end
  if redis.call('EXISTS', KEYS[k + 1]) == 1 then redis.call('INCRBY', KEYS[k + 1], cost) end
  if redis.call('EXISTS', KEYS[k + 2]) == 1 then redis.call('DECRBY', KEYS[k + 2], cost) end
end
local rpm, tpm, tokens = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local budget, floor = tonumber(ARGV[5]), tonumber(ARGV[7])
local missing = 0
if budget and redis.call('EXISTS', KEYS[3]) == 0 then
  if ARGV[8] == '' then missing = missing + 1 else redis.call('SET', KEYS[3], ARGV[8], 'EX', ARGV[9]) end
end
if floor and redis.call('EXISTS', KEYS[4]) == 0 then
  if ARGV[10] == '' then missing = missing + 2 else redis.call('SET', KEYS[4], ARGV[10], 'EX', ARGV[11]) end
end
if missing > 0 then return {1, missing} end
local function level(key, limit)
  local state = redis.call('HMGET', key, 'v', 't')
  local v, t = tonumber(state[1]), tonumber(state[2])
  if not v then return limit end
  return math.min(limit, v + math.max(0, now - t) * limit / 60000)
end
local rl, tl
if rpm then
  rl = level(KEYS[1], rpm)
  if rl < 1 then return {2, 'rpm', math.ceil((1 - rl) * 60000 / rpm)} end
end
if tpm then
  if tokens > tpm then return {3, 'tpm'} end
  tl = level(KEYS[2], tpm)
  if tl < tokens then return {2, 'tpm', math.ceil((tokens - tl) * 60000 / tpm)} end
end
if budget then
  local used = tonumber(redis.call('GET', KEYS[3]))
  if used >= budget then return {4, 'budget', used} end
end
if floor then
  local available = tonumber(redis.call('GET', KEYS[4]))
  if available <= floor then return {4, 'balance', available} end
end
local function take(key, limit, left)
  redis.call('HSET', key, 'v', left, 't', now)
  redis.call('PEXPIRE', key, math.ceil((limit - left) * 60000 / limit) + 1000)
end
local result = {0, -1, 0, -1, 0}
if rpm then take(KEYS[1], rpm, rl - 1); result[2] = math.floor(rl - 1); result[3] = math.ceil((rpm - rl + 1) * 60000 / rpm) end
if tpm then take(KEYS[2], tpm, tl - tokens); result[4] = math.floor(tl - tokens); result[5] = math.ceil((tpm - tl + tokens) * 60000 / tpm) end
if budget then redis.call('INCRBY', KEYS[3], ARGV[6]) end
if floor then redis.call('DECRBY', KEYS[4], ARGV[6]) end
return result
"""
_SETTLE_ONLY = (("", "", "", ""), ["", "", 0, "", 0, "", "", 1, "", 1])  # admission keys and ARGV[2..11]

_CREDIT_LUA = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[1]) end return 0"


@dataclass(frozen=True, slots=True)
class EndUserLimits:
    """One end user of a key with per-end-user limits: admitted through the same counters, script and
    fallback as a key, with an RPM and a budget (over the key's period) and no TPM or balance of its own."""

    key_id: int
    tenant_id: int
    end_user: str
    rpm_limit: int | None
    budget_nano: int | None
    budget_period: str
    tpm_limit: None = None
    credit_limit_nano: None = None

    @property
    def counter_id(self) -> str:
        # Counter names stay short and safe whatever the client sent (up to 256 characters of anything).
        return f"{self.key_id}:eu:{hashlib.sha256(self.end_user.encode()).hexdigest()[:20]}"


@dataclass(slots=True)
class Ticket:
    """What one admitted request reserved, to be settled once it is answered."""

    principal: KeyPrincipal | EndUserLimits
    tokens: int
    cost_nano: int
    keys: tuple[str, str, str, str]
    backend: object
    headers: dict[str, str] = field(default_factory=dict)
    end_user: Ticket | None = None  # what the request's end user reserved, settled with it


def _duration(ms: int) -> str:
    """OpenAI's reset format: "120ms", "1.5s", "6m0s"."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    if ms < 60_000:
        return f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{ms // 60_000}m{(ms % 60_000) // 1000}s"


def _limit_headers(what: str, limit: int | None, left: int, reset_ms: int) -> dict[str, str]:
    if not limit:
        return {}
    return {f"x-ratelimit-limit-{what}": str(limit), f"x-ratelimit-remaining-{what}": str(max(left, 0)),
            f"x-ratelimit-reset-{what}": _duration(reset_ms)}


def _headers(principal: KeyPrincipal, rpm_left: int, rpm_reset: int, tpm_left: int, tpm_reset: int) -> dict[str, str]:
    return (_limit_headers("requests", principal.rpm_limit, rpm_left, rpm_reset)
            | _limit_headers("tokens", principal.tpm_limit, tpm_left, tpm_reset))


def _refusal(principal: KeyPrincipal, kind: str, value: int, tokens: int) -> GatewayError:
    """The 429 for an outcome of admission; `value` is retry milliseconds, or the counter's value."""
    if isinstance(principal, EndUserLimits):
        return _end_user_refusal(principal, kind, value)
    if kind in ("rpm", "tpm") and value >= 0:
        seconds = max(1, math.ceil(value / 1000))
        what, limit = ("requests", principal.rpm_limit) if kind == "rpm" else ("tokens", principal.tpm_limit)
        return GatewayError(429, f"Rate limit reached for {what} per minute on this key (limit {limit}). "
                                 f"Please try again in {seconds}s.", code="rate_limit_exceeded", type=what,
                            retry_after=seconds, headers=_limit_headers(what, limit, 0, value))
    if kind == "tpm":
        return GatewayError(429, f"Request too large: it may use {tokens} tokens (input estimate plus max_tokens) "
                                 f"but this key's limit is {principal.tpm_limit} tokens per minute. Lower max_tokens.",
                            code="rate_limit_exceeded", type="tokens", headers={"x-should-retry": "false"})
    if kind == "budget":
        period = "daily" if principal.budget_period == "day" else "monthly"
        message = (f"This key's {period} budget of {format_usd(principal.budget_nano)} is used up "
                   f"({format_usd(value)} spent). Raise the budget or wait for the next period.")
    else:
        message = (f"Your account's balance is used up (available {format_usd(value)}). "
                   "Add credit or ask your operator to raise the credit limit.")
    # OpenAI's SDKs retry 429s by default; x-should-retry tells them this one will not pass by itself.
    return GatewayError(429, message, code="insufficient_quota", type="insufficient_quota",
                        headers={"x-should-retry": "false"})


def _end_user_refusal(limits: EndUserLimits, kind: str, value: int) -> GatewayError:
    if kind == "rpm":
        seconds = max(1, math.ceil(value / 1000))
        return GatewayError(429, f"Rate limit reached for requests per minute for this end user on this key (limit "
                                 f"{limits.rpm_limit}). Please try again in {seconds}s.", code="rate_limit_exceeded",
                            type="requests", retry_after=seconds)
    period = "daily" if limits.budget_period == "day" else "monthly"
    return GatewayError(429, f"This end user's {period} budget of {format_usd(limits.budget_nano)} on this key is used "
                             f"up ({format_usd(value)} spent). Raise it or wait for the next period.",
                        code="insufficient_quota", type="insufficient_quota", headers={"x-should-retry": "false"})


def plan_request(principal: KeyPrincipal, model: ModelEntry, params: dict, now: float, *,
                 batch: bool = False) -> tuple[int, int]:
    """(tokens, cost_nano) to reserve: the input estimate plus max_tokens, at the model's current price (its
    batch price for a batch item)."""
    input_tokens = estimate_input_tokens(params)
    tokens = input_tokens + int(params.get("max_tokens") or 0)
    price = model.price_at(now)
    cost = 0 if price is None else price.cost_nano(input_tokens=input_tokens, output_tokens=tokens - input_tokens,
                                                   batch=batch)
    return tokens, cost


@functools.lru_cache(maxsize=4)
def _period(period: str, day: int) -> tuple[str, float]:
    """(name, end as unix seconds) of the budget period containing UTC day number `day`.

    Cached: datetime arithmetic on every request cost more than the rest of planning a request.
    """
    start, end = budget_period_bounds(period, datetime.fromtimestamp(day * 86400, UTC))
    return start.strftime("%Y%m%d" if period == "day" else "%Y%m"), end.timestamp()


def _counter_keys(principal: KeyPrincipal, now: float) -> tuple[tuple[str, str, str, str], float]:
    """Redis keys of the request's counters, and the seconds until its budget period ends."""
    prefix = settings.GATEWAY_REDIS_PREFIX
    period, end = _period(principal.budget_period, int(now // 86400))
    if isinstance(principal, EndUserLimits):
        return (f"{prefix}rpm:{principal.counter_id}", "", f"{prefix}budget:{principal.counter_id}:{period}", ""), end - now
    keys = (f"{prefix}rpm:{principal.key_id}", f"{prefix}tpm:{principal.key_id}",
            f"{prefix}budget:{principal.key_id}:{period}", f"{prefix}balance:{principal.tenant_id}")
    return keys, end - now


def _seed(principal: KeyPrincipal, missing: int, now: float) -> tuple[int | None, int | None]:
    """Budget spent so far this period and balance available, from the database (bitmask: 1, 2)."""
    spent = available = None
    if missing & 1:
        start, _ = budget_period_bounds(principal.budget_period, datetime.fromtimestamp(now, UTC))
        spent = (end_user_spend_nano(principal.key_id, principal.end_user, start)
                 if isinstance(principal, EndUserLimits) else key_spend_nano(principal.key_id, start))
    if missing & 2:
        available = tenant_available_nano(principal.tenant_id)
    return spent, available


_seed_sync_to_async = db_unit(_seed)
_seeds = SingleFlight()


async def _seed_async(principal: KeyPrincipal, missing: int, now: float) -> tuple[int | None, int | None]:
    # Concurrent cold requests of one key share the queries (every counter is cold after a restart).
    return await _seeds.run((getattr(principal, "counter_id", principal.key_id), missing), lambda: _seed_sync_to_async(principal, missing, now))


def _limits(principal: KeyPrincipal) -> tuple[int | None, int | None, int | None, int | None]:
    floor = None if principal.credit_limit_nano is None else -principal.credit_limit_nano
    return principal.rpm_limit, principal.tpm_limit, principal.budget_nano, floor


class RedisCounters:
    """The counters in Redis: one script call (common/redis_wire.py) per admission, settles carried along.

    A settle waits in the queue for the next admission of this process, which applies it before
    admitting (one round trip for both); without one within SETTLE_DELAY_SECONDS a flush sends the
    queue on its own. Waiting only keeps a reservation a little longer, which errs on the safe side.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: RespClient | None = None
        self._sha: str | None = None
        self._settles: list[tuple[tuple[str, str, str], tuple]] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task | None = None
        self._sync: redis.Redis | None = None

    def _redis(self) -> RespClient:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a connection is bound to its event loop (tests run several)
            self._loop, self._settles, self._flush_timer, self._flusher = loop, [], None, None
            self._client = RespClient(self.url)
        return self._client

    async def _run(self, keys: tuple[str, ...], args: list, settles: list) -> list:
        keys = (*keys, *(key for settle_keys, _ in settles for key in settle_keys))
        args = [*args, *(arg for _, values in settles for arg in values)]
        client = self._redis()
        if self._sha is not None:
            try:
                return await client.call("EVALSHA", self._sha, len(keys), *keys, *args)
            except RespError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                # Redis restarted or flushed its scripts: load it again.
        self._sha = (await client.call("SCRIPT", "LOAD", _COUNTERS_LUA)).decode()
        return await client.call("EVALSHA", self._sha, len(keys), *keys, *args)

    def _take_settles(self) -> list:
        settles, self._settles = self._settles[:SETTLES_PER_CALL], self._settles[SETTLES_PER_CALL:]
        return settles

    async def admit(self, principal: KeyPrincipal, tokens: int, cost: int, now: float):
        self._redis()
        keys, period_left = _counter_keys(principal, now)
        rpm, tpm, budget, floor = _limits(principal)
        seeds = ("", "")
        settles = self._take_settles()
        while True:
            args = [int(now * 1000), _arg(rpm), _arg(tpm), tokens, _arg(budget), cost, _arg(floor),
                    _arg(seeds[0]), max(1, min(COUNTER_RESYNC_SECONDS, int(period_left) + 60)),
                    _arg(seeds[1]), COUNTER_RESYNC_SECONDS]
            result = await self._run(keys, args, settles)
            settles = []  # applied, even when the admission needs seeds first
            if result[0] != 1:
                return keys, _decode(result)
            seeds = await _seed_async(principal, int(result[1]), now)

    async def settle(self, ticket: Ticket, tokens: int, cost: int) -> None:
        loop = asyncio.get_running_loop()
        self._redis()
        self._settles.append((ticket.keys[1:], (_arg(ticket.principal.tpm_limit), tokens - ticket.tokens,
                                                cost - ticket.cost_nano)))
        if self._flush_timer is None:
            self._flush_timer = loop.call_later(SETTLE_DELAY_SECONDS, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_timer = None
        if self._settles and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while settles := self._take_settles():
            keys, args = _SETTLE_ONLY
            try:
                await self._run(keys, [int(time.time() * 1000), *args], settles)
            except Exception as exc:
                # Lost settles only leave reservations in the counters until they are re-derived.
                logger.warning("Redis failed (%r): %d settles dropped", exc, len(settles))

    async def drain(self) -> None:
        """Send queued settles now (shutdown, tests)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._start_flush()
        while self._flusher is not None and not self._flusher.done():
            await self._flusher

    def _sync_client(self) -> redis.Redis:
        if self._sync is None:
            self._sync = redis.Redis.from_url(self.url, socket_connect_timeout=0.25, socket_timeout=0.5)
        return self._sync

    def balance_changed(self, tenant_id: int, delta: int) -> None:
        self._sync_client().eval(_CREDIT_LUA, 1, f"{settings.GATEWAY_REDIS_PREFIX}balance:{tenant_id}", delta)

    def counter(self, key: str) -> int | None:
        value = self._sync_client().get(key)
        return None if value is None else int(value)


def _arg(value) -> str | int:
    return "" if value is None else value


def _decode(result: list) -> tuple:
    return tuple(item.decode() if isinstance(item, bytes) else int(item) for item in result)


class LocalCounters:
    """The Lua script's rules in process memory (see the module docstring for when it is used)."""

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (level, at ms)
        self.counters: dict[str, tuple[int, float]] = {}  # key -> (value, seeded at)
        self.reserved: dict[str, int] = {}  # key -> this process's reservations in flight
        self._pruned = 0.0

    def _prune(self, now: float) -> None:
        # Counters of ended budget periods and idle keys would otherwise stay for the process's life.
        self._pruned = now
        for key in [key for key, (_, seeded) in self.counters.items()
                    if now - seeded > COUNTER_RESYNC_SECONDS and key not in self.reserved]:
            del self.counters[key]
        for key in [key for key, (_, at) in self.buckets.items() if now * 1000 - at > 2 * WINDOW_MS]:
            del self.buckets[key]

    def _level(self, key: str, limit: int, now_ms: float) -> float:
        level, at = self.buckets.get(key, (limit, now_ms))
        return min(limit, level + max(0.0, now_ms - at) * limit / WINDOW_MS)

    def _stale(self, key: str, now: float) -> bool:
        entry = self.counters.get(key)
        return entry is None or now - entry[1] >= LOCAL_RESEED_SECONDS

    async def admit(self, principal: KeyPrincipal, tokens: int, cost: int, now: float):
        keys, _ = _counter_keys(principal, now)
        rpm_key, tpm_key, budget_key, balance_key = keys
        rpm, tpm, budget, floor = _limits(principal)
        missing = (1 if budget is not None and self._stale(budget_key, now) else 0) | (
            2 if floor is not None and self._stale(balance_key, now) else 0)
        if now - self._pruned > 60:
            self._prune(now)
        if missing:
            try:
                spent, available = await _seed_async(principal, missing, now)
            except UNREACHABLE as exc:
                # An unreachable database must not fail the request: the counters this process has keep
                # counting (read again in a second), and a key it has none for goes unchecked meanwhile.
                db_unavailable.failed(exc)
                spent = available = None
                for key in (budget_key, balance_key):
                    if key in self.counters:
                        self.counters[key] = (self.counters[key][0], now)
                budget = budget if budget_key in self.counters else None
                floor = floor if balance_key in self.counters else None
            # The database knows finished requests; this process's reservations in flight come on top.
            if spent is not None:
                self.counters[budget_key] = (spent + self.reserved.get(budget_key, 0), now)
            if available is not None:
                self.counters[balance_key] = (available - self.reserved.get(balance_key, 0), now)
        now_ms = now * 1000
        result = [0, -1, 0, -1, 0]
        if rpm:
            rpm_level = self._level(rpm_key, rpm, now_ms)
            if rpm_level < 1:
                return keys, (2, "rpm", math.ceil((1 - rpm_level) * WINDOW_MS / rpm))
        if tpm:
            if tokens > tpm:
                return keys, (3, "tpm")
            tpm_level = self._level(tpm_key, tpm, now_ms)
            if tpm_level < tokens:
                return keys, (2, "tpm", math.ceil((tokens - tpm_level) * WINDOW_MS / tpm))
        if budget is not None and self.counters[budget_key][0] >= budget:
            return keys, (4, "budget", self.counters[budget_key][0])
        if floor is not None and self.counters[balance_key][0] <= floor:
            return keys, (4, "balance", self.counters[balance_key][0])
        if rpm:
            self.buckets[rpm_key] = (rpm_level - 1, now_ms)
            result[1:3] = math.floor(rpm_level - 1), math.ceil((rpm - rpm_level + 1) * WINDOW_MS / rpm)
        if tpm:
            self.buckets[tpm_key] = (tpm_level - tokens, now_ms)
            result[3:5] = math.floor(tpm_level - tokens), math.ceil((tpm - tpm_level + tokens) * WINDOW_MS / tpm)
        for key, sign, on in ((budget_key, 1, budget is not None), (balance_key, -1, floor is not None)):
            if on:
                value, seeded = self.counters[key]
                self.counters[key] = (value + sign * cost, seeded)
                self.reserved[key] = self.reserved.get(key, 0) + cost
        return keys, tuple(result)

    async def settle(self, ticket: Ticket, tokens: int, cost: int) -> None:
        _, tpm_key, budget_key, balance_key = ticket.keys
        tpm = ticket.principal.tpm_limit
        if tpm and tpm_key in self.buckets:
            now_ms = time.time() * 1000
            self.buckets[tpm_key] = (min(tpm, self._level(tpm_key, tpm, now_ms) - (tokens - ticket.tokens)), now_ms)
        for key, sign in ((budget_key, 1), (balance_key, -1)):
            if key in self.reserved:
                self.reserved[key] -= ticket.cost_nano
                if not self.reserved[key]:
                    del self.reserved[key]
            if key in self.counters:
                value, seeded = self.counters[key]
                self.counters[key] = (value + sign * (cost - ticket.cost_nano), seeded)

    def balance_changed(self, tenant_id: int, delta: int) -> None:
        # Another thread's (admin, task) view of this process's counters: simply re-read next time.
        self.counters.pop(f"{settings.GATEWAY_REDIS_PREFIX}balance:{tenant_id}", None)


class Admission:
    """The entry point: Redis when configured and reachable, the local counters otherwise."""

    def __init__(self) -> None:
        self.local = LocalCounters()
        self.redis = RedisCounters(settings.REDIS_URL) if settings.REDIS_URL else None
        self._redis_down_until = 0.0

    async def admit(self, principal: KeyPrincipal, model: ModelEntry, params: dict, *, batch: bool = False,
                    end_user: str = "") -> Ticket:
        """Reserve for one request (`batch`: an item of a batch, at the batch price), or raise the 429 that
        refuses it.

        A request naming its `end_user`, on a key with per-end-user limits, reserves for the end user first
        (one more round trip, for those requests only), then for the key; a key refusal gives the end user's
        reservation back (its RPM slot stays taken, which errs on the safe side).
        """
        now = time.time()
        tokens, cost = plan_request(principal, model, params, now, batch=batch)
        sub = None
        if end_user and (principal.end_user_rpm_limit or principal.end_user_budget_nano):
            limits = EndUserLimits(key_id=principal.key_id, tenant_id=principal.tenant_id, end_user=end_user,
                                   rpm_limit=principal.end_user_rpm_limit, budget_nano=principal.end_user_budget_nano,
                                   budget_period=principal.budget_period)
            sub = await self._reserve(limits, tokens, cost, now, refused_for=principal)
        try:
            ticket = await self._reserve(principal, tokens, cost, now)
        except GatewayError:
            if sub is not None:
                await self.settle(sub, tokens=0, cost_nano=0)
            raise
        ticket.end_user = sub
        return ticket

    async def _reserve(self, principal, tokens: int, cost: int, now: float, refused_for=None) -> Ticket:
        rpm, tpm, budget, floor = _limits(principal)
        if rpm is None and tpm is None and budget is None and floor is None:
            return Ticket(principal, tokens, cost, ("", "", "", ""), None)
        backend = self._backend(now)
        try:
            keys, outcome = await backend.admit(principal, tokens, cost, now)
        except (RespError, OSError) as exc:
            self._redis_failed(exc, now)
            backend = self.local
            keys, outcome = await backend.admit(principal, tokens, cost, now)
        except UNREACHABLE as exc:  # Redis needs a counter seeded from the database: count locally meanwhile
            db_unavailable.failed(exc)
            backend = self.local
            keys, outcome = await backend.admit(principal, tokens, cost, now)
        if outcome[0] != 0:
            metrics.refused(f"end_user_{outcome[1]}" if refused_for else outcome[1], refused_for or principal)
            raise _refusal(principal, outcome[1], outcome[2] if len(outcome) > 2 else -1, tokens)
        headers = {} if refused_for else _headers(principal, *outcome[1:])
        return Ticket(principal, tokens, cost, keys, backend, headers)

    async def settle(self, ticket: Ticket, *, tokens: int, cost_nano: int) -> None:
        """Replace the reservation by what the request really used. Never raises."""
        if ticket.end_user is not None:
            await self.settle(ticket.end_user, tokens=tokens, cost_nano=cost_nano)
        if ticket.backend is None:
            return
        try:
            await ticket.backend.settle(ticket, tokens, cost_nano)
        except Exception:
            logger.exception("settling admission counters failed")

    async def drain(self) -> None:
        if self.redis is not None:
            await self.redis.drain()

    def balance_changed(self, tenant_id: int, delta: int) -> None:
        """A ledger credit or adjustment committed: move the cached balance (sync; admin, tasks)."""
        self.local.balance_changed(tenant_id, delta)
        if self.redis is not None:
            try:
                self.redis.balance_changed(tenant_id, delta)
            except (redis.RedisError, OSError):
                logger.warning("Redis unreachable: tenant %s's balance counter catches up within an hour", tenant_id)

    def budget_in_flight_nano(self, *, key_id: int, budget_period: str, spent_nano: int) -> int:
        """What requests in flight hold reserved in a key's budget now (sync; the dashboard's budget bars).

        The budget counter is the settled spend plus the reservations not yet settled, so the difference
        from `spent_nano` (the usage rows) is what is in flight. Approximate by design: a settle rides
        along with the next admission (up to SETTLE_DELAY_SECONDS late). 0 when nothing is counted yet.
        """
        now = time.time()
        period, _ = _period(budget_period, int(now // 86400))
        key = f"{settings.GATEWAY_REDIS_PREFIX}budget:{key_id}:{period}"
        if self._backend(now) is self.local:
            return max(0, self.local.reserved.get(key, 0))
        try:
            counted = self.redis.counter(key)
        except (redis.RedisError, OSError):
            return 0
        return 0 if counted is None else max(0, counted - spent_nano)

    def _backend(self, now: float):
        if self.redis is not None and now >= self._redis_down_until:
            return self.redis
        return self.local

    def _redis_failed(self, exc: Exception, now: float) -> None:
        # Any Redis failure, not only a refused connection: an out-of-memory or read-only Redis must
        # not turn into a 500 for every request either.
        metrics.redis_error("admission")
        if now >= self._redis_down_until:
            logger.warning("Redis failed (%r): limits fall back to per-process counters for %ss", exc,
                           REDIS_RETRY_SECONDS)
        self._redis_down_until = now + REDIS_RETRY_SECONDS


admission = Admission()


def ledger_balance_changed(*, tenant_id: int, delta: int) -> None:
    """billing.services.balance_changed's receiver (gateway.apps): a credit, refund or adjustment committed."""
    admission.balance_changed(tenant_id, delta)
