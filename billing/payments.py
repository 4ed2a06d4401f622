"""Payments through Stripe: Checkout top-ups, webhooks into the ledger, auto-recharge, reconciliation.

Money comes in only when Stripe says so: a signed webhook (`stripe_event_process`) or the answer to our
own off-session charge (`auto_recharge_run`). Both go through `_payment_succeeded`, which locks the
Payment row and credits it only if it has no credit yet, so a payment is credited once whatever
arrives twice, late or in another order. Events are also recorded by their unique id, so a replayed
delivery does nothing at all. Amounts are Stripe's integer cents, converted exactly (common.money.cents_to_nano).

Stripe calls run outside any database transaction: a slow Stripe never holds a lock or a connection
in a transaction, and a charge is always recorded first as a pending Payment whose key is the
Idempotency-Key, so a retried call can never charge twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import stripe
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Tenant
from common.money import cents_to_nano, format_usd, nano_to_cents

from .models import AlertRule, BillingProfile, LedgerEntry, Payment, StripeEvent
from .selectors import budget_period_bounds, tenant_available_nano
from .services import credit_grant, ledger_adjust

logger = logging.getLogger(__name__)

VIA = "stripe"
CURRENCY = "usd"
# On every Checkout Session and PaymentIntent we create: our Payment's key (a UUID, not its row id, so another
# database on the same Stripe account never takes our payments for its own).
METADATA_KEY = "gatehouse_payment"
# A claim older than this belongs to a worker that died mid-charge; the Idempotency-Key makes retrying safe.
RECHARGE_CLAIM_TIMEOUT = timedelta(minutes=5)
RECHARGE_RETRY_AFTER_FAILURE = timedelta(hours=1)  # a declined card is not retried on every request


def payments_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def stripe_client() -> stripe.StripeClient:
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses=base, max_network_retries=2)


def billing_profile(tenant_id: int) -> BillingProfile:
    return BillingProfile.objects.get_or_create(tenant_id=tenant_id)[0]


def topup_validate(amount_nano: int) -> int:
    """The amount in cents, if it is whole cents within the operator's TOPUP_MIN_USD..TOPUP_MAX_USD."""
    if not settings.TOPUP_MIN_NANO <= amount_nano <= settings.TOPUP_MAX_NANO:
        raise ValidationError({"amount": f"Top up between {format_usd(settings.TOPUP_MIN_NANO)} and "
                                         f"{format_usd(settings.TOPUP_MAX_NANO)}."})
    try:
        return nano_to_cents(amount_nano)
    except ValueError:
        raise ValidationError({"amount": "Use whole cents."}) from None


def _customer_id(client: stripe.StripeClient, tenant: Tenant) -> str:
    profile = billing_profile(tenant.pk)
    if not profile.stripe_customer_id:
        customer = client.v1.customers.create(
            params={"name": tenant.name, "metadata": {"tenant": tenant.slug, "tenant_id": str(tenant.pk)}},
            options={"idempotency_key": f"gatehouse-customer-{profile.idempotency_key}"})
        # Two first top-ups at once get the same Customer (one idempotency key); either write is right.
        BillingProfile.objects.filter(pk=profile.pk).update(stripe_customer_id=customer.id)
        profile.stripe_customer_id = customer.id
    return profile.stripe_customer_id


def checkout_start(*, tenant: Tenant, amount_nano: int, actor, success_url: str, cancel_url: str,
                   via: str = "dashboard") -> str:
    """Create a pending Payment and its Stripe Checkout Session; returns the URL to send the payer to.

    The card is saved for off-session use (auto-recharge); `success_url` may contain
    {CHECKOUT_SESSION_ID}, which Stripe fills in.
    """
    if not payments_configured():
        raise ValidationError("Top-ups are not configured.")
    cents = topup_validate(amount_nano)
    client = stripe_client()
    customer = _customer_id(client, tenant)
    payment = Payment.objects.create(tenant=tenant, kind=Payment.Kind.CHECKOUT, amount_cents=cents, created_by=actor)
    metadata = {METADATA_KEY: str(payment.idempotency_key), "tenant_id": str(tenant.pk)}
    try:
        session = client.v1.checkout.sessions.create(params={
            "mode": "payment", "customer": customer, "client_reference_id": str(tenant.pk),
            "line_items": [{"quantity": 1, "price_data": {"currency": CURRENCY, "unit_amount": cents,
                                                          "product_data": {"name": "Gatehouse credit"}}}],
            "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata,
                                    "description": f"Gatehouse credit for {tenant.slug}"},
            "metadata": metadata, "success_url": success_url, "cancel_url": cancel_url,
        }, options={"idempotency_key": f"gatehouse-payment-{payment.idempotency_key}"})
    except stripe.StripeError as exc:
        _payment_failed_locked(payment.pk, intent_id=None, code=type(exc).__name__, message=str(exc)[:500])
        raise
    Payment.objects.filter(pk=payment.pk).update(stripe_checkout_session_id=session.id)
    audit_record(action="payment.checkout", via=via, actor=actor, tenant=tenant,
                 details={"payment": payment.pk, "amount_cents": cents, "session": session.id})
    return session.url


