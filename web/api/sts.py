"""/api/v1 operations of the STS keypad tokens (docs/sts.md): the token of a stuck credit, a meter's keypad,
its key change pair and its acceptance. Parse, call one use case of `billing.sts`, answer JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import sts
from web.api.json import read_json
from web.keys import CLOCK
from web.middleware import require_principal, sts_of, uow_of
from web.params import bounded_int, path_id, text
from web.permissions import requires
from web.queries.sts import keypads
from web.security import client_address

PREFIX = "/api/v1"


@requires("sts.token")
async def issue_token(request: web.Request) -> web.Response:
    """201 with the token; 200 with the same token when it was issued before."""
    issued = await sts.issue_credit_token(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        path_id(request, what="top-up"),
        request.app[CLOCK](),
        generator=sts_of(request),
    )
    body = {
        "topup_id": issued.topup_id,
        "meter_id": issued.meter_id,
        "token": issued.token,
        "token_grouped": sts.grouped(issued.token),
        "amount_minor": issued.amount.minor,
        "remainder_minor": issued.remainder.minor,
        "currency": issued.amount.currency,
        "cancelled_command_id": issued.cancelled_command_id,
        "delivered_by": "token",
        "duplicate": issued.duplicate,
    }
    return web.json_response(body, status=200 if issued.duplicate else 201)


async def _keypad(request: web.Request, meter_id: int, status: int = 200) -> web.Response:
    async with uow_of(request).connect() as conn:
        found = (await keypads(conn, [meter_id])).get(meter_id)
    body: dict[str, Any] = dict(found or {})
    for key in ("key_change_issued_at", "key_change_accepted_at"):
        if body.get(key) is not None:
            body[key] = body[key].isoformat()
    return web.json_response(body, status=status)


@requires("meters.write")
async def register_keypad(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    body = await read_json(request)
    await sts.register_keypad(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        request.app[CLOCK](),
        supply_group_code=text(body, "supply_group_code", max_length=6),
        tariff_index=bounded_int(body, "tariff_index", 1, 0, 99),
        key_revision=bounded_int(body, "key_revision", 1, 1, 9),
    )
    return await _keypad(request, meter_id, 201)


@requires("meters.read")
async def keypad(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    async with uow_of(request).connect() as conn:
        if meter_id not in await keypads(conn, [meter_id]):
            from web.errors import NotFound

            raise NotFound("STS keypad of meter", meter_id)
    return await _keypad(request, meter_id)


@requires("meters.keys")
async def key_change(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    await sts.issue_key_change(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        request.app[CLOCK](),
        generator=sts_of(request),
    )
    return await _keypad(request, meter_id, 201)


@requires("meters.keys")
async def key_change_accepted(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    await sts.confirm_key_change(
        uow_of(request), require_principal(request).actor(client_address(request)), meter_id, request.app[CLOCK]()
    )
    return await _keypad(request, meter_id)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{PREFIX}/topups/{{id}}/sts-token", issue_token)
    r.add_get(f"{PREFIX}/meters/{{id}}/sts-keypad", keypad)
    r.add_put(f"{PREFIX}/meters/{{id}}/sts-keypad", register_keypad)
    r.add_post(f"{PREFIX}/meters/{{id}}/sts-key-change", key_change)
    r.add_post(f"{PREFIX}/meters/{{id}}/sts-key-change/accept", key_change_accepted)
