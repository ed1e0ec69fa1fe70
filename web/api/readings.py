"""/api/v1 for readings: a meter's readings and load profile, readings of a group of meters (by address or
transformer), a reading entered by hand, a CSV file of readings, and consumption per day or month.
Handlers parse, call one function of `billing`, answer JSON."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from billing import consumption_daily, meter_registry
from billing import meter_readings as readings_service
from billing.meter_readings import Group
from web.api.json import parse_time, read_json, respond
from web.errors import InvalidInput, UnsupportedMediaType
from web.keys import CLOCK
from web.middleware import billing_of, require_principal, uow_of
from web.params import bounded_int, choice, paging, path_id
from web.permissions import requires
from web.security import client_address

PREFIX = "/api/v1"
MAX_CSV_BYTES = 1024 * 1024


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def _window(request: web.Request) -> tuple[datetime | None, datetime | None]:
    start, end = parse_time(request.query, "from"), parse_time(request.query, "to")
    if start is not None and end is not None and end <= start:
        raise InvalidInput("to", "must be after from")
    return start, end


def _registers(request: web.Request) -> list[str]:
    raw = request.query.get("register", "")
    names = [r.strip() for r in raw.split(",") if r.strip()]
    if any(len(r) > 30 for r in names):
        raise InvalidInput("register", "a register name has at most 30 characters")
    return names


def _code(request: web.Request, name: str, length: int) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > length:
        raise InvalidInput(name, f"must be at most {length} digits")
    return raw.zfill(length)


def group_of(request: web.Request) -> Group:
    """The group filter of the query: region, settlement, street, building (address codes), transformer_id,
    meter_id."""
    transformer = bounded_int(request.query, "transformer_id", 0, 0, 10**18) or None
    meter = bounded_int(request.query, "meter_id", 0, 0, 10**18) or None
    return Group(
        region=_code(request, "region", 2),
        settlement=_code(request, "settlement", 2),
        street=_code(request, "street", 3),
        building=_code(request, "building", 4),
        transformer_id=transformer,
        meter_id=meter,
    )


def _page(items: list[dict[str, Any]], total: int, limit: int, offset: int) -> web.Response:
    return respond({"items": items, "total": total, "limit": limit, "offset": offset})


@requires("meters.read")
async def meter_readings(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    start, end = _window(request)
    limit, offset = paging(request.query, 100)
    async with uow_of(request).connect() as conn:
        await meter_registry.get_meter(conn, meter_id)
        items, total = await meter_readings_list(conn, Group(meter_id=meter_id), start, end, request, limit, offset)
    return _page(items, total, limit, offset)


async def meter_readings_list(
    conn: Any, group: Group, start: datetime | None, end: datetime | None, request: web.Request, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    registers = _registers(request)
    return await readings_service.list_readings(
        conn,
        group,
        start,
        end,
        registers=registers,
        exclude_registers=() if registers else ("profile_wh",),
        limit=limit,
        offset=offset,
    )


@requires("readings.write")
async def enter_reading(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    body = await read_json(request)
    value = body.get("value")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput("value", "must be a non-negative integer in the register's unit (Wh, litres)")
    register = body.get("register", "import_wh")
    if not isinstance(register, str):
        raise InvalidInput("register", "must be a string")
    read_at = parse_time(body, "read_at")
    if read_at is None:
        raise InvalidInput("read_at", "is required")
    async with uow_of(request).begin() as conn:
        reading = await readings_service.enter_reading(
            conn, _actor(request), meter_id, register, read_at, value, request.app[CLOCK]()
        )
    response = respond(
        {
            "id": reading.id,
            "meter_id": reading.meter_id,
            "register": reading.register,
            "read_at": reading.read_at,
            "value": reading.value,
            "source": reading.source,
            "status": reading.status,
            "entered_by": reading.entered_by,
        },
        status=201,
    )
    response.headers["Location"] = f"{PREFIX}/meters/{meter_id}/readings?register={register}"
    return response


@requires("readings.write")
async def import_readings(request: web.Request) -> web.Response:
    if request.content_type not in ("text/csv", "text/plain"):
        raise UnsupportedMediaType(request.content_type)
    raw = await request.read()
    if len(raw) > MAX_CSV_BYTES:
        raise InvalidInput("body", "at most 1 MiB of CSV")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body", "must be UTF-8 text") from None
    name = request.query.get("file_name", "api.csv")[:100]
    async with uow_of(request).begin() as conn:
        report = await readings_service.import_readings(
            conn, _actor(request), content, request.app[CLOCK](), billing_of(request).tz, file_name=name
        )
    return respond(report.as_dict())


@requires("meters.read")
async def readings_of_group(request: web.Request) -> web.Response:
    """Readings of a group of meters (address codes, transformer, meter) in a time window, page by page."""
    start, end = _window(request)
    limit, offset = paging(request.query, 100)
    async with uow_of(request).connect() as conn:
        items, total = await meter_readings_list(conn, group_of(request), start, end, request, limit, offset)
    return _page(items, total, limit, offset)


@requires("meters.read")
async def load_profile(request: web.Request) -> web.Response:
    """The meter's load profile: energy per interval (`profile_wh`), oldest first."""
    meter_id = path_id(request, what="meter")
    start, end = _window(request)
    limit, offset = paging(request.query, 200)
    async with uow_of(request).connect() as conn:
        await meter_registry.get_meter(conn, meter_id)
        items, total = await readings_service.list_readings(
            conn, Group(meter_id=meter_id), start, end, registers=("profile_wh",), limit=limit, offset=offset
        )
    out = [{"start_at": i["read_at"], "energy_wh": i["value"], "source": i["source"]} for i in items]
    return _page(out, total, limit, offset)


