"""Paying end to end: real gateway processes, the fake Stripe delivering signed webhooks to them, and a
browser paying on the fake's checkout page.

With REDIS_URL set, auto-recharge runs as in production: the gateways queue the task and a Celery worker
(threads, so several run at once) charges the card; that Redis is a server of this module's own, so no
other test session's worker takes our tasks. Without REDIS_URL the gateways run it eagerly, in-process.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.support.e2e import HAIKU, burst, make_persona, say, start_gateway, stop_process
from tests.support.env import ROOT, free_port

pytestmark = pytest.mark.e2e

WHSEC = "whsec_test_gatehouse_e2e"
STRIPE_KEY = "sk_test_gatehouse_e2e"
USD = 10**9


def _until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout} s")


@pytest.fixture(scope="module")
def redis_url():
    """Our own Redis when the suite runs with Redis, else None (the embedded mode)."""
    if not os.environ.get("REDIS_URL"):
        yield None
        return
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    _until(lambda: _pings(port), 10, "redis-server up")
    yield url
    stop_process(process)


def _pings(port: int) -> bool:
    import redis

    try:
        return redis.Redis(port=port).ping()
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def stripe_gateways(gateway_db_url, fake_upstream, fake_stripe, redis_url):
    """Two gateways on the test database paid through the fake Stripe, whose webhooks go to the first."""
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)  # the browser test needs the page's script
    # Sign-ups start with nothing, so the browser test's new tenant is exhausted until it pays.
    env = {"STRIPE_SECRET_KEY": STRIPE_KEY, "STRIPE_API_BASE": fake_stripe, "STRIPE_WEBHOOK_SECRET": WHSEC,
           "SIGNUP_CREDIT_USD": "0"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    processes = []
    try:
        urls = []
        for _ in range(2):
            url, process = start_gateway(gateway_db_url, fake_upstream, **env)
            urls.append(url)
            processes.append(process)
        if redis_url:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads", "--concurrency", "8",
                 "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "warning"],
                cwd=ROOT, env={**os.environ, "DATABASE_URL": gateway_db_url, **env})
            processes.append(worker)
        httpx.post(f"{fake_stripe}/_fake/webhook", json={"url": f"{urls[0]}/billing/stripe/webhook", "secret": WHSEC})
        httpx.post(f"{fake_stripe}/_fake/delivery", json={}).raise_for_status()
        httpx.post(f"{fake_stripe}/_fake/decline", json={"code": None}).raise_for_status()
        yield urls
    finally:
        httpx.post(f"{fake_stripe}/_fake/webhook", json={"url": ""})
        for process in processes:
            stop_process(process)


@pytest.fixture
def stripe_settings(settings, fake_stripe):
    """This process calls the same fake Stripe as the gateways (to start a checkout, to read its records)."""
    settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_WEBHOOK_SECRET = STRIPE_KEY, fake_stripe, WHSEC


def test_fifty_concurrent_requests_across_the_threshold_recharge_exactly_once(
        stripe_gateways, stripe_settings, fake_stripe, django_db_blocker):
    from billing.models import BillingProfile, Payment
    from billing.payments import auto_recharge_configure, checkout_start, stripe_client
    from billing.selectors import tenant_balance_nano

    with django_db_blocker.unblock():
        persona = make_persona(f"ar-{uuid.uuid4().hex[:10]}", credit_nano=0)
        url = checkout_start(tenant=persona.tenant, amount_nano=20 * USD, actor=None, success_url="http://t/ok",
                             cancel_url="http://t/no")
    # Stripe delivers each event twice, a little late: the top-up is still credited once.
    httpx.post(f"{fake_stripe}/_fake/delivery", json={"duplicates": 1, "delay_ms": 20}).raise_for_status()
    httpx.post(f"{fake_stripe}/_fake/checkout/{url.rsplit('/', 1)[1]}/pay").raise_for_status()
    httpx.get(f"{fake_stripe}/_fake/wait_deliveries").raise_for_status()
    httpx.post(f"{fake_stripe}/_fake/delivery", json={}).raise_for_status()
    with django_db_blocker.unblock():
        assert tenant_balance_nano(persona.tenant.pk) == 20 * USD
        # Any usage at all takes the balance below $20; one $20 recharge lifts it back above.
        auto_recharge_configure(tenant=persona.tenant, enabled=True, threshold_nano=20 * USD, amount_nano=20 * USD,
                                max_per_month=10, actor=None)
        customer = BillingProfile.objects.get(tenant=persona.tenant).stripe_customer_id

    body = {"model": HAIKU, "max_tokens": 16}
    responses = asyncio.run(burst([(stripe_gateways[i % 2], persona.key, {**body, "messages": say(5, ",delay_ms=50")})
                                   for i in range(50)]))
    assert {r.status_code for r in responses} == {200}, responses[0].text

    def recharged():
        with django_db_blocker.unblock():
            return list(Payment.objects.filter(tenant=persona.tenant, kind="auto_recharge"))

    payments = _until(recharged, what="an auto-recharge")
    time.sleep(2)  # the checks still in flight in both gateways (each at most CHECK_DELAY late) find a raised balance
    payments = recharged()
    assert [(p.status, p.amount_cents) for p in payments] == [("succeeded", 2000)]
    intents = stripe_client().v1.payment_intents.list(params={"customer": customer, "limit": 100}).data
    assert len(intents) == 2  # the Checkout top-up and exactly one off-session recharge
    with django_db_blocker.unblock():
        assert tenant_balance_nano(persona.tenant.pk) == 40 * USD  # usage is still unbilled (the rollup's job)


# --- In the browser -------------------------------------------------------------------------------------------

browser_mod = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")


@pytest.mark.browser
def test_an_exhausted_tenant_tops_up_20_dollars_in_the_browser_and_its_key_works_again(
        stripe_gateways, django_db_blocker):
    from tests.support.browser import (
        CHROMIUM,
        CHROMIUM_ARGS,
        DESKTOP,
        PHONE,
        TIMEOUT_MS,
        check_phone_page,
        create_key,
        shot,
        sign_up,
    )

    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium")
    expect, base = browser_mod.expect, stripe_gateways[0]
    with browser_mod.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=base, viewport=DESKTOP)
        context.set_default_timeout(10_000)
        page = context.new_page()
        sign_up(page, django_db_blocker, credit_usd=0)
        secret = create_key(page, "paying")

        def call() -> httpx.Response:
            return httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"}, timeout=30,
                              json={"model": HAIKU, "max_tokens": 16, "messages": say(3)})

        refused = call()
        assert refused.status_code == 429 and "balance" in refused.json()["error"]["message"]

        # The Billing page stays open in one tab; the payment happens in another.
        page.goto("/dashboard/billing/")
        balance = page.get_by_test_id("balance")
        expect(balance).to_have_text("$0.00")
        page.evaluate("window.__sameDocument = true")
        payer = context.new_page()
        payer.goto("/dashboard/billing/")
        payer.get_by_label("Amount (USD)").fill("20")
        payer.get_by_role("button", name="Pay with Stripe").click()
        expect(payer).to_have_url(re.compile(r"/checkout/cs_test_"))
        expect(payer.get_by_test_id("amount")).to_have_text("$20.00")
        shot(payer, "stripe-checkout")
        payer.get_by_role("button", name="Pay $20.00").click()
        expect(payer).to_have_url(re.compile(r"/dashboard/billing/$"))
        expect(payer.get_by_role("status")).to_contain_text("your payment went through")

        expect(balance).to_have_text("$20.00", timeout=TIMEOUT_MS * 2)  # the webhook, without a reload
        assert page.evaluate("window.__sameDocument") is True, "the billing page was reloaded"
        expect(page.get_by_test_id("payments")).to_contain_text("succeeded")
        expect(page.get_by_test_id("ledger")).to_contain_text("Stripe payment pi_")
        shot(page, "billing")
        problems: list[str] = []
        phone = browser.new_context(base_url=base, viewport=PHONE, storage_state=context.storage_state()).new_page()
        check_phone_page(phone, "/dashboard/billing/", "billing", problems)
        assert not problems, "\n".join(problems)
        browser.close()

    assert _until(lambda: call().status_code == 200, 10, "the key working again")
