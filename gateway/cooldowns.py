"""Deployment cooldowns every gateway process sees: one Redis hash, read through a short-lived local view.

routing.py keeps each process's own cooldowns, as it always has; with REDIS_URL set this module adds
those of every other process (and instance), so an upstream outage one of them found is skipped by all
within GATEWAY_COOLDOWN_SYNC_SECONDS, instead of each process paying its own failed attempts first.

- Redis holds one hash, `<prefix>cooldowns`: field `<deployment>:<credential>` is the end of the target's
  cooldown, `<deployment>:<credential>/probe` the end of a probe lease (both Redis-clock milliseconds:
  the scripts read Redis's TIME, so instances' clocks need not agree).
- Each process reads the whole hash at most every half of GATEWAY_COOLDOWN_SYNC_SECONDS, in the
  background, when a request finds its view that old; a request waits for the read only when the view is
  older than the whole interval (an idle process). Under load no request waits: the healthy request path
  costs a comparison of two floats and an empty-dict check (docs/performance.md).
- Writes (a cooldown, a probe claim, its outcome) happen only on the failure and probe paths.
- Without Redis, or while it fails (retried every REDIS_RETRY_SECONDS; one log line per interval and
  `gatehouse_redis_errors_total{component="cooldowns"}`), routing is per process again: what was learnt
  stays until it ends, and an ended cooldown is probed by this process's next request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable

from django.conf import settings

from common import metrics
from common.outage import FailureLog
from common.redis_wire import RespClient, RespError

REDIS_RETRY_SECONDS = 5.0
PRUNE_AFTER_MS = 3_600_000  # an entry this long past its end belongs to a deleted deployment or a dead prober

Key = tuple[int, int]

# ARGV[1] is the operation; every branch returns Redis's clock (ms) first, so the caller can convert ends
# to its own monotonic clock.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, field = ARGV[1], ARGV[2]
if op == 'snapshot' then
  local all, kept = redis.call('HGETALL', KEYS[1]), {}
  for i = 1, #all, 2 do
    if not string.find(all[i], '/', 1, true) and tonumber(all[i + 1]) < now - tonumber(ARGV[3]) then
      redis.call('HDEL', KEYS[1], all[i], all[i] .. '/probe')
    else
      kept[#kept + 1] = all[i]
      kept[#kept + 1] = all[i + 1]
    end
  end
  return {now, kept}
end
local probe = field .. '/probe'
local ends = tonumber(redis.call('HGET', KEYS[1], field))
if op == 'cool' then
  local new_end = now + tonumber(ARGV[3])
  if not ends or ends < new_end then redis.call('HSET', KEYS[1], field, new_end) end
  redis.call('HDEL', KEYS[1], probe)
  return {now}
elseif op == 'claim' then
  if not ends then return {now, 2} end
  if ends > now then return {now, 3, ends} end
  local lease = tonumber(redis.call('HGET', KEYS[1], probe))
  if lease and lease > now then return {now, 0, lease} end
  redis.call('HSET', KEYS[1], probe, now + tonumber(ARGV[3]))
  return {now, 1, now + tonumber(ARGV[3])}
elseif op == 'clear' then
  if ends and ends <= now then redis.call('HDEL', KEYS[1], field, probe) end
  return {now}
elseif op == 'release' then
  if redis.call('HGET', KEYS[1], probe) == ARGV[3] then redis.call('HDEL', KEYS[1], probe) end
  return {now}
end
return redis.error_reply('unknown operation ' .. op)
"""


