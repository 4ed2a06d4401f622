"""Paying: the Billing page, Stripe's webhook into the ledger, auto-recharge and reconciliation.

Stripe is the fake (fakes/stripe.py) as a process, driven through the real `stripe` library.
Its events are read from its `/_fake/events` and posted to our webhook signed with Stripe's scheme, so
each test decides exactly which deliveries arrive, how often and in which order. The concurrency tests
commit (`db_access`, each in a tenant of its own) instead of flushing the database afterwards, which
would take the catalog the migrations seeded from every later test.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import orjson
import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEntry
from accounts.services import tenant_create
from billing.models import BillingProfile, LedgerEntry, Payment, StripeEvent
from billing.payments import (
    auto_recharge_configure,
    auto_recharge_failures,
    auto_recharge_run,
    checkout_start,
    payments_reconcile,
    stripe_client,
)
from billing.selectors import tenant_balance_nano
from billing.services import credit_grant, ledger_adjust
from fakes.stripe import sign
from tests.support.dashboard import assert_roles
from tests.support.env import requires_postgres

WHSEC = "whsec_test_gatehouse"
USD = 10**9
WEBHOOK = "/billing/stripe/webhook"


@pytest.fixture
def stripe_on(settings, fake_stripe):
    settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_WEBHOOK_SECRET = \
        "sk_test_gatehouse", fake_stripe, WHSEC
    # Nothing is delivered by itself: these tests post the fake's events themselves.
    httpx.post(f"{fake_stripe}/_fake/webhook", json={"url": "", "secret": WHSEC}).raise_for_status()
    httpx.post(f"{fake_stripe}/_fake/delivery", json={}).raise_for_status()
    httpx.post(f"{fake_stripe}/_fake/decline", json={"code": None}).raise_for_status()
    return fake_stripe


def _tenant(credit_nano: int = 0):
    tenant = tenant_create(slug=f"pay-{uuid.uuid4().hex[:10]}")
    if credit_nano:
        credit_grant(tenant=tenant, amount_nano=credit_nano, reason="test")
    return tenant


def _events(fake: str, object_ids: set[str], *, kind: str | None = None) -> list[dict]:
    """The fake's events about these objects (a session, its PaymentIntent, a charge), oldest first."""
    httpx.get(f"{fake}/_fake/wait_deliveries").raise_for_status()
    events = httpx.get(f"{fake}/_fake/events").json()
    return [e for e in events if (e["data"]["object"]["id"] in object_ids
                                  or e["data"]["object"].get("payment_intent") in object_ids)
            and (kind is None or e["type"] == kind)]


def post_event(event: dict, *, secret: str = WHSEC, timestamp: int | None = None, client: Client | None = None):
    body = orjson.dumps(event)
    return (client or Client()).post(WEBHOOK, body, content_type="application/json",
                                      headers={"Stripe-Signature": sign(body, secret, timestamp)})


def _paid_checkout(fake: str, tenant, usd: int = 20) -> tuple[Payment, list[dict]]:
    """A top-up paid on the fake's checkout; returns its Payment and the events Stripe sent about it."""
    url = checkout_start(tenant=tenant, amount_nano=usd * USD, actor=None, success_url="http://t/ok",
                         cancel_url="http://t/no")
    session_id = url.rsplit("/", 1)[1]
    session = httpx.post(f"{fake}/_fake/checkout/{session_id}/pay").json()
    payment = Payment.objects.get(stripe_checkout_session_id=session_id)
    return payment, _events(fake, {session_id, session["payment_intent"]})


def _credits(tenant) -> list[int]:
    return list(LedgerEntry.objects.filter(tenant=tenant, kind="credit").values_list("amount_nano", flat=True))


