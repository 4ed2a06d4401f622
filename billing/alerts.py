"""Alert rules: checked after each usage rollup, fired once per period, delivered by email and webhook.

Firing is claimed by inserting the rule's AlertFiring for the period (unique per rule and period), so
however many checks see the condition, and however many processes run them, one alert goes out. Each
firing gets an AlertDelivery per channel, sent by a Celery task after commit; a failed webhook is retried
with a doubling backoff until ALERT_WEBHOOK_RETRIES retries are spent, every attempt in the log.

Webhooks are JSON POSTs signed like Stripe's: `X-Gatehouse-Signature: t=<unix time>,v1=<hex HMAC-SHA256
of "<t>.<body>" under the rule's secret>`; the secret is shown once, when the rule is made.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce

from accounts.audit import audit_record
from accounts.models import ApiKey, Membership, Tenant
from common import crypto
from common.money import format_usd, usd_string

from .models import AlertDelivery, AlertFiring, AlertRule, UsageEvent
from .selectors import budget_period_bounds, key_spend_nano, tenant_available_nano

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Gatehouse-Signature"
_Kind = AlertRule.Kind


# --- Rules ---------------------------------------------------------------------------------------------


def webhook_url_check(url: str) -> str:
    """HTTPS only; plain http just to a loopback address in DEBUG (local receivers, tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and settings.DEBUG and _is_loopback(parts.hostname or ""):
        return url
    raise ValidationError({"webhook_url": "A webhook URL must use https://."})


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@transaction.atomic
def alert_rule_create(*, tenant: Tenant, kind: str, threshold_nano: int | None = None, percent: int | None = None,
                      api_key: ApiKey | None = None, notify_email: bool = True, webhook_url: str = "", actor=None,
                      via: str = "dashboard") -> tuple[AlertRule, str | None]:
    """A new rule, and its webhook signing secret (returned this once; None without a webhook)."""
    if kind in (_Kind.BALANCE_BELOW, _Kind.HOURLY_SPEND) and (threshold_nano is None or threshold_nano < 0):
        raise ValidationError({"threshold": "This alert needs an amount."})
    if kind == _Kind.KEY_BUDGET and percent not in (50, 80, 100):
        raise ValidationError({"percent": "Choose 50, 80 or 100 %."})
    if api_key is not None and api_key.tenant_id != tenant.pk:
        raise ValidationError({"api_key": "No such key."})
    if not notify_email and not webhook_url:
        raise ValidationError("Choose email, a webhook, or both.")
    secret = None
    if webhook_url:
        webhook_url_check(webhook_url)
        secret = "whsec_" + secrets.token_urlsafe(32)
    rule = AlertRule.objects.create(
        tenant=tenant, kind=kind, created_by=actor, notify_email=notify_email, webhook_url=webhook_url,
        threshold_nano=threshold_nano if kind in (_Kind.BALANCE_BELOW, _Kind.HOURLY_SPEND) else None,
        percent=percent if kind == _Kind.KEY_BUDGET else None, api_key=api_key if kind == _Kind.KEY_BUDGET else None,
        webhook_secret_encrypted=crypto.encrypt(secret) if secret else "")
    audit_record(action="alert.create", via=via, actor=actor, tenant=tenant,
                 details={"rule": rule.pk, "kind": kind, "threshold_nano": rule.threshold_nano, "percent": percent,
                          "email": notify_email, "webhook_url": webhook_url})
    return rule, secret


@transaction.atomic
def alert_rule_delete(*, rule: AlertRule, actor=None, via: str = "dashboard") -> None:
    audit_record(action="alert.delete", via=via, actor=actor, tenant=rule.tenant,
                 details={"rule": rule.pk, "kind": rule.kind})
    rule.delete()


# --- Evaluation (after each rollup) ----------------------------------------------------------------------


def alerts_evaluate(*, now: datetime | None = None) -> int:
    """Check every enabled rule once; returns how many alerts fired (those of earlier periods never again)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    fired = 0
    rules = AlertRule.objects.filter(enabled=True).exclude(kind=_Kind.AUTO_RECHARGE_FAILED).select_related("tenant")
    for rule in rules.order_by("pk"):
        for period, payload in _conditions(rule, now):
            fired += _fire(rule, period, payload, now) is not None
    return fired


def _conditions(rule: AlertRule, now: datetime):
    """(period, payload) for each condition of the rule that holds now."""
    if rule.kind == _Kind.BALANCE_BELOW:
        available = tenant_available_nano(rule.tenant_id)
        if available < rule.threshold_nano:
            yield f"{now:%Y-%m-%d}", {
                "message": f"The balance of {rule.tenant.name} is {format_usd(available)}, below "
                           f"{format_usd(rule.threshold_nano)}.",
                "balance_usd": usd_string(available), "threshold_usd": usd_string(rule.threshold_nano)}
    elif rule.kind == _Kind.HOURLY_SPEND:
        this_hour = now.replace(minute=0, second=0, microsecond=0)
        # The hour just ended too: its last minute is rolled up after it ends.
        for start in (this_hour - timedelta(hours=1), this_hour):
            spent = UsageEvent.objects.filter(tenant_id=rule.tenant_id, created_at__gte=start,
                                              created_at__lt=start + timedelta(hours=1)).aggregate(
                total=Coalesce(Sum("cost_nano"), 0))["total"]
            if spent > rule.threshold_nano:
                yield f"{start:%Y-%m-%dT%H}", {
                    "message": f"{rule.tenant.name} spent {format_usd(spent)} in the hour from {start:%H:%M} UTC, "
                               f"above {format_usd(rule.threshold_nano)}.",
                    "hour_start": start.isoformat(), "spent_usd": usd_string(spent),
                    "threshold_usd": usd_string(rule.threshold_nano)}
    elif rule.kind == _Kind.KEY_BUDGET:
        keys = ApiKey.objects.filter(tenant_id=rule.tenant_id, budget_nano__isnull=False, revoked_at__isnull=True)
        if rule.api_key_id is not None:
            keys = keys.filter(pk=rule.api_key_id)
        for key in keys:
            since, _ = budget_period_bounds(key.budget_period, now)
            spent = key_spend_nano(key.pk, since)
            if spent * 100 >= key.budget_nano * rule.percent:
                yield f"key{key.pk}:{since:%Y-%m-%d}", {
                    "message": f"Key {key.name or key.public_id} has spent {format_usd(spent)} of its "
                               f"{format_usd(key.budget_nano)} {key.budget_period} budget ({rule.percent} % reached).",
                    "api_key": key.public_id, "percent": rule.percent, "spent_usd": usd_string(spent),
                    "budget_usd": usd_string(key.budget_nano), "budget_period": key.budget_period}


def alert_auto_recharge_failed(*, tenant: Tenant, reason: str, payment_id: str = "",
                               now: datetime | None = None) -> int:
    """Fire the tenant's auto-recharge-failed rules for one failed charge (once per `payment_id`)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    period = payment_id or now.isoformat()
    payload = {"message": f"Auto-recharge failed for {tenant.name}: {reason}", "reason": reason,
               "payment_id": payment_id}
    rules = AlertRule.objects.filter(tenant=tenant, kind=_Kind.AUTO_RECHARGE_FAILED, enabled=True)
    return sum(_fire(rule, period, payload, now) is not None for rule in rules.select_related("tenant"))


def _recipients(tenant_id: int) -> list[str]:
    return sorted(set(Membership.objects.filter(
        tenant_id=tenant_id, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN]).exclude(user__email="")
        .values_list("user__email", flat=True)))


