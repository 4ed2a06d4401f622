"""The ingress protocols, one entry each: the header its SDKs send the key in, the shape of its errors
and model lists, and its mounts (prefix, namespace, router). config/urls.py mounts them all and
config/asgi.py sends their paths to the lean API handler, so a new protocol is a codec package in
gateway/protocols/, its operations in a module here, and one entry below.
"""

from __future__ import annotations

from functools import cache

from django.urls import URLResolver, path

from ..auth import ApiKey
from . import anthropic, gemini, jina, model_lists, openai
from .base import Mount, Protocol, build

# The OpenAI API also takes `x-api-key`, so that the Anthropic SDK can list models at our /v1 root.
_OPENAI_KEY = ApiKey(header="x-api-key", how="'Authorization: Bearer sk_cdx_...'")

PROTOCOLS: tuple[Protocol, ...] = (
    Protocol(
        name="openai", key=_OPENAI_KEY, render=openai.render,
        model_list=model_lists.model_list_payload, model=model_lists.model_payload,
        mounts=(
            Mount("v1/", "openai", openai.router),
            Mount("openai/v1/", "openai-alias", openai.router),
            Mount("v1/organization/", "openai-admin", openai.admin_router),  # tenant admin keys
            Mount("openai/v1/organization/", "openai-admin-alias", openai.admin_router),
        ),
    ),
    Protocol(
        name="anthropic", key=ApiKey(header="x-api-key", how="'x-api-key: sk_cdx_...'"), render=anthropic.render,
        model_list=model_lists.anthropic_model_list, model=model_lists.anthropic_model,
        mounts=(
            Mount("anthropic/v1/", "anthropic", anthropic.router),
            # The Anthropic SDK's message routes with our root as its base_url; /v1's other paths are OpenAI's.
            Mount("v1/", "anthropic-root", anthropic.root_router, catch_all=False),
            Mount("v1/organizations/", "anthropic-admin", anthropic.admin_router),  # tenant admin keys
            Mount("anthropic/v1/organizations/", "anthropic-admin-alias", anthropic.admin_router),
        ),
    ),
    Protocol(
        name="gemini",
        key=ApiKey(header="x-goog-api-key", query="key", how="'x-goog-api-key: sk_cdx_...' or '?key=sk_cdx_...'"),
        render=gemini.render, model_list=model_lists.gemini_model_list, model=model_lists.gemini_model,
        mounts=(
            Mount("gemini/v1beta/", "gemini", gemini.router),
            Mount("gemini/v1/", "gemini-v1", gemini.router),  # google-genai's default with a base_url
        ),
    ),
    # Jina's paths for its SDKs: the OpenAI API's embeddings and rerank, with its keys and errors.
    Protocol(name="jina", key=_OPENAI_KEY, render=openai.render, mounts=(Mount("jina/v1/", "jina", jina.router),)),
)


def _ordered(protocols: tuple[Protocol, ...]) -> list[tuple[Protocol, Mount]]:
    """Every mount, the longer prefixes first and, on one prefix, the one without a catch-all first: Django
    takes the first pattern that matches, and a catch-all must not answer for a mount under it (the admin
    usage APIs under /v1/organization, the Anthropic SDK's /v1/messages under the OpenAI API's /v1)."""
    mounts = [(protocol, mount) for protocol in protocols for mount in protocol.mounts]
    namespaces = [mount.namespace for _, mount in mounts]
    if len(set(namespaces)) != len(namespaces):
        raise ValueError(f"API namespaces must be unique: {namespaces}")
    catch_alls = [mount.prefix for _, mount in mounts if mount.catch_all]
    if len(set(catch_alls)) != len(catch_alls):
        raise ValueError(f"Two catch-alls on one prefix: the second would never answer ({catch_alls}).")
    return sorted(mounts, key=lambda pair: (-len(pair[1].prefix), pair[1].catch_all))


@cache  # a ninja API (its namespace) is built once per process
def urlpatterns() -> tuple[URLResolver, ...]:
    return tuple(path(mount.prefix, build(mount.namespace, mount.router(protocol), protocol.render).urls)
                 for protocol, mount in _ordered(PROTOCOLS))


def lean_prefixes(protocols: tuple[Protocol, ...] = PROTOCOLS) -> tuple[str, ...]:
    """The paths config/asgi.py hands to the lean API handler: every mount's (one under another's counts
    once), and the health checks, whose probes need no sessions or CSRF either."""
    prefixes: list[str] = []
    for prefix in sorted({"/" + mount.prefix for protocol in protocols for mount in protocol.mounts}, key=len):
        if not prefix.startswith(tuple(prefixes)):
            prefixes.append(prefix)
    return (*prefixes, "/health")