# --- Webhooks -------------------------------------------------------------------------------------------


def _payment_for(obj: dict, *, intent_id: str | None = None, session_id: str | None = None) -> Payment | None:
    """Our Payment of a Stripe object, locked: by our metadata first (present on whatever arrives first),
    then by the Stripe ids we stored."""
    payments = Payment.objects.select_for_update()
    ours = (obj.get("metadata") or {}).get(METADATA_KEY)
    if ours:
        try:
            payment = payments.filter(idempotency_key=uuid.UUID(str(ours))).first()
        except ValueError:
            payment = None
        if payment is not None:
            return payment
    lookups = Q(pk__in=[])
    if intent_id:
        lookups |= Q(stripe_payment_intent_id=intent_id)
    if session_id:
        lookups |= Q(stripe_checkout_session_id=session_id)
    return payments.filter(lookups).first()


def _payment_succeeded(payment: Payment, *, intent_id: str, amount_cents: int, currency: str,
                       payment_method: str | None = None, save_method: bool = False) -> LedgerEntry | None:
    """Credit `payment` once (call inside a transaction, with the row locked). None if already credited."""
    if currency != CURRENCY:
        logger.error("payment %s: Stripe reports %s %s, not USD; not credited", payment.pk, amount_cents, currency)
        return None
    payment.stripe_payment_intent_id = payment.stripe_payment_intent_id or intent_id
    if save_method and payment_method:
        BillingProfile.objects.filter(tenant_id=payment.tenant_id).update(payment_method_id=payment_method)
    entry = None
    if payment.ledger_entry_id is None:
        if amount_cents != payment.amount_cents:
            logger.warning("payment %s: Stripe charged %s cents, %s were asked; crediting what was charged",
                           payment.pk, amount_cents, payment.amount_cents)
        entry = credit_grant(tenant=payment.tenant, amount_nano=cents_to_nano(amount_cents), via=VIA,
                             reason=f"Stripe payment {intent_id} ({payment.get_kind_display()})")
        payment.ledger_entry, payment.amount_cents = entry, amount_cents
        payment.status, payment.succeeded_at = Payment.Status.SUCCEEDED, timezone.now()
        payment.failure_code = payment.failure_message = ""
    payment.save()
    return entry


def _on_intent_succeeded(intent: dict) -> tuple[Payment | None, LedgerEntry | None]:
    payment = _payment_for(intent, intent_id=intent["id"])
    if payment is None:
        return None, None
    entry = _payment_succeeded(payment, intent_id=intent["id"], amount_cents=intent["amount_received"],
                               currency=intent["currency"], payment_method=intent.get("payment_method"),
                               save_method=intent.get("setup_future_usage") == "off_session")
    return payment, entry


def _on_session_completed(session: dict) -> tuple[Payment | None, LedgerEntry | None]:
    payment = _payment_for(session, intent_id=session.get("payment_intent"), session_id=session["id"])
    if payment is None or session.get("payment_status") != "paid" or not session.get("payment_intent"):
        return payment, None  # an asynchronous payment method: payment_intent.succeeded follows
    return payment, _payment_succeeded(payment, intent_id=session["payment_intent"],
                                       amount_cents=session["amount_total"], currency=session["currency"])


def _debit_payment(payment: Payment, *, field: str, total_cents: int, what: str) -> LedgerEntry | None:
    """Take back what Stripe returned to the payer: the increase of a running total (refunds are cumulative
    on the charge, so replays and reordered partial refunds never take back twice)."""
    delta = total_cents - getattr(payment, field)
    if delta <= 0:
        return None
    setattr(payment, field, total_cents)
    payment.save(update_fields=[field])
    return ledger_adjust(tenant=payment.tenant, amount_nano=-cents_to_nano(delta), via=VIA,
                         reason=f"Stripe {what} of {payment.stripe_payment_intent_id or payment.pk}")


