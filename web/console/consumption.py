"""The console's consumption dashboard by hierarchy (region → settlement → street → building → meter, or
by transformer), from the daily pre-aggregate in the utility's time zone."""

from __future__ import annotations

from aiohttp import web

from billing.consumption_daily import LEVELS
from web.api.readings import group_of
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
        view = await consumption_queries.dashboard(conn, level, group, today, days)
    kept = {k: request.query[k] for k in FILTERS if request.query.get(k)}
    return render(
        request,
        "console/consumption.html",
        {"view": view, "level": level, "days": days, "kept": kept, "levels": LEVELS},
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/console/consumption", dashboard)
