"""/api/v1 for credit the wallet holds: paid while no meter was installed, or carried over from a replaced
meter, sent to the subscriber's active meter (`billing.topup.vend_held_credit`, audited `credit.vend_held`).
The handler parses, calls the use case, answers JSON; its OpenAPI description is `PATHS`."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from billing import topup
from web.api.json import respond
from web.api.openapi import _ERRORS, _ID, _ok, _problem
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import path_id
from web.permissions import requires
from web.security import client_address

PREFIX = "/api/v1"


def vended_json(result: topup.TopUpResult) -> dict[str, Any]:
    return {
        "topup_id": result.topup_id,
        "subscriber_id": result.subscriber_id,
        "meter_id": result.meter_id,
        "command_id": result.command_id,
        "transfer_id": result.transfer_id,
        "amount_minor": result.vended.minor,
        "currency": result.vended.currency,
        "state": result.state,
        "duplicate": result.duplicate,
    }


async def vend(request: web.Request, subscriber_id: int, request_id: str) -> topup.TopUpResult:
    """The use case for a door; InvalidInput when nothing is held or the subscriber has no active meter."""
    result = await topup.vend_held_credit(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        subscriber_id,
        request.app[CLOCK](),
        keys=keys_of(request),
        request_id=request_id,
    )
    if result is None:
        raise InvalidInput("subscriber", "the wallet holds no credit, or the subscriber has no active meter")
    return result


@requires("topups.reissue")
async def vend_held_credit(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    request_id = request.headers.get("Idempotency-Key") or secrets.token_hex(16)
    if not 1 <= len(request_id) <= 64:
        raise InvalidInput("Idempotency-Key", "1 to 64 characters")
    result = await vend(request, subscriber_id, request_id)
    return respond(vended_json(result), status=200 if result.duplicate else 201)


def setup_routes(app: web.Application) -> None:
    app.router.add_post(f"{PREFIX}/subscribers/{{id}}/vend-held-credit", vend_held_credit)


PATHS: dict[str, Any] = {
    "/api/v1/subscribers/{id}/vend-held-credit": {
        "post": {
            "operationId": "vendHeldCredit",
            "summary": "Send the credit the wallet holds to the subscriber's active meter (audited)",
            "description": "Credit paid while no meter was installed, or carried over from a replaced meter. "
            "A retry with the same Idempotency-Key answers the first result (200).",
            "tags": ["payments"],
            "parameters": [
                *_ID,
                {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 64}},
            ],
            "responses": {
                **_ok({"type": "object", "additionalProperties": True}, "the credit command queued", "201"),
                **_ERRORS,
                **_problem("404", "no such subscriber"),
                **_problem("422", "nothing held, or no active meter"),
            },
        }
    }
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    for path, item in PATHS.items():
        paths[path] = {**paths.get(path, {}), **item}
