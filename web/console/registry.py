"""Console pages of the registry: the meter card (history, keys, the tariff version it runs) with install,
replace and archive; transformers and their balance meters; the holiday calendar; the subscriber form
(create and edit). Each action parses the form, calls one use case of `billing.registry`, redirects."""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from billing import meter_registry, places
from billing import registry as registry_service
from web.api.registry import new_meter_from
from web.errors import InvalidInput, NotFound
from web.i18n import LANGUAGES
from web.keys import CLOCK, CURRENCY
from web.middleware import billing_of, keys_of, require_principal, uow_of
from web.params import bounded_int, choice, path_id, text
from web.permissions import requires
from web.queries import lists
from web.queries import meters as meter_queries
from web.queries import readings as readings_queries
from web.queries import sts as sts_queries
from web.render import render, translate_code
from web.security import client_address


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def _optional_id(form: Any, name: str) -> int | None:
    value = bounded_int(form, name, 0, 0, 10**18)
    return value or None


def _meter_fields(form: Any) -> dict[str, Any]:
    """A meter form's strings as the values `new_meter_from` reads."""
    fields: dict[str, Any] = {
        name: (form.get(name) or "").strip() or None
        for name in ("code", "msisdn", "make", "model", "profile", "kind", "key_hex")
    }
    fields["phases"] = bounded_int(form, "phases", 1, 1, 3)
    fields["app_port"] = bounded_int(form, "app_port", -1, 0, 65535)
    if fields["app_port"] < 0:
        fields["app_port"] = None
    fields["transformer_id"] = _optional_id(form, "transformer_id")
    fields["is_balance_meter"] = form.get("is_balance_meter") in ("1", "on", "true")
    return {k: v for k, v in fields.items() if v is not None}


