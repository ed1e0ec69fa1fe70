"""Console pages of readings: the reading typed in on the meter card, and the upload of a CSV file of
readings taken by hand or with an optical probe. Each parses, calls one use case of
`billing.meter_readings`, and redirects or renders its report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from billing import meter_readings
from billing.errors import InvalidField
from billing.rules.readings import CSV_COLUMNS, ENTERABLE_REGISTERS, parse_value
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import billing_of, require_principal, uow_of
from web.params import choice, path_id, text
from web.permissions import requires
from web.render import render
from web.security import client_address

MAX_FILE_BYTES = 1024 * 1024  # the application's request limit


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def _local_time(raw: str, request: web.Request) -> datetime:
    """A datetime-local field (the utility's time zone) → UTC."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("read_at", "must be a date and time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=billing_of(request).tz)
    return value.astimezone(UTC)


@requires("readings.write")
async def enter_reading(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    register = choice(form, "register", ENTERABLE_REGISTERS, "import_wh")
    read_at = _local_time(text(form, "read_at", max_length=40), request)
    try:
        value = parse_value(text(form, "reading", max_length=30), "kwh")
    except InvalidField as exc:
        raise InvalidInput("reading", exc.detail) from None
    async with uow_of(request).begin() as conn:
        await meter_readings.enter_reading(
            conn, _actor(request), meter_id, register, read_at, value, request.app[CLOCK]()
        )
    raise web.HTTPSeeOther(f"/console/meters/{meter_id}?ok=reading_entered#readings")


@requires("readings.write")
async def import_form(request: web.Request) -> web.Response:
    return render(request, "console/readings_import.html", {"report": None, "columns": CSV_COLUMNS})


@requires("readings.write")
async def import_file(request: web.Request) -> web.Response:
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        raise InvalidInput("file", "choose a CSV file")
    raw = upload.file.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput("file", "at most 1 MiB")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("file", "must be UTF-8 text") from None
    async with uow_of(request).begin() as conn:
        report = await meter_readings.import_readings(
            conn,
            _actor(request),
            content,
            request.app[CLOCK](),
            billing_of(request).tz,
            file_name=upload.filename or "readings.csv",
        )
    return render(request, "console/readings_import.html", {"report": report, "columns": CSV_COLUMNS})


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/console/meters/{id}/readings", enter_reading)
    app.router.add_get("/console/readings/import", import_form)
    app.router.add_post("/console/readings/import", import_file)
