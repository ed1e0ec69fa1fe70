"""/api/v1 for self-service on the short number (docs/self-service.md): scratch-card vouchers (make a batch:
the codes are answered this once, only their hash is kept; list the batches) and the keyword SMS log.
Handlers parse, call `billing.self_service`, answer JSON; the console page shares `generate`.
Their OpenAPI description is `PATHS`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import self_service
from billing.rules.money import Money
from billing.rules.self_service import printed
from web.api.json import read_json, respond
from web.api.openapi import _ERRORS, _ok, _problem
from web.errors import InvalidInput
from web.keys import CLOCK, CURRENCY
from web.middleware import require_principal, uow_of
from web.permissions import requires
from web.security import client_address

PREFIX = "/api/v1"


async def generate(request: web.Request, count: int, amount_minor: int, note: str | None) -> self_service.VoucherBatch:
    return await self_service.generate_vouchers(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        count,
        Money(amount_minor, request.app[CURRENCY]),
        request.app[CLOCK](),
        note=note,
    )


def batch_json(batch: self_service.VoucherBatch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "count": len(batch.codes),
        "amount_minor": batch.amount.minor,
        "currency": batch.amount.currency,
        "codes": [printed(c) for c in batch.codes],
    }


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if type(value) is not int:
        raise InvalidInput(name, "must be an integer")
    return value


@requires("vouchers.generate")
async def create_batch(request: web.Request) -> web.Response:
    body = await read_json(request)
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 200):
        raise InvalidInput("note", "a text of at most 200 characters")
    batch = await generate(request, _int(body, "count"), _int(body, "amount_minor"), note)
    return respond(batch_json(batch), status=201)


@requires("vouchers.read")
async def list_batches(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        rows = await self_service.voucher_batches_list(conn)
    return respond({"items": rows})


@requires("communication.read")
async def list_sms_requests(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        rows = await self_service.sms_requests_of(conn, limit=200)
    return respond({"items": rows})


def setup_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/sms-requests", list_sms_requests)
    app.router.add_post(f"{PREFIX}/voucher-batches", create_batch)
    app.router.add_get(f"{PREFIX}/voucher-batches", list_batches)


_BATCH = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "count": {"type": "integer"},
        "amount_minor": {"type": "integer"},
        "currency": {"type": "string"},
        "codes": {
            "type": "array",
            "items": {"type": "string", "description": "14 digits in groups of four, the last a Luhn check digit"},
            "description": "shown this once: only their SHA-256 is kept",
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/voucher-batches": {
        "post": {
            "operationId": "createVoucherBatch",
            "summary": "Make a batch of single-use scratch-card vouchers, paid by SMS with PAY <code>; audited",
            "tags": ["payments"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["count", "amount_minor"],
                            "properties": {
                                "count": {"type": "integer", "minimum": 1, "maximum": self_service.MAX_BATCH},
                                "amount_minor": {"type": "integer", "minimum": 1},
                                "note": {"type": "string", "maxLength": 200},
                            },
                        }
                    }
                },
            },
            "responses": {**_ok(_BATCH, "made", "201"), **_ERRORS, **_problem("422", "a count or amount out of range")},
        },
        "get": {
            "operationId": "listVoucherBatches",
            "summary": "The voucher batches, newest first, with how many were used",
            "tags": ["payments"],
            "responses": {
                **_ok({"type": "object", "properties": {"items": {"type": "array", "items": {}}}}, "the batches"),
                **_ERRORS,
            },
        },
    },
    "/api/v1/sms-requests": {
        "get": {
            "operationId": "listSmsRequests",
            "summary": "The latest keyword SMS from subscribers' phones: keyword, outcome, the answer sent",
            "tags": ["communication"],
            "responses": {
                **_ok({"type": "object", "properties": {"items": {"type": "array", "items": {}}}}, "newest first"),
                **_ERRORS,
            },
        }
    },
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    for path, item in PATHS.items():
        paths[path] = {**paths.get(path, {}), **item}
