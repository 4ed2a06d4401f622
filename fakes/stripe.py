"""A fake Stripe: the few API endpoints Gatehouse calls, a hosted checkout page, and signed webhooks.

Point the official `stripe` library at it (``StripeClient(key, base_addresses={"api": URL})`` or
``stripe.api_base = URL``). Requests are form-encoded the way the library sends them (``a[b][0][c]=v``),
answers are Stripe's JSON objects, errors Stripe's ``{"error": {"type", "code", "message", "param"}}``
with its statuses (400, 401, 402 card errors, 404 ``resource_missing``). An ``Idempotency-Key``
replays the first answer, as Stripe does. Everything lives in memory; no Django, no network.

Run it::

    python -m fakes.stripe --host 127.0.0.1 --port 8300 \
        --webhook-url http://127.0.0.1:8000/billing/stripe/webhook --webhook-secret whsec_...

It prints ``fake-stripe listening on http://HOST:PORT``. The webhook URL and secret also come from
$FAKE_STRIPE_WEBHOOK_URL and $FAKE_STRIPE_WEBHOOK_SECRET, or ``POST /_fake/webhook``. Any
``Bearer sk_...`` key is accepted unless $FAKE_STRIPE_API_KEY (or ``build_app(api_key=...)``) says which.

API (``/v1``)
-------------
``POST /v1/customers``, ``GET /v1/customers/{id}``, ``GET /v1/customers/{id}/payment_methods``,
``GET /v1/payment_methods/{id}``, ``POST /v1/checkout/sessions`` (mode ``payment``, currency ``usd``,
``line_items`` with ``price_data``), ``GET /v1/checkout/sessions/{id}``, ``POST /v1/payment_intents``
(``confirm=true`` with a saved ``payment_method``: charged at once, ``off_session`` allowed),
``GET /v1/payment_intents/{id}``, ``GET /v1/payment_intents`` (``limit``, ``starting_after``,
``created[gte]``, ``customer``; newest first, ``has_more``), ``POST /v1/refunds`` (``payment_intent``
or ``charge``, optional ``amount``), ``GET /v1/refunds/{id}``.

A Checkout Session's ``url`` is this server's ``/checkout/{id}``: an HTML page with a **Pay** button
(and a Cancel link to ``cancel_url``). Paying creates a card PaymentMethod (attached to the customer when
the session has one and ``payment_intent_data[setup_future_usage]`` is set), a succeeded PaymentIntent
and its Charge, completes the session, sends ``payment_intent.succeeded`` then
``checkout.session.completed`` and redirects to ``success_url`` (``{CHECKOUT_SESSION_ID}`` replaced).

Webhooks
--------
Each event is POSTed as JSON to the webhook URL with ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"<t>.<body>" keyed by the secret>`` (Stripe's scheme, checked by ``stripe.Webhook.construct_event``).
Events: ``payment_intent.succeeded``, ``payment_intent.payment_failed``, ``checkout.session.completed``,
``charge.refunded``, ``charge.dispute.created``. Deliveries run in the background, in order, one at a
time; a failed delivery is not retried (resend it instead).

Test control (no auth)
----------------------
``GET /_fake/requests`` / ``DELETE /_fake/requests`` / ``GET /_fake/health`` as the other fakes (each
entry ``{"seq", "method", "path", "params", "status"}``); ``POST /_fake/webhook`` ``{"url", "secret"}``;
``POST /_fake/delivery`` ``{"duplicates": N, "delay_ms": N, "reverse": bool}`` (each event sent 1+N
times, after a delay, the events of one action in reverse order); ``GET /_fake/events`` (all events,
oldest first); ``GET /_fake/deliveries`` (``{"event", "type", "status", "at"}``);
``POST /_fake/events/{id}/resend``; ``POST /_fake/decline`` ``{"code", "decline_code"}`` (the next
off-session PaymentIntents fail with that card error until ``{"code": null}``);
``POST /_fake/checkout/{id}/pay`` (what the Pay button does, without a browser; answers the session);
``POST /_fake/charges/{id}/dispute`` ``{"amount"?, "reason"?}`` (opens a dispute: ``charge.dispute.created``);
``GET /_fake/wait_deliveries`` (answers once no delivery is pending).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import itertools
import os
import re
import secrets
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
from aiohttp import web

from . import serving

API_VERSION = "2026-10-28.endive"  # what the stripe library of pyproject.toml sends (stripe.api_version)
MIN_AMOUNT_CENTS = 50  # Stripe's minimum charge in USD
LIST_LIMIT_MAX = 100
_DECLINE_MESSAGES = {"insufficient_funds": "Your card has insufficient funds.",
                     "generic_decline": "Your card was declined.",
                     "authentication_required": "Your card was declined. This transaction requires authentication."}


class StripeError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.body = status, {"type": type, "message": message, **extra}
        if code:
            self.body["code"] = code
        if param:
            self.body["param"] = param


def _missing(kind: str, object_id: str) -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param="id")


def parse_form(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's form encoding (``a[b][0][c]=v``) to nested dicts and lists (all-numeric keys: a list)."""
    root: dict = {}
    for name, value in pairs:
        parts = re.findall(r"[^\[\]]+|\[\]", name)
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "[]":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})

    def lists(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        node = {key: lists(value) for key, value in node.items()}
        if node and all(key.isdigit() for key in node):
            return [node[key] for key in sorted(node, key=int)]
        return node

    return lists(root)


def _int(params: dict, name: str, *, required: bool = True) -> int | None:
    value = params.get(name)
    if value is None:
        if required:
            raise StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    if not str(value).lstrip("-").isdigit():
        raise StripeError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=name)
    return int(value)