@transaction.atomic
def _fire(rule: AlertRule, period: str, details: dict, now: datetime) -> AlertFiring | None:
    """Claim the rule's period and queue its deliveries; None when it already fired for the period."""
    payload = {"type": rule.kind, "rule_id": rule.pk, "tenant": rule.tenant.slug, "period": period,
               "fired_at": now.isoformat(), **details}
    try:
        with transaction.atomic():
            firing = AlertFiring.objects.create(rule=rule, period=period, payload=payload)
    except IntegrityError:
        return None
    deliveries = []
    if rule.notify_email and (recipients := _recipients(rule.tenant_id)):
        deliveries.append(AlertDelivery(firing=firing, channel=AlertDelivery.Channel.EMAIL,
                                        target=", ".join(recipients)[:500], next_attempt_at=now))
    if rule.webhook_url:
        deliveries.append(AlertDelivery(firing=firing, channel=AlertDelivery.Channel.WEBHOOK,
                                        target=rule.webhook_url, next_attempt_at=now))
    from .tasks import alert_delivery_send

    for delivery in AlertDelivery.objects.bulk_create(deliveries):
        alert_delivery_send.delay_on_commit(delivery.pk)
    logger.info("alert %s fired for %s (%s)", rule, period, ", ".join(d.channel for d in deliveries) or "no channel")
    return firing