# --- Signatures ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_rejects_a_wrong_secret_a_stale_signature_and_none(stripe_on):
    tenant = _tenant()
    payment, events = _paid_checkout(stripe_on, tenant)
    completed = next(e for e in events if e["type"] == "checkout.session.completed")
    assert post_event(completed, secret="whsec_wrong").status_code == 400
    assert post_event(completed, timestamp=int(time.time()) - 301).status_code == 400  # tolerance: 300 s
    assert Client().post(WEBHOOK, orjson.dumps(completed), content_type="application/json").status_code == 400
    tampered = orjson.dumps(completed)
    signature = sign(tampered, WHSEC)
    tampered = tampered.replace(b'"amount_total":2000', b'"amount_total":9000')
    assert Client().post(WEBHOOK, tampered, content_type="application/json",
                         headers={"Stripe-Signature": signature}).status_code == 400
    assert _credits(tenant) == [] and not StripeEvent.objects.exists()
    assert post_event(completed).status_code == 200
    assert _credits(tenant) == [20 * USD]


@pytest.mark.django_db
def test_webhook_is_404_without_a_webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    assert Client().post(WEBHOOK, b"{}", content_type="application/json").status_code == 404


# --- Idempotency ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_paid_checkout_is_credited_exactly_once_in_nano_usd_and_audited(stripe_on):
    tenant = _tenant()
    payment, events = _paid_checkout(stripe_on, tenant, usd=20)
    assert [e["type"] for e in events] == ["charge.succeeded", "payment_intent.succeeded", "checkout.session.completed"]
    for event in events + events:  # every event delivered twice
        assert post_event(event).status_code == 200
    assert _credits(tenant) == [20 * USD]  # 2000 cents = 20_000_000_000 nano-USD
    payment.refresh_from_db()
    assert payment.status == "succeeded" and payment.ledger_entry.amount_nano == 20 * USD
    assert payment.stripe_payment_intent_id.startswith("pi_")
    assert BillingProfile.objects.get(tenant=tenant).payment_method_id.startswith("pm_")  # saved off-session
    audit = AuditEntry.objects.get(tenant=tenant, action="ledger.credit")
    assert audit.via == "stripe" and audit.details["amount_nano"] == 20 * USD
    assert StripeEvent.objects.filter(event_id__in=[e["id"] for e in events]).count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["session_first", "intent_first"])
def test_out_of_order_events_of_one_payment_credit_it_once(stripe_on, order):
    tenant = _tenant()
    _, events = _paid_checkout(stripe_on, tenant, usd=7)
    by_type = {e["type"]: e for e in events}
    first, second = ("checkout.session.completed", "payment_intent.succeeded")[:: 1 if order == "session_first" else -1]
    assert post_event(by_type[first]).json() == {"received": True, "duplicate": False}
    assert post_event(by_type[second]).json() == {"received": True, "duplicate": False}
    assert post_event(by_type[first]).json() == {"received": True, "duplicate": True}  # a replay
    assert _credits(tenant) == [7 * USD]


