"""A small stand-in for Stripe's Checkout Sessions API (which localstripe lacks), for the tests.

`POST /v1/checkout/sessions` answers a session like Stripe's, honouring the Idempotency-Key header (the
same key gives the same session) and keeping every request's form parameters for the test to inspect.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class CheckoutStub:
    requests: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by idempotency key
    fail_next: int = 0  # answer this many requests with a 500

    async def create_session(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append({"idempotency_key": key, "authorization": request.headers.get("Authorization"), **form})
        if self.fail_next:
            self.fail_next -= 1
            return web.json_response({"error": {"type": "api_error", "message": "try again"}}, status=500)
        if key not in self.sessions:
            session_id = "cs_test_" + secrets.token_hex(12)
            self.sessions[key] = {
                "id": session_id,
                "object": "checkout.session",
                "url": f"https://checkout.stripe.test/c/pay/{session_id}",
                "client_reference_id": form.get("client_reference_id"),
                "amount_total": int(str(form.get("line_items[0][price_data][unit_amount]", "0"))),
                "currency": form.get("line_items[0][price_data][currency]"),
                "payment_intent": None,
                "payment_status": "unpaid",
                "status": "open",
                "mode": form.get("mode"),
            }
        return web.json_response(self.sessions[key])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self.create_session)
        return app