def _on_charge_refunded(charge: dict) -> tuple[Payment | None, LedgerEntry | None]:
    payment = _payment_for(charge, intent_id=charge.get("payment_intent"))
    if payment is None:
        return None, None
    return payment, _debit_payment(payment, field="refunded_cents", total_cents=charge["amount_refunded"],
                                   what="refund")


def _on_dispute_created(dispute: dict) -> tuple[Payment | None, LedgerEntry | None]:
    payment = _payment_for(dispute, intent_id=dispute.get("payment_intent"))
    if payment is None:
        return None, None
    return payment, _debit_payment(payment, field="disputed_cents",
                                   total_cents=payment.disputed_cents + dispute["amount"], what="dispute")


def _on_intent_failed(intent: dict) -> tuple[Payment | None, LedgerEntry | None]:
    payment = _payment_for(intent, intent_id=intent["id"])
    if payment is not None and payment.status == Payment.Status.PENDING:
        error = intent.get("last_payment_error") or {}
        _payment_failed(payment, intent_id=intent["id"], code=error.get("decline_code") or error.get("code") or "",
                        message=error.get("message") or "The payment failed.")
    return payment, None


def _on_session_expired(session: dict) -> tuple[Payment | None, LedgerEntry | None]:
    payment = _payment_for(session, session_id=session["id"])
    if payment is not None:
        _payment_failed(payment, intent_id=None, code="expired", message="The checkout was left unpaid and expired.")
    return payment, None


EVENT_HANDLERS = {
    "payment_intent.succeeded": _on_intent_succeeded,
    "checkout.session.completed": _on_session_completed,
    "checkout.session.async_payment_succeeded": _on_session_completed,
    "checkout.session.expired": _on_session_expired,
    "payment_intent.payment_failed": _on_intent_failed,
    "charge.refunded": _on_charge_refunded,
    "charge.dispute.created": _on_dispute_created,
}


def stripe_event_process(*, event: dict) -> StripeEvent | None:
    """Apply a verified webhook event once; None if this event id was processed before (a replay)."""
    handler = EVENT_HANDLERS.get(event["type"])
    with transaction.atomic():
        try:
            # Its own savepoint: a concurrent delivery of the same event waits on the unique index, then fails here.
            with transaction.atomic():
                record = StripeEvent.objects.create(event_id=event["id"], type=event["type"])
        except IntegrityError:
            return None
        if handler is not None:
            record.payment, record.ledger_entry = handler(event["data"]["object"])
            record.save(update_fields=["payment", "ledger_entry"])
            if record.payment is None:
                logger.info("Stripe event %s (%s) is for no payment of ours; recorded, ignored", event["id"],
                            event["type"])
    return record


# --- Auto-recharge ----------------------------------------------------------------------------------------


def auto_recharge_configure(*, tenant: Tenant, enabled: bool, threshold_nano: int, amount_nano: int,
                            max_per_month: int, actor, via: str = "dashboard") -> BillingProfile:
    if threshold_nano < 0:
        raise ValidationError({"threshold": "The threshold cannot be negative."})
    if not 1 <= max_per_month <= 100:
        raise ValidationError({"max_per_month": "Between 1 and 100 recharges a month."})
    cents = topup_validate(amount_nano)
    profile = billing_profile(tenant.pk)
    if enabled and not profile.payment_method_id:
        raise ValidationError("Top up once by card first: auto-recharge charges the card saved by that payment.")
    profile.auto_recharge_enabled, profile.auto_recharge_threshold_nano = enabled, threshold_nano
    profile.auto_recharge_amount_cents, profile.auto_recharge_max_per_month = cents, max_per_month
    profile.save()
    audit_record(action="billing.auto_recharge", via=via, actor=actor, tenant=tenant,
                 details={"enabled": enabled, "threshold_nano": threshold_nano, "amount_cents": cents,
                          "max_per_month": max_per_month})
    if enabled and not AlertRule.objects.filter(tenant=tenant, kind=AlertRule.Kind.AUTO_RECHARGE_FAILED).exists():
        from .alerts import alert_rule_create

        # A failed charge must reach the owners without their having to think of it: the alert rule
        # (e-mail; editable and removable on the Alerts page) comes with turning auto-recharge on.
        alert_rule_create(tenant=tenant, kind=AlertRule.Kind.AUTO_RECHARGE_FAILED, actor=actor, via=via)
    return profile


