"""Upstream providers: one module per provider, each answering with Anthropic-shaped messages/events.

A provider has `async create(body, *, betas) -> dict` (an Anthropic Message), `stream(body, *, betas)`,
an async context manager yielding lists of Anthropic stream-event dicts (the events that arrived
together, so they can be relayed in one write), and `async count_tokens(body, *, betas) -> int`; `betas`
are the client's Anthropic beta flags less those the operator blocks; providers that are not
Anthropic drop them, and the body fields those betas govern, since their APIs have no equivalent.
Failures are raised as core.GatewayError with the status the client should see. Adding a provider is one module plus one line in PROVIDERS.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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


async def close_providers() -> None:
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _instances if k[0] == loop_id]:
        await _instances.pop(key).aclose()
