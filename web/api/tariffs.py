"""/api/v1 for tariffs as operators use them: create a tariff (flat, block, time-of-use), add a price
version with its effective time, preview what a version sends to the meters, push the newest version to
every meter on the tariff as a bulk job, and follow the job. Handlers parse and call `billing.tariffs`."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from billing import bulk
from billing import tariffs as tariff_service
from billing.rules.tariffs import TariffBody, TariffKind
from store.audit import Actor
from store.uow import UnitOfWork
from web.api.json import parse_time, read_json, respond
from web.errors import InvalidInput
from web.jobs import JOBS
from web.keys import CLOCK
from web.middleware import heat_in_gcal, keys_of, require_principal, uow_of
from web.params import path_id
from web.permissions import requires
from web.security import client_address

PREFIX = "/api/v1"


def _actor(request: web.Request) -> Actor:
    return require_principal(request).actor(client_address(request))


def tariff_json(tariff: tariff_service.Tariff) -> dict[str, Any]:
    return {
        "id": tariff.id,
        "code": tariff.code,
        "name": tariff.name,
        "kind": tariff.kind.value,
        "versions": [
            {"version": v.version, "wire_version": wire, "effective_from": v.effective_from, "body": v.body.to_json()}
            for v, wire in zip(tariff.versions, tariff.version_ids, strict=True)
        ],
    }


def preview_json(preview: tariff_service.TariffPreview) -> dict[str, Any]:
    return dataclasses.asdict(preview)


async def job_json(conn: Any, job: bulk.Job) -> dict[str, Any]:
    """A bulk job's progress: commands queued (`done`, `skipped` of `total`) and, for a tariff push, how
    many meters have acknowledged the version (`states["1:1"]`)."""
    out = {**dataclasses.asdict(job), "percent": job.percent}
    wire = job.params.get("version_id")
    if job.kind == "tariff" and isinstance(wire, int):
        out["states"] = await tariff_service.push_progress(conn, wire)
        out["processed"] = out["states"].get("1:1", 0)
    return out


def start_push_job(request: web.Request, job_id: int, tariff_id: int, meter_ids: list[int], actor: Actor) -> None:
    """The second half of a push, run by the application's job runner (the request does not wait)."""
    uow: UnitOfWork = uow_of(request)
    work = tariff_service.run_assignment(
        uow,
        actor,
        job_id,
        tariff_id,
        meter_ids,
        request.app[CLOCK](),
        keys=keys_of(request),
        heat_in_gcal=heat_in_gcal(request),
    )
    request.app[JOBS].start(f"bulk job {job_id}", work)


@requires("tariffs.manage")
async def create_tariff(request: web.Request) -> web.Response:
    body = await read_json(request)
    code, name, kind = body.get("code"), body.get("name"), body.get("kind")
    if not isinstance(code, str) or not isinstance(name, str):
        raise InvalidInput("code", "code and name are strings")
    if kind not in [k.value for k in TariffKind]:
        raise InvalidInput("kind", "one of flat, block, tou")
    async with uow_of(request).begin() as conn:
        tariff_id = await tariff_service.create_tariff(
            conn, _actor(request), code, name, TariffKind(kind), request.app[CLOCK]()
        )
        tariff = await tariff_service.get_tariff(conn, tariff_id)
    response = respond(tariff_json(tariff), status=201)
    response.headers["Location"] = f"{PREFIX}/tariffs/{tariff_id}"
    return response


@requires("tariffs.read")
async def tariff(request: web.Request) -> web.Response:
    tariff_id = path_id(request, what="tariff")
    async with uow_of(request).connect() as conn:
        found = await tariff_service.get_tariff(conn, tariff_id)
    return respond(tariff_json(found))


@requires("tariffs.manage")
async def add_version(request: web.Request) -> web.Response:
    """Prices as the stored form: `steps` [[start, price in thousandths of a minor unit per kWh — per m³, per
    Gcal for a tariff of water, gas or Gcal heat meters —], ...] (start: 0 for flat, base units — Wh, litres —
    of monthly consumption for block, minute of the day for time-of-use), or for a flat tariff
    `price_minor_per_kwh`; `standing_charge_minor_per_day`; `effective_from` (default: now)."""
    tariff_id = path_id(request, what="tariff")
    body = await read_json(request)
    now = request.app[CLOCK]()
    effective_from = parse_time(body, "effective_from") or now
    async with uow_of(request).begin() as conn:
        current = await tariff_service.get_tariff(conn, tariff_id)
        prices = TariffBody.from_json({**body, "kind": current.kind.value})
        number = await tariff_service.add_version(conn, _actor(request), tariff_id, prices, effective_from, now)
        updated = await tariff_service.get_tariff(conn, tariff_id)
        unit = await tariff_service.tariff_unit(conn, tariff_id, heat_in_gcal=heat_in_gcal(request))
    preview = tariff_service.preview_version(updated, number, now, base_per_unit=unit.base_per_unit)
    response = respond({"tariff": tariff_json(updated), "preview": preview_json(preview)}, status=201)
    response.headers["Location"] = f"{PREFIX}/tariffs/{tariff_id}/versions/{number}/preview"
    return response


@requires("tariffs.read")
async def preview(request: web.Request) -> web.Response:
    tariff_id = path_id(request, what="tariff")
    version = path_id(request, "version", what="tariff version")
    async with uow_of(request).connect() as conn:
        found = await tariff_service.get_tariff(conn, tariff_id)
        unit = await tariff_service.tariff_unit(conn, tariff_id, heat_in_gcal=heat_in_gcal(request))
    preview = tariff_service.preview_version(found, version, request.app[CLOCK](), base_per_unit=unit.base_per_unit)
    return respond(preview_json(preview))


@requires("tariffs.assign")
async def push(request: web.Request) -> web.Response:
    """Queue the newest version for every meter on the tariff; answers 202 with the job to follow."""
    tariff_id = path_id(request, what="tariff")
    actor = _actor(request)
    job_id, meter_ids = await tariff_service.start_push(uow_of(request), actor, tariff_id, request.app[CLOCK]())
    start_push_job(request, job_id, tariff_id, meter_ids, actor)
    async with uow_of(request).connect() as conn:
        job = await job_json(conn, await bulk.get_job(conn, job_id))
    response = respond(job, status=202)
    response.headers["Location"] = f"{PREFIX}/jobs/{job_id}"
    return response


@requires("commands.read")
async def job(request: web.Request) -> web.Response:
    job_id = path_id(request, what="job")
    async with uow_of(request).connect() as conn:
        found = await job_json(conn, await bulk.get_job(conn, job_id))
    return respond(found)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{PREFIX}/tariffs", create_tariff)
    r.add_get(f"{PREFIX}/tariffs/{{id}}", tariff)
    r.add_post(f"{PREFIX}/tariffs/{{id}}/versions", add_version)
    r.add_get(f"{PREFIX}/tariffs/{{id}}/versions/{{version}}/preview", preview)
    r.add_post(f"{PREFIX}/tariffs/{{id}}/push", push)
    r.add_get(f"{PREFIX}/jobs/{{id}}", job)
