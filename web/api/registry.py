"""/api/v1 for the registry: meters (install, replace, archive, history), transformers and their balance
meters, the holiday calendar. Handlers parse, call one use case of `billing.registry`, answer JSON."""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from billing import meter_registry, places
from web.api.json import read_json, respond
from web.errors import InvalidInput, NotFound
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import path_id
from web.permissions import requires
from web.queries import meters as meter_queries
from web.security import client_address

PREFIX = "/api/v1"


def _path_id(request: web.Request, what: str = "meter") -> int:
    return path_id(request, what=what)


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(name, "must be a non-negative integer")
    return value


def _optional_str(body: dict[str, Any], name: str, max_length: int = 200) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(name, f"must be a string of at most {max_length} characters")
    return value


def _required_str(body: dict[str, Any], name: str, max_length: int = 200) -> str:
    value = _optional_str(body, name, max_length)
    if not value or not value.strip():
        raise InvalidInput(name, "is required")
    return value


def new_meter_from(body: dict[str, Any]) -> tuple[meter_registry.NewMeter, bytes | None]:
    """The fields of a meter to install (JSON or a form's values) and its factory key, when given."""
    key_hex = _optional_str(body, "key_hex", 32)
    key = None
    if key_hex:
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            raise InvalidInput("key_hex", "32 hexadecimal digits") from None
    balance = body.get("is_balance_meter", False)
    if not isinstance(balance, bool):
        raise InvalidInput("is_balance_meter", "must be true or false")
    new = meter_registry.NewMeter(
        code=_required_str(body, "code", 30),
        msisdn=_optional_str(body, "msisdn", 20) or "",  # a meter in stock has its own
        make=_optional_str(body, "make", 100),
        model=_optional_str(body, "model", 100),
        profile=_optional_str(body, "profile", 10) or "binary",
        app_port=_optional_int(body, "app_port"),
        kind=_optional_str(body, "kind", 12) or "electricity",
        phases=_optional_int(body, "phases") or 1,
        transformer_id=_optional_int(body, "transformer_id"),
        is_balance_meter=balance,
    )
    return new, key


async def _meter_json(request: web.Request, meter_id: int, status: int = 200) -> web.Response:
    async with uow_of(request).connect() as conn:
        card = await meter_queries.meter_card(conn, meter_id)
    if card is None:
        raise NotFound("meter", meter_id)
    response = respond(card, status=status)
    if status == 201:
        response.headers["Location"] = f"{PREFIX}/meters/{meter_id}"
    return response


@requires("meters.write")
async def install_meter(request: web.Request) -> web.Response:
    """A meter for a subscriber (`subscriber_id`), or a transformer's balance meter (no subscriber)."""
    body = await read_json(request)
    new, key = new_meter_from(body)
    async with uow_of(request).begin() as conn:
        meter = await meter_registry.install_meter(
            conn,
            _actor(request),
            _optional_int(body, "subscriber_id"),
            new,
            master_key=keys_of(request),
            now=request.app[CLOCK](),
            meter_key=key,
        )
    return await _meter_json(request, meter.id, 201)


@requires("meters.write")
async def replace_meter(request: web.Request) -> web.Response:
    """The new meter takes the old one's subscriber and transformer; the old one is archived."""
    meter_id = _path_id(request)
    body = await read_json(request)
    new, key = new_meter_from(body)
    carried = _optional_int(body, "carried_credit_minor") or 0
    async with uow_of(request).begin() as conn:
        fresh = await meter_registry.replace_meter(
            conn,
            _actor(request),
            meter_id,
            new,
            master_key=keys_of(request),
            now=request.app[CLOCK](),
            carried_credit_minor=carried,
            meter_key=key,
        )
    return await _meter_json(request, fresh.id, 201)


@requires("meters.write")
async def archive_meter(request: web.Request) -> web.Response:
    meter_id = _path_id(request)
    body = await read_json(request)
    reason = _required_str(body, "reason", 200)
    async with uow_of(request).begin() as conn:
        await meter_registry.archive_meter(conn, _actor(request), meter_id, reason.strip(), request.app[CLOCK]())
    return await _meter_json(request, meter_id)


