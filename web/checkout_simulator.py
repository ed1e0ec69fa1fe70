"""The built-in payment simulator's card page (payments/checkout_simulator.py), where Stripe's hosted Checkout
page would be; on only when the composition root turned the simulator on.

- `GET /checkout/simulator/{session}` — the card form: the amount, what is paid for, a card number
  (4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined), Pay, Decline and Cancel.
- `POST /checkout/simulator/{session}` — `action` pay | decline | cancel. Paying and declining post the signed
  webhook to this service's own `/webhooks/stripe`, at the address this request came in on (the service
  itself, whatever host name or port it was reached by), then send the browser back to the portal.
Anyone holding the session id (random, 128 bits) may pay it, as on Stripe's page.
"""

from __future__ import annotations

import re

from aiohttp import web

from payments.checkout_simulator import (
    PAGE_PATH,
    PAYING_CARD,
    CheckoutSimulator,
    PageOutcome,
    SessionState,
    card_problem,
)
from web.params import text
from web.permissions import public
from web.render import render
from web.webhooks import PAYMENT_SERVICES

_SESSION = re.compile(r"cs_sim_[0-9a-f]{32}")


def _simulator(request: web.Request) -> CheckoutSimulator:
    simulator = request.app[PAYMENT_SERVICES].simulator
    if simulator is None:
        raise web.HTTPNotFound(text="the payment simulator is not on here")
    return simulator


def _session_id(request: web.Request) -> str:
    session_id = request.match_info["session"]
    if not _SESSION.fullmatch(session_id):
        raise web.HTTPNotFound(text="no such checkout")
    return session_id


def _own_webhook_url(request: web.Request) -> str:
    """This service's /webhooks/stripe at the local address of the connection the browser used."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = str(sockname[0]), int(sockname[1])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/webhooks/stripe"
    return str(request.url.origin()) + "/webhooks/stripe"


def _page(
    request: web.Request, *, card: str = PAYING_CARD, error: str | None = None, status: int = 200
) -> web.Response:
    session = _simulator(request).session(_session_id(request))
    if session is None:
        raise web.HTTPNotFound(text="no such checkout (the simulator forgets its checkouts when it restarts)")
    return render(
        request,
        "payments/simulator.html",
        {"s": session, "open": session.state is SessionState.OPEN, "card": card, "error": error},
        status=status,
    )


@public
async def checkout_page(request: web.Request) -> web.Response:
    return _page(request)


@public
async def checkout_action(request: web.Request) -> web.Response:
    simulator, session_id = _simulator(request), _session_id(request)
    form = await request.post()
    action = text(form, "action", max_length=10)
    outcome: PageOutcome | None
    if action == "pay":
        card = text(form, "card", required=False, max_length=30)
        if (problem := card_problem(card)) is not None:
            return _page(request, card=card, error=problem, status=400)
        lose = form.get("lose_webhook") == "1"  # the webhook never arrives: the reconciliation finds the payment
        outcome = await simulator.pay(session_id, card, _own_webhook_url(request), lose_webhook=lose)
    elif action == "decline":
        outcome = await simulator.decline(session_id, _own_webhook_url(request))
    elif action == "cancel":
        outcome = simulator.cancel(session_id)
    else:
        raise web.HTTPBadRequest(text="action must be pay, decline or cancel")
    if outcome is None:
        raise web.HTTPNotFound(text="no such checkout")
    raise web.HTTPSeeOther(outcome.redirect_to)


def setup_routes(app: web.Application) -> None:
    app.router.add_get(PAGE_PATH + "/{session}", checkout_page)
    app.router.add_post(PAGE_PATH + "/{session}", checkout_action)
