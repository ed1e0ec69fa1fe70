"""Console pages for tariffs: the list and a new tariff (flat, block, time-of-use); a tariff's versions
with what each sends to the meters (the message, its payload bytes, its XML) and how many meters run it;
a new price version; the push of the newest version to every meter on the tariff, followed on the job's
page until the meters acknowledge it at 1:1."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from billing import bulk
from billing import tariffs as tariff_service
from billing.rules.tariffs import TariffBody, TariffKind
from web.api.tariffs import job_json, start_push_job
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import heat_in_gcal, require_principal, uow_of
from web.params import choice, path_id, text
from web.permissions import requires
from web.render import render
from web.security import client_address

_PRICE = re.compile(r"(\d{1,9})(?:[.,](\d{1,5}))?")


def price_milli_minor(raw: str, field: str = "steps") -> int:
    """A price per kWh as typed ("2.15", "0,125") → thousandths of a minor unit per kWh (5 decimals at most)."""
    match = _PRICE.fullmatch(raw.strip())
    if match is None:
        raise InvalidInput(field, f"{raw!r} is not a price per kWh (at most 5 decimals)")
    whole, frac = match.group(1), match.group(2) or ""
    return int(whole) * 100_000 + int(frac.ljust(5, "0"))


def _start(kind: TariffKind, raw: str, base_per_unit: int = 1000) -> int:
    if kind is TariffKind.TOU:
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", raw)
        if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise InvalidInput("steps", f"{raw!r}: a time-of-use band starts at HH:MM")
        return int(match.group(1)) * 60 + int(match.group(2))
    if not raw.isdigit():
        raise InvalidInput("steps", f"{raw!r}: a block starts at a whole number of kWh")
    return int(raw) * base_per_unit


def body_from_form(kind: TariffKind, form: Any, base_per_unit: int = 1000) -> dict[str, Any]:
    """The version form (one step a line: "price" for flat; "start price" for block, the start in whole
    display units of the month; "HH:MM price" for time-of-use; prices per display unit of `base_per_unit`
    base units) as the stored form `TariffBody.from_json` reads (block starts in base units)."""
    lines = [line.split() for line in text(form, "steps", max_length=5000).splitlines() if line.strip()]
    steps = []
    for parts in lines:
        if kind is TariffKind.FLAT and len(parts) == 1:
            parts = ["0", parts[0]]
        if len(parts) != 2:
            raise InvalidInput("steps", "one step a line: a start and a price")
        start = 0 if kind is TariffKind.FLAT else _start(kind, parts[0], base_per_unit)
        steps.append([start, price_milli_minor(parts[1])])
    standing = text(form, "standing_charge", required=False, max_length=20) or "0"
    standing_milli = price_milli_minor(standing, "standing_charge")
    if standing_milli % 1000:
        raise InvalidInput("standing_charge", "at most 2 decimals")
    return {"kind": kind.value, "steps": steps, "standing_charge_minor_per_day": standing_milli // 1000}


def _effective(form: Any, now: datetime) -> datetime:
    raw = text(form, "effective_from", required=False, max_length=20)
    if not raw:
        return now
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("effective_from", "a date and time, YYYY-MM-DDTHH:MM (UTC)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@requires("tariffs.read")
async def tariffs_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await tariff_service.list_tariffs(conn)
    return render(request, "console/tariffs.html", {"tariffs": items, "kinds": [k.value for k in TariffKind]})


@requires("tariffs.manage")
async def create_tariff(request: web.Request) -> web.Response:
    form = await request.post()
    kind = TariffKind(choice(form, "kind", tuple(k.value for k in TariffKind)))
    async with uow_of(request).begin() as conn:
        tariff_id = await tariff_service.create_tariff(
            conn,
            require_principal(request).actor(client_address(request)),
            text(form, "code", max_length=30),
            text(form, "name", max_length=200),
            kind,
            request.app[CLOCK](),
        )
    raise web.HTTPSeeOther(f"/console/tariffs/{tariff_id}?ok=tariff_created")


@requires("tariffs.read")
async def tariff_page(request: web.Request) -> web.Response:
    tariff_id = path_id(request, what="tariff")
    now = request.app[CLOCK]()
    async with uow_of(request).connect() as conn:
        tariff = await tariff_service.get_tariff(conn, tariff_id)
        unit = await tariff_service.tariff_unit(conn, tariff_id, heat_in_gcal=heat_in_gcal(request))
        previews = [
            tariff_service.preview_version(tariff, v.version, now, base_per_unit=unit.base_per_unit)
            for v in reversed(tariff.versions)
        ]
        progress = {p.wire_version: await tariff_service.push_progress(conn, p.wire_version) for p in previews}
        jobs = [j for j in await bulk.recent_jobs(conn, 100) if j.params.get("tariff_id") == tariff_id][:5]
    return render(
        request,
        "console/tariff.html",
        {"t": tariff, "unit": unit, "previews": previews, "progress": progress, "jobs": jobs, "now": now},
    )


@requires("tariffs.manage")
async def add_version(request: web.Request) -> web.Response:
    tariff_id = path_id(request, what="tariff")
    form = await request.post()
    now = request.app[CLOCK]()
    async with uow_of(request).begin() as conn:
        current = await tariff_service.get_tariff(conn, tariff_id)
        unit = await tariff_service.tariff_unit(conn, tariff_id, heat_in_gcal=heat_in_gcal(request))
        body = TariffBody.from_json(body_from_form(current.kind, form, unit.base_per_unit))
        await tariff_service.add_version(
            conn, require_principal(request).actor(client_address(request)), tariff_id, body, _effective(form, now), now
        )
    raise web.HTTPSeeOther(f"/console/tariffs/{tariff_id}?ok=tariff_version")


@requires("tariffs.assign")
async def push(request: web.Request) -> web.Response:
    tariff_id = path_id(request, what="tariff")
    actor = require_principal(request).actor(client_address(request))
    job_id, meter_ids = await tariff_service.start_push(uow_of(request), actor, tariff_id, request.app[CLOCK]())
    start_push_job(request, job_id, tariff_id, meter_ids, actor)
    raise web.HTTPSeeOther(f"/console/jobs/{job_id}?ok=tariff_push")


@requires("commands.read")
async def job_page(request: web.Request) -> web.Response:
    """A bulk job's progress; the page reloads itself while commands are queued or on their way."""
    job_id = path_id(request, what="job")
    async with uow_of(request).connect() as conn:
        job = await job_json(conn, await bulk.get_job(conn, job_id))
    states = job.get("states", {})
    open_commands = sum(n for s, n in states.items() if s in ("0:0", "0:1", "1:0"))
    live = job["status"] == "running" or open_commands > 0
    return render(request, "console/job.html", {"job": job, "live": live, "open_commands": open_commands})


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/tariffs", tariffs_page)
    r.add_post("/console/tariffs", create_tariff)
    r.add_get("/console/tariffs/{id}", tariff_page)
    r.add_post("/console/tariffs/{id}/versions", add_version)
    r.add_post("/console/tariffs/{id}/push", push)
    r.add_get("/console/jobs/{id}", job_page)