def local_day(request: web.Request, name: str, default: date) -> date:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(name, "must be a date, YYYY-MM-DD (the utility's local day)") from None


@requires("meters.read")
async def consumption(request: web.Request) -> web.Response:
    """Consumption per local hour (from the readings, a month at most), day or month (from the daily
    pre-aggregate), per member of a level (region, settlement, street, building, transformer, phase, meter)
    within the group filter."""
    tz = billing_of(request).tz
    today = request.app[CLOCK]().astimezone(tz).date()
    first = local_day(request, "from", today - timedelta(days=30))
    last = local_day(request, "to", today)
    if last < first or (last - first).days > 731:
        raise InvalidInput("to", "must be on or after from, at most two years later")
    level = choice(request.query, "by", consumption_daily.LEVELS, "settlement")
    granularity = choice(request.query, "granularity", ("hour", "day", "month"), "day")
    if granularity == "hour" and (last - first).days >= consumption_daily.HOURLY_MAX_DAYS:
        raise InvalidInput("to", f"hourly: at most {consumption_daily.HOURLY_MAX_DAYS} days")
    register = request.query.get("register") or "import_wh"
    limit, offset = paging(request.query, 50)
    async with uow_of(request).connect() as conn:
        if granularity == "hour":
            items, total = await consumption_daily.consumption_by_hour(
                conn, level, group_of(request), first, last, tz, register=register[:30], limit=limit, offset=offset
            )
        else:
            items, total = await consumption_daily.consumption_by(
                conn,
                level,
                group_of(request),
                first,
                last,
                register=register[:30],
                monthly=granularity == "month",
                limit=limit,
                offset=offset,
            )
    return respond(
        {
            "items": items,
            "total": total,
            "limit": limit,
            "offset": offset,
            "by": level,
            "granularity": granularity,
            "from": first,
            "to": last,
            "register": register,
        }
    )


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/meters/{{id}}/readings", meter_readings)
    r.add_post(f"{PREFIX}/meters/{{id}}/readings", enter_reading)
    r.add_post(f"{PREFIX}/readings/import", import_readings)
    r.add_get(f"{PREFIX}/readings", readings_of_group)
    r.add_get(f"{PREFIX}/meters/{{id}}/load-profile", load_profile)
    r.add_get(f"{PREFIX}/consumption", consumption)
    r.add_get(f"{PREFIX}/exports/readings", export_readings)


async def export_file(request: web.Request, day: date, fmt: str) -> web.Response:
    """One local day's MDM export as CSV or MeterReadings XML, made now (the job keeps the daily files)."""
    import asyncio
    import tempfile
    from pathlib import Path

    from billing.mdm_export import export_day
    from store import audit

    with tempfile.TemporaryDirectory(prefix="smsmeter-export-") as folder:
        files = await export_day(uow_of(request), day, billing_of(request).tz, Path(folder))
        body = await asyncio.to_thread((files.csv if fmt == "csv" else files.xml).read_bytes)
    async with uow_of(request).begin() as conn:
        await audit.record(
            conn,
            _actor(request),
            "readings.export",
            request.app[CLOCK](),
            target=f"day:{day.isoformat()}",
            after={"format": fmt, "meters": files.meters, "readings": files.readings},
        )
    return web.Response(
        body=body,
        content_type="text/csv" if fmt == "csv" else "application/xml",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="readings-{day.isoformat()}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )


@requires("reports.export")
async def export_readings(request: web.Request) -> web.Response:
    today = request.app[CLOCK]().astimezone(billing_of(request).tz).date()
    day = local_day(request, "day", today - timedelta(days=1))
    fmt = choice(request.query, "format", ("csv", "xml"), "xml")
    return await export_file(request, day, fmt)
