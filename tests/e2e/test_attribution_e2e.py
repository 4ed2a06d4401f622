"""Spend per end user and tag through the official SDKs: OpenAI `user=` / `safety_identifier`, Anthropic
`metadata={"user_id": ...}`, the `AH-Tags` header via `extra_headers`; a bad header is a 400 in each
protocol's shape; `/v1/usage?group_by=end_user|tag` reports them (JSON and CSV), with cache tokens."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from billing.services import usage_rollup
from tests.support.e2e import usage_row

pytestmark = pytest.mark.e2e

HAIKU = "claude-haiku-4-5"


def report(gateway: str, key: str, **params) -> httpx.Response:
    return httpx.get(f"{gateway}/v1/usage", headers={"Authorization": f"Bearer {key}"}, params=params)


def test_end_users_and_tags_from_every_sdk_are_on_the_row_and_in_the_usage_report(gateway, persona,
                                                                                    django_db_blocker):
    oai = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)
    ant = anthropic.Anthropic(base_url=f"{gateway}/anthropic", api_key=persona.key, max_retries=0)
    messages = [{"role": "user", "content": "[[fake:words=3]] hello"}]

    first = oai.chat.completions.with_raw_response.create(
        model=HAIKU, messages=messages, max_tokens=16, user="end-user-1",
        extra_headers={"AH-Tags": "team:search,env:prod"})
    second = oai.responses.with_raw_response.create(model=HAIKU, input="[[fake:words=3]] hi", max_output_tokens=16,
                                                     safety_identifier="end-user-2", store=False)
    third = ant.messages.with_raw_response.create(
        model=HAIKU, max_tokens=16, messages=messages, metadata={"user_id": "end-user-1"},
        extra_headers={"AH-Tags": "team:search"})
    rows = [usage_row(response.headers["x-request-id"], django_db_blocker) for response in (first, second, third)]
    assert [(row.end_user, row.tags) for row in rows] == [("end-user-1", "team:search,env:prod"),
                                                          ("end-user-2", ""), ("end-user-1", "team:search")]

    def figures(group_by: str, field: str) -> dict:
        data = report(gateway, persona.key, group_by=group_by).json()["data"]
        return {row[field]: (row["requests"], row["cost_nano"]) for row in data}

    cost = {row.request_id: row.cost_nano for row in rows}
    by_user = {"end-user-1": (2, cost[rows[0].request_id] + cost[rows[2].request_id]),
               "end-user-2": (1, cost[rows[1].request_id])}
    by_tag = {"team:search": (2, by_user["end-user-1"][1]), "env:prod": (1, cost[rows[0].request_id]),
              None: (1, cost[rows[1].request_id])}
    assert figures("end_user", "end_user") == by_user  # current before the rollup
    assert figures("tag", "tag") == by_tag
    with django_db_blocker.unblock():
        usage_rollup()
    assert figures("end_user", "end_user") == by_user  # and the same from the rollups
    assert figures("tag", "tag") == by_tag

    body = report(gateway, persona.key, group_by="end_user,model").json()
    assert body["group_by"] == ["model", "end_user"]
    assert all(row["model"] == HAIKU and "cache_hit_ratio" in row for row in body["data"])
    assert "cache_hit_ratio" in body and "total_cache_read_input_tokens" in body
    csv = report(gateway, persona.key, group_by="tag", format="csv").text.splitlines()
    assert csv[0] == ("date,tag,requests,errors,input_tokens,output_tokens,cache_creation_input_tokens,"
                      "cache_read_input_tokens,web_search_requests,cost_usd,cache_hit_ratio")
    assert len(csv) == 4
    by_key = report(gateway, persona.key, group_by="key").json()["data"]
    assert [row["requests"] for row in by_key] == [3] and by_key[0]["key_id"]

    bad = report(gateway, persona.key, group_by="end_user,tag")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"
    assert report(gateway, persona.key, group_by="user_id").status_code == 400


def test_a_bad_tags_header_is_a_400_in_the_protocols_own_shape(gateway, persona):
    oai = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as error:
        oai.chat.completions.create(model=HAIKU, max_tokens=8, messages=[{"role": "user", "content": "hi"}],
                                    extra_headers={"AH-Tags": "has space"})
    assert error.value.body["param"] == "AH-Tags" and "at most 16 tags" in error.value.body["message"]
    ant = anthropic.Anthropic(base_url=f"{gateway}/anthropic", api_key=persona.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as error:
        ant.messages.create(model=HAIKU, max_tokens=8, messages=[{"role": "user", "content": "hi"}],
                            extra_headers={"AH-Tags": ",".join(f"t{i}" for i in range(17))})
    assert error.value.body["type"] == "error" and error.value.body["error"]["type"] == "invalid_request_error"
    gemini = httpx.post(f"{gateway}/gemini/v1beta/models/{HAIKU}:generateContent", headers={"x-goog-api-key": persona.key},
                        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "labels": {"Team": "x"}})
    assert gemini.status_code == 400 and gemini.json()["error"]["status"] == "INVALID_ARGUMENT"
    with pytest.raises(openai.BadRequestError) as error:
        oai.chat.completions.create(model=HAIKU, max_tokens=8, messages=[{"role": "user", "content": "hi"}],
                                    user="x" * 300)
    assert error.value.body["param"] == "user"


def test_a_keys_per_end_user_rpm_refuses_one_end_user_and_serves_the_others(gateway, django_db_blocker):
    import uuid

    from tests.support.e2e import make_persona

    with django_db_blocker.unblock():
        persona = make_persona(f"eu-{uuid.uuid4().hex[:10]}", end_user_rpm_limit=2)
    oai = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)

    def ask(**who):
        return oai.chat.completions.create(model=HAIKU, max_tokens=8,
                                           messages=[{"role": "user", "content": "[[fake:words=2]] hi"}], **who)

    ask(user="heavy")
    ask(user="heavy")
    with pytest.raises(openai.RateLimitError) as error:
        ask(user="heavy")
    assert error.value.body["code"] == "rate_limit_exceeded" and "end user" in error.value.body["message"]
    assert int(error.value.response.headers["retry-after"]) >= 1
    ask(user="light")  # another end user of the same key
    ask()  # and requests that name none
    ant = anthropic.Anthropic(base_url=f"{gateway}/anthropic", api_key=persona.key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refused:
        ant.messages.create(model=HAIKU, max_tokens=8, messages=[{"role": "user", "content": "hi"}],
                            metadata={"user_id": "heavy"})
    assert refused.value.body["error"]["type"] == "rate_limit_error"
