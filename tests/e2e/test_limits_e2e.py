"""Keys, limits, budgets and billing end to end: clients -> gateway process(es) -> fake upstream.

These tests run outside a test transaction, so the gateway processes see their data; every test
makes its own tenant.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import httpx
import openai
import pytest
from django.db.models import Sum
from django.utils import timezone

from accounts.services import api_key_issue, api_key_revoke, api_key_rotate
from billing.models import LedgerEntry, UsageEvent
from billing.selectors import tenant_balance_nano
from billing.services import credit_grant, usage_reconcile, usage_rollup
from tests.support.e2e import (
    PERSONA_CREDIT_NANO,
    burst,
    chat,
    cut_stream,
    make_persona,
    say,
    start_gateway,
    stop_process,
    usage_row,
)
from tests.support.env import free_port, requires_redis

pytestmark = pytest.mark.e2e

HAIKU = "claude-haiku-4-5"


def new_persona(django_db_blocker, **key_settings):
    with django_db_blocker.unblock():
        return make_persona(f"t-{uuid.uuid4().hex[:10]}", **key_settings)


def test_fifty_concurrent_requests_spend_at_most_the_budget_plus_one_reservation(gateway, django_db_blocker):
    probe = new_persona(django_db_blocker)
    body = {"model": HAIKU, "max_tokens": 16, "messages": say(5, ",delay_ms=300")}
    cost = usage_row(chat(gateway, probe.key, **body).headers["x-request-id"], django_db_blocker).cost_nano
    assert cost > 0
    budget = 10 * cost
    with django_db_blocker.unblock():
        key = api_key_issue(tenant=probe.tenant, name="budgeted", budget_nano=budget, budget_period="day")

    responses = asyncio.run(burst([(gateway, key.plaintext, {**body, "messages": say(5, ",delay_ms=300")})
                                   for _ in range(50)]))
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert admitted and refused
    assert {r.status_code for r in refused} == {429}
    assert {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    assert refused[0].headers["x-should-retry"] == "false"

    ids = {r.headers["x-request-id"] for r in admitted}
    for request_id in ids:
        usage_row(request_id, django_db_blocker)
    with django_db_blocker.unblock():
        rows = list(UsageEvent.objects.filter(api_key=key.api_key))
    assert sorted(row.request_id for row in rows) == sorted(ids)  # every admitted request billed once
    spent = sum(row.cost_nano for row in rows)
    # One reservation: the input estimate (at most the body's length / 4) plus max_tokens, at haiku's prices.
    reservation = (len(str(body)) // 4 + 1) * 1000 + 16 * 5000
    assert spent <= budget + reservation


@requires_redis
def test_two_gateway_processes_share_one_rpm_limit(gateway, second_gateway, django_db_blocker):
    persona = new_persona(django_db_blocker, rpm_limit=6)
    requests = [(base, persona.key, {"model": HAIKU, "max_tokens": 16, "messages": say(3)})
                for base in (gateway, second_gateway) for _ in range(6)]
    responses = asyncio.run(burst(requests))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 6 + [429] * 6
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    ok = next(r for r in responses if r.status_code == 200)
    assert ok.headers["x-ratelimit-limit-requests"] == "6"
    assert int(ok.headers["x-ratelimit-remaining-requests"]) in range(6)
    assert ok.headers["x-ratelimit-reset-requests"].endswith("s")


def test_a_revoked_key_stops_on_both_processes_within_one_second(gateway, second_gateway, django_db_blocker):
    persona = new_persona(django_db_blocker)
    clients = [openai.OpenAI(base_url=f"{base}/v1", api_key=persona.key, max_retries=0)
               for base in (gateway, second_gateway)]
    for client in clients:
        client.models.list()
    with django_db_blocker.unblock():
        api_key_revoke(api_key=persona.api_key)
    revoked_at = time.monotonic()
    for client in clients:
        while True:
            try:
                client.models.list()
            except openai.AuthenticationError:
                break
            time.sleep(0.05)
        assert time.monotonic() - revoked_at <= 1.2


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(gateway, django_db_blocker):
    persona = new_persona(django_db_blocker)
    with django_db_blocker.unblock():
        graced = api_key_rotate(api_key=persona.api_key, grace=timedelta(seconds=2))
    time.sleep(1.1)  # past the key cache
    old = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)
    new = openai.OpenAI(base_url=f"{gateway}/v1", api_key=graced.plaintext, max_retries=0)
    old.models.list()
    new.models.list()
    time.sleep(1.5)
    with pytest.raises(openai.AuthenticationError):
        old.models.list()
    new.models.list()

    with django_db_blocker.unblock():
        again = api_key_rotate(api_key=persona.api_key)  # no grace: the previous secret stops at once
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError):
        new.models.list()
    openai.OpenAI(base_url=f"{gateway}/v1", api_key=again.plaintext, max_retries=0).models.list()


def test_an_expired_key_is_refused(gateway, django_db_blocker):
    persona = new_persona(django_db_blocker, expires_at=timezone.now() + timedelta(seconds=1))
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)
    client.models.list()
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.models.list()
    assert raised.value.code == "expired_api_key"


def test_the_allow_list_admits_ids_and_aliases_and_refuses_other_models_with_403(gateway, django_db_blocker):
    persona = new_persona(django_db_blocker, allowed_models=["gpt-4o-mini"])  # an alias of haiku
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)
    for model in ("gpt-4o-mini", HAIKU):
        client.chat.completions.create(model=model, max_tokens=16, messages=say(2))
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=say(2))
    assert raised.value.code == "model_not_allowed"
    assert {m.id for m in client.models.list()} == {HAIKU, "gpt-3.5-turbo", "gpt-4o-mini"}


def test_an_empty_balance_is_refused_until_credit_is_granted(gateway, django_db_blocker):
    with django_db_blocker.unblock():
        persona = make_persona(f"t-{uuid.uuid4().hex[:10]}", credit_nano=0)
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=HAIKU, max_tokens=16, messages=say(2))
    assert raised.value.code == "insufficient_quota"
    with django_db_blocker.unblock():
        credit_grant(tenant=persona.tenant, amount_nano=10**9, reason="welcome credit")
    time.sleep(1.1)  # the per-process counters re-read the balance within a second; Redis's move at once
    client.chat.completions.create(model=HAIKU, max_tokens=16, messages=say(2))


def test_a_request_larger_than_the_tpm_limit_is_refused_for_good(gateway, django_db_blocker):
    persona = new_persona(django_db_blocker, tpm_limit=100)
    response = chat(gateway, persona.key, model=HAIKU, max_tokens=500, messages=say(2))
    assert response.status_code == 429 and "Lower max_tokens" in response.json()["error"]["message"]
    assert response.headers["x-should-retry"] == "false"
    ok = chat(gateway, persona.key, model=HAIKU, max_tokens=16, messages=say(2))
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-tokens"] == "100"


def test_the_ledger_equals_billed_usage_after_a_mixed_run(gateway, django_db_blocker):
    persona = new_persona(django_db_blocker)
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=persona.key, max_retries=0)
    ids = [client.chat.completions.with_raw_response.create(model=HAIKU, max_tokens=64, messages=say(20))
           .headers["x-request-id"]]
    stream = client.chat.completions.with_raw_response.create(model="gpt-4o", max_tokens=64, stream=True,
                                                              messages=say(20, ",cache_read=30"))
    ids.append(stream.headers["x-request-id"])
    list(stream.parse())
    ids.append(asyncio.run(cut_stream(gateway, persona.key)))
    failed = chat(gateway, persona.key, model=HAIKU, messages=say(2, ",error=529"))
    assert failed.status_code == 503
    ids.append(failed.headers["x-request-id"])
    broken = chat(gateway, persona.key, model=HAIKU, stream=True, messages=say(30, ",midstream_error"))
    ids.append(broken.headers["x-request-id"])
    rows = [usage_row(request_id, django_db_blocker) for request_id in ids]
    assert [row.status for row in rows] == ["ok", "ok", "partial", "error", "error"]

    with django_db_blocker.unblock():
        usage_rollup()
        usage_rollup()  # a second run finds nothing left to count
        billed = UsageEvent.objects.filter(tenant=persona.tenant).aggregate(total=Sum("cost_nano"))["total"]
        debits = LedgerEntry.objects.filter(tenant=persona.tenant, kind="debit").aggregate(
            total=Sum("amount_nano"))["total"]
        assert billed > 0 and debits == -billed
        assert tenant_balance_nano(persona.tenant.pk) == PERSONA_CREDIT_NANO - billed
        assert not UsageEvent.objects.filter(tenant=persona.tenant, ledger_entry__isnull=True, cost_nano__gt=0).exists()
        assert usage_reconcile() == []


def test_usage_api_reports_the_callers_tenant_only(gateway, django_db_blocker):
    alice, bob = new_persona(django_db_blocker), new_persona(django_db_blocker)
    for persona, count in ((alice, 2), (bob, 1)):
        for _ in range(count):
            usage_row(chat(gateway, persona.key, model=HAIKU, max_tokens=16, messages=say(3))
                      .headers["x-request-id"], django_db_blocker)
    reports = {}
    for name, persona in (("alice", alice), ("bob", bob)):
        response = httpx.get(f"{gateway}/v1/usage", headers={"Authorization": f"Bearer {persona.key}"},
                             params={"tenant": "anything-else"})
        assert response.status_code == 200
        reports[name] = response.json()
    assert [row["requests"] for row in reports["alice"]["data"]] == [2]
    assert [row["requests"] for row in reports["bob"]["data"]] == [1]
    with django_db_blocker.unblock():
        alice_cost = UsageEvent.objects.filter(tenant=alice.tenant).aggregate(total=Sum("cost_nano"))["total"]
    assert reports["alice"]["total_cost_nano"] == alice_cost
    row = reports["alice"]["data"][0]
    assert row["model"] == HAIKU and row["date"] == timezone.now().date().isoformat()
    assert Decimal(row["cost_usd"]) * 10**9 == alice_cost

    csv = httpx.get(f"{gateway}/v1/usage?format=csv", headers={"Authorization": f"Bearer {alice.key}"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("date,model,requests")
    bad = httpx.get(f"{gateway}/v1/usage?start=2026-13-01", headers={"Authorization": f"Bearer {alice.key}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "start"


@requires_redis
def test_the_gateway_keeps_serving_with_per_process_limits_when_redis_is_unreachable(gateway_db_url, fake_upstream,
                                                                                     django_db_blocker):
    persona = new_persona(django_db_blocker, rpm_limit=2, budget_nano=10**9)
    url, process = start_gateway(gateway_db_url, fake_upstream, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        statuses = [chat(url, persona.key, model=HAIKU, max_tokens=16, messages=say(2)).status_code
                    for _ in range(3)]
    finally:
        stop_process(process)
    assert statuses == [200, 200, 429]
