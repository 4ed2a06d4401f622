"""Upstream providers: one module per provider, each answering with Anthropic-shaped messages/events.

A provider has `async create(body) -> dict` (an Anthropic Message) and `stream(body)`, an async
context manager yielding lists of Anthropic stream-event dicts (the events that arrived together, so
they can be relayed in one write); failures are raised as core.GatewayError with the status the
client should see. Adding a provider is one module plus one line in PROVIDERS.
"""

from __future__ import annotations

import asyncio

from django.utils.module_loading import import_string

PROVIDERS = {
    "anthropic": "gateway.providers.anthropic.AnthropicProvider",
}

# Providers hold connection pools bound to an event loop, so there is one instance per loop.
_instances: dict[tuple[int, str], object] = {}


def get_provider(name: str):
    loop = asyncio.get_running_loop()
    key = (id(loop), name)
    provider = _instances.get(key)
    if provider is None:
        provider = _instances[key] = import_string(PROVIDERS[name]).from_settings()
    return provider


async def close_providers() -> None:
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _instances if k[0] == loop_id]:
        await _instances.pop(key).aclose()
