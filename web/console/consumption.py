"""The console's consumption dashboard by hierarchy (region → settlement → street → building → meter, or
by transformer), from the daily pre-aggregate in the utility's time zone."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from billing.consumption_daily import LEVELS
from web.api.readings import export_file, group_of, local_day
from web.keys import CLOCK
from web.middleware import billing_of, uow_of
from web.params import bounded_int, choice
from web.permissions import requires
from web.queries import consumption as consumption_queries
from web.render import render

FILTERS = ("region", "settlement", "street", "building", "transformer_id", "meter_id")


@requires("reports.read")
async def dashboard(request: web.Request) -> web.Response:
    level = choice(request.query, "by", LEVELS, "settlement")
    days = bounded_int(request.query, "days", 30, 1, 366)
    group = group_of(request)
    today = request.app[CLOCK]().astimezone(billing_of(request).tz).date()
    async with uow_of(request).connect() as conn:
        view = await consumption_queries.dashboard(
            conn, level, group, today, days, heat_in_gcal=billing_of(request).heat_in_gcal
        )
    kept = {k: request.query[k] for k in FILTERS if request.query.get(k)}
    context = {"view": view, "level": level, "days": days, "kept": kept, "levels": LEVELS}
    return render(request, "console/consumption.html", {**context, "yesterday": today - timedelta(days=1)})


@requires("reports.export")
async def export_readings(request: web.Request) -> web.Response:
    """The MDM export of one day, downloaded from the dashboard (audited like any export)."""
    today = request.app[CLOCK]().astimezone(billing_of(request).tz).date()
    day = local_day(request, "day", today - timedelta(days=1))
    return await export_file(request, day, choice(request.query, "format", ("csv", "xml"), "xml"))


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/console/consumption", dashboard)
    app.router.add_get("/console/exports/readings", export_readings)
