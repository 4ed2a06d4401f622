"""Thread affinity: the requests of one thread go to the deployment and credential that served it last.

Provider-side prompt caches are per upstream account and per server pool: Anthropic's cache of a
prefix written through one credential is not read through another, so a thread whose turns are spread
over several deployments by weight pays a cache write on each instead of a read (90 % off input).
`routing.call` therefore prefers, for a request with a thread, the target that answered the thread's
previous request, while that target is ready (not cooling down) and in the best priority that is; a
thread whose target cools down goes the weighted way and sticks to what answered it.

A thread is, first that applies: the client's `AH-Thread-Id`; the stored conversation (chat
`conversation_id`, Responses `conversation` or the chain of `previous_response_id`); the system prompt
and tools (what every turn of a stateless client repeats). A request with none of them has no thread.

This state is kept apart from routing's cooldowns on purpose: a cooldown says a target is broken for
everyone, an affinity only that one thread would rather stay; losing an affinity costs one cache write.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson
from django.conf import settings

from common.redis_wire import RespClient

logger = logging.getLogger(__name__)

TargetKey = tuple[int, int]
REDIS_RETRY_SECONDS = 5.0


def thread_key(*, tenant_id: int, model: str, thread_id: str | None, conversation_id: str | None,
               params: dict[str, Any]) -> str | None:
    """The affinity key of a request (a hex digest, never the client's text), or None without a thread."""
    if thread_id:
        kind, value = b"t", thread_id.encode()
    elif conversation_id:
        kind, value = b"c", conversation_id.encode()
    elif params.get("system") or params.get("tools"):
        kind, value = b"p", orjson.dumps([params.get("system"), params.get("tools")], option=orjson.OPT_SORT_KEYS)
    else:
        return None
    digest = hashlib.sha256(b"%d\x00%s\x00%s\x00" % (tenant_id, model.encode(), kind))
    digest.update(value)
    return digest.hexdigest()[:32]


class LocalAffinity:
    """key -> (target, last use), least recently used first, at most `max_entries`; idle entries expire."""

    def __init__(self, max_entries: int, ttl: float) -> None:
        self.max_entries, self.ttl = max_entries, ttl
        self.entries: OrderedDict[str, tuple[TargetKey, float]] = OrderedDict()

    async def get(self, key: str) -> TargetKey | None:
        entry = self.entries.get(key)
        now = time.monotonic()
        if entry is None:
            return None
        if now - entry[1] > self.ttl:
            del self.entries[key]
            return None
        self.entries[key] = (entry[0], now)
        self.entries.move_to_end(key)
        return entry[0]

    async def put(self, key: str, target: TargetKey) -> None:
        self.entries[key] = (target, time.monotonic())
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)


class RedisAffinity:
    """The same map in Redis, shared by every gateway process and instance: with a map per process, a
    thread served by N processes would write its prefix to N upstream caches. One round trip per request
    (GETEX reads and refreshes the idle expiry), one more only when the thread moves (SET)."""

    def __init__(self, url: str, ttl: float) -> None:
        self.url, self.ttl = url, max(1, int(ttl))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = None

    def _redis(self):
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a connection is bound to its event loop (tests run several)
            self._loop, self._client = loop, RespClient(self.url)
        return self._client

    def _key(self, key: str) -> str:
        return f"{settings.GATEWAY_REDIS_PREFIX}affinity:{key}"

    async def get(self, key: str) -> TargetKey | None:
        value = await self._redis().call("GETEX", self._key(key), "EX", self.ttl)
        if not value:
            return None
        deployment, _, credential = value.partition(b":")
        return int(deployment), int(credential)

    async def put(self, key: str, target: TargetKey) -> None:
        await self._redis().call("SET", self._key(key), f"{target[0]}:{target[1]}", "EX", self.ttl)


class Affinity:
    """Redis when configured and reachable, this process's LRU otherwise (and for 5 s after a failure)."""

    def __init__(self) -> None:
        ttl = settings.GATEWAY_AFFINITY_TTL_SECONDS
        self.local = LocalAffinity(settings.GATEWAY_AFFINITY_MAX_ENTRIES, ttl)
        self.redis = RedisAffinity(settings.REDIS_URL, ttl) if settings.REDIS_URL else None
        self._redis_down_until = 0.0

    def _backend(self):
        if self.redis is not None and time.monotonic() >= self._redis_down_until:
            return self.redis
        return self.local

    def _failed(self, exc: BaseException) -> None:
        logger.warning("Redis failed for thread affinity (%r): this process's own map for %gs", exc,
                       REDIS_RETRY_SECONDS)
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS

    async def get(self, key: str) -> TargetKey | None:
        backend = self._backend()
        try:
            return await backend.get(key)
        except Exception as exc:  # RespError, OSError, a timeout: affinity is an optimisation, never a failure
            self._failed(exc)
            return await self.local.get(key)

    async def put(self, key: str, target: TargetKey) -> None:
        backend = self._backend()
        try:
            await backend.put(key, target)
        except Exception as exc:
            self._failed(exc)
            await self.local.put(key, target)


affinity = Affinity()