@requires_postgres
def test_concurrent_deliveries_of_the_same_events_credit_once(stripe_on, db_access):
    tenant = _tenant()
    _, events = _paid_checkout(stripe_on, tenant, usd=9)
    statuses, barrier = [], threading.Barrier(12)

    def deliver(event):
        from django.db import connections

        barrier.wait()
        try:
            statuses.append(post_event(event).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(events[i % 3],)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 12
    assert _credits(tenant) == [9 * USD]


# --- Refunds and disputes --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_refunds_and_disputes_take_money_back_once_whatever_the_order(stripe_on):
    tenant = _tenant()
    payment, events = _paid_checkout(stripe_on, tenant, usd=20)
    for event in events:
        post_event(event)
    payment.refresh_from_db()
    intent = payment.stripe_payment_intent_id
    client = stripe_client()
    client.v1.refunds.create(params={"payment_intent": intent, "amount": 500})
    client.v1.refunds.create(params={"payment_intent": intent, "amount": 300})
    first, second = _events(stripe_on, {intent}, kind="charge.refunded")
    # The later refund (running total $8) arrives first, then the earlier ($5), then both again.
    for event in (second, first, second, first):
        assert post_event(event).status_code == 200
    assert tenant_balance_nano(tenant.pk) == 12 * USD
    charge = events[0]["data"]["object"]["id"]
    httpx.post(f"{stripe_on}/_fake/charges/{charge}/dispute", json={"amount": 1200}).raise_for_status()
    (dispute,) = _events(stripe_on, {intent}, kind="charge.dispute.created")
    post_event(dispute)
    post_event(dispute)
    assert tenant_balance_nano(tenant.pk) == 0
    payment.refresh_from_db()
    assert (payment.refunded_cents, payment.disputed_cents) == (800, 1200)
    reasons = list(LedgerEntry.objects.filter(tenant=tenant, kind="adjustment").order_by("seq")
                   .values_list("amount_nano", "reason"))
    assert reasons == [(-8 * USD, f"Stripe refund of {intent}"), (-12 * USD, f"Stripe dispute of {intent}")]
    assert AuditEntry.objects.filter(tenant=tenant, action="ledger.adjust", via="stripe").count() == 2


@pytest.mark.django_db
def test_an_expired_checkout_marks_its_payment_failed_and_credits_nothing(stripe_on):
    tenant = _tenant()
    url = checkout_start(tenant=tenant, amount_nano=10 * USD, actor=None, success_url="http://t/ok",
                         cancel_url="http://t/no")
    session = stripe_client().v1.checkout.sessions.retrieve(url.rsplit("/", 1)[1])
    expired = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "checkout.session.expired",
               "data": {"object": {**session.to_dict(), "status": "expired"}}}
    assert post_event(expired).status_code == 200
    payment = Payment.objects.get(stripe_checkout_session_id=session.id)
    assert (payment.status, payment.failure_code) == ("failed", "expired")
    assert _credits(tenant) == []


@pytest.mark.django_db
def test_an_event_for_a_payment_that_is_not_ours_is_recorded_and_ignored(stripe_on):
    """Another product on the same Stripe account: its payments never credit a tenant."""
    session = stripe_client().v1.checkout.sessions.create(params={
        "mode": "payment", "success_url": "http://elsewhere/ok",
        "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 500,
                                                      "product_data": {"name": "Something else"}}}]})
    paid = httpx.post(f"{stripe_on}/_fake/checkout/{session.id}/pay").json()
    events = _events(stripe_on, {session.id, paid["payment_intent"]})
    for event in events:
        assert post_event(event).status_code == 200
    assert StripeEvent.objects.filter(event_id__in=[e["id"] for e in events], payment__isnull=True).count() == 3
    assert not LedgerEntry.objects.filter(reason__contains=paid["payment_intent"]).exists()


# --- The Billing page ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_billing_page_is_for_owners_and_admins(client_for):
    assert_roles(client_for, reverse("billing"), {"owner", "admin"})
    assert_roles(client_for, reverse("billing-topup"), {"owner", "admin"}, method="post", data={"amount": "1"})


