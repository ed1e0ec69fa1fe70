"""Console pages of scheduled reading: the reading plans (what is read from which group, how often, in which
local window), a form to add one, pause or resume, a run started by hand, and each run's progress with the
meters that did not answer. Each action parses the form, calls one use case of `billing.reading_plans`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import reading_plans
from billing.places import list_transformers
from billing.rules.reading_plans import Every, GroupKind, Items
from web.commands import optional_minute_of_day
from web.keys import CLOCK
from web.middleware import billing_of, keys_of, require_principal, uow_of
from web.params import choice, path_id, text
from web.permissions import requires
from web.render import render
from web.security import client_address

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def plan_fields(form: Any) -> reading_plans.PlanFields:
    every = choice(form, "every", tuple(e.value for e in Every), Every.DAILY.value)
    weekday = choice(form, "weekday", ("", *WEEKDAYS), "")
    return reading_plans.PlanFields(
        name=text(form, "name", max_length=100),
        items=choice(form, "items", tuple(i.value for i in Items), Items.REGISTERS.value),
        every=every,
        weekday=WEEKDAYS.index(weekday) if weekday else None,
        group_kind=choice(form, "group_kind", tuple(g.value for g in GroupKind), GroupKind.ALL.value),
        group_code=text(form, "group_code", required=False, max_length=30) or None,
        window_start_min=optional_minute_of_day(form, "window_start") or 0,
        window_end_min=optional_minute_of_day(form, "window_end") or 0,
    )


@requires("meters.read")
async def plans_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        plans = await reading_plans.list_plans(conn)
        runs = await reading_plans.list_runs(conn)
        transformers = await list_transformers(conn)
    budget = billing_of(request).reading_budget_per_s
    return render(
        request,
        "console/reading_plans.html",
        {"plans": plans, "runs": runs, "transformers": transformers, "budget": budget, "weekdays": WEEKDAYS},
    )


@requires("readings.plans")
async def create_plan(request: web.Request) -> web.Response:
    fields = plan_fields(await request.post())
    await reading_plans.create_plan(uow_of(request), _actor(request), fields, request.app[CLOCK]())
    raise web.HTTPSeeOther("/console/reading-plans?ok=reading_plan_saved")


@requires("readings.plans")
async def set_enabled(request: web.Request) -> web.Response:
    plan_id = path_id(request, what="reading plan")
    form = await request.post()
    enabled = form.get("enabled") in ("1", "on", "true")
    await reading_plans.set_plan_enabled(uow_of(request), _actor(request), plan_id, enabled, request.app[CLOCK]())
    raise web.HTTPSeeOther("/console/reading-plans?ok=reading_plan_saved")


@requires("readings.plans")
async def run_now(request: web.Request) -> web.Response:
    plan_id = path_id(request, what="reading plan")
    await request.post()
    run_id = await reading_plans.start_run_now(
        uow_of(request),
        _actor(request),
        plan_id,
        request.app[CLOCK](),
        keys=keys_of(request),
        budget_per_s=billing_of(request).reading_budget_per_s,
    )
    raise web.HTTPSeeOther(f"/console/reading-runs/{run_id}?ok=reading_run_started")


@requires("meters.read")
async def run_page(request: web.Request) -> web.Response:
    """A run's progress and the meters that did not answer; the page reloads itself while any is on its way."""
    async with uow_of(request).connect() as conn:
        run = await reading_plans.run_report(conn, path_id(request, what="reading plan run"))
    live = run["status"] == "running" or run["waiting"] > 0
    return render(request, "console/reading_run.html", {"run": run, "live": live})


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/reading-plans", plans_page)
    r.add_post("/console/reading-plans", create_plan)
    r.add_post("/console/reading-plans/{id}/enabled", set_enabled)
    r.add_post("/console/reading-plans/{id}/run", run_now)
    r.add_get("/console/reading-runs/{id}", run_page)
