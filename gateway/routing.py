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
- client errors (400, 404, 413) are the request's fault: never retried.

Only the part of a call before any byte reaches the client goes through here (for streams: up to
the first event, see pipeline._open_stream), so nothing is retried once streaming has begun.
Cooldowns are per process: each gateway process learns of an outage from its own first failure.
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

from . import tracing
from .core import GatewayError
from .providers import get_provider
from .selectors import DeploymentEntry, ModelEntry, Target

logger = logging.getLogger(__name__)
T = TypeVar("T")

_cooling: dict[tuple[int, int], float] = {}  # target key -> monotonic time its cooldown ends
_FIRST_BACKOFF = 0.25


def retryable(error: GatewayError) -> bool:
    return error.status == 429 or error.status >= 500


def plan(model: ModelEntry, now: float, rng: random.Random | random.SystemRandom = random) -> list[
        tuple[DeploymentEntry, Target]]:
    """Every (deployment, target) of `model` in the order to try them."""
    ready, cooling = [], []
    for priority in sorted({deployment.priority for deployment in model.deployments}):
        pairs = [(deployment, target) for deployment in model.deployments if deployment.priority == priority
                 for target in deployment.targets]
        # Weighted random order (Efraimidis-Spirakis): a larger weight tends to come first.
        pairs.sort(key=lambda pair: rng.random() ** (1 / (pair[0].weight * pair[1].weight)), reverse=True)
        for pair in pairs:
            (cooling if _cooling.get(pair[1].key, 0) > now else ready).append(pair)
    return ready + cooling


async def call(model: ModelEntry, operation: Callable[[object, str, Target], Awaitable[T]],
               *, first_byte_timeout: float | None = None) -> tuple[T, DeploymentEntry]:
    """`operation(provider, upstream_model, target)` on the first target that succeeds; the result and
    the deployment that answered. Raises the last failure when every target failed.

    `first_byte_timeout` bounds each attempt (default: the model's whole-request timeout); an attempt
    that runs out of it is a 504 `first_byte_timeout`, retried and fallen back like any 5xx, and its
    cancellation closes the upstream connection, so a hung upstream holds none for longer."""
    last: GatewayError | None = None
    limit = min(first_byte_timeout, model.timeout) if first_byte_timeout else model.timeout
    for deployment, target in plan(model, time.monotonic()):
        provider = get_provider(target.config)
        for attempt in range(settings.UPSTREAM_RETRIES + 1):
            started = time.perf_counter()
            try:
                with tracing.span("gateway.upstream_attempt", provider=deployment.provider,
                                  upstream_model=deployment.upstream_model, attempt=attempt):
                    async with asyncio.timeout(limit):
                        result = await operation(provider, deployment.upstream_model, target)
                metrics.upstream_attempt(model, deployment, started)
                if _cooling.pop(target.key, None) is not None:  # a probe after a cooldown succeeded
                    metrics.upstream_recovered(model, deployment)
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
                _cooling[target.key] = time.monotonic() + max(deployment.cooldown_seconds, last.retry_after or 0)
                metrics.upstream_cooldown(model, deployment, _cooling[target.key])
                logger.warning("deployment %s (%s:%s) failed with %s; cooling down for %ss", deployment.id,
                               deployment.provider, deployment.upstream_model, last.status, deployment.cooldown_seconds)
                break
            metrics.upstream_retry(model, deployment)
            await asyncio.sleep(wait)
    _cooling_prune(time.monotonic())
    assert last is not None
    raise last


def _cooling_prune(now: float) -> None:
    for key in [key for key, until in _cooling.items() if until <= now]:
        del _cooling[key]
