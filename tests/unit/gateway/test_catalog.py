"""The model catalog: seeded, resolved by id or alias, limits applied."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from gateway.core import GatewayError, apply_model_limits
from gateway.models import CatalogModel
from gateway.selectors import catalog_forget, model_resolve

pytestmark = pytest.mark.django_db
resolve = async_to_sync(model_resolve)

SEEDED_ALIASES = {
    "gpt-4": "claude-opus-4-6", "gpt-4o": "claude-sonnet-4-6", "gpt-4-turbo": "claude-sonnet-4-6",
    "gpt-3.5-turbo": "claude-haiku-4-5", "gpt-4o-mini": "claude-haiku-4-5",
}


@pytest.fixture(autouse=True)
def fresh_catalog():
    catalog_forget()
    yield
    catalog_forget()


@pytest.mark.parametrize("alias, target", SEEDED_ALIASES.items())
def test_seeded_aliases_resolve_to_their_claude_model(alias, target):
    entry = resolve(alias)
    assert entry.name == target and [d.upstream_model for d in entry.deployments] == [target]


def test_disabled_and_unknown_models_are_404_model_not_found():
    CatalogModel.objects.filter(name="claude-haiku-4-5").update(enabled=False)
    for name in ("claude-haiku-4-5", "gpt-4o-mini", "gpt-5"):
        with pytest.raises(GatewayError) as caught:
            resolve(name)
        assert (caught.value.status, caught.value.code, caught.value.param) == (404, "model_not_found", "model")


def test_default_max_tokens_applies_when_the_client_sends_none():
    params = {"messages": []}
    apply_model_limits(params, default_max_tokens=4096, max_output_tokens=64000)
    assert params["max_tokens"] == 4096


def test_max_tokens_above_the_model_limit_is_a_400_naming_the_field():
    with pytest.raises(GatewayError) as caught:
        apply_model_limits({"max_tokens": 70000}, default_max_tokens=4096, max_output_tokens=64000)
    assert (caught.value.status, caught.value.param) == (400, "max_tokens")


def test_thinking_budget_gets_room_on_top_of_the_default_answer_length():
    params = {"thinking": {"type": "enabled", "budget_tokens": 8192}}
    apply_model_limits(params, default_max_tokens=4096, max_output_tokens=64000)
    assert params["max_tokens"] == 4096 + 8192


def test_thinking_budget_shrinks_to_fit_an_explicit_max_tokens():
    params = {"max_tokens": 3000, "thinking": {"type": "enabled", "budget_tokens": 8192}}
    apply_model_limits(params, default_max_tokens=4096, max_output_tokens=64000)
    assert params["thinking"]["budget_tokens"] == 2999


def test_max_tokens_too_small_for_any_thinking_is_a_400():
    with pytest.raises(GatewayError) as caught:
        apply_model_limits({"max_tokens": 500, "thinking": {"type": "enabled", "budget_tokens": 1024}},
                           default_max_tokens=4096, max_output_tokens=64000)
    assert caught.value.param == "max_tokens"


def test_the_catalog_serves_through_a_database_outage_for_the_stale_grace(monkeypatch, settings):
    from django.db import OperationalError

    from gateway import selectors

    assert resolve("claude-haiku-4-5").name == "claude-haiku-4-5"

    async def unreachable():
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "_load_catalog_async", unreachable)
    settings.GATEWAY_CATALOG_CACHE_SECONDS, settings.GATEWAY_STALE_GRACE_SECONDS = 0, 3600
    assert resolve("claude-haiku-4-5").name == "claude-haiku-4-5"
    settings.GATEWAY_STALE_GRACE_SECONDS = 0
    with pytest.raises(OperationalError):  # the API renders it as a 503 database_unavailable
        resolve("claude-haiku-4-5")
