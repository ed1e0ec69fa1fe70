"""Online top-up pages: pick an amount → Stripe Checkout → the return page with the live state.

- `GET /topup` — the form (account code, meter, amount).
- `POST /topup` — starts a Checkout Session and redirects (303) to Stripe.
- `GET /topup/{reference}` — the return page; it polls the status endpoint until the credit is at 1:1.
- `GET /api/topups/{reference}` — the top-up's state as JSON (payment, then the command's 0:0 … 1:1).
The reference is random (128 bits) and is the only key to a top-up's state page.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

import jinja2
from aiohttp import web

from payments.checkout import TopUpRequest, TopUpService
from payments.errors import CheckoutRefused, ProviderUnavailable
from web.webhooks import PAYMENT_SERVICES

log = logging.getLogger("smsmeter.web.checkout")
_HERE = Path(__file__).parent / "templates" / "payments"


def _service(request: web.Request) -> TopUpService:
    service = request.app[PAYMENT_SERVICES].topups
    if service is None:
        raise web.HTTPServiceUnavailable(text="online top-up is not ready", headers={"Retry-After": "30"})
    return service


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates" / "payments"),
    autoescape=True,
    enable_async=True,
)
_REFERENCE = re.compile(r"tp_[0-9a-f]{32}")


async def _render(name: str, status: int = 200, **context: object) -> web.Response:
    html = await _TEMPLATES.get_template(name).render_async(**context)
    return web.Response(text=html, content_type="text/html", status=status)


def _minor_to_text(amount_minor: int) -> str:
    return f"{amount_minor // 100}.{amount_minor % 100:02d}"


async def topup_form(request: web.Request) -> web.Response:
    service = _service(request)
    return await _render(
        "topup.html",
        amounts=[(a, _minor_to_text(a)) for a in service.amounts_minor],
        request_key=secrets.token_hex(16),
        subscriber=request.query.get("account", ""),
        meter=request.query.get("meter", ""),
        error=None,
    )


def _parse_amount(form_value: str) -> int:
    text = form_value.strip()
    match = re.fullmatch(r"(\d{1,9})(?:[.,](\d{1,2}))?", text)
    if match is None:
        raise CheckoutRefused("amount", "enter an amount like 10 or 10.50")
    whole, cents = match.group(1), (match.group(2) or "0").ljust(2, "0")
    return int(whole) * 100 + int(cents)


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
        preset = str(form.get("amount", "")).strip()  # minor units, from the offered amounts
        if custom:
            amount = _parse_amount(custom)
        elif preset.isdigit():
            amount = int(preset)
        else:
            raise CheckoutRefused("amount", "choose or enter an amount")
        started = await service.start(
            TopUpRequest(subscriber, meter, amount, request_key=str(form.get("request_key", "")) or None)
        )
    except CheckoutRefused as exc:
        log.info("top-up refused: %s: %s", exc.field, exc.reason)
        return await _render(
            "topup.html",
            status=400,
            amounts=[(a, _minor_to_text(a)) for a in service.amounts_minor],
            request_key=secrets.token_hex(16),
            subscriber=subscriber,
            meter=meter or "",
            error=f"{exc.field}: {exc.reason}",
        )
    except ProviderUnavailable as exc:
        log.warning("top-up could not start: %s", exc.reason)
        return await _render("unavailable.html", status=502, reason="The payment service did not answer; try again.")
    raise web.HTTPSeeOther(started.checkout_url)


async def topup_page(request: web.Request) -> web.Response:
    reference = request.match_info["reference"]
    status = await _service(request).status(reference) if _REFERENCE.fullmatch(reference) else None
    if status is None:
        raise web.HTTPNotFound(text="no such top-up")
    return await _render(
        "return.html",
        status_json=status.as_json(),
        amount=_minor_to_text(status.amount_minor),
        currency=status.currency,
        reference=reference,
        cancelled=request.query.get("cancelled") == "1",
    )


async def topup_status_json(request: web.Request) -> web.Response:
    reference = request.match_info["reference"]
    status = await _service(request).status(reference) if _REFERENCE.fullmatch(reference) else None
    if status is None:
        return web.json_response({"error": "no such top-up"}, status=404)
    return web.json_response(status.as_json(), headers={"Cache-Control": "no-store"})


async def topup_script(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(_HERE / "topup.js", headers={"Cache-Control": "max-age=300"})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/topup.js", topup_script)
    app.router.add_get("/topup", topup_form)
    app.router.add_post("/topup", start_topup)
    app.router.add_get("/topup/{reference}", topup_page)
    app.router.add_get("/api/topups/{reference}", topup_status_json)
