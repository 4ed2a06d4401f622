"""Microbenchmark of what routing adds to one request before and after its upstream call (no network).

    REDIS_URL=redis://127.0.0.1:6379/0 python bench/routing_overhead.py [repeats]

Times `routing.call` with an operation that returns at once, for a model of two deployments: without
shared cooldowns (no REDIS_URL: per process), and with them (a view of Redis's cooldown hash kept
fresh, empty, and holding another model's cooldown). Also the CPU of one read of the hash (the cost a
process pays every GATEWAY_COOLDOWN_SYNC_SECONDS / 2 under load, shared by the requests of that interval).
Best of `repeats` runs of 5,000 calls, microseconds of CPU per request; compare on a quiet machine.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from gateway import routing  # noqa: E402
from gateway.providers import UpstreamConfig  # noqa: E402
from gateway.selectors import DeploymentEntry, ModelEntry, Target  # noqa: E402

try:
    from gateway import cooldowns  # noqa: E402
except ImportError:  # a commit before shared cooldowns
    cooldowns = None

CALLS = 5_000


def _model() -> ModelEntry:
    deployments = tuple(
        DeploymentEntry(id=i, provider=f"p{i}", upstream_model="u", priority=i, weight=1, cooldown_seconds=30,
                        targets=(Target(key=(i, 0), weight=1.0, config=UpstreamConfig(kind="anthropic",
                                                                                      base_url=f"http://d{i}",
                                                                                      api_key="k")),))
        for i in (1, 2))
    return ModelEntry(name="m", default_max_tokens=10, max_output_tokens=10, owned_by="x", created=0, aliases=(),
                      deployments=deployments, timeout=5.0)


async def _operation(provider, upstream_model, target):
    return "ok"


async def _per_call(model: ModelEntry) -> float:
    started = time.process_time()  # CPU: other processes on the machine only ever make a run slower
    for _ in range(CALLS):
        await routing.call(model, _operation)
    return (time.process_time() - started) / CALLS * 1e6


async def main(repeats: int) -> None:
    settings.GATEWAY_REDIS_PREFIX = f"gh-bench-{os.getpid()}:"  # never a deployment's real cooldowns
    routing.get_provider = lambda config: config.base_url
    model = _model()
    shared = cooldowns.shared if cooldowns is not None else None
    if cooldowns is not None:
        cooldowns.shared = None
    print(f"per process (no shared cooldowns): {min([await _per_call(model) for _ in range(repeats)]):.2f} µs/request")
    if shared is None:
        print("shared cooldowns: not on this commit or no REDIS_URL")
        return
    cooldowns.shared = shared
    await routing.call(model, _operation)  # the first read
    print(f"shared, empty view: {min([await _per_call(model) for _ in range(repeats)]):.2f} µs/request "
          f"(reads of the hash meanwhile: every {settings.GATEWAY_COOLDOWN_SYNC_SECONDS / 2:g} s)")
    shared.cooled((99, 0), time.monotonic() + 60, time.monotonic())  # another model's target
    await asyncio.sleep(0.05)
    print(f"shared, another model cooling: {min([await _per_call(model) for _ in range(repeats)]):.2f} µs/request")
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(500):
            await shared._refresh()
        best = min(best, (time.process_time() - started) / 500 * 1e6)
    print(f"one read of the hash: {best:.1f} µs of CPU")
    import redis

    redis.Redis.from_url(settings.REDIS_URL).delete(f"{settings.GATEWAY_REDIS_PREFIX}cooldowns")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30))
