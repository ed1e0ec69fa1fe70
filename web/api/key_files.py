"""/api/v1 for meters as the utility receives them (docs/operations.md §7b): the manufacturer's key file
imported, a batch's key file made for the factory, the meters in stock, a meter's protocol profile.
Handlers parse, call one use case of `billing.provisioning`, answer JSON; a refused file answers 422 with
every problem (line, field, reason)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import meter_registry, provisioning
from billing.rules.key_file import KeyFileRejected, parse_transport_key
from web.api.json import read_json, respond
from web.api.openapi import _ID, _INT, _NSTR, _STR, _TIME, _obj, _ok, _page_of, _problem
from web.api.openapi_registry import _body, _ref, operation
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import path_id
from web.permissions import requires
from web.problems import problem_response
from web.queries.stock import stock_meters
from web.security import client_address

IMPORT = "/api/v1/meters/key-files"
EXPORT = "/api/v1/meters/key-files/export"
STOCK = "/api/v1/meters/stock"
METER = "/api/v1/meters/{id}"
MAX_FILE_CHARS = 20_000_000


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def _text(body: dict[str, Any], name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise InvalidInput(name, f"a string of 1 to {max_length} characters is required")
    return value


def rejected(request: web.Request, exc: KeyFileRejected) -> web.Response:
    """422 with every problem of a refused key file or batch."""
    rejects = [{"line": r.line, "field": r.field, "reason": r.reason} for r in exc.rejects]
    return problem_response(
        request, 422, "Key file refused", exc.reason, "key-file-rejected", rows=exc.rows, rejects=rejects
    )


@requires("meters.keys")
async def import_key_file(request: web.Request) -> web.Response:
    body = await read_json(request)
    content = _text(body, "content", MAX_FILE_CHARS)
    transport_key = parse_transport_key(_text(body, "transport_key", 80))
    name = body.get("file_name") if isinstance(body.get("file_name"), str) else "api"
    try:
        result = await provisioning.import_key_file(
            uow_of(request),
            _actor(request),
            content.encode(),
            transport_key,
            file_name=str(name)[:200],
            master_key=keys_of(request),
            now=request.app[CLOCK](),
        )
    except KeyFileRejected as exc:
        return rejected(request, exc)
    return respond({"rows": result.rows, "created": result.created, "updated": result.updated}, status=201)


@requires("meters.keys")
async def export_key_file(request: web.Request) -> web.Response:
    body = await read_json(request)
    entries = body.get("meters")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput("meters", "a list of meters, each with meter_code (msisdn, profile, firmware, kind)")
    cells = [
        (n, {k: str(v) for k, v in e.items() if v is not None} if isinstance(e, dict) else {"meter_code": str(e)})
        for n, e in enumerate(entries, start=1)
    ]
    transport_key = parse_transport_key(_text(body, "transport_key", 80))
    key_id = body.get("key_id", 0)
    if not isinstance(key_id, int) or isinstance(key_id, bool):
        raise InvalidInput("key_id", "0 to 255")
    as_json = body.get("format", "csv") == "json"
    try:
        batch = provisioning.check_batch(cells)
        content = await provisioning.export_key_file(
            uow_of(request),
            _actor(request),
            batch,
            transport_key,
            master_key=keys_of(request),
            now=request.app[CLOCK](),
            key_id=key_id,
            as_json=as_json,
            name="api",
        )
    except KeyFileRejected as exc:
        return rejected(request, exc)
    return respond({"rows": len(batch), "format": "json" if as_json else "csv", "content": content.decode()}, 201)


@requires("meters.read")
async def list_stock(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items, total = await stock_meters(conn)
    return respond({"items": items, "total": total, "limit": len(items), "offset": 0})


@requires("meters.write")
async def update_meter(request: web.Request) -> web.Response:
    """Only the protocol profile may change this way."""
    from web.api.registry import _meter_json

    meter_id = path_id(request, what="meter")
    body = await read_json(request)
    unknown = set(body) - {"profile"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "only the profile of a meter changes here")
    async with uow_of(request).begin() as conn:
        await meter_registry.set_meter_profile(
            conn, _actor(request), meter_id, _text(body, "profile", 10), request.app[CLOCK]()
        )
    return await _meter_json(request, meter_id)


_REJECTED = {
    "422": {
        "description": "the file (or batch) is refused: nothing was imported; `rejects` lists every problem, or "
        "the transport key is wrong",
        "content": {
            "application/problem+json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "title": _STR,
                        "detail": _STR,
                        "rows": _INT,
                        "rejects": {"type": "array", "items": _ref("KeyFileReject")},
                    },
                }
            }
        },
    }
}

SCHEMAS: dict[str, Any] = {
    "KeyFileReject": _obj(
        line={**_INT, "description": "the CSV line (the header is line 1), or the entry's position in `meters`"},
        field=_STR,
        reason=_STR,
    ),
    "StockMeter": _obj(
        id=_INT, code=_STR, msisdn=_STR, profile=_STR, firmware=_NSTR, kind=_STR, key_id=_INT, received_at=_TIME
    ),
}

_TRANSPORT_KEY = {
    "type": "string",
    "pattern": "^[0-9a-fA-F]{32}([0-9a-fA-F]{16}){0,2}$",
    "description": "the transport key the file's keys are wrapped under (AES, hexadecimal)",
}

PATHS: dict[str, Any] = {
    IMPORT: {
        "post": operation(
            "importKeyFile",
            "Import a manufacturer's key file: the meters registered in stock, keys re-wrapped under the master key",
            "meters",
            "meters.keys",
            {**_ok(_obj(rows=_INT, created=_INT, updated=_INT), "imported", "201"), **_REJECTED},
            body=_body(
                {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string", "description": "the file's text: CSV or JSON (operations §7b)"},
                        "file_name": _STR,
                        "transport_key": _TRANSPORT_KEY,
                    },
                    "required": ["content", "transport_key"],
                }
            ),
            description="All or nothing; one audit row `meter.keys_import` with the counts, never a key.",
        )
    },
    EXPORT: {
        "post": operation(
            "exportKeyFile",
            "Fresh keys for a batch of meter codes, registered in stock; the key file for the factory",
            "meters",
            "meters.keys",
            {**_ok(_obj(rows=_INT, format=_STR, content=_STR), "the key file", "201"), **_REJECTED},
            body=_body(
                {
                    "type": "object",
                    "properties": {
                        "meters": {
                            "type": "array",
                            "items": _obj(meter_code=_STR, msisdn=_STR, profile=_STR, firmware=_STR, kind=_STR),
                        },
                        "transport_key": _TRANSPORT_KEY,
                        "key_id": {"type": "integer", "minimum": 0, "maximum": 255},
                        "format": {"type": "string", "enum": ["csv", "json"]},
                    },
                    "required": ["meters", "transport_key"],
                }
            ),
        )
    },
    STOCK: {
        "get": operation(
            "listStockMeters",
            "Meters in stock: received, not installed",
            "meters",
            "meters.read",
            _ok(_page_of("StockMeter")),
        )
    },
    METER: {
        "patch": operation(
            "updateMeter",
            "Change a meter's protocol profile (binary | xml)",
            "meters",
            "meters.write",
            {**_ok(_ref("MeterCard")), **_problem("404", "no such meter"), **_problem("422", "not a profile")},
            parameters=_ID,
            body=_body(
                {
                    "type": "object",
                    "properties": {"profile": {"type": "string", "enum": ["binary", "xml"]}},
                    "required": ["profile"],
                    "additionalProperties": False,
                }
            ),
        )
    },
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    for path, item in PATHS.items():
        paths[path] = {**paths.get(path, {}), **item}
    schemas.update(SCHEMAS)


def setup_routes(app: web.Application) -> None:
    app.router.add_post(IMPORT, import_key_file)
    app.router.add_post(EXPORT, export_key_file)
    app.router.add_get(STOCK, list_stock)
    app.router.add_patch(METER, update_meter)