def _month_start(now: datetime) -> datetime:
    return budget_period_bounds("month", now)[0]


def _recharge_due(profile: BillingProfile, now: datetime) -> str | None:
    """Why no recharge is due now (None: one is)."""
    if tenant_available_nano(profile.tenant_id) >= profile.auto_recharge_threshold_nano:
        return "balance above the threshold"
    attempts = Payment.objects.filter(tenant_id=profile.tenant_id, kind=Payment.Kind.AUTO_RECHARGE,
                                      created_at__gte=_month_start(now))
    if attempts.count() >= profile.auto_recharge_max_per_month:
        return "monthly maximum reached"
    if attempts.filter(status=Payment.Status.FAILED, created_at__gte=now - RECHARGE_RETRY_AFTER_FAILURE).exists():
        return "the last attempt failed less than an hour ago"
    return None


def auto_recharge_run(*, tenant_id: int) -> Payment | None:
    """Charge the saved card once if the tenant's balance is below its threshold; returns the Payment.

    One at a time per tenant: the profile is claimed with a conditional UPDATE (autocommitted, so every
    other worker sees it at once); of many callers racing after the same low balance one wins, and the
    next winner re-reads the balance its credit has raised. Idempotent, as a Celery task must be.
    """
    if not payments_configured():
        return None
    now = timezone.now()
    claimed = BillingProfile.objects.filter(
        Q(recharge_claimed_at__isnull=True) | Q(recharge_claimed_at__lt=now - RECHARGE_CLAIM_TIMEOUT),
        tenant_id=tenant_id, auto_recharge_enabled=True, auto_recharge_amount_cents__gt=0,
    ).exclude(payment_method_id="").update(recharge_claimed_at=now)
    if not claimed:
        return None
    try:
        profile = BillingProfile.objects.select_related("tenant").get(tenant_id=tenant_id)
        if (reason := _recharge_due(profile, now)) is not None:
            logger.debug("auto-recharge of tenant %s not due: %s", tenant_id, reason)
            return None
        return _charge(profile)
    finally:
        BillingProfile.objects.filter(tenant_id=tenant_id, recharge_claimed_at=now).update(recharge_claimed_at=None)


def _charge(profile: BillingProfile) -> Payment:
    tenant = profile.tenant
    payment = Payment.objects.create(tenant=tenant, kind=Payment.Kind.AUTO_RECHARGE,
                                     amount_cents=profile.auto_recharge_amount_cents)
    metadata = {METADATA_KEY: str(payment.idempotency_key), "tenant_id": str(tenant.pk)}
    try:
        intent = stripe_client().v1.payment_intents.create(params={
            "amount": payment.amount_cents, "currency": CURRENCY, "customer": profile.stripe_customer_id,
            "payment_method": profile.payment_method_id, "off_session": True, "confirm": True,
            "metadata": metadata, "description": f"Gatehouse auto-recharge for {tenant.slug}",
        }, options={"idempotency_key": f"gatehouse-payment-{payment.idempotency_key}"})
    except stripe.CardError as exc:
        error = exc.error
        intent_id = getattr(error.payment_intent, "id", None) if error and error.payment_intent else None
        _payment_failed_locked(payment.pk, intent_id=intent_id, code=exc.code or "",
                               message=exc.user_message or str(exc))
    except stripe.StripeError as exc:
        # Perhaps charged after all (a timeout after Stripe acted): its webhook would still credit it.
        _payment_failed_locked(payment.pk, intent_id=None, code=type(exc).__name__, message=str(exc)[:500])
    else:
        with transaction.atomic():
            locked = Payment.objects.select_for_update().get(pk=payment.pk)
            if intent.status == "succeeded":
                _payment_succeeded(locked, intent_id=intent.id, amount_cents=intent.amount_received,
                                   currency=intent.currency)
            else:  # e.g. requires_action: a card that needs the customer present cannot recharge off-session
                _payment_failed(locked, intent_id=intent.id, code=intent.status,
                                message=f"The payment needs the card holder ({intent.status}).")
    payment.refresh_from_db()
    audit_record(action="payment.auto_recharge", via=VIA, tenant=tenant,
                 details={"payment": payment.pk, "amount_cents": payment.amount_cents, "status": payment.status,
                          "payment_intent": payment.stripe_payment_intent_id})
    return payment


