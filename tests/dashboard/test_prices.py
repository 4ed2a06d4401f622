"""What models cost, for customers: the Models page and the `gatehouse` field of /v1/models."""

from __future__ import annotations

import openai
import pytest
from django.test import Client
from django.urls import reverse

from gateway.models import CatalogModel, ModelAlias
from gateway.api.model_lists import model_list_payload
from gateway.selectors import catalog_load
from tests.support.dashboard import assert_roles
from tests.support.openapi import spec_available, validate

HAIKU = "claude-haiku-4-5"


@pytest.mark.django_db
def test_openai_model_list_carries_prices_limits_and_aliases_and_stays_a_valid_model_list():
    haiku = CatalogModel.objects.get(name=HAIKU)
    ModelAlias.objects.create(name="fast", model=haiku)
    payload = model_list_payload(catalog_load())
    by_id = {model["id"]: model for model in payload["data"]}
    details = by_id["fast"]["gatehouse"]
    assert details == by_id[HAIKU]["gatehouse"]
    assert details["model"] == HAIKU and "fast" in details["aliases"]
    assert (details["context_window"], details["max_output_tokens"]) == (200_000, haiku.max_output_tokens)
    assert details["pricing"] == {"currency": "USD", "input_per_mtok": "1.0", "output_per_mtok": "5.0",
                                  "cache_write_per_mtok": "1.25", "cache_read_per_mtok": "0.1",
                                  "web_search_per_search": "0.01", "effective_from": "2025-01-01T00:00:00Z"}
    if spec_available():
        validate("ListModelsResponse", payload)


def test_models_page_lists_every_enabled_model_with_its_prices_for_every_role(client_for, team):
    CatalogModel.objects.filter(name="claude-opus-4-6").update(enabled=False)
    assert_roles(client_for, reverse("models-prices"), {"member", "admin", "owner"})
    page = client_for("member").get(reverse("models-prices")).content.decode()
    assert "<code>claude-haiku-4-5</code>" in page and "claude-opus-4-6" not in page
    assert "$1.00" in page and "$5.00" in page and "$1.25" in page and "$0.10" in page  # haiku, per MTok
    assert "$0.01 per search" in page and "200000" in page


def test_the_public_prices_page_exists_only_when_published(db, settings):
    assert Client().get("/pricing/").status_code == 404
    settings.PUBLIC_PRICES = True
    page = Client().get("/pricing/")
    assert page.status_code == 200 and b"claude-sonnet-4-6" in page.content and b"$15.00" in page.content


@pytest.mark.e2e
def test_v1_models_from_the_gateway_carries_prices_through_the_openai_sdk(gateway, persona):
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)
    sonnet = client.models.retrieve("claude-sonnet-4-6")
    assert sonnet.gatehouse["pricing"]["output_per_mtok"] == "15.0"
    listed = {model.id: model.gatehouse for model in client.models.list()}
    assert listed["claude-sonnet-4-6"] == sonnet.gatehouse
