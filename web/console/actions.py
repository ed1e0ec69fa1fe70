"""Console actions: relay off/on (with a confirmation and a reason), reading requests, tariff changes,
cashier top-ups and their receipts. Each handler parses the form, calls one use case of billing
(`control_meter`, `assign_tariff`, `cash_top_up`), and redirects back to the card."""

from __future__ import annotations

from aiohttp import web

from billing import receipts, topup
from billing.control import Action, Control, control_meter
from billing.meter_registry import get_meter
from billing.registry import get_subscriber
from billing.tariffs import assign_tariff
from web.errors import InvalidInput, NotFound
from web.keys import CLOCK, CURRENCY, UTILITY_NAME
from web.middleware import heat_in_gcal, keys_of, require_principal, uow_of
from web.params import amount_minor, bounded_int, choice, path_id, text
from web.permissions import requires
from web.queries import outcomes
from web.queries import portal as portal_queries
from web.security import client_address


def _request_id(form: object) -> str:
    value = form.get("request_id") if hasattr(form, "get") else None
    if not isinstance(value, str) or not 16 <= len(value) <= 64:
        raise InvalidInput("request_id", "the form is incomplete; reload the page")
    return value


async def _subscriber_of_meter(request: web.Request, meter_id: int) -> int | None:
    async with uow_of(request).connect() as conn:
        meter = await get_meter(conn, meter_id)
    return meter.subscriber_id


async def _back_to_card(request: web.Request, meter_id: int, ok: str, command_id: int) -> web.HTTPSeeOther:
    """To the subscriber's card (the meter's, for a meter without one), where the command's outcome shows live."""
    subscriber_id = await _subscriber_of_meter(request, meter_id)
    card = f"/console/subscribers/{subscriber_id}" if subscriber_id else f"/console/meters/{meter_id}"
    return web.HTTPSeeOther(f"{card}?ok={ok}&command={command_id}")


async def _control(request: web.Request, meter_id: int, control: Control, form: object) -> int:
    return await control_meter(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        control,
        request.app[CLOCK](),
        keys=keys_of(request),
        idempotency_key=f"web:{_request_id(form)}",
    )


@requires("commands.issue")
async def relay(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    action = choice(form, "action", ("off", "on"))
    reason = text(form, "reason", max_length=200)
    command_id = await _control(
        request, meter_id, Control(Action.RELAY_OFF if action == "off" else Action.RELAY_ON, note=reason), form
    )
    raise await _back_to_card(request, meter_id, f"relay_{action}", command_id)


@requires("commands.issue")
async def read(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    command_id = await _control(request, meter_id, Control(Action.READ), form)
    raise await _back_to_card(request, meter_id, "read", command_id)


@requires("payments.cash")
async def cash_top_up(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    form = await request.post()
    amount = amount_minor(form, "amount")
    principal = require_principal(request)
    async with uow_of(request).connect() as conn:
        subscriber = await get_subscriber(conn, subscriber_id)
    result = await topup.cash_top_up(
        uow_of(request),
        principal.actor(client_address(request)),
        subscriber.code,
        amount,
        request.app[CURRENCY],
        request.app[CLOCK](),
        keys=keys_of(request),
        request_id=_request_id(form),
    )
    follow = f"&command={result.command_id}" if result.command_id else ""
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=topup{follow}&receipt={result.topup_id}")


@requires("tariffs.assign")
async def change_tariff(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    form = await request.post()
    tariff_id = bounded_int(form, "tariff_id", 0, 1, 10**18)
    if not tariff_id:
        raise InvalidInput("tariff_id", "is required")
    await assign_tariff(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        tariff_id,
        request.app[CLOCK](),
        keys=keys_of(request),
        heat_in_gcal=heat_in_gcal(request),
        subscriber_ids=[subscriber_id],
    )
    async with uow_of(request).connect() as conn:
        command_id = await outcomes.latest_command_of_subscriber(conn, subscriber_id, "set_tariff")
    follow = f"&command={command_id}" if command_id else ""
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=tariff{follow}")


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
