"""Upstream providers: one module per provider, each answering with Anthropic-shaped messages/events.

A provider has `async create(body, *, betas) -> dict` (an Anthropic Message), `stream(body, *, betas)`,
an async context manager yielding lists of Anthropic stream-event dicts (the events that arrived
together, so they can be relayed in one write), and `async count_tokens(body, *, betas) -> int`; `betas`
are the client's Anthropic beta flags less those the operator blocks; providers that are not
Anthropic drop them, and the body fields those betas govern, since their APIs have no equivalent.
Failures are raised as core.GatewayError with the status the client should see. Adding a provider is one module plus one line in PROVIDERS.

Each provider instance counts its calls in flight in its `pool` (a PoolGauge) against its connection
pool's size, UPSTREAM_MAX_CONNECTIONS; `pool_status` reports them for /health.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from . import errors


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One credential of one provider, as a provider instance is built from it (`from_config`)."""

    kind: str  # a PROVIDERS key
    base_url: str  # "" = the kind's default
    api_key: str
    connect_timeout: float = 10.0
    first_token_timeout: float | None = None  # seconds until the response head (non-streaming) or first event
    timeout: float = 600.0  # the whole request


class PoolGauge:
    """Upstream calls in flight on one provider instance, and since when all its connections are taken.

    A call holds its slot from the request until its response (or stream) is closed, which is when its
    pooled connection is free again.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.saturated_since: float | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.in_flight += 1
        if self.in_flight >= self.limit and self.saturated_since is None:
            self.saturated_since = time.monotonic()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight < self.limit:
                self.saturated_since = None

    def saturated(self, now: float, after: float) -> bool:
        """Every connection has been taken for `after` seconds or longer."""
        return self.saturated_since is not None and now - self.saturated_since >= after


PROVIDERS = {
    "anthropic": "gateway.providers.anthropic.AnthropicProvider",
    "openai": "gateway.providers.openai_compat.OpenAICompatProvider",
    "jina": "gateway.providers.openai_compat.JinaProvider",
}

# Providers hold connection pools bound to an event loop, so there is one instance per loop and
# configuration (a credential with a model's timeouts).
_instances: dict[tuple[int, UpstreamConfig], object] = {}


def get_provider(config: UpstreamConfig):
    key = (id(asyncio.get_running_loop()), config)
    provider = _instances.get(key)
    if provider is None:
        errors.credential_register(config.api_key)  # redacted from any upstream text a client sees
        provider = _instances[key] = import_string(PROVIDERS[config.kind]).from_config(config)
    return provider


def pool_status() -> dict[str, dict[str, Any]]:
    """Per provider kind, over its instances in this process and event loop (one per credential and
    timeouts, each with its own pool): calls in flight, the pools' total size, and `saturated`: some
    pool has had every connection taken for UPSTREAM_POOL_SATURATED_SECONDS or longer."""
    loop_id, now = id(asyncio.get_running_loop()), time.monotonic()
    out: dict[str, dict[str, Any]] = {}
    for (instance_loop, config), provider in _instances.items():
        if instance_loop != loop_id:
            continue
        pool: PoolGauge = provider.pool
        status = out.setdefault(config.kind, {"in_flight": 0, "limit": 0, "saturated": False})
        status["in_flight"] += pool.in_flight
        status["limit"] += pool.limit
        status["saturated"] |= pool.saturated(now, settings.UPSTREAM_POOL_SATURATED_SECONDS)
    return out


async def close_providers() -> None:
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _instances if k[0] == loop_id]:
        await _instances.pop(key).aclose()
