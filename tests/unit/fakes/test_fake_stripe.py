"""The fake Stripe speaks Stripe's protocol: the real `stripe` library drives it, and its webhooks verify
with `stripe.Webhook.construct_event`. In-process (aiohttp on the test's loop), no Django."""

from __future__ import annotations

import asyncio
import time

import pytest
import stripe
from aiohttp import web

from fakes import stripe as fake_stripe
from fakes.stripe import parse_form, sign

SECRET = "whsec_fake_test"


def test_form_encoding_nests_dicts_and_lists_as_the_library_sends_them():
    assert parse_form([("line_items[0][price_data][unit_amount]", "2000"), ("line_items[0][quantity]", "1"),
                       ("metadata[a]", "b"), ("expand[]", "x"), ("expand[]", "y"), ("mode", "payment")]) == {
        "line_items": [{"price_data": {"unit_amount": "2000"}, "quantity": "1"}], "metadata": {"a": "b"},
        "expand": ["x", "y"], "mode": "payment"}


def test_signatures_verify_with_the_stripe_library_and_stale_ones_do_not():
    body = b'{"id": "evt_1", "object": "event", "type": "x", "data": {"object": {}}}'
    assert stripe.Webhook.construct_event(body, sign(body, SECRET), SECRET).id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, sign(body, SECRET, int(time.time()) - 400), SECRET, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, sign(body, "whsec_other"), SECRET)


async def _serve_receiver(received: list):
    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        event = stripe.Webhook.construct_event(body, request.headers["Stripe-Signature"], SECRET)
        received.append((event.id, event.type))
        return web.json_response({"received": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def test_the_library_pays_a_checkout_and_gets_signed_duplicated_reordered_webhooks():
    async def scenario():
        received: list = []
        receiver, hook_port = await _serve_receiver(received)
        runner, port = await fake_stripe.start(webhook_url=f"http://127.0.0.1:{hook_port}/hook", webhook_secret=SECRET)
        fake = runner.app[fake_stripe.FAKE_KEY]
        base = f"http://127.0.0.1:{port}"
        fake.duplicates, fake.reverse = 1, True
        try:
            client = stripe.StripeClient("sk_test_x", base_addresses={"api": base})

            def flow():
                customer = client.v1.customers.create(params={"name": "Acme"})
                session = client.v1.checkout.sessions.create(params={
                    "mode": "payment", "customer": customer.id, "success_url": "http://shop/ok?s={CHECKOUT_SESSION_ID}",
                    "line_items": [{"quantity": 2, "price_data": {"currency": "usd", "unit_amount": 1000,
                                                                  "product_data": {"name": "Credit"}}}],
                    "payment_intent_data": {"setup_future_usage": "off_session"}})
                assert session.url == f"{base}/checkout/{session.id}" and session.amount_total == 2000
                return customer, session

            customer, session = await asyncio.to_thread(flow)
            import aiohttp

            async with aiohttp.ClientSession() as http:
                page = await (await http.get(session.url)).text()
                assert "Pay $20.00" in page
                paid = await http.post(f"{base}/checkout/{session.id}/pay", allow_redirects=False)
                assert paid.status == 303 and paid.headers["Location"] == f"http://shop/ok?s={session.id}"
            while fake._pending:
                await asyncio.sleep(0.01)
            types = [kind for _, kind in received]
            # Each event twice; the action's three events newest first.
            assert types == ["checkout.session.completed"] * 2 + ["payment_intent.succeeded"] * 2 + \
                ["charge.succeeded"] * 2

            def off_session():
                done = client.v1.checkout.sessions.retrieve(session.id)
                assert (done.status, done.payment_status) == ("complete", "paid")
                method = client.v1.payment_intents.retrieve(done.payment_intent).payment_method
                assert client.v1.customers.payment_methods.list(customer.id).data[0].id == method
                params = {"amount": 500, "currency": "usd", "customer": customer.id, "payment_method": method,
                          "off_session": True, "confirm": True}
                first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k1"})
                again = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k1"})
                assert first.id == again.id and first.status == "succeeded"
                fake.decline = {"code": "card_declined", "decline_code": "insufficient_funds"}
                with pytest.raises(stripe.CardError) as declined:
                    client.v1.payment_intents.create(params=params)
                assert declined.value.http_status == 402 and declined.value.error.decline_code == "insufficient_funds"
                assert declined.value.error.payment_intent.status == "requires_payment_method"
                with pytest.raises(stripe.InvalidRequestError) as missing:
                    client.v1.refunds.retrieve("re_nope")
                assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
                with pytest.raises(stripe.InvalidRequestError) as small:
                    client.v1.payment_intents.create(params={**params, "amount": 49})
                assert small.value.code == "amount_too_small"
                refund = client.v1.refunds.create(params={"payment_intent": first.id, "amount": 200})
                assert (refund.amount, refund.status) == (200, "succeeded")
                with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded"):
                    client.v1.refunds.create(params={"payment_intent": first.id, "amount": 301})
                page = client.v1.payment_intents.list(params={"limit": 1})
                assert page.has_more and len(list(page.auto_paging_iter())) == 3  # top-up, recharge, declined
                with pytest.raises(stripe.AuthenticationError):
                    stripe.StripeClient("pk_test_x", base_addresses={"api": base}).v1.customers.retrieve(customer.id)

            await asyncio.to_thread(off_session)
        finally:
            await runner.cleanup()
            await receiver.cleanup()

    asyncio.run(scenario())
