"""The protocol registry mounts every API in an order where no catch-all answers for a mount under it,
and hands exactly the API paths (and /health) to the lean handler."""

from __future__ import annotations

import pytest
from django.urls import resolve
from ninja import Router

from gateway.api import openai
from gateway.api.base import Mount, Protocol
from gateway.api.registry import PROTOCOLS, _ordered, lean_prefixes


@pytest.mark.parametrize(("path", "namespace"), [
    ("/v1/organization/usage/completions", "openai-admin"),
    ("/openai/v1/organization/costs", "openai-admin-alias"),
    ("/v1/organizations/api_keys", "anthropic-admin"),
    ("/anthropic/v1/organizations/cost_report", "anthropic-admin-alias"),
    ("/v1/messages", "anthropic-root"),
    ("/v1/messages/count_tokens", "anthropic-root"),
    ("/v1/chat/completions", "openai"),
    ("/v1/models", "openai"),
    ("/v1/organizations", "openai"),  # no trailing slash: the OpenAI API's unknown route
    ("/v1/no/such/route", "openai"),
    ("/openai/v1/responses", "openai-alias"),
    ("/anthropic/v1/messages", "anthropic"),
    ("/anthropic/v1/models", "anthropic"),
    ("/gemini/v1beta/models/m:generateContent", "gemini"),
    ("/gemini/v1/models", "gemini-v1"),
    ("/jina/v1/rerank", "jina"),
])
def test_each_path_is_answered_by_its_protocols_api(path, namespace):
    assert resolve(path).namespace == namespace


def test_the_lean_handler_takes_every_api_mount_and_health():
    assert sorted(lean_prefixes()) == sorted(
        ["/v1/", "/openai/v1/", "/anthropic/v1/", "/gemini/v1beta/", "/gemini/v1/", "/jina/v1/", "/health"])


def _protocol(name: str, *mounts: Mount) -> Protocol:
    return Protocol(name=name, key=PROTOCOLS[0].key, render=openai.render, mounts=mounts)


def test_a_new_protocols_mounts_go_before_the_catch_alls_they_sit_under():
    def router(protocol):
        return Router()

    extra = _protocol("new", Mount("v1/new/", "new", router), Mount("new/v1/", "new-alias", router))
    order = [mount.namespace for _, mount in _ordered((*PROTOCOLS, extra))]
    assert order.index("new") < order.index("openai")
    assert order.index("anthropic-root") < order.index("openai")
    assert "new-alias" in order


def test_two_catch_alls_on_one_prefix_or_a_namespace_twice_are_refused():
    def router(protocol):
        return Router()

    with pytest.raises(ValueError, match="catch-alls"):
        _ordered((*PROTOCOLS, _protocol("twin", Mount("v1/", "twin", router))))
    with pytest.raises(ValueError, match="unique"):
        _ordered((*PROTOCOLS, _protocol("twin", Mount("twin/v1/", "openai", router))))
