"""Console actions: relay off/on (with a confirmation and a reason), reading requests, cashier top-ups
and their receipts. Each handler parses the form, calls one use case, and redirects back to the card."""

from __future__ import annotations

from aiohttp import web

import meter_protocol as mp
from billing import receipts, topup
from billing.registry import get_meter, get_subscriber, update_subscriber
from web.commands import issue_command
from web.errors import InvalidInput, NotFound
from web.keys import CLOCK, CURRENCY, SERVICES, UTILITY_NAME
from web.middleware import require_principal, uow_of
from web.params import amount_minor, bounded_int, choice, path_id, text
from web.permissions import requires
from web.queries import portal as portal_queries
from web.security import client_address


def _request_id(form: object) -> str:
    value = form.get("request_id") if hasattr(form, "get") else None  # type: ignore[union-attr]
    if not isinstance(value, str) or not 16 <= len(value) <= 64:
        raise InvalidInput("request_id", "the form is incomplete; reload the page")
    return value


async def _subscriber_of_meter(request: web.Request, meter_id: int) -> int | None:
    async with uow_of(request).connect() as conn:
        meter = await get_meter(conn, meter_id)
    return meter.subscriber_id


@requires("commands.issue")
async def relay(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    action = choice(form, "action", ("off", "on"))
    reason = text(form, "reason", max_length=200)
    principal = require_principal(request)
    message = (
        mp.RelayOff(reason=mp.RelayReason.OPERATOR) if action == "off" else mp.RelayOn(reason=mp.RelayReason.OPERATOR)
    )
    await issue_command(
        uow_of(request),
        request.app[SERVICES].keys,
        principal.actor(client_address(request)),
        meter_id,
        message,
        request.app[CLOCK](),
        idempotency_key=f"web:{_request_id(form)}",
        note=reason,
    )
    subscriber_id = await _subscriber_of_meter(request, meter_id)
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=relay_{action}" if subscriber_id else "/console")


@requires("commands.issue")
async def read(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    principal = require_principal(request)
    await issue_command(
        uow_of(request),
        request.app[SERVICES].keys,
        principal.actor(client_address(request)),
        meter_id,
        mp.ReadRequest(items=mp.ReadItems.REGISTERS | mp.ReadItems.BALANCE),
        request.app[CLOCK](),
        idempotency_key=f"web:{_request_id(form)}",
    )
    subscriber_id = await _subscriber_of_meter(request, meter_id)
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=read" if subscriber_id else "/console")


@requires("payments.cash")
async def cash_top_up(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    form = await request.post()
    amount = amount_minor(form, "amount")
    principal = require_principal(request)
    async with uow_of(request).connect() as conn:
        subscriber = await get_subscriber(conn, subscriber_id)
    services = request.app[SERVICES]
    if services.keys is None:
        from web.errors import ServiceUnavailable

        raise ServiceUnavailable("meter keys are not loaded")
    result = await topup.cash_top_up(
        uow_of(request),
        principal.actor(client_address(request)),
        subscriber.code,
        amount,
        request.app[CURRENCY],
        request.app[CLOCK](),
        keys=services.keys,
        request_id=_request_id(form),
    )
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=topup&receipt={result.topup_id}")


@requires("tariffs.assign")
async def change_tariff(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    form = await request.post()
    tariff_id = bounded_int(form, "tariff_id", 0, 1, 10**18)
    if not tariff_id:
        raise InvalidInput("tariff_id", "is required")
    principal = require_principal(request)
    async with uow_of(request).begin() as conn:
        await update_subscriber(
            conn,
            principal.actor(client_address(request)),
            subscriber_id,
            {"tariff_id": tariff_id},
            request.app[CLOCK](),
        )
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=tariff")


@requires("payments.read")
async def receipt_pdf(request: web.Request) -> web.Response:
    topup_id = path_id(request, what="top-up")
    async with uow_of(request).connect() as conn:
        pdf = await receipts.render_receipt_pdf(conn, topup_id, utility=request.app[UTILITY_NAME])
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="receipt-{topup_id}.pdf"'},
    )


@requires("invoices.read")
async def invoice_pdf(request: web.Request) -> web.Response:
    invoice_id = path_id(request, what="invoice")
    async with uow_of(request).connect() as conn:
        found = await portal_queries.invoice_pdf(conn, None, invoice_id)
    if found is None:
        raise NotFound("invoice", invoice_id)
    number, pdf = found
    return web.Response(
        body=pdf, content_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{number}.pdf"'}
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/console/meters/{id}/relay", relay)
    app.router.add_post("/console/meters/{id}/read", read)
    app.router.add_post("/console/subscribers/{id}/topup", cash_top_up)
    app.router.add_post("/console/subscribers/{id}/tariff", change_tariff)
    app.router.add_get("/console/topups/{id}/receipt.pdf", receipt_pdf)
    app.router.add_get("/console/invoices/{id}.pdf", invoice_pdf)
