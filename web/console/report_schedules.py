"""Console page of reports sent by e-mail on a schedule: the schedules, a form to add one, send now, remove.
Each action parses the form, calls one use case of `web.scheduled_reports`, redirects."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from web import scheduled_reports as schedules
from web.exports import FORMATS
from web.keys import CLOCK
from web.middleware import require_principal, uow_of
from web.params import path_id, text
from web.permissions import requires
from web.queries import reports
from web.render import render
from web.security import client_address


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


@requires("reports.read")
async def schedules_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await schedules.list_schedules(conn)
    context = {"schedules": items, "names": reports.REPORTS, "periods": tuple(schedules.PERIODS), "formats": FORMATS}
    return render(request, "console/report_schedules.html", context)


@requires("reports.schedule")
async def create_schedule(request: web.Request) -> web.Response:
    form = await request.post()
    recipients = text(form, "recipients", max_length=2000).replace(";", ",").replace("\n", ",").split(",")
    await schedules.create_schedule(
        uow_of(request),
        _actor(request),
        text(form, "report", max_length=30),
        text(form, "period", max_length=10),
        recipients,
        request.app[CLOCK](),
        fmt=text(form, "format", required=False, max_length=4) or "csv",
    )
    raise web.HTTPSeeOther("/console/report-schedules?ok=report_scheduled")


@requires("reports.schedule")
async def send_now(request: web.Request) -> web.Response:
    schedule_id = path_id(request, what="report schedule")
    await schedules.send_now(uow_of(request), _actor(request), schedule_id, request.app[CLOCK]())
    raise web.HTTPSeeOther("/console/report-schedules?ok=report_due_now")


@requires("reports.schedule")
async def delete_schedule(request: web.Request) -> web.Response:
    schedule_id = path_id(request, what="report schedule")
    await schedules.delete_schedule(uow_of(request), _actor(request), schedule_id, request.app[CLOCK]())
    raise web.HTTPSeeOther("/console/report-schedules?ok=report_unscheduled")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/report-schedules", schedules_page)
    r.add_post("/console/report-schedules", create_schedule)
    r.add_post("/console/report-schedules/{id}/send-now", send_now)
    r.add_post("/console/report-schedules/{id}/delete", delete_schedule)
