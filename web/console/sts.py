"""Console doors of the STS keypad tokens (docs/sts.md): issue the token of a stuck credit (shown with its
20 digits and on the receipt), record a meter's keypad, issue and confirm its key change pair. Each handler
parses the form, calls one use case of billing (`billing.sts`) and redirects to where the outcome shows."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from billing import sts
from billing.errors import NotFound
from store.schema.ledger import topups
from web.keys import CLOCK
from web.middleware import require_principal, sts_of, uow_of
from web.params import bounded_int, path_id, text
from web.permissions import requires
from web.security import client_address


@requires("sts.token")
async def issue_token(request: web.Request) -> web.Response:
    topup_id = path_id(request, what="top-up")
    await request.post()
    issued = await sts.issue_credit_token(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        topup_id,
        request.app[CLOCK](),
        generator=sts_of(request),
    )
    async with uow_of(request).connect() as conn:
        subscriber_id = await conn.scalar(select(topups.c.subscriber_id).where(topups.c.id == issued.topup_id))
    if subscriber_id is None:  # pragma: no cover - the use case has just read it
        raise NotFound("top-up", topup_id)
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=sts_token&receipt={issued.topup_id}")


@requires("meters.write")
async def register_keypad(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    await sts.register_keypad(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        request.app[CLOCK](),
        supply_group_code=text(form, "supply_group_code", max_length=6),
        tariff_index=bounded_int(form, "tariff_index", 1, 0, 99),
        key_revision=bounded_int(form, "key_revision", 1, 1, 9),
    )
    raise web.HTTPSeeOther(f"/console/meters/{meter_id}?ok=sts_keypad")


@requires("meters.keys")
async def key_change(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    await request.post()
    await sts.issue_key_change(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        request.app[CLOCK](),
        generator=sts_of(request),
    )
    raise web.HTTPSeeOther(f"/console/meters/{meter_id}?ok=sts_key_change")


@requires("meters.keys")
async def key_change_accepted(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    await request.post()
    await sts.confirm_key_change(
        uow_of(request), require_principal(request).actor(client_address(request)), meter_id, request.app[CLOCK]()
    )
    raise web.HTTPSeeOther(f"/console/meters/{meter_id}?ok=sts_key_accepted")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/console/topups/{id}/sts-token", issue_token)
    r.add_post("/console/meters/{id}/sts-keypad", register_keypad)
    r.add_post("/console/meters/{id}/sts-key-change", key_change)
    r.add_post("/console/meters/{id}/sts-key-change/accept", key_change_accepted)