def _payment_failed_locked(payment_id: int, **kwargs) -> None:
    with transaction.atomic():
        _payment_failed(Payment.objects.select_for_update().get(pk=payment_id), **kwargs)


def _payment_failed(payment: Payment, *, intent_id: str | None, code: str, message: str) -> None:
    if payment.status != Payment.Status.PENDING:  # a success recorded meanwhile stands
        return
    payment.status, payment.failure_code, payment.failure_message = Payment.Status.FAILED, code[:64], message[:500]
    payment.stripe_payment_intent_id = payment.stripe_payment_intent_id or intent_id
    payment.save()
    logger.warning("%s payment %s of tenant %s failed: %s %s", payment.kind, payment.pk, payment.tenant_id, code,
                   message)
    if payment.kind == Payment.Kind.AUTO_RECHARGE:
        from .alerts import alert_auto_recharge_failed

        transaction.on_commit(lambda: alert_auto_recharge_failed(
            tenant=payment.tenant, reason=message or code, payment_id=f"payment-{payment.pk}"))


def auto_recharge_candidates() -> list[int]:
    """Tenants with auto-recharge on whose available balance is below their threshold."""
    profiles = BillingProfile.objects.filter(auto_recharge_enabled=True).exclude(payment_method_id="")
    return [tenant_id for tenant_id, threshold in profiles.values_list("tenant_id", "auto_recharge_threshold_nano")
            if tenant_available_nano(tenant_id) < threshold]


def auto_recharge_sweep() -> int:
    """Run auto-recharge for every tenant that needs it; returns how many were charged."""
    return sum(auto_recharge_run(tenant_id=tenant_id) is not None for tenant_id in auto_recharge_candidates())


def auto_recharge_failures(*, tenant: Tenant, since: datetime | None = None) -> QuerySet[Payment]:
    """Failed auto-recharge attempts of a tenant, newest first (the Billing page; the alerts' hook)."""
    failures = Payment.objects.filter(tenant=tenant, kind=Payment.Kind.AUTO_RECHARGE, status=Payment.Status.FAILED)
    return failures.filter(created_at__gte=since) if since is not None else failures


# --- Reconciliation ---------------------------------------------------------------------------------------


def payments_reconcile(*, since: datetime | None = None) -> list[str]:
    """Compare Stripe's succeeded PaymentIntents (ours, by metadata) with the ledger credits of our Payments.

    Returns the differences, empty when the books agree: a payment Stripe took that we never credited,
    a credit Stripe knows no payment for, or a credit of another amount.
    """
    params: dict = {"limit": 100}
    if since is not None:
        params["created"] = {"gte": int(since.astimezone(UTC).timestamp())}
    at_stripe = {intent.id: intent for intent in stripe_client().v1.payment_intents.list(params=params).auto_paging_iter()
                 if intent.status == "succeeded" and METADATA_KEY in (intent.metadata or {})}
    credited = Payment.objects.filter(ledger_entry__isnull=False).select_related("ledger_entry", "tenant")
    if since is not None:
        credited = credited.filter(created_at__gte=since)
    drift = []
    for payment in credited:
        intent = at_stripe.pop(payment.stripe_payment_intent_id or "", None)
        if intent is None:
            drift.append(f"payment {payment.pk} of {payment.tenant}: credited {format_usd(payment.ledger_entry.amount_nano)}"
                         f" (entry #{payment.ledger_entry.seq}) but Stripe has no succeeded PaymentIntent "
                         f"{payment.stripe_payment_intent_id}")
        elif cents_to_nano(intent.amount_received) != payment.ledger_entry.amount_nano:
            drift.append(f"payment {payment.pk} of {payment.tenant}: Stripe took "
                         f"{format_usd(cents_to_nano(intent.amount_received))} ({intent.id}), the ledger credited "
                         f"{format_usd(payment.ledger_entry.amount_nano)}")
    for intent in at_stripe.values():
        drift.append(f"Stripe PaymentIntent {intent.id} took {format_usd(cents_to_nano(intent.amount_received))} "
                     f"(payment key {intent.metadata[METADATA_KEY]}) but no ledger credit records it")
    for line in drift:
        logger.error("payments drift: %s", line)
    return drift
