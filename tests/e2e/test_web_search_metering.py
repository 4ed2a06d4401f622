"""Anthropic's web search tool is billed per search ($10 per 1,000): counted on the usage row, priced on the
price version, added to the request's cost before its one rounding, rolled up and debited."""

from __future__ import annotations

import openai
import pytest

from billing.models import ModelPrice, UsageRollup
from common.money import usage_cost_nano
from billing.services import usage_rollup
from gateway.core import Usage
from tests.support.e2e import usage_row

HAIKU = "claude-haiku-4-5"


def test_usage_takes_the_cumulative_web_search_count_from_server_tool_use():
    usage = Usage()
    usage.update({"input_tokens": 10, "output_tokens": 1})
    usage.update({"output_tokens": 7, "server_tool_use": {"web_search_requests": 2}})
    usage.update({"output_tokens": 9, "server_tool_use": {"web_search_requests": 2}})
    assert (usage.output_tokens, usage.web_search_requests) == (9, 2)
    usage.update({"server_tool_use": None})  # a null server_tool_use leaves the count as it was
    assert usage.web_search_requests == 2


def test_searches_join_the_token_cost_before_its_single_rounding():
    # An input price of 0.4 nano-USD per token: one token alone rounds to nothing; with searches it is part
    # of one total, rounded once.
    tokens_only = usage_cost_nano(input_tokens=1, output_tokens=0, cache_write_tokens=0, cache_read_tokens=0,
                                  input_price=400_000, output_price=0, cache_write_price=0, cache_read_price=0)
    with_search = usage_cost_nano(input_tokens=3, output_tokens=0, cache_write_tokens=0, cache_read_tokens=0,
                                  input_price=400_000, output_price=0, cache_write_price=0, cache_read_price=0,
                                  web_searches=2, web_search_price=10_000_000)
    assert tokens_only == 0  # 0.4 nano
    assert with_search == 20_000_001  # 20_000_000 + 1.2 nano, rounded once


@pytest.mark.django_db
def test_claude_prices_carry_the_list_price_per_search():
    prices = ModelPrice.objects.filter(model__name__startswith="claude-")
    assert prices.exists() and set(prices.values_list("web_search_nano", flat=True)) == {10_000_000}


@pytest.mark.e2e
@pytest.mark.parametrize("stream", [False, True])
def test_a_web_search_through_the_gateway_is_metered_priced_and_rolled_up(gateway, persona, django_db_blocker,
                                                                          stream):
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)
    request = {"model": HAIKU, "tools": [{"type": "web_search"}], "input": "[[fake:web_search]] paris weather"}
    if stream:
        with client.responses.with_streaming_response.create(stream=True, **request) as raw:
            request_id = raw.headers["x-request-id"]
            raw.read()
    else:
        raw = client.responses.with_raw_response.create(**request)
        request_id = raw.headers["x-request-id"]
    row = usage_row(request_id, django_db_blocker)
    assert row.web_search_requests == 1
    with django_db_blocker.unblock():
        price = row.price
        tokens_cost = usage_cost_nano(
            input_tokens=row.input_tokens, output_tokens=row.output_tokens, cache_write_tokens=0,
            cache_read_tokens=0, input_price=price.input_nano_per_mtok, output_price=price.output_nano_per_mtok,
            cache_write_price=0, cache_read_price=0)
        assert price.web_search_nano == 10_000_000
        assert row.cost_nano == usage_cost_nano(
            input_tokens=row.input_tokens, output_tokens=row.output_tokens, cache_write_tokens=0,
            cache_read_tokens=0, input_price=price.input_nano_per_mtok, output_price=price.output_nano_per_mtok,
            cache_write_price=0, cache_read_price=0, web_searches=1, web_search_price=10_000_000)
        assert row.cost_nano > tokens_cost + 9_999_999
        usage_rollup()
        rollup = UsageRollup.objects.get(api_key=persona.api_key, model=HAIKU)
        assert rollup.web_search_requests == 1 and rollup.cost_nano == row.cost_nano
        row.refresh_from_db()
        assert row.ledger_entry.amount_nano == -row.cost_nano