@requires("meters.read")
async def meter_card(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    offset = bounded_int(request.query, "readings_offset", 0, 0, 10**9)
    async with uow_of(request).connect() as conn:
        card = await meter_queries.meter_card(conn, meter_id)
        panel = await readings_queries.readings_panel(
            conn,
            meter_id,
            billing_of(request).tz,
            request.app[CLOCK](),
            kind=card["kind"] if card else "electricity",
            heat_in_gcal=billing_of(request).heat_in_gcal,
            offset=offset,
        )
        keypad = (await sts_queries.keypads(conn, [meter_id])).get(meter_id)
    if card is None:
        raise NotFound("meter", meter_id)
    return render(request, "console/meter.html", {"m": card, "readings": panel, "keypad": keypad})


@requires("meters.read")
async def meter_states(request: web.Request) -> web.Response:
    """The small JSON the meter card polls for live command states."""
    meter_id = path_id(request, what="meter")
    async with uow_of(request).connect() as conn:
        card = await meter_queries.meter_card(conn, meter_id)
    if card is None:
        raise NotFound("meter", meter_id)
    items = [
        {"id": c["id"], "state": c["state"], "label": translate_code(c["state"]), "kind": c["kind"]}
        for c in card["commands"]
    ]
    return web.json_response({"items": items})


@requires("meters.write")
async def new_meter_form(request: web.Request) -> web.Response:
    subscriber_id = bounded_int(request.query, "subscriber_id", 0, 0, 10**18) or None
    async with uow_of(request).connect() as conn:
        subscriber = await registry_service.get_subscriber(conn, subscriber_id) if subscriber_id else None
        transformers = await meter_queries.transformer_list(conn)
    return render(
        request,
        "console/meter_form.html",
        {
            "subscriber": subscriber,
            "transformers": transformers,
            "transformer_id": bounded_int(request.query, "transformer_id", 0, 0, 10**18),
            "balance": request.query.get("balance") == "1",
            "replacing": None,
        },
    )


@requires("meters.write")
async def install_meter(request: web.Request) -> web.Response:
    form = await request.post()
    new, key = new_meter_from(_meter_fields(form))
    async with uow_of(request).begin() as conn:
        meter = await meter_registry.install_meter(
            conn,
            _actor(request),
            _optional_id(form, "subscriber_id"),
            new,
            master_key=keys_of(request),
            now=request.app[CLOCK](),
            meter_key=key,
        )
    raise web.HTTPSeeOther(f"/console/meters/{meter.id}?ok=meter_installed")


@requires("meters.write")
async def replace_meter_form(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    async with uow_of(request).connect() as conn:
        card = await meter_queries.meter_card(conn, meter_id)
        transformers = await meter_queries.transformer_list(conn)
    if card is None:
        raise NotFound("meter", meter_id)
    return render(
        request,
        "console/meter_form.html",
        {
            "subscriber": card["subscriber"],
            "transformers": transformers,
            "transformer_id": card["transformer_id"] or 0,
            "balance": card["is_balance_meter"],
            "replacing": card,
        },
    )


@requires("meters.write")
async def replace_meter(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    new, key = new_meter_from(_meter_fields(form))
    carried = bounded_int(form, "carried_credit_minor", 0, 0, 10**12)
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
    raise web.HTTPSeeOther(f"/console/meters/{fresh.id}?ok=meter_replaced")


@requires("meters.write")
async def archive_meter(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    reason = text(form, "reason", max_length=200)
    async with uow_of(request).begin() as conn:
        await meter_registry.archive_meter(conn, _actor(request), meter_id, reason, request.app[CLOCK]())
    raise web.HTTPSeeOther(f"/console/meters/{meter_id}?ok=meter_archived")


@requires("meters.read")
async def transformers_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await meter_queries.transformer_list(conn)
        candidates = await meter_queries.unattached_balance_meters(conn)
    return render(request, "console/transformers.html", {"transformers": items, "candidates": candidates})


@requires("registry.write")
async def add_transformer(request: web.Request) -> web.Response:
    form = await request.post()
    async with uow_of(request).begin() as conn:
        await places.add_transformer(
            conn,
            _actor(request),
            text(form, "code", max_length=30),
            text(form, "name", max_length=200),
            request.app[CLOCK](),
            feeder=text(form, "feeder", required=False, max_length=100) or None,
            loss_alarm_percent=bounded_int(form, "loss_alarm_percent", 10, 1, 100),
        )
    raise web.HTTPSeeOther("/console/transformers?ok=transformer_added")


def _meter_codes(raw: str) -> list[str]:
    return [c for c in raw.replace(",", " ").split() if c]


@requires("registry.write")
async def attach_meters(request: web.Request) -> web.Response:
    """Meters by code (a list typed or pasted), and/or the balance meter, onto the transformer."""
    transformer_id = path_id(request, what="transformer")
    form = await request.post()
    codes = _meter_codes(text(form, "meter_codes", required=False, max_length=20_000))
    balance = _optional_id(form, "balance_meter_id")
    if not codes and balance is None:
        raise InvalidInput("meter_codes", "name meters to attach, or choose a balance meter")
    async with uow_of(request).begin() as conn:
        ids = [(await meter_registry.get_meter_by_code(conn, code)).id for code in codes]
        await meter_registry.attach_meters(
            conn, _actor(request), transformer_id, ids, request.app[CLOCK](), balance_meter_id=balance
        )
    raise web.HTTPSeeOther("/console/transformers?ok=meters_attached")


@requires("meters.read")
async def holidays_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await places.list_holidays(conn)
    return render(request, "console/holidays.html", {"holidays": items})


def _form_day(form: Any) -> date:
    try:
        return date.fromisoformat(text(form, "day", max_length=10))
    except ValueError:
        raise InvalidInput("day", "must be a date, YYYY-MM-DD") from None


@requires("registry.write")
async def set_holiday(request: web.Request) -> web.Response:
    form = await request.post()
    async with uow_of(request).begin() as conn:
        await places.set_holiday(
            conn, _actor(request), _form_day(form), text(form, "name", max_length=200), request.app[CLOCK]()
        )
    raise web.HTTPSeeOther("/console/holidays?ok=holiday_set")


@requires("registry.write")
async def remove_holiday(request: web.Request) -> web.Response:
    form = await request.post()
    async with uow_of(request).begin() as conn:
        await places.remove_holiday(conn, _actor(request), _form_day(form), request.app[CLOCK]())
    raise web.HTTPSeeOther("/console/holidays?ok=holiday_removed")


_TEXT_FIELDS = ("name", "father_name", "phone", "email", "contract_number", "identity_document", "old_code")


def _subscriber_fields(form: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {name: text(form, name, required=False, max_length=200) for name in _TEXT_FIELDS}
    fields["language"] = choice(form, "language", tuple(LANGUAGES), default="en")
    fields["status"] = choice(form, "status", registry_service.STATUSES, default="active")
    fields["tariff_id"] = _optional_id(form, "tariff_id")
    return fields


async def _form_context(request: web.Request, subscriber: registry_service.Subscriber | None) -> dict[str, Any]:
    async with uow_of(request).connect() as conn:
        streets = await places.list_streets(conn)
        tariffs = await lists.tariffs_list(conn)
    return {
        "s": subscriber,
        "streets": streets,
        "tariffs": tariffs,
        "languages": LANGUAGES,
        "statuses": registry_service.STATUSES,
    }


@requires("subscribers.write")
async def new_subscriber_form(request: web.Request) -> web.Response:
    return render(request, "console/subscriber_form.html", await _form_context(request, None))


@requires("subscribers.write")
async def create_subscriber(request: web.Request) -> web.Response:
    """The code is the street's 7 digits, the building (4) and the apartment (4)."""
    form = await request.post()
    street = text(form, "street", max_length=7)
    building = bounded_int(form, "building", 0, 1, 9999)
    apartment = bounded_int(form, "apartment", 0, 0, 9999)
    async with uow_of(request).begin() as conn:
        created = await registry_service.create_subscriber(
            conn,
            _actor(request),
            f"{street}{building:04d}{apartment:04d}",
            _subscriber_fields(form),
            currency=request.app[CURRENCY],
            now=request.app[CLOCK](),
        )
    raise web.HTTPSeeOther(f"/console/subscribers/{created.id}?ok=subscriber_created")


@requires("subscribers.write")
async def edit_subscriber_form(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    async with uow_of(request).connect() as conn:
        subscriber = await registry_service.get_subscriber(conn, subscriber_id)
    return render(request, "console/subscriber_form.html", await _form_context(request, subscriber))


@requires("subscribers.write")
async def update_subscriber(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    form = await request.post()
    async with uow_of(request).begin() as conn:
        await registry_service.update_subscriber(
            conn, _actor(request), subscriber_id, _subscriber_fields(form), request.app[CLOCK]()
        )
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=subscriber_saved")


def setup_routes(app: web.Application) -> None:
    """Registered before the subscriber card's routes: `/console/subscribers/new` is not an id."""
    r = app.router
    r.add_get("/console/subscribers/new", new_subscriber_form)
    r.add_post("/console/subscribers", create_subscriber)
    r.add_get("/console/subscribers/{id}/edit", edit_subscriber_form)
    r.add_post("/console/subscribers/{id}/edit", update_subscriber)
    r.add_get("/console/meters/new", new_meter_form)
    r.add_post("/console/meters", install_meter)
    r.add_get("/console/meters/{id}", meter_card)
    r.add_get("/console/meters/{id}/commands.json", meter_states)
    r.add_get("/console/meters/{id}/replace", replace_meter_form)
    r.add_post("/console/meters/{id}/replace", replace_meter)
    r.add_post("/console/meters/{id}/archive", archive_meter)
    r.add_get("/console/transformers", transformers_page)
    r.add_post("/console/transformers", add_transformer)
    r.add_post("/console/transformers/{id}/meters", attach_meters)
    r.add_get("/console/holidays", holidays_page)
    r.add_post("/console/holidays", set_holiday)
    r.add_post("/console/holidays/remove", remove_holiday)