@pytest.mark.django_db
def test_without_a_stripe_key_the_page_says_top_ups_are_off_and_shows_the_rest(client_for, team, settings):
    settings.STRIPE_SECRET_KEY = ""
    credit_grant(tenant=team.tenant_a, amount_nano=3 * USD, reason="operator grant")
    page = client_for("owner").get(reverse("billing"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Top-ups are not configured" in text and "$3.00" in text and "operator grant" in text
    assert client_for("owner").post(reverse("billing-topup"), {"amount": "20"}).status_code == 400


@pytest.mark.django_db
def test_a_top_up_within_the_limits_redirects_to_stripe_checkout(client_for, team, stripe_on, settings):
    settings.TOPUP_MIN_NANO, settings.TOPUP_MAX_NANO = 5 * USD, 500 * USD
    owner = client_for("owner")
    for amount, error in (("4.99", "cannot be less than 5"), ("500.01", "cannot be more than 500"),
                          ("12.345", "whole cents")):
        response = owner.post(reverse("billing-topup"), {"amount": amount})
        assert response.status_code == 400 and error in response.content.decode().lower(), amount
    assert not Payment.objects.exists()
    response = owner.post(reverse("billing-topup"), {"amount": "20"})
    assert response.status_code == 302 and response.url.startswith(f"{stripe_on}/checkout/cs_test_")
    payment = Payment.objects.get(tenant=team.tenant_a)
    assert (payment.status, payment.amount_cents, payment.created_by) == ("pending", 2000, team.alice)
    session = stripe_client().v1.checkout.sessions.retrieve(payment.stripe_checkout_session_id)
    assert session.amount_total == 2000 and session.success_url.startswith("http://testserver/dashboard/billing/topup/done/")
    assert ">pending<" in owner.get(reverse("billing")).content.decode()  # in the payment history


# --- Auto-recharge ---------------------------------------------------------------------------------------------


def _recharging_tenant(fake: str, *, balance_usd: int, threshold_usd: int = 10, amount_usd: int = 20,
                       max_per_month: int = 3):
    """A tenant whose card was saved by a $20 top-up, with auto-recharge on, at `balance_usd`."""
    tenant = _tenant()
    _, events = _paid_checkout(fake, tenant, usd=20)
    for event in events:
        post_event(event)
    if balance_usd != 20:
        ledger_adjust(tenant=tenant, amount_nano=(balance_usd - 20) * USD, reason="test: usage")
    auto_recharge_configure(tenant=tenant, enabled=True, threshold_nano=threshold_usd * USD,
                            amount_nano=amount_usd * USD, max_per_month=max_per_month, actor=None)
    return tenant


def _intents_of(fake: str, tenant) -> list[dict]:
    customer = BillingProfile.objects.get(tenant=tenant).stripe_customer_id
    return [i for i in stripe_client().v1.payment_intents.list(params={"customer": customer, "limit": 100}).data]


@pytest.mark.django_db
def test_auto_recharge_charges_the_saved_card_off_session_below_the_threshold_only(stripe_on):
    tenant = _recharging_tenant(stripe_on, balance_usd=15)
    assert auto_recharge_run(tenant_id=tenant.pk) is None  # $15 is above $10
    ledger_adjust(tenant=tenant, amount_nano=-6 * USD, reason="test: usage")
    payment = auto_recharge_run(tenant_id=tenant.pk)
    assert (payment.kind, payment.status, payment.amount_cents) == ("auto_recharge", "succeeded", 2000)
    assert tenant_balance_nano(tenant.pk) == 29 * USD
    intent = stripe_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    assert intent.customer == BillingProfile.objects.get(tenant=tenant).stripe_customer_id
    assert intent.metadata["gatehouse_payment"] == str(payment.idempotency_key)
    # Its webhook, arriving after the API answer, changes nothing.
    for event in _events(stripe_on, {intent.id}):
        post_event(event)
    assert tenant_balance_nano(tenant.pk) == 29 * USD
    assert BillingProfile.objects.get(tenant=tenant).recharge_claimed_at is None


@pytest.mark.django_db
def test_auto_recharge_stops_at_its_monthly_maximum(stripe_on):
    tenant = _recharging_tenant(stripe_on, balance_usd=5, max_per_month=1)
    assert auto_recharge_run(tenant_id=tenant.pk).status == "succeeded"
    ledger_adjust(tenant=tenant, amount_nano=-20 * USD, reason="test: usage")
    assert auto_recharge_run(tenant_id=tenant.pk) is None
    assert len(_intents_of(stripe_on, tenant)) == 2  # the top-up and one recharge


@pytest.mark.django_db
def test_a_declined_auto_recharge_is_recorded_shown_notified_and_not_retried_at_once(
        stripe_on, client_for, team, django_capture_on_commit_callbacks):
    from accounts.models import Membership
    from billing.models import AlertDelivery

    tenant = _recharging_tenant(stripe_on, balance_usd=5)
    Membership.objects.create(user=team.alice, tenant=tenant, role="owner")
    httpx.post(f"{stripe_on}/_fake/decline", json={"code": "card_declined", "decline_code": "insufficient_funds"})
    with django_capture_on_commit_callbacks(execute=True):
        payment = auto_recharge_run(tenant_id=tenant.pk)
    # Turning auto-recharge on came with its failure alert: the owner is e-mailed.
    [delivery] = AlertDelivery.objects.filter(firing__rule__tenant=tenant)
    assert (delivery.channel, delivery.target) == ("email", team.alice.email)
    assert (payment.status, payment.failure_code) == ("failed", "card_declined")
    assert payment.failure_message == "Your card has insufficient funds."
    assert list(auto_recharge_failures(tenant=tenant)) == [payment]
    assert tenant_balance_nano(tenant.pk) == 5 * USD
    httpx.post(f"{stripe_on}/_fake/decline", json={"code": None})
    assert auto_recharge_run(tenant_id=tenant.pk) is None  # not within an hour of the failure
    owner = client_for("owner")
    owner.post(reverse("tenant-switch"), {"tenant": tenant.pk})
    page = owner.get(reverse("billing")).content.decode()
    assert "Auto-recharge failed" in page and "Your card has insufficient funds." in page


@requires_postgres
def test_many_workers_crossing_the_threshold_together_charge_once(stripe_on, db_access):
    from django.db import connections

    tenant = _recharging_tenant(stripe_on, balance_usd=5)
    results, barrier = [], threading.Barrier(20)

    def run():
        barrier.wait()
        try:
            results.append(auto_recharge_run(tenant_id=tenant.pk))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([r for r in results if r is not None]) == 1
    assert len(_intents_of(stripe_on, tenant)) == 2  # the top-up and exactly one recharge
    assert tenant_balance_nano(tenant.pk) == 25 * USD


@pytest.mark.django_db
def test_owners_turn_auto_recharge_on_in_the_billing_page_once_a_card_is_saved(stripe_on, client_for, team):
    owner = client_for("owner")
    settings_form = {"recharge-enabled": "on", "recharge-threshold": "10", "recharge-amount": "25",
                     "recharge-max_per_month": "2"}
    response = owner.post(reverse("billing-auto-recharge"), settings_form)
    assert response.status_code == 400 and "Top up once by card first" in response.content.decode()
    _, events = _paid_checkout(stripe_on, team.tenant_a)
    for event in events:
        post_event(event)
    response = owner.post(reverse("billing-auto-recharge"), settings_form)
    assert response.status_code == 302
    profile = BillingProfile.objects.get(tenant=team.tenant_a)
    assert (profile.auto_recharge_enabled, profile.auto_recharge_threshold_nano, profile.auto_recharge_amount_cents,
            profile.auto_recharge_max_per_month) == (True, 10 * USD, 2500, 2)
    assert AuditEntry.objects.get(tenant=team.tenant_a, action="billing.auto_recharge").actor == team.alice


def test_auto_recharge_settings_need_a_saved_card_and_a_top_up_amount(db, stripe_on):
    from django.core.exceptions import ValidationError

    tenant = _tenant()
    with pytest.raises(ValidationError, match="Top up once by card first"):
        auto_recharge_configure(tenant=tenant, enabled=True, threshold_nano=USD, amount_nano=20 * USD,
                                max_per_month=3, actor=None)
    with pytest.raises(ValidationError, match="Top up between"):
        auto_recharge_configure(tenant=tenant, enabled=False, threshold_nano=USD, amount_nano=USD // 2,
                                max_per_month=3, actor=None)


# --- Reconciliation ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reconcile_agrees_then_names_a_payment_stripe_took_but_the_ledger_never_credited(stripe_on, admin_client):
    from django.utils import timezone

    time.sleep(1 - time.time() % 1)  # Stripe's `created` is in seconds: leave earlier tests' payments out
    since = timezone.now()
    tenant = _tenant()
    for _ in range(2):
        _, events = _paid_checkout(stripe_on, tenant, usd=10)
        for event in events:
            post_event(event)
    assert payments_reconcile(since=since) == []
    lost, _ = _paid_checkout(stripe_on, tenant, usd=6)  # its webhooks never arrive
    drift = payments_reconcile(since=since)
    assert len(drift) == 1 and "took $6.00" in drift[0] and f"(payment key {lost.idempotency_key})" in drift[0]
    response = admin_client.post(reverse("admin:billing_payment_changelist"),
                                 {"action": "reconcile", "_selected_action": [lost.pk]}, follow=True)
    assert f"(payment key {lost.idempotency_key}) but no ledger credit records it" in response.content.decode()
