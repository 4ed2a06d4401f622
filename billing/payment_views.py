"""The dashboard's Billing page (balance, the ledger, payments, top-ups, auto-recharge) and Stripe's webhook.

Owners and admins only. Views parse, call one service (billing/payments.py), render. The page's live
parts (`?fragment=summary`, `?fragment=history`) is fetched again every few seconds while it is open, so a top-up paid in another
tab shows up without a reload.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import stripe
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.dashboard import dashboard_view
from accounts.models import Membership
from common.money import cents_to_nano, nano_to_usd

from .forms import AutoRechargeForm, TopupForm
from .models import LedgerEntry, Payment, Statement
from .payments import (
    auto_recharge_configure,
    auto_recharge_failures,
    billing_profile,
    checkout_start,
    payments_configured,
    stripe_event_process,
)
from .selectors import budget_period_bounds, tenant_available_nano, tenant_balance_nano, tenant_spend_nano

ADMIN = Membership.Role.ADMIN
STATEMENT_ROWS = 3  # the latest months; every one is on the Statements page
FRAGMENTS = {"summary": "dashboard/_billing_live.html", "history": "dashboard/_billing_history.html"}
LEDGER_ROWS = 50
PAYMENT_ROWS = 20


def _auto_recharge_form(profile, data=None) -> AutoRechargeForm:
    initial = {"enabled": profile.auto_recharge_enabled, "max_per_month": profile.auto_recharge_max_per_month,
               "threshold": f"{nano_to_usd(profile.auto_recharge_threshold_nano):.2f}",
               "amount": f"{nano_to_usd(cents_to_nano(profile.auto_recharge_amount_cents or 2000)):.2f}"}
    return AutoRechargeForm(data, initial=initial)


def _page(request, *, topup_form=None, recharge_form=None, status=200, template="dashboard/billing.html"):
    tenant = request.tenant
    profile = billing_profile(tenant.pk)
    month_start = budget_period_bounds("month", datetime.now(UTC))[0]
    context = {
        "section": "billing", "configured": payments_configured(), "profile": profile,
        "balance": tenant_balance_nano(tenant.pk), "available": tenant_available_nano(tenant.pk),
        "credit_limit": tenant.credit_limit_nano, "month_start": month_start,
        "month_spend": tenant_spend_nano(tenant.pk, month_start),
        "entries": LedgerEntry.objects.filter(tenant=tenant).order_by("-seq")[:LEDGER_ROWS],
        "payments": Payment.objects.filter(tenant=tenant)[:PAYMENT_ROWS],
        "failures": auto_recharge_failures(tenant=tenant, since=month_start)[:5],
        "statements": Statement.objects.filter(tenant=tenant).defer("pdf", "csv")[:STATEMENT_ROWS],
        "topup_form": topup_form or TopupForm(), "recharge_form": recharge_form or _auto_recharge_form(profile),
    }
    return render(request, template, context, status=status)


@dashboard_view(ADMIN)
def billing(request):
    fragment = FRAGMENTS.get(request.GET.get("fragment", ""))
    return _page(request, template=fragment) if fragment else _page(request)


@dashboard_view(ADMIN)
@require_POST
def topup(request):
    form = TopupForm(request.POST)
    if form.is_valid():
        back = request.build_absolute_uri(reverse("billing"))
        try:
            url = checkout_start(tenant=request.tenant, amount_nano=form.cleaned_data["amount"], actor=request.user,
                                 success_url=back + "topup/done/?session_id={CHECKOUT_SESSION_ID}",
                                 cancel_url=back + "topup/cancelled/")
        except ValidationError as exc:
            form.add_error(None, exc)
        except stripe.StripeError as exc:
            form.add_error(None, f"Stripe could not start the payment: {exc.user_message or 'try again later.'}")
        else:
            return redirect(url)
    return _page(request, topup_form=form, status=400)


@dashboard_view(ADMIN)
def topup_done(request):
    messages.success(request, "Thank you: your payment went through. The balance below goes up as soon as Stripe "
                              "confirms it, usually within seconds.")
    return redirect("billing")


@dashboard_view(ADMIN)
def topup_cancelled(request):
    messages.info(request, "The top-up was cancelled; nothing was charged.")
    return redirect("billing")


@dashboard_view(ADMIN)
@require_POST
def auto_recharge(request):
    profile = billing_profile(request.tenant.pk)
    form = _auto_recharge_form(profile, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            auto_recharge_configure(tenant=request.tenant, enabled=data["enabled"], threshold_nano=data["threshold"],
                                    amount_nano=data["amount"], max_per_month=data["max_per_month"],
                                    actor=request.user)
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            messages.success(request, "Auto-recharge " + ("is on." if data["enabled"] else "is off."))
            return redirect("billing")
    return _page(request, recharge_form=form, status=400)


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """Stripe's events: 400 unless signed with STRIPE_WEBHOOK_SECRET within STRIPE_WEBHOOK_TOLERANCE seconds."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        return HttpResponse("Stripe webhooks are not configured.", status=404)
    try:
        stripe.Webhook.construct_event(request.body, request.headers.get("Stripe-Signature", ""),
                                       settings.STRIPE_WEBHOOK_SECRET, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        return HttpResponseBadRequest(f"Invalid Stripe webhook: {exc}")
    event = orjson.loads(request.body)  # verified: read as plain dicts
    record = stripe_event_process(event=event)
    return JsonResponse({"received": True, "duplicate": record is None})
