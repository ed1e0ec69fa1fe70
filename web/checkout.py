"""Online top-up pages: pick an amount → Stripe Checkout → the return page with the live state.

- `GET /topup` — the form (account code — prefilled for a signed-in subscriber —, meter, amount).
- `POST /topup` — starts a Checkout Session and redirects (303) to Stripe.
- `GET /topup/{reference}` — the return page; it polls the status endpoint until the credit is at 1:1.
- `GET /api/topups/{reference}` — the top-up's state as JSON (payment, then the command's 0:0 … 1:1).
Paying for an account needs no sign-in (anyone may pay a bill); the reference is random (128 bits) and is
the only key to a top-up's state.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

from aiohttp import web

from payments.checkout import TopUpRequest, TopUpService
from payments.errors import CheckoutRefused, ProviderUnavailable
from web.middleware import principal_of
from web.permissions import public
from web.render import render
from web.webhooks import PAYMENT_SERVICES

log = logging.getLogger("smsmeter.web.checkout")
_HERE = Path(__file__).parent / "templates" / "payments"
_REFERENCE = re.compile(r"tp_[0-9a-f]{32}")


def _service(request: web.Request) -> TopUpService:
    service = request.app[PAYMENT_SERVICES].topups
    if service is None:  # this installation takes no online payments
        raise web.HTTPNotFound(text="online top-up is not enabled here")
    return service


def _form(request: web.Request, *, subscriber: str, meter: str, error: str | None, status: int = 200) -> web.Response:
    service = request.app[PAYMENT_SERVICES].topups
    return render(
        request,
        "payments/topup.html",
        {
            "amounts": service.amounts_minor if service else (),
            "request_key": secrets.token_hex(16),
            "subscriber": subscriber,
            "meter": meter,
            "error": error,
            "online": service is not None and service.gateway is not None,
        },
        status=status,
    )


@public
async def topup_form(request: web.Request) -> web.Response:
    principal = principal_of(request)
    code = request.query.get("account", "")
    if principal is not None and principal.kind == "subscriber" and not code:
        code = principal.name
    return _form(request, subscriber=code, meter=request.query.get("meter", ""), error=None)


def _parse_amount(form_value: str) -> int:
    match = re.fullmatch(r"(\d{1,9})(?:[.,](\d{1,2}))?", form_value.strip())
    if match is None:
        raise CheckoutRefused("amount", "enter an amount like 10 or 10.50")
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


@public
async def start_topup(request: web.Request) -> web.Response:
    service = _service(request)
    form = await request.post()
    subscriber = str(form.get("account", "")).strip()
    meter = str(form.get("meter", "")).strip() or None
    try:
        if not re.fullmatch(r"\d{15}", subscriber):
            raise CheckoutRefused("account", "the account code has 15 digits")
        if meter is not None and not re.fullmatch(r"\d{20}", meter):
            raise CheckoutRefused("meter", "the meter code has 20 digits")
        custom = str(form.get("amount_custom", "")).strip()  # major units, e.g. 12.50
        preset = str(form.get("amount", "")).strip()  # minor units, one of the offered amounts
        if custom:
            amount = _parse_amount(custom)
        elif preset.isdigit():
            amount = int(preset)
        else:
            raise CheckoutRefused("amount", "choose or enter an amount")
        request_key = str(form.get("request_key", "")).strip()[:64] or None
        started = await service.start(TopUpRequest(subscriber, meter, amount, request_key=request_key))
    except CheckoutRefused as exc:
        log.info("top-up refused: %s: %s", exc.field, exc.reason)
        return _form(request, subscriber=subscriber, meter=meter or "", error=f"{exc.field}: {exc.reason}", status=400)
    except ProviderUnavailable as exc:
        log.warning("top-up could not start: %s", exc.reason)
        return _form(
            request,
            subscriber=subscriber,
            meter=meter or "",
            error="The payment service did not answer; please try again.",
            status=502,
        )
    raise web.HTTPSeeOther(started.checkout_url)


async def _status_of(request: web.Request):  # type: ignore[no-untyped-def]
    reference = request.match_info["reference"]
    return await _service(request).status(reference) if _REFERENCE.fullmatch(reference) else None


@public
async def topup_page(request: web.Request) -> web.Response:
    status = await _status_of(request)
    if status is None:
        raise web.HTTPNotFound(text="no such top-up")
    return render(
        request,
        "payments/return.html",
        {
            "s": status,
            "status_json": status.as_json(),
            "cancelled": request.query.get("cancelled") == "1",
            "declined": request.query.get("declined") == "1",
        },
    )


@public
async def topup_status_json(request: web.Request) -> web.Response:
    status = await _status_of(request)
    if status is None:
        return web.json_response({"error": "no such top-up"}, status=404)
    return web.json_response(status.as_json(), headers={"Cache-Control": "no-store"})


@public
async def topup_script(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(_HERE / "topup.js", headers={"Cache-Control": "max-age=300"})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/topup.js", topup_script)
    app.router.add_get("/topup", topup_form)
    app.router.add_post("/topup", start_topup)
    app.router.add_get("/topup/{reference}", topup_page)
    app.router.add_get("/api/topups/{reference}", topup_status_json)
