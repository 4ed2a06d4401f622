"""Which upstream answers a call: deployments by priority and weight, retries, fallback and cooldown.

A catalog model has deployments (a provider and its model id), each reached through one of its
provider's credentials. `call` tries them in order:

- the lowest priority number first; within a priority, a random order weighted by deployment weight
  times credential share, so traffic spreads as configured;
- a retryable failure (429, 5xx including Anthropic's 529, timeouts, refused or broken connections)
  is retried on the same target after a backoff (0.25 s doubling, or the upstream's `retry-after`),
  `UPSTREAM_RETRIES` times, unless the wait would exceed `UPSTREAM_MAX_BACKOFF_SECONDS`; then the
  target cools down for its provider's `cooldown_seconds` (or the `retry-after`) and the next one is
  tried. Targets cooling down go last, so a model whose every deployment failed still probes them,
  and the first request after a cooldown probes the target back;
- client errors (400, 404, 413) are the request's fault: never retried;
- a request of a thread (`affinity`, see gateway/affinity.py) goes first to the target that answered
  the thread before, while that one is ready and in the best priority that has a ready target, so the
  provider's prompt cache is read instead of written again; whatever answers becomes the thread's
  target. Without a thread the order is the weighted one above, unchanged.

Only the part of a call before any byte reaches the client goes through here (for streams: up to
the first event, see pipeline._open_stream), so nothing is retried once streaming has begun.
With REDIS_URL set, cooldowns are shared by every process of every instance (gateway/cooldowns.py):
an outage one of them found is skipped by all within GATEWAY_COOLDOWN_SYNC_SECONDS, and at its end
one request, of one process, probes the target back. Without Redis (or while it fails) each process
learns of an outage from its own first failure.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.conf import settings

from common import metrics

from . import cooldowns, tracing
from .affinity import affinity as affinities
from .core import GatewayError
from .providers import get_provider
from .selectors import DeploymentEntry, ModelEntry, Target

logger = logging.getLogger(__name__)
T = TypeVar("T")

_cooling: dict[tuple[int, int], float] = {}  # target key -> monotonic time its cooldown ends
_FIRST_BACKOFF = 0.25


def retryable(error: GatewayError) -> bool:
    return error.status == 429 or error.status >= 500


def plan(model: ModelEntry, now: float, rng: random.Random | random.SystemRandom = random,
         probes: frozenset[tuple[int, int]] = frozenset(), *,
         prefer: tuple[int, int] | None = None) -> list[tuple[DeploymentEntry, Target]]:
    """Every (deployment, target) of `model` in the order to try them; `probes`, targets whose shared
    cooldown ended and whose probe this request claimed, first in their priority; then `prefer` (a
    thread's target) first when it is ready and of the first ready priority."""
    shared = cooldowns.shared if cooldowns.shared is not None and cooldowns.shared.until else None
    ready, cooling = [], []
    for priority in sorted({deployment.priority for deployment in model.deployments}):
        pairs = [(deployment, target) for deployment in model.deployments if deployment.priority == priority
                 for target in deployment.targets]
        # Weighted random order (Efraimidis-Spirakis): a larger weight tends to come first.
        pairs.sort(key=lambda pair: rng.random() ** (1 / (pair[0].weight * pair[1].weight)), reverse=True)
        if probes:
            pairs.sort(key=lambda pair: pair[1].key not in probes)
        for pair in pairs:
            key = pair[1].key
            (cooling if _cooling.get(key, 0) > now or (shared and shared.blocked(key, now, probes))
             else ready).append(pair)
    if prefer is not None and ready and ready[0][1].key not in probes:  # a claimed probe goes first
        for i, pair in enumerate(ready):
            if pair[1].key == prefer:
                # Priority still wins over the cache: a thread that fell back returns to the primary once it
                # is ready again (one cache write), or a fallback would keep its threads for as long as they last.
                if i and pair[0].priority == ready[0][0].priority:
                    ready.insert(0, ready.pop(i))
                break
    return ready + cooling


def has_choice(model: ModelEntry) -> bool:
    """Whether routing picks among several targets (only then does a thread's affinity matter)."""
    deployments = model.deployments
    return len(deployments) > 1 or (len(deployments) == 1 and len(deployments[0].targets) > 1)


async def call(model: ModelEntry, operation: Callable[[object, str, Target], Awaitable[T]],
               *, first_byte_timeout: float | None = None, affinity: str | None = None) -> tuple[T, DeploymentEntry]:
    """`operation(provider, upstream_model, target)` on the first target that succeeds; the result and
    the deployment that answered. Raises the last failure when every target failed.

    `first_byte_timeout` bounds each attempt (default: the model's whole-request timeout); an attempt
    that runs out of it is a 504 `first_byte_timeout`, retried and fallen back like any 5xx, and its
    cancellation closes the upstream connection, so a hung upstream holds none for longer.

    `affinity`: the request's thread key (gateway.affinity.thread_key), or None."""
    limit = min(first_byte_timeout, model.timeout) if first_byte_timeout else model.timeout
    shared, probes = cooldowns.shared, frozenset()
    if shared is not None:
        now = time.monotonic()
        if (pending := shared.fresh(now)) is not None:
            await pending
        # Some target cools down somewhere: its probe may fall to this request.
        if shared.until and _known(model, shared.until) and (wanted := shared.wanted(_priorities(model), now)):
            probes = await shared.claim(wanted, _probe_seconds(model, limit))
    try:
        return await _attempts(model, operation, limit, first_byte_timeout, shared, probes, affinity)
    finally:
        for key in probes:  # a probe neither answered nor failed (cancelled, a 400, not reached): let go
            shared.released(key)


async def _attempts(model: ModelEntry, operation: Callable[[object, str, Target], Awaitable[T]], limit: float,
                    first_byte_timeout: float | None, shared: cooldowns.SharedCooldowns | None,
                    probes: frozenset[tuple[int, int]], affinity: str | None = None) -> tuple[T, DeploymentEntry]:
    last: GatewayError | None = None
    sticky = await affinities.get(affinity) if affinity is not None else None
    for deployment, target in plan(model, time.monotonic(), probes=probes, prefer=sticky):
        provider = get_provider(target.config)
        for attempt in range(settings.UPSTREAM_RETRIES + 1):
            started = time.perf_counter()
            try:
                with tracing.span("gateway.upstream_attempt", provider=deployment.provider,
                                  upstream_model=deployment.upstream_model, attempt=attempt):
                    async with asyncio.timeout(limit):
                        result = await operation(provider, deployment.upstream_model, target)
                metrics.upstream_attempt(model, deployment, started)
                if _cooling.pop(target.key, None) is not None or target.key in probes:  # a probe succeeded
                    metrics.upstream_recovered(model, deployment)
                if shared is not None:
                    shared.recovered(target.key)
                if affinity is not None and target.key != sticky:
                    await affinities.put(affinity, target.key)
                return result, deployment
            except TimeoutError:
                last = (GatewayError(504, f"The upstream provider sent nothing within {limit:g} s.",
                                     type="upstream_error", code="first_byte_timeout") if first_byte_timeout else
                        GatewayError(504, "The upstream provider timed out.", type="upstream_error",
                                     code="upstream_timeout"))
                metrics.upstream_attempt(model, deployment, started, last)
            except GatewayError as exc:
                metrics.upstream_attempt(model, deployment, started, exc)
                if not retryable(exc):
                    raise
                last = exc
            wait = last.retry_after if last.retry_after is not None else _FIRST_BACKOFF * 2 ** attempt
            if attempt == settings.UPSTREAM_RETRIES or wait > settings.UPSTREAM_MAX_BACKOFF_SECONDS:
                now = time.monotonic()
                _cooling[target.key] = now + max(deployment.cooldown_seconds, last.retry_after or 0)
                if shared is not None:
                    shared.cooled(target.key, _cooling[target.key], now)
                metrics.upstream_cooldown(model, deployment, _cooling[target.key])
                logger.warning("deployment %s (%s:%s) failed with %s; cooling down for %ss", deployment.id,
                               deployment.provider, deployment.upstream_model, last.status, deployment.cooldown_seconds)
                break
            metrics.upstream_retry(model, deployment)
            await asyncio.sleep(wait)
    _cooling_prune(time.monotonic())
    assert last is not None
    raise last


def _known(model: ModelEntry, until: dict) -> bool:
    return any(target.key in until for deployment in model.deployments for target in deployment.targets)


def _priorities(model: ModelEntry) -> list[list[tuple[int, int]]]:
    return [[target.key for deployment in model.deployments if deployment.priority == priority
             for target in deployment.targets] for priority in sorted({d.priority for d in model.deployments})]


def _probe_seconds(model: ModelEntry, limit: float) -> float:
    """How long a probe may take (every attempt and backoff), so that a probe lease outlives it; but no
    longer than a cooldown, so that a prober that died costs the others one more cooldown at most."""
    longest = limit * (settings.UPSTREAM_RETRIES + 1) + settings.UPSTREAM_MAX_BACKOFF_SECONDS * settings.UPSTREAM_RETRIES
    shortest_cooldown = min((d.cooldown_seconds for d in model.deployments), default=1)
    return max(1.0, min(longest, shortest_cooldown))


def _cooling_prune(now: float) -> None:
    for key in [key for key, until in _cooling.items() if until <= now]:
        del _cooling[key]