def _bool(params: dict, name: str) -> bool:
    return str(params.get(name, "false")).lower() == "true"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's `Stripe-Signature` header for a payload."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class FakeStripe(serving.RequestLogControl):
    def __init__(self, *, log_requests: bool = True, api_key: str | None = None, webhook_url: str = "",
                 webhook_secret: str = "") -> None:
        self.log_requests, self.api_key = log_requests, api_key
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.requests: deque = deque(maxlen=1000)
        self._seq = itertools.count(1)
        self.objects: dict[str, dict] = {}  # every object by id
        self.events: list[dict] = []
        self.deliveries: list[dict] = []
        self.duplicates, self.delay_ms, self.reverse = 0, 0, False
        self.decline: dict | None = None
        self._idempotent: dict[str, tuple[int, bytes]] = {}
        self._queue: asyncio.Queue | None = None
        self._sender: asyncio.Task | None = None
        self._pending = 0

    # --- objects ---------------------------------------------------------------------------------------

    def _new(self, prefix: str, kind: str, **fields: Any) -> dict:
        obj = {"id": f"{prefix}_{secrets.token_hex(12)}", "object": kind, "created": int(time.time()),
               "livemode": False, **fields}
        self.objects[obj["id"]] = obj
        return obj

    def _get(self, object_id: str, kind: str) -> dict:
        obj = self.objects.get(object_id)
        if obj is None or obj["object"] != kind:
            raise _missing(kind, object_id)
        return obj

    def _metadata(self, params: dict) -> dict:
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise StripeError(400, "Invalid object", param="metadata")
        return metadata

    def _charge(self, *, amount: int, customer: str | None, payment_method: dict, metadata: dict,
                setup_future_usage: str | None, description: str | None) -> tuple[dict, dict]:
        intent = self._new("pi", "payment_intent", amount=amount, amount_received=amount, currency="usd",
                           customer=customer, payment_method=payment_method["id"], status="succeeded",
                           metadata=metadata, setup_future_usage=setup_future_usage, description=description,
                           capture_method="automatic", confirmation_method="automatic", last_payment_error=None,
                           payment_method_types=["card"])
        charge = self._new("ch", "charge", amount=amount, amount_captured=amount, amount_refunded=0,
                           currency="usd", customer=customer, payment_intent=intent["id"],
                           payment_method=payment_method["id"], paid=True, captured=True, refunded=False,
                           disputed=False, status="succeeded", metadata=metadata,
                           refunds={"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"})
        intent["latest_charge"] = charge["id"]
        return intent, charge

    def _card(self, customer: str | None) -> dict:
        return self._new("pm", "payment_method", type="card", customer=customer, billing_details={},
                         card={"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034,
                               "funding": "credit", "country": "US"})

    # --- webhooks ---------------------------------------------------------------------------------------

    def _emit(self, *pairs: tuple[str, dict]) -> None:
        """Record events (snapshots of their objects) and queue them for delivery, in order."""
        batch = []
        for kind, obj in pairs:
            event = self._new("evt", "event", api_version=API_VERSION, type=kind, pending_webhooks=1,
                              data={"object": orjson.loads(orjson.dumps(obj))},
                              request={"id": None, "idempotency_key": None})
            self.events.append(event)
            batch.append(event)
        self._deliver(batch[::-1] if self.reverse else batch)

    def _deliver(self, events: list[dict]) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all())
        for event in events:
            for _ in range(1 + self.duplicates):
                self._pending += 1
                self._queue.put_nowait((event, self.delay_ms))

    async def _send_all(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while True:
                event, delay_ms = await self._queue.get()
                try:
                    if delay_ms:
                        await asyncio.sleep(delay_ms / 1000)
                    await self._send(session, event)
                finally:
                    self._pending -= 1

    async def _send(self, session: aiohttp.ClientSession, event: dict) -> None:
        record = {"event": event["id"], "type": event["type"], "status": None, "at": time.time()}
        self.deliveries.append(record)
        if not self.webhook_url:
            record["status"] = "no webhook url"
            return
        body = orjson.dumps(event)
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Stripe-Signature": sign(body, self.webhook_secret)}
        try:
            async with session.post(self.webhook_url, data=body, headers=headers) as response:
                record["status"] = response.status
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            record["status"] = f"failed: {exc!r}"

    # --- HTTP plumbing ----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request, operation) -> web.Response:
        params = parse_form(parse_qsl(await request.text(), keep_blank_values=True)) if request.method == "POST" \
            else parse_form(list(request.query.items()))
        entry = {"seq": next(self._seq), "method": request.method, "path": request.path, "params": params,
                 "status": None}
        if self.log_requests:
            self.requests.append(entry)
        key = request.headers.get("Idempotency-Key")
        cache_key = f"{request.path}:{key}"
        if request.method == "POST" and key and cache_key in self._idempotent:
            status, body = self._idempotent[cache_key]
            entry["status"] = status
            return self._response(status, body, replayed=True)
        try:
            self._authorize(request)
            status, body = 200, orjson.dumps(operation(request, params))
        except StripeError as exc:
            status, body = exc.status, orjson.dumps({"error": exc.body})
        entry["status"] = status
        if request.method == "POST" and key:
            self._idempotent[cache_key] = (status, body)
        return self._response(status, body)

    def _response(self, status: int, body: bytes, replayed: bool = False) -> web.Response:
        headers = {"Request-Id": f"req_{secrets.token_hex(7)}", "Stripe-Version": API_VERSION}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return web.Response(status=status, body=body, content_type="application/json", headers=headers)

    def _authorize(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else ""
        if not key:
            raise StripeError(401, "You did not provide an API key. You need to provide your API key in the "
                                   "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        if (self.api_key and key != self.api_key) or not key.startswith(("sk_", "rk_")):
            raise StripeError(401, f"Invalid API Key provided: {key[:8]}{'*' * 8}")

    def route(self, operation):
        async def handler(request: web.Request) -> web.Response:
            return await self._handle(request, operation)

        return handler

    # --- API operations ---------------------------------------------------------------------------------

    def customer_create(self, request, params):
        return self._new("cus", "customer", email=params.get("email"), name=params.get("name"),
                         description=params.get("description"), metadata=self._metadata(params),
                         invoice_settings={"default_payment_method": None})

    def customer_get(self, request, params):
        return self._get(request.match_info["id"], "customer")

    def customer_payment_methods(self, request, params):
        customer = self._get(request.match_info["id"], "customer")["id"]
        methods = [o for o in self.objects.values() if o["object"] == "payment_method" and o["customer"] == customer]
        return {"object": "list", "data": methods[::-1], "has_more": False,
                "url": f"/v1/customers/{customer}/payment_methods"}

    def payment_method_get(self, request, params):
        return self._get(request.match_info["id"], "payment_method")

    def session_create(self, request, params):
        if params.get("mode") != "payment":
            raise StripeError(400, "This fake serves only mode=payment sessions.", param="mode")
        for name in ("success_url",):
            if not params.get(name):
                raise StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise StripeError(400, "Missing required param: line_items.", code="parameter_missing", param="line_items")
        total = 0
        for i, item in enumerate(items):
            price = item.get("price_data") or {}
            if price.get("currency") != "usd":
                raise StripeError(400, "This fake charges only in usd.", param=f"line_items[{i}][price_data][currency]")
            if not (price.get("product_data") or {}).get("name"):
                raise StripeError(400, "Missing required param: line_items[0][price_data][product_data][name].",
                                  code="parameter_missing", param=f"line_items[{i}][price_data][product_data][name]")
            total += _int(price, "unit_amount") * (_int(item, "quantity", required=False) or 1)
        if total < MIN_AMOUNT_CENTS:
            raise StripeError(400, "The Checkout Session's total amount due must add up to at least $0.50 usd",
                              param="line_items")
        customer = params.get("customer")
        if customer:
            self._get(customer, "customer")
        intent_data = params.get("payment_intent_data") or {}
        session = self._new("cs_test", "checkout.session", mode="payment", status="open", payment_status="unpaid",
                            amount_subtotal=total, amount_total=total, currency="usd", customer=customer,
                            client_reference_id=params.get("client_reference_id"), metadata=self._metadata(params),
                            success_url=params["success_url"], cancel_url=params.get("cancel_url"),
                            payment_intent=None, payment_method_types=["card"],
                            expires_at=int(time.time()) + 86400, _intent_data=intent_data)
        session["url"] = f"{request.scheme}://{request.host}/checkout/{session['id']}"
        return self._public(session)

    def session_get(self, request, params):
        return self._public(self._get(request.match_info["id"], "checkout.session"))

    @staticmethod
    def _public(obj: dict) -> dict:
        return {key: value for key, value in obj.items() if not key.startswith("_")}

    def intent_create(self, request, params):
        amount = _int(params, "amount")
        if params.get("currency") != "usd":
            raise StripeError(400, "This fake charges only in usd.", param="currency")
        if amount < MIN_AMOUNT_CENTS:
            raise StripeError(400, "Amount must be at least $0.50 usd", code="amount_too_small", param="amount")
        if not _bool(params, "confirm"):
            raise StripeError(400, "This fake serves only confirm=true PaymentIntents.", param="confirm")
        customer = params.get("customer")
        if customer:
            self._get(customer, "customer")
        method = self._get(params.get("payment_method") or "", "payment_method")
        if _bool(params, "off_session") and method["customer"] != customer:
            raise StripeError(400, "The provided PaymentMethod was previously used with a PaymentIntent without "
                                   "Customer attachment ... it cannot be used again.", param="payment_method")
        metadata = self._metadata(params)
        if self.decline:
            intent = self._new("pi", "payment_intent", amount=amount, amount_received=0, currency="usd",
                               customer=customer, payment_method=None, status="requires_payment_method",
                               metadata=metadata, description=params.get("description"), latest_charge=None)
            code = self.decline.get("decline_code") or self.decline["code"]
            error = {"type": "card_error", "code": self.decline["code"], "decline_code": code,
                     "message": _DECLINE_MESSAGES.get(code, "Your card was declined."),
                     "payment_method": method}
            intent["last_payment_error"] = error
            self._emit(("payment_intent.payment_failed", intent))
            raise StripeError(402, error["message"], type="card_error", code=self.decline["code"],
                              decline_code=code, payment_intent=intent)
        intent, charge = self._charge(amount=amount, customer=customer, payment_method=method, metadata=metadata,
                                      setup_future_usage=params.get("setup_future_usage"),
                                      description=params.get("description"))
        self._emit(("charge.succeeded", charge), ("payment_intent.succeeded", intent))
        return intent

    def intent_get(self, request, params):
        return self._get(request.match_info["id"], "payment_intent")

    def intent_list(self, request, params):
        limit = min(LIST_LIMIT_MAX, _int(params, "limit", required=False) or 10)
        intents = [o for o in self.objects.values() if o["object"] == "payment_intent"][::-1]  # newest first
        created = params.get("created")
        if isinstance(created, dict) and created.get("gte"):
            intents = [o for o in intents if o["created"] >= int(created["gte"])]
        if params.get("customer"):
            intents = [o for o in intents if o["customer"] == params["customer"]]
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in intents]
            if after not in ids:
                raise _missing("payment_intent", after)
            intents = intents[ids.index(after) + 1:]
        return {"object": "list", "data": intents[:limit], "has_more": len(intents) > limit, "url": "/v1/payment_intents"}

    def refund_create(self, request, params):
        if params.get("charge"):
            charge = self._get(params["charge"], "charge")
        else:
            intent = self._get(params.get("payment_intent") or "", "payment_intent")
            if not intent.get("latest_charge"):
                raise StripeError(400, f"PaymentIntent {intent['id']} has no charge to refund.", param="payment_intent")
            charge = self._get(intent["latest_charge"], "charge")
        left = charge["amount"] - charge["amount_refunded"]
        amount = _int(params, "amount", required=False) or left
        if left <= 0:
            raise StripeError(400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
        if amount > left:
            raise StripeError(400, f"Refund amount (${amount / 100:.2f}) is greater than unrefunded amount on charge "
                                   f"(${left / 100:.2f})", param="amount")
        refund = self._new("re", "refund", amount=amount, charge=charge["id"], payment_intent=charge["payment_intent"],
                           currency="usd", status="succeeded", reason=params.get("reason"),
                           metadata=self._metadata(params))
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        self._emit(("charge.refunded", charge))
        return refund

    def refund_get(self, request, params):
        return self._get(request.match_info["id"], "refund")

    # --- the hosted checkout page ---------------------------------------------------------------------------

    def _pay(self, session: dict) -> dict:
        if session["status"] != "open":
            raise StripeError(400, f"Checkout Session {session['id']} is {session['status']}.")
        intent_data = session["_intent_data"]
        future = intent_data.get("setup_future_usage")
        method = self._card(session["customer"] if future else None)
        intent, charge = self._charge(amount=session["amount_total"], customer=session["customer"],
                                      payment_method=method, metadata=intent_data.get("metadata") or {},
                                      setup_future_usage=future, description=intent_data.get("description"))
        session.update(status="complete", payment_status="paid", payment_intent=intent["id"])
        self._emit(("charge.succeeded", charge), ("payment_intent.succeeded", intent),
                   ("checkout.session.completed", self._public(session)))
        return session

    async def checkout_page(self, request: web.Request) -> web.Response:
        session = self.objects.get(request.match_info["id"])
        if session is None or session["object"] != "checkout.session":
            return web.Response(status=404, text="No such checkout session")
        amount = f"${session['amount_total'] / 100:,.2f}"
        cancel = html.escape(session["cancel_url"] or "", quote=True)
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Pay {amount} · Fake Stripe Checkout</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family:sans-serif;max-width:28rem;margin:3rem auto">
<h1>Fake Stripe Checkout</h1><p>Pay <strong data-testid="amount">{amount}</strong> with the test card 4242 4242 4242 4242.</p>
<p>Status: {html.escape(session['status'])}</p>
<form method="post" action="/checkout/{session['id']}/pay"><button type="submit">Pay {amount}</button></form>
{f'<p><a href="{cancel}">Cancel</a></p>' if cancel else ''}</body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def checkout_pay(self, request: web.Request) -> web.Response:
        session = self.objects.get(request.match_info["id"])
        if session is None or session["object"] != "checkout.session":
            return web.Response(status=404, text="No such checkout session")
        try:
            self._pay(session)
        except StripeError as exc:
            return web.Response(status=exc.status, text=exc.body["message"])
        raise web.HTTPSeeOther(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]))

    # --- test control -----------------------------------------------------------------------------------------

    async def control_pay(self, request: web.Request) -> web.Response:
        try:
            session = self._pay(self._get(request.match_info["id"], "checkout.session"))
        except StripeError as exc:
            return web.json_response({"error": exc.body}, status=exc.status)
        return web.json_response(self._public(session))

    async def control_webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.webhook_url, self.webhook_secret = body.get("url", self.webhook_url), body.get("secret", self.webhook_secret)
        return web.json_response({"url": self.webhook_url})

    async def control_delivery(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.duplicates = int(body.get("duplicates", 0))
        self.delay_ms = int(body.get("delay_ms", 0))
        self.reverse = bool(body.get("reverse", False))
        return web.json_response({"duplicates": self.duplicates, "delay_ms": self.delay_ms, "reverse": self.reverse})

    async def control_events(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.events), content_type="application/json")

    async def control_deliveries(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.deliveries), content_type="application/json")

    async def control_resend(self, request: web.Request) -> web.Response:
        event = self.objects.get(request.match_info["id"])
        if event is None or event["object"] != "event":
            return web.json_response({"error": {"message": "no such event"}}, status=404)
        self._deliver([event])
        return web.json_response({"ok": True})

    async def control_decline(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.decline = body if body.get("code") else None
        return web.json_response({"decline": self.decline})

    async def control_dispute(self, request: web.Request) -> web.Response:
        charge = self.objects.get(request.match_info["id"])
        if charge is None or charge["object"] != "charge":
            return web.json_response({"error": {"message": "no such charge"}}, status=404)
        body = await request.json() if request.can_read_body else {}
        dispute = self._new("dp", "dispute", amount=int(body.get("amount", charge["amount"])), charge=charge["id"],
                            payment_intent=charge["payment_intent"], currency="usd", status="needs_response",
                            reason=body.get("reason", "fraudulent"), metadata={})
        charge["disputed"] = True
        self._emit(("charge.dispute.created", dispute))
        return web.json_response(dispute)

    async def control_wait(self, request: web.Request) -> web.Response:
        while self._pending:
            await asyncio.sleep(0.02)
        return web.json_response({"ok": True})

    async def not_found(self, request: web.Request) -> web.Response:
        return self._response(404, orjson.dumps({"error": {"type": "invalid_request_error",
                                                           "message": f"Unrecognized request URL ({request.method}: {request.path})."}}))


FAKE_KEY = web.AppKey("fake_stripe", FakeStripe)


def build_app(*, log_requests: bool = True, api_key: str | None = None, webhook_url: str | None = None,
              webhook_secret: str | None = None) -> web.Application:
    fake = FakeStripe(log_requests=log_requests, api_key=api_key or os.environ.get("FAKE_STRIPE_API_KEY") or None,
                      webhook_url=webhook_url or os.environ.get("FAKE_STRIPE_WEBHOOK_URL", ""),
                      webhook_secret=webhook_secret or os.environ.get("FAKE_STRIPE_WEBHOOK_SECRET", ""))
    app = web.Application()
    app[FAKE_KEY] = fake
    api = (("POST", "/v1/customers", fake.customer_create), ("GET", "/v1/customers/{id}", fake.customer_get),
           ("GET", "/v1/customers/{id}/payment_methods", fake.customer_payment_methods),
           ("GET", "/v1/payment_methods/{id}", fake.payment_method_get),
           ("POST", "/v1/checkout/sessions", fake.session_create), ("GET", "/v1/checkout/sessions/{id}", fake.session_get),
           ("POST", "/v1/payment_intents", fake.intent_create), ("GET", "/v1/payment_intents", fake.intent_list),
           ("GET", "/v1/payment_intents/{id}", fake.intent_get),
           ("POST", "/v1/refunds", fake.refund_create), ("GET", "/v1/refunds/{id}", fake.refund_get))
    for method, path, operation in api:
        app.router.add_route(method, path, fake.route(operation))
    pages_and_control = (
        ("GET", "/checkout/{id}", fake.checkout_page), ("POST", "/checkout/{id}/pay", fake.checkout_pay),
        ("POST", "/_fake/checkout/{id}/pay", fake.control_pay), ("POST", "/_fake/webhook", fake.control_webhook),
        ("POST", "/_fake/delivery", fake.control_delivery), ("GET", "/_fake/events", fake.control_events),
        ("GET", "/_fake/deliveries", fake.control_deliveries),
        ("POST", "/_fake/events/{id}/resend", fake.control_resend), ("POST", "/_fake/decline", fake.control_decline),
        ("POST", "/_fake/charges/{id}/dispute", fake.control_dispute),
        ("GET", "/_fake/wait_deliveries", fake.control_wait))
    for method, path, handler in pages_and_control:
        app.router.add_route(method, path, handler)
    fake.add_control_routes(app)
    app.router.add_route("*", "/{tail:.*}", fake.not_found)
    return app


async def start(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> tuple[web.AppRunner, int]:
    """Serve `build_app(**kwargs)` on the running loop; returns (runner, bound port). Stop: runner.cleanup()."""
    return await serving.start(build_app, host, port, **kwargs)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret")
    known, rest = parser.parse_known_args(argv if argv is not None else sys.argv[1:])
    serving.main(lambda **kwargs: build_app(webhook_url=known.webhook_url, webhook_secret=known.webhook_secret, **kwargs),
                 name="fake-stripe", module="fakes.stripe", description=__doc__.splitlines()[0],
                 default_port=8300, argv=rest)


if __name__ == "__main__":
    sys.exit(main())
