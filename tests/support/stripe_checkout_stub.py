"""A small stand-in for Stripe's Checkout (which localstripe lacks), for the tests.

- `POST /v1/checkout/sessions` answers a session like Stripe's, honouring the Idempotency-Key header (the
  same key gives the same session) and keeping every request's form parameters for the test to inspect.
- `GET /c/pay/{session}` — the session's `url` — is the hosted payment page: the amount and a Pay button.
- `POST /c/pay/{session}` pays: the session becomes complete and paid, a `checkout.session.completed`
  event (amount, currency, client_reference_id and metadata as the session was created) is signed with
  `stripe.WebhookSignature.generate_signature_header` and posted to `webhook_url`, and the browser is sent
  to the session's success_url — the order Stripe keeps (the webhook may still arrive after the redirect).

`running_checkout_stub()` serves it from a thread of its own, for the end-to-end tests whose browser and
service are driven from synchronous code.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import stripe
from aiohttp import web

from tests.support.net import free_port
from tests.support.stripe_events import WEBHOOK_SECRET, event

_METADATA = re.compile(r"metadata\[([^\]]+)\]")


@dataclass
class Delivery:
    event_id: str
    event_type: str
    status: int  # what the service answered


@dataclass
class CheckoutStub:
    requests: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by idempotency key
    fail_next: int = 0  # answer this many requests with a 500
    webhook_url: str | None = None  # where paying posts the signed event (the service's /webhooks/stripe)
    webhook_secret: str = WEBHOOK_SECRET
    deliveries: list[Delivery] = field(default_factory=list)

    def session(self, session_id: str) -> dict[str, Any] | None:
        return next((s for s in self.sessions.values() if s["id"] == session_id), None)

    async def create_session(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append({"idempotency_key": key, "authorization": request.headers.get("Authorization"), **form})
        if self.fail_next:
            self.fail_next -= 1
            return web.json_response({"error": {"type": "api_error", "message": "try again"}}, status=500)
        if key not in self.sessions:
            session_id = "cs_test_" + secrets.token_hex(12)
            metadata = {m.group(1): str(v) for k, v in form.items() if (m := _METADATA.fullmatch(k))}
            self.sessions[key] = {
                "id": session_id,
                "object": "checkout.session",
                "url": f"{request.url.origin()}/c/pay/{session_id}",
                "client_reference_id": form.get("client_reference_id"),
                "amount_total": int(str(form.get("line_items[0][price_data][unit_amount]", "0"))),
                "currency": form.get("line_items[0][price_data][currency]"),
                "metadata": metadata,
                "payment_intent": None,
                "payment_status": "unpaid",
                "status": "open",
                "mode": form.get("mode"),
                "success_url": form.get("success_url"),
                "cancel_url": form.get("cancel_url"),
            }
        return web.json_response(self.sessions[key])

    async def payment_page(self, request: web.Request) -> web.Response:
        session = self.session(request.match_info["id"])
        if session is None:
            return web.Response(status=404, text="no such Checkout Session")
        amount = f"{session['amount_total'] / 100:.2f} {str(session['currency']).upper()}"
        done = session["status"] == "complete"
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Checkout (test)</title></head>
<body><h1>Pay {html.escape(amount)}</h1>
<p data-testid="checkout-amount">{html.escape(amount)}</p>
<p>Reference <code data-testid="checkout-reference">{html.escape(str(session["client_reference_id"]))}</code></p>
<form method="post" action="/c/pay/{session["id"]}">
<button type="submit" data-testid="checkout-pay"{" disabled" if done else ""}>Pay</button></form>
<p><a href="{html.escape(str(session["cancel_url"]))}" data-testid="checkout-cancel">Back</a></p></body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def pay(self, request: web.Request) -> web.Response:
        session = self.session(request.match_info["id"])
        if session is None:
            return web.Response(status=404, text="no such Checkout Session")
        if session["status"] != "complete":
            session.update(status="complete", payment_status="paid", payment_intent="pi_" + secrets.token_hex(12))
            await self.deliver("checkout.session.completed", session)
        raise web.HTTPSeeOther(str(session["success_url"]))

    async def deliver(self, kind: str, obj: dict[str, Any]) -> Delivery:
        """Sign and post one event to `webhook_url`, as Stripe does."""
        assert self.webhook_url, "the stub has no webhook_url to post to"
        now = int(time.time())
        body = json.dumps(event(kind, {k: v for k, v in obj.items() if k != "url"}, created=now))
        header = stripe.WebhookSignature.generate_signature_header(body, self.webhook_secret, now)
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http,
            http.post(
                self.webhook_url,
                data=body.encode(),
                headers={"Content-Type": "application/json", "Stripe-Signature": header},
            ) as response,
        ):
            await response.read()
            delivery = Delivery(json.loads(body)["id"], kind, response.status)
        self.deliveries.append(delivery)
        return delivery

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self.create_session)
        app.router.add_get("/c/pay/{id}", self.payment_page)
        app.router.add_post("/c/pay/{id}", self.pay)
        return app


@dataclass
class RunningStub:
    stub: CheckoutStub
    base_url: str


@contextmanager
def running_checkout_stub(stub: CheckoutStub | None = None) -> Iterator[RunningStub]:
    """The stub on a free port of 127.0.0.1, served by an event loop in a thread of its own."""
    stub = stub or CheckoutStub()
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(stub.app(), access_log=None)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="checkout-stub", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the Checkout stub did not start")
    try:
        yield RunningStub(stub, f"http://127.0.0.1:{port}")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
