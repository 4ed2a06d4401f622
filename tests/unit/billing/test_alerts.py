"""Alert rules fire once per period, after the rollup, by email and by signed webhooks retried with backoff."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.urls import reverse

from accounts.services import api_key_issue, membership_set
from billing.alerts import (SIGNATURE_HEADER, alert_auto_recharge_failed, alert_deliveries_send_due, alert_rule_create,
                            alerts_evaluate)
from billing.models import AlertDelivery, AlertFiring
from billing.services import credit_grant
from billing.tasks import alert_delivery_send, usage_rollup
from config.celery import app as celery_app
from gateway.metering.writes import UsageRecord, usage_events_write
from tests.support.dashboard import assert_roles
from tests.support.e2e import make_persona
from tests.support.env import ROOT, free_port, requires_postgres

USD = 10**9


@pytest.fixture(autouse=True)
def eager(django_capture_on_commit_callbacks):
    """Tasks run in-process, as in the embedded mode."""
    global _on_commit
    _on_commit = django_capture_on_commit_callbacks
    previous, celery_app.conf.task_always_eager = celery_app.conf.task_always_eager, True
    yield
    celery_app.conf.task_always_eager = previous


_on_commit = None


def committed(service, **kwargs):
    """Call `service` and run what it queued for after commit (the deliveries), as a real commit would."""
    with _on_commit(execute=True):
        return service(**kwargs)


@pytest.fixture
def tenant(team):
    credit_grant(tenant=team.tenant_a, amount_nano=10 * USD, reason="start")
    return team.tenant_a


_count = iter(range(10**9))


def spend(tenant, key, cost_nano: int, *, requests: int = 1, when: datetime | None = None) -> None:
    """`requests` usage rows of `cost_nano` each, then the rollup task (which checks the alerts)."""
    when = when or datetime.now(UTC)
    usage_events_write([UsageRecord(
        request_id=f"req_alert_{next(_count)}", tenant_id=tenant.pk, api_key_id=key.pk, endpoint="messages",
        requested_model="claude-haiku-4-5", model="claude-haiku-4-5", upstream_model="claude-haiku-4-5", stream=False,
        input_tokens=10, output_tokens=10, cache_creation_input_tokens=0, cache_read_input_tokens=0,
        cost_nano=cost_nano, price_id=None, status="ok", http_status=200, error_type="", latency_ms=1, ttft_ms=None,
        created_at=when) for _ in range(requests)])
    committed(usage_rollup.apply, throw=True)


def test_a_low_balance_alert_fires_once_however_many_requests_cross_the_threshold(tenant, team):
    alert_rule_create(tenant=tenant, kind="balance_below", threshold_nano=5 * USD)
    key = api_key_issue(tenant=tenant).api_key
    spend(tenant, key, USD // 2, requests=8)  # $6 left
    assert not mail.outbox
    for _ in range(5):
        spend(tenant, key, USD // 10, requests=20)  # $2 each time, then $0 and below
    assert AlertFiring.objects.filter(rule__tenant=tenant).count() == 1
    [email] = mail.outbox
    assert "balance of Acme is $4.00, below $5.00" in email.subject
    assert sorted(email.to) == ["alice@example.com", "bob@example.com"]  # owners and admins, not members
    delivery = AlertDelivery.objects.get()
    assert (delivery.channel, delivery.status, delivery.attempts) == ("email", "sent", 1)


def test_key_budget_alerts_fire_at_their_percentage_once_per_budget_period(tenant):
    key = api_key_issue(tenant=tenant, name="ci", budget_nano=USD, budget_period="month").api_key
    for percent in (50, 80, 100):
        alert_rule_create(tenant=tenant, kind="key_budget", percent=percent, api_key=key)
    spend(tenant, key, USD // 100, requests=55)
    assert [firing.rule.percent for firing in AlertFiring.objects.all()] == [50]
    spend(tenant, key, USD // 100, requests=30)
    spend(tenant, key, USD // 100, requests=30)
    assert sorted(firing.rule.percent for firing in AlertFiring.objects.all()) == [50, 80, 100]
    assert len(mail.outbox) == 3 and "ci has spent $1.15 of its $1.00 month budget (100 % reached)" in mail.outbox[2].subject
    spend(tenant, key, USD // 100)
    assert AlertFiring.objects.count() == 3


def test_hourly_spend_alert_fires_once_per_hour(tenant):
    alert_rule_create(tenant=tenant, kind="hourly_spend", threshold_nano=USD)
    key = api_key_issue(tenant=tenant).api_key
    last_hour = datetime.now(UTC) - timedelta(hours=1)
    spend(tenant, key, USD // 2, requests=3, when=last_hour)
    spend(tenant, key, USD // 2, requests=3)
    spend(tenant, key, USD // 2, requests=3)
    periods = sorted(AlertFiring.objects.values_list("period", flat=True))
    assert periods == [f"{last_hour:%Y-%m-%dT%H}", f"{datetime.now(UTC):%Y-%m-%dT%H}"]


def test_auto_recharge_failures_alert_once_per_failed_charge(tenant):
    alert_rule_create(tenant=tenant, kind="auto_recharge_failed")
    assert committed(alert_auto_recharge_failed, tenant=tenant, reason="Your card was declined.", payment_id="pi_1") == 1
    assert committed(alert_auto_recharge_failed, tenant=tenant, reason="Your card was declined.", payment_id="pi_1") == 0
    assert committed(alert_auto_recharge_failed, tenant=tenant, reason="Insufficient funds.", payment_id="pi_2") == 1
    assert [email.subject for email in mail.outbox] == [
        "[Gatehouse] Auto-recharge failed for Acme: Your card was declined.",
        "[Gatehouse] Auto-recharge failed for Acme: Insufficient funds."]


class Receiver:
    """A local webhook endpoint answering each POST with the next status of `statuses` (then 200)."""

    def __init__(self, statuses=()):
        self.statuses, self.received = list(statuses), []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gatehouse"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.DEBUG = True  # plain http to loopback is allowed only in DEBUG
    made = []

    def make(statuses=()):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for each in made:
        each.close()


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does with X-Gatehouse-Signature (as in docs/statements-and-alerts.md)."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) <= tolerance


def test_a_webhook_alert_is_a_signed_json_post(tenant, receiver):
    hook = receiver()
    rule, secret = alert_rule_create(tenant=tenant, kind="auto_recharge_failed", notify_email=False,
                                     webhook_url=hook.url)
    assert secret.startswith("whsec_") and secret not in rule.webhook_secret_encrypted
    committed(alert_auto_recharge_failed, tenant=tenant, reason="Card expired.", payment_id="pi_9")
    [(headers, body)] = hook.received
    assert headers["Content-Type"] == "application/json"
    assert verify(secret, headers[SIGNATURE_HEADER], body)
    assert not verify("whsec_wrong", headers[SIGNATURE_HEADER], body)
    assert not verify(secret, headers[SIGNATURE_HEADER], body + b" ")
    payload = orjson.loads(body)
    assert payload["type"] == "auto_recharge_failed" and payload["tenant"] == tenant.slug
    assert payload["reason"] == "Card expired." and payload["period"] == "pi_9" and payload["rule_id"] == rule.pk
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.last_http_status, headers["X-Gatehouse-Delivery"]) == ("sent", 200,
                                                                                             str(delivery.pk))
    assert not mail.outbox


def test_a_failing_webhook_is_retried_with_a_doubling_backoff_and_every_attempt_is_logged(tenant, receiver, settings):
    settings.ALERT_WEBHOOK_BACKOFF_SECONDS = 30
    hook = receiver([500, 503])
    alert_rule_create(tenant=tenant, kind="auto_recharge_failed", notify_email=False, webhook_url=hook.url)
    started = datetime.now(UTC)
    committed(alert_auto_recharge_failed, tenant=tenant, reason="Declined.", payment_id="pi_r")
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("retrying", 1, 500)
    first_wait = delivery.next_attempt_at - started
    assert timedelta(seconds=30) <= first_wait < timedelta(seconds=35)
    assert alert_deliveries_send_due(now=started + timedelta(seconds=10)) == 0  # not due yet
    assert alert_deliveries_send_due(now=delivery.next_attempt_at) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("retrying", 2, 503)
    second_due = delivery.next_attempt_at
    assert alert_deliveries_send_due(now=second_due) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_http_status, delivery.last_error) == ("sent", 3, 200, "")
    assert len(hook.received) == 3 and len({body for _, body in hook.received}) == 1  # the same alert each time
    assert second_due - started >= timedelta(seconds=30 + 60)  # 30 s, then 60 s


def test_a_webhook_that_keeps_failing_ends_failed_after_its_retries(tenant, receiver, settings):
    settings.ALERT_WEBHOOK_RETRIES = 2
    hook = receiver([500] * 10)
    alert_rule_create(tenant=tenant, kind="auto_recharge_failed", notify_email=False, webhook_url=hook.url)
    committed(alert_auto_recharge_failed, tenant=tenant, reason="Declined.", payment_id="pi_f")
    far = datetime.now(UTC) + timedelta(days=1)
    alert_deliveries_send_due(now=far)
    alert_deliveries_send_due(now=far + timedelta(days=1))
    assert alert_deliveries_send_due(now=far + timedelta(days=2)) == 0
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, len(hook.received)) == ("failed", 3, 3)
    assert "500" in delivery.last_error


def test_webhooks_must_be_https_except_to_loopback_in_debug(tenant, settings):
    for url in ("http://example.com/hook", "http://127.0.0.1:9/hook", "ftp://example.com/"):
        with pytest.raises(ValidationError):
            alert_rule_create(tenant=tenant, kind="auto_recharge_failed", webhook_url=url)
    settings.DEBUG = True
    with pytest.raises(ValidationError):
        alert_rule_create(tenant=tenant, kind="auto_recharge_failed", webhook_url="http://10.0.0.1/hook")
    alert_rule_create(tenant=tenant, kind="auto_recharge_failed", webhook_url="http://127.0.0.1:9/hook")
    alert_rule_create(tenant=tenant, kind="auto_recharge_failed", webhook_url="https://hooks.example.com/x")


def test_alerts_are_configured_on_the_dashboard_by_owners_and_admins_and_the_secret_is_shown_once(
        tenant, client_for):
    assert_roles(client_for, reverse("alerts"), {"admin", "owner"})
    admin = client_for("admin")
    response = admin.post(reverse("alerts"), {"kind": "balance_below", "amount": "12.50", "notify_email": "on",
                                              "webhook_url": "https://hooks.example.com/gatehouse"}, follow=True)
    page = response.content.decode()
    assert response.status_code == 200 and "whsec_" in page and "$12.50" in page
    assert "whsec_" not in admin.get(reverse("alerts")).content.decode()
    missing = admin.post(reverse("alerts"), {"kind": "hourly_spend", "notify_email": "on"})
    assert missing.status_code == 400 and "needs an amount" in missing.content.decode()
    rule = tenant.alert_rules.get()
    assert (rule.kind, rule.threshold_nano) == ("balance_below", 12_500_000_000)
    assert client_for("outsider").post(reverse("alert-delete", args=[rule.pk])).status_code == 404
    admin.post(reverse("alert-delete", args=[rule.pk]))
    assert not tenant.alert_rules.exists()


@requires_postgres  # the worker process reads the committed delivery from the shared test database
def test_a_celery_worker_retries_a_failing_webhook_after_its_backoff(gateway_db_url, django_db_blocker, tmp_path):
    """The production path: a real worker on a real broker (a Redis of the test's own) runs the delivery
    task, which Celery retries after each failure with the doubling backoff (0.5 s, then 1 s here)."""
    port = free_port()
    broker = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    hook = Receiver([500, 502])
    url = f"redis://127.0.0.1:{port}/0"
    env = {**os.environ, "DATABASE_URL": gateway_db_url, "REDIS_URL": url, "DEBUG": "1",
           "ALERT_WEBHOOK_BACKOFF_SECONDS": "0.5", "DJANGO_SETTINGS_MODULE": "config.settings"}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
                               "--concurrency", "1", "--without-heartbeat", "--without-mingle", "--without-gossip",
                               "--loglevel", "WARNING"], cwd=ROOT, env=env, stdout=open(tmp_path / "worker.log", "wb"),
                              stderr=subprocess.STDOUT)
    try:
        with django_db_blocker.unblock(), override_settings(DEBUG=True):
            persona = make_persona(f"alerts-{uuid.uuid4().hex[:8]}")
            rule, _ = alert_rule_create(tenant=persona.tenant, kind="auto_recharge_failed", notify_email=False,
                                        webhook_url=hook.url)
            firing = AlertFiring.objects.create(rule=rule, period="pi_worker", payload={"type": rule.kind})
            delivery = AlertDelivery.objects.create(firing=firing, channel="webhook", target=hook.url,
                                                    next_attempt_at=datetime.now(UTC))
            celery_app.conf.task_always_eager = False  # this test's worker runs it (the fixture restores it)
            with celery_app.connection_for_write(url) as connection:
                alert_delivery_send.apply_async(args=[delivery.pk], connection=connection)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                delivery.refresh_from_db()
                if delivery.status in ("sent", "failed"):
                    break
                time.sleep(0.1)
        assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("sent", 3, 200), \
            (tmp_path / "worker.log").read_text()
        assert [orjson.loads(body) for _, body in hook.received] == [{"type": "auto_recharge_failed"}] * 3
    finally:
        for process in (worker, broker):
            process.terminate()
            process.wait(10)
        hook.close()


@requires_postgres  # real concurrent transactions: each thread commits on its own connection
def test_concurrent_checks_of_one_crossed_threshold_send_one_alert(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        persona = make_persona(f"alerts-{uuid.uuid4().hex[:8]}", credit_nano=USD)
        owner = get_user_model().objects.create_user(f"{persona.tenant.slug}@example.com",
                                                     f"{persona.tenant.slug}@example.com")
        membership_set(tenant=persona.tenant, user=owner, role="owner")
        rule, _ = alert_rule_create(tenant=persona.tenant, kind="balance_below", threshold_nano=2 * USD)
    barrier, fired, errors = threading.Barrier(8), [], []

    def check():
        from django.db import connection

        try:
            with django_db_blocker.unblock():
                barrier.wait()
                fired.append(alerts_evaluate())
        except Exception as exc:  # reported below: an exception in a thread would pass silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with django_db_blocker.unblock():
        assert not errors and AlertFiring.objects.filter(rule=rule).count() == 1
        assert AlertDelivery.objects.get(firing__rule=rule).status == "sent"
        rule.tenant.alert_rules.all().delete()  # committed rows: leave no rule for other tests' checks
    assert [email.subject for email in mail.outbox if persona.tenant.name in email.subject] == [
        f"[Gatehouse] The balance of {persona.tenant.name} is $1.00, below $2.00."]


def test_a_failed_auto_recharge_payment_fires_the_alert(tenant):
    from billing.models import Payment
    from billing.payments import _payment_failed_locked

    alert_rule_create(tenant=tenant, kind="auto_recharge_failed")
    payment = Payment.objects.create(tenant=tenant, kind=Payment.Kind.AUTO_RECHARGE, amount_cents=2000)
    committed(_payment_failed_locked, payment_id=payment.pk, intent_id="pi_x", code="card_declined",
              message="Your card was declined.")
    assert AlertFiring.objects.get().period == f"payment-{payment.pk}"
    assert [email.subject for email in mail.outbox] == [
        "[Gatehouse] Auto-recharge failed for Acme: Your card was declined."]