@requires("meters.read")
async def meter_history(request: web.Request) -> web.Response:
    meter_id = _path_id(request)
    async with uow_of(request).connect() as conn:
        await meter_registry.get_meter(conn, meter_id)
        items = await meter_registry.meter_history(conn, meter_id)
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("meters.read")
async def transformers(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await meter_queries.transformer_list(conn)
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("registry.write")
async def add_transformer(request: web.Request) -> web.Response:
    body = await read_json(request)
    percent = _optional_int(body, "loss_alarm_percent")
    async with uow_of(request).begin() as conn:
        transformer_id = await places.add_transformer(
            conn,
            _actor(request),
            _required_str(body, "code", 30),
            _required_str(body, "name", 200),
            request.app[CLOCK](),
            feeder=_optional_str(body, "feeder", 100),
            loss_alarm_percent=10 if percent is None else percent,
        )
        item = await meter_queries.transformer_item(conn, transformer_id)
    response = respond(item, status=201)
    response.headers["Location"] = f"{PREFIX}/transformers/{transformer_id}"
    return response


@requires("meters.read")
async def transformer(request: web.Request) -> web.Response:
    transformer_id = _path_id(request, "transformer")
    async with uow_of(request).connect() as conn:
        item = await meter_queries.transformer_item(conn, transformer_id)
    if item is None:
        raise NotFound("transformer", transformer_id)
    return respond(item)


@requires("registry.write")
async def attach_meters(request: web.Request) -> web.Response:
    """Put meters on the transformer (`meter_ids`) and/or name its balance meter (`balance_meter_id`)."""
    transformer_id = _path_id(request, "transformer")
    body = await read_json(request)
    ids = body.get("meter_ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InvalidInput("meter_ids", "must be a list of meter ids")
    if len(ids) > 10_000:
        raise InvalidInput("meter_ids", "at most 10,000 meters at a time")
    balance = _optional_int(body, "balance_meter_id")
    if not ids and balance is None:
        raise InvalidInput("meter_ids", "name meters to attach, or a balance meter")
    async with uow_of(request).begin() as conn:
        changed = await meter_registry.attach_meters(
            conn, _actor(request), transformer_id, ids, request.app[CLOCK](), balance_meter_id=balance
        )
        item = await meter_queries.transformer_item(conn, transformer_id)
    return respond({**(item or {}), "changed": changed})


@requires("meters.read")
async def holidays(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await places.list_holidays(conn)
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


def _day(request: web.Request) -> date:
    try:
        return date.fromisoformat(request.match_info["day"])
    except ValueError:
        raise InvalidInput("day", "must be a date, YYYY-MM-DD") from None


@requires("registry.write")
async def set_holiday(request: web.Request) -> web.Response:
    day = _day(request)
    body = await read_json(request)
    async with uow_of(request).begin() as conn:
        await places.set_holiday(conn, _actor(request), day, _required_str(body, "name", 200), request.app[CLOCK]())
        items = await places.list_holidays(conn)
    return respond(next(h for h in items if h["day"] == day))


@requires("registry.write")
async def remove_holiday(request: web.Request) -> web.Response:
    day = _day(request)
    async with uow_of(request).begin() as conn:
        await places.remove_holiday(conn, _actor(request), day, request.app[CLOCK]())
    return web.Response(status=204)


@requires("subscribers.read")
async def regions(request: web.Request) -> web.Response:
    """The registered regions: the first 2 digits of a subscriber code."""
    async with uow_of(request).connect() as conn:
        items = await places.list_regions(conn)
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("subscribers.read")
async def settlements(request: web.Request) -> web.Response:
    """The registered settlements, of one region when `region` (2 digits) is given."""
    region = request.query.get("region")
    if region is not None and not (len(region) == 2 and region.isascii() and region.isdigit()):
        raise InvalidInput("region", "2 digits")
    async with uow_of(request).connect() as conn:
        items = await places.list_settlements(conn, region)
    for item in items:
        item["prefix"] = f"{item['region_code']}{item['code']}"
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("subscribers.read")
async def streets(request: web.Request) -> web.Response:
    """The registered streets: the first 7 digits of a subscriber code (region, settlement, street)."""
    async with uow_of(request).connect() as conn:
        items = await places.list_streets(conn)
    for item in items:
        item["prefix"] = f"{item['region_code']}{item['settlement_code']}{item['code']}"
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("registry.write")
async def add_street(request: web.Request) -> web.Response:
    """A street of a registered settlement, so that subscriber codes on it can be created."""
    body = await read_json(request)
    region, settlement, code = (_required_str(body, name, 3) for name in ("region_code", "settlement_code", "code"))
    async with uow_of(request).begin() as conn:
        await places.add_street(
            conn, _actor(request), region, settlement, code, _required_str(body, "name", 200), request.app[CLOCK]()
        )
        items = await places.list_streets(conn)
    [added] = [s for s in items if (s["region_code"], s["settlement_code"], s["code"]) == (region, settlement, code)]
    return respond({**added, "prefix": f"{region}{settlement}{code}"}, status=201)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/regions", regions)
    r.add_get(f"{PREFIX}/settlements", settlements)
    r.add_get(f"{PREFIX}/streets", streets)
    r.add_post(f"{PREFIX}/streets", add_street)
    r.add_post(f"{PREFIX}/meters", install_meter)
    r.add_post(f"{PREFIX}/meters/{{id}}/replace", replace_meter)
    r.add_post(f"{PREFIX}/meters/{{id}}/archive", archive_meter)
    r.add_get(f"{PREFIX}/meters/{{id}}/history", meter_history)
    r.add_get(f"{PREFIX}/transformers", transformers)
    r.add_post(f"{PREFIX}/transformers", add_transformer)
    r.add_get(f"{PREFIX}/transformers/{{id}}", transformer)
    r.add_post(f"{PREFIX}/transformers/{{id}}/meters", attach_meters)
    r.add_get(f"{PREFIX}/holidays", holidays)
    r.add_put(f"{PREFIX}/holidays/{{day}}", set_holiday)
    r.add_delete(f"{PREFIX}/holidays/{{day}}", remove_holiday)
