"""Small asyncio tools shared by the apps."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any


class SingleFlight:
    """Concurrent callers asking for the same key share one call.

    For cache refills on the request path: when a cached entry expires under load, every request
    in flight misses at once, and without this each would run the same query (32 identical key
    lookups a second at 32 connections, docs/performance.md).
    """

    def __init__(self) -> None:
        self._calls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, asyncio.Task]] = (
            weakref.WeakKeyDictionary())

    async def run(self, key: Any, call: Callable[[], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        calls = self._calls.setdefault(loop, {})
        task = calls.get(key)
        if task is None:
            task = calls[key] = loop.create_task(call())
            task.add_done_callback(lambda done: self._forget(calls, key, done))
        # Shielded: one caller cancelled (a client hang-up) must not cancel the others' call.
        return await asyncio.shield(task)

    @staticmethod
    def _forget(calls: dict, key: Any, task: asyncio.Task) -> None:
        calls.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: its callers, if any are left, get it from the await
