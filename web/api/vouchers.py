"""/api/v1 for self-service on the short number (docs/self-service.md): scratch-card vouchers (make a batch:
the codes are answered this once, only their hash is kept; list the batches; withdraw a batch or one code) and
the keyword SMS log.
Handlers parse, call `billing.self_service`, answer JSON; the console page shares `generate`.
Their OpenAPI description is `PATHS`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import self_service
from billing import vouchers as voucher_use
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


async def generate(request: web.Request, count: int, amount_minor: int, note: str | None) -> voucher_use.VoucherBatch:
    return await voucher_use.generate_vouchers(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        count,
        Money(amount_minor, request.app[CURRENCY]),
        request.app[CLOCK](),
        note=note,
    )


async def void(
    request: web.Request, reason: str, *, batch_id: int | None = None, code: str | None = None
) -> voucher_use.Voided:
    return await voucher_use.void_vouchers(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        request.app[CLOCK](),
        reason=reason,
        batch_id=batch_id,
        code=code,
    )


def batch_json(batch: voucher_use.VoucherBatch) -> dict[str, Any]:
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


@requires("vouchers.void")
async def void_vouchers(request: web.Request) -> web.Response:
    body = await read_json(request)
    reason, batch_id, code = body.get("reason"), body.get("batch_id"), body.get("code")
    if not isinstance(reason, str):
        raise InvalidInput("reason", "a text: why the vouchers are withdrawn")
    if batch_id is not None and type(batch_id) is not int:
        raise InvalidInput("batch_id", "must be an integer")
    if code is not None and not isinstance(code, str):
        raise InvalidInput("code", "the code as printed")
    done = await void(request, reason, batch_id=batch_id, code=code)
    return respond(
        {"batch_id": done.batch_id, "voided": done.voided, "used": done.used, "already_void": done.already_void}
    )


@requires("vouchers.read")
async def list_batches(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        rows = await voucher_use.voucher_batches_list(conn)
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
    app.router.add_post(f"{PREFIX}/vouchers/void", void_vouchers)


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
                                "count": {"type": "integer", "minimum": 1, "maximum": voucher_use.MAX_BATCH},
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
    "/api/v1/vouchers/void": {
        "post": {
            "operationId": "voidVouchers",
            "summary": "Withdraw a batch's unused vouchers, or one code: PAY with them is refused; audited",
            "tags": ["payments"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["reason"],
                            "properties": {
                                "batch_id": {"type": "integer", "description": "a whole batch (or give `code`)"},
                                "code": {"type": "string", "description": "one code, as printed (or give `batch_id`)"},
                                "reason": {"type": "string", "maxLength": 200},
                            },
                        }
                    }
                },
            },
            "responses": {
                **_ok(
                    {
                        "type": "object",
                        "properties": {
                            "batch_id": {"type": "integer"},
                            "voided": {"type": "integer", "description": "codes withdrawn now"},
                            "used": {"type": "integer", "description": "already used: they stay used"},
                            "already_void": {"type": "integer"},
                        },
                    },
                    "withdrawn",
                ),
                **_ERRORS,
                **_problem("404", "no such batch or code"),
                **_problem("422", "no reason, or neither or both of batch_id and code"),
            },
        }
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