def _field(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


def _key(field: bytes) -> Key:
    deployment, credential = field.split(b":")
    return int(deployment), int(credential)


class SharedCooldowns:
    def __init__(self, url: str, sync_seconds: float) -> None:
        self.url, self.sync, self._half = url, sync_seconds, sync_seconds / 2
        self.until: dict[Key, float] = {}  # target -> monotonic end of its cooldown, for every process
        self.leases: dict[Key, float] = {}  # target -> monotonic end of the probe some request holds
        self._fresh_at = float("-inf")  # when the view was read (monotonic)
        self._healthy = True
        self._down_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: RespClient | None = None
        self._sha: str | None = None
        self._mine: dict[Key, str] = {}  # target -> the lease this process holds (its value in Redis)
        self._refreshing: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._failures = FailureLog(logging.getLogger("gatehouse.redis"),
                                    "Redis unavailable: deployment cooldowns are per process",
                                    count=lambda: metrics.redis_error("cooldowns"))

    # --- the request path ------------------------------------------------------------------------------

    def fresh(self, now: float) -> Awaitable | None:
        """None when the view is recent enough to route by, else something to await first."""
        age = now - self._fresh_at
        if age < self._half or now < self._down_until:
            return None
        if self._refreshing is None or self._refreshing.done() or self._loop is not asyncio.get_running_loop():
            self._refreshing = self._spawn(self._refresh())
        # An idle process's view may miss a whole cooldown: wait for it then, but never while Redis fails.
        return asyncio.shield(self._refreshing) if age >= self.sync and self._healthy else None

    def blocked(self, key: Key, now: float, probes: Iterable[Key] = ()) -> bool:
        """Whether another process's cooldown (or its probe in progress) keeps `key` out of the first tries."""
        until = self.until.get(key)
        if until is None:
            return False
        if until > now:
            return True
        if now < self._down_until:
            return False  # no probe can be claimed: this process probes it by itself, as without Redis
        return key not in probes

    def wanted(self, priorities: list[list[Key]], now: float) -> list[Key]:
        """Targets of a model (its keys by priority) whose probe this request should claim, if any.

        Why one probe claimed in Redis, not each process probing on its own: at a cooldown's end every
        process of every instance would send its next request to the maybe still broken upstream together.
        Instead the first request anywhere that would try the target claims a lease (as long as the probe
        may take: its attempts' timeouts and backoffs, at most a cooldown), its process tries it first, and
        every other request of every instance keeps it last until the outcome is in Redis: a success
        clears the cooldown (the others use the target again at their next read), a failure starts a new
        one, and a prober that died frees the lease when it ends. Only the best priority without a target
        ready claims, so a healthy primary never pays a round trip for a fallback's ended cooldown.
        """
        if now < self._down_until:
            return []
        until, leases = self.until, self.leases
        for group in priorities:
            candidates = [key for key in group if key in until and until[key] <= now and leases.get(key, 0) <= now]
            if candidates:
                return candidates
            if any(key not in until for key in group):
                return []  # this priority has a target ready: it serves the request
        return []

    async def claim(self, keys: list[Key], lease_seconds: float) -> frozenset[Key]:
        """The probes this request won (see `wanted`)."""
        won = []
        for key in keys:
            result = await self._call("claim", _field(key), max(1, int(lease_seconds * 1000)))
            if result is None:
                return frozenset(keys)  # Redis failed just now: probe by ourselves, as without it
            offset = time.monotonic() - result[0] / 1000
            if result[1] == 2:
                self.until.pop(key, None)  # recovered meanwhile, by another process's probe
            elif result[1] == 3:
                self.until[key] = result[2] / 1000 + offset  # cooling again: that probe failed
            else:
                self.leases[key] = result[2] / 1000 + offset
                if result[1] == 1:
                    self._mine[key] = str(result[2])
                    won.append(key)
        return frozenset(won)

    # --- outcomes (failure and probe paths only) -------------------------------------------------------

    def cooled(self, key: Key, until: float, now: float) -> None:
        self.until[key] = max(until, self.until.get(key, 0.0))
        self.leases.pop(key, None)
        self._mine.pop(key, None)
        self._spawn(self._call("cool", _field(key), max(1, int((until - now) * 1000))))

    def recovered(self, key: Key) -> None:
        self._mine.pop(key, None)
        if self.until.pop(key, None) is not None:
            self.leases.pop(key, None)
            self._spawn(self._call("clear", _field(key)))

    def released(self, key: Key) -> None:
        """A probe this request claimed but did not settle (cancelled, a client error, not reached)."""
        lease = self._mine.pop(key, None)
        if lease is not None:
            self.leases.pop(key, None)
            self._spawn(self._call("release", _field(key), lease))

    # --- Redis -----------------------------------------------------------------------------------------

    async def _refresh(self) -> None:
        result = await self._call("snapshot", "", PRUNE_AFTER_MS)
        if result is None:
            return
        now = time.monotonic()
        offset = now - result[0] / 1000
        until, leases = {}, {}
        fields = result[1]
        for i in range(0, len(fields), 2):
            name, value = fields[i], int(fields[i + 1])
            if name.endswith(b"/probe"):
                leases[_key(name[:-6])] = value / 1000 + offset
            else:
                until[_key(name)] = value / 1000 + offset
        self.until, self.leases, self._fresh_at = until, leases, now

    async def _call(self, op: str, field: str, arg: int | str = ""):
        """The script's reply, or None when Redis failed (logged once per interval, counted)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a connection belongs to its event loop (tests run several)
            self._loop, self._client = loop, RespClient(self.url)
        name = f"{settings.GATEWAY_REDIS_PREFIX}cooldowns"
        try:
            if self._sha is not None:
                try:
                    return await self._client.call("EVALSHA", self._sha, 1, name, op, field, arg)
                except RespError as exc:
                    if not str(exc).startswith("NOSCRIPT"):
                        raise
            self._sha = (await self._client.call("SCRIPT", "LOAD", _LUA)).decode()
            reply = await self._client.call("EVALSHA", self._sha, 1, name, op, field, arg)
        except (RespError, OSError) as exc:
            self._healthy, self._down_until = False, time.monotonic() + REDIS_RETRY_SECONDS
            self._failures.failed(exc)
            return None
        self._healthy = True
        return reply

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)
        return task


shared = SharedCooldowns(settings.REDIS_URL, settings.GATEWAY_COOLDOWN_SYNC_SECONDS) if settings.REDIS_URL else None