# --- Delivery ------------------------------------------------------------------------------------------


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def alert_delivery_attempt(delivery_id: int, *, now: datetime | None = None) -> tuple[str, float | None]:
    """Send one attempt if one is due; returns the delivery's status and the seconds until its next
    attempt (None: nothing more to do).

    Claimed with a conditional UPDATE that moves `next_attempt_at` past the attempt's timeout, so a Celery
    retry and the due-deliveries sweep never send the same attempt twice.
    """
    now = now or datetime.now(UTC)
    lease = now + timedelta(seconds=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS + 30)
    claimed = AlertDelivery.objects.filter(
        pk=delivery_id, status__in=[AlertDelivery.Status.PENDING, AlertDelivery.Status.RETRYING],
        next_attempt_at__lte=now).update(attempts=F("attempts") + 1, next_attempt_at=lease)
    delivery = AlertDelivery.objects.select_related("firing__rule").get(pk=delivery_id)
    if not claimed:
        return delivery.status, None
    try:
        if delivery.channel == AlertDelivery.Channel.EMAIL:
            _send_email(delivery)
        else:
            delivery.last_http_status = _post_webhook(delivery)
    except Exception as exc:  # a delivery failure of any kind is logged on the row and retried
        delivery.last_error = str(exc)[:500] or type(exc).__name__
        if isinstance(exc, urllib.error.HTTPError):
            delivery.last_http_status = exc.code
        if delivery.attempts > settings.ALERT_WEBHOOK_RETRIES:
            delivery.status, wait = AlertDelivery.Status.FAILED, None
        else:
            wait = settings.ALERT_WEBHOOK_BACKOFF_SECONDS * 2 ** (delivery.attempts - 1)
            delivery.status, delivery.next_attempt_at = AlertDelivery.Status.RETRYING, now + timedelta(seconds=wait)
        logger.warning("alert delivery %s attempt %s failed: %s", delivery.pk, delivery.attempts, delivery.last_error)
    else:
        delivery.status, delivery.delivered_at, delivery.last_error, wait = (AlertDelivery.Status.SENT, now, "",
                                                                             None)
    delivery.save(update_fields=["status", "next_attempt_at", "last_http_status", "last_error", "delivered_at"])
    return delivery.status, wait


def alert_deliveries_send_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Attempt the deliveries whose next attempt is due (the embedded mode's retries, and lost ones)."""
    now = now or datetime.now(UTC)
    due = AlertDelivery.objects.filter(Q(status=AlertDelivery.Status.PENDING) | Q(status=AlertDelivery.Status.RETRYING),
                                       next_attempt_at__lte=now).order_by("next_attempt_at")
    ids = list(due.values_list("pk", flat=True)[:limit])
    for delivery_id in ids:
        alert_delivery_attempt(delivery_id, now=now)
    return len(ids)


def _send_email(delivery: AlertDelivery) -> None:
    payload = delivery.firing.payload
    body = (f"{payload['message']}\n\nRule #{payload['rule_id']} ({delivery.firing.rule.get_kind_display()}), "
            f"period {payload['period']}.\nManage your alerts on the Gatehouse dashboard.\n")
    send_mail(f"[Gatehouse] {payload['message']}"[:200], body, settings.DEFAULT_FROM_EMAIL,
              [address.strip() for address in delivery.target.split(",")])


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect is an error: it could lead the POST to a plain-http or internal address.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _post_webhook(delivery: AlertDelivery) -> int:
    rule = delivery.firing.rule
    webhook_url_check(delivery.target)  # DEBUG may have been turned off since the rule was made
    body = orjson.dumps(delivery.firing.payload)
    request = urllib.request.Request(delivery.target, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "Gatehouse-Alerts/1",
        "X-Gatehouse-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: webhook_signature(crypto.decrypt(rule.webhook_secret_encrypted), int(time.time()), body)})
    with _opener.open(request, timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS) as response:
        return response.status
