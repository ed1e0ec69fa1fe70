"""/api/v1 for scheduled reading: reading plans, a run started by hand, the runs with their progress and the
meters that did not answer. Handlers parse, call one use case of `billing.reading_plans`, answer JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import reading_plans
from web.api.json import read_json, respond
from web.commands import optional_minute_of_day
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import billing_of, keys_of, require_principal, uow_of
from web.params import path_id
from web.permissions import requires
from web.security import client_address

PREFIX = "/api/v1"


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def _string(body: dict[str, Any], name: str, default: str | None, max_length: int = 100) -> str | None:
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(name, f"must be a string of at most {max_length} characters")
    return value


def plan_fields(body: dict[str, Any]) -> reading_plans.PlanFields:
    weekday = body.get("weekday")
    if weekday is not None and (not isinstance(weekday, int) or isinstance(weekday, bool)):
        raise InvalidInput("weekday", "must be 0 (Monday) to 6 (Sunday)")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled", "must be true or false")
    return reading_plans.PlanFields(
        name=_string(body, "name", "") or "",
        items=_string(body, "items", "registers", 20) or "",
        every=_string(body, "every", "daily", 10) or "",
        group_kind=_string(body, "group_kind", "all", 20) or "",
        group_code=_string(body, "group_code", None, 30),
        weekday=weekday,
        window_start_min=optional_minute_of_day(body, "window_start") or 0,
        window_end_min=optional_minute_of_day(body, "window_end") or 0,
        enabled=enabled,
    )


def _page(items: list[dict[str, Any]]) -> web.Response:
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("meters.read")
async def list_plans(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        return _page(await reading_plans.list_plans(conn))


@requires("meters.read")
async def get_plan(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        return respond(await reading_plans.get_plan(conn, path_id(request, what="reading plan")))


@requires("readings.plans")
async def create_plan(request: web.Request) -> web.Response:
    fields = plan_fields(await read_json(request))
    plan = await reading_plans.create_plan(uow_of(request), _actor(request), fields, request.app[CLOCK]())
    return respond(plan, status=201)


@requires("meters.read")
async def list_runs(request: web.Request) -> web.Response:
    plan_id = path_id(request, what="reading plan")
    async with uow_of(request).connect() as conn:
        await reading_plans.get_plan(conn, plan_id)
        return _page(await reading_plans.list_runs(conn, plan_id, limit=100))


@requires("readings.plans")
async def start_run(request: web.Request) -> web.Response:
    run_id = await reading_plans.start_run_now(
        uow_of(request),
        _actor(request),
        path_id(request, what="reading plan"),
        request.app[CLOCK](),
        keys=keys_of(request),
        budget_per_s=billing_of(request).reading_budget_per_s,
    )
    async with uow_of(request).connect() as conn:
        return respond(await reading_plans.run_report(conn, run_id), status=201)


@requires("meters.read")
async def get_run(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        return respond(await reading_plans.run_report(conn, path_id(request, what="reading plan run")))


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/reading-plans", list_plans)
    r.add_post(f"{PREFIX}/reading-plans", create_plan)
    r.add_get(f"{PREFIX}/reading-plans/{{id}}", get_plan)
    r.add_get(f"{PREFIX}/reading-plans/{{id}}/runs", list_runs)
    r.add_post(f"{PREFIX}/reading-plans/{{id}}/runs", start_run)
    r.add_get(f"{PREFIX}/reading-runs/{{id}}", get_run)


_PLAN_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 100},
    "items": {"type": "string", "enum": ["registers", "load_profile"], "default": "registers"},
    "every": {"type": "string", "enum": ["daily", "weekly"], "default": "daily"},
    "weekday": {"type": ["integer", "null"], "minimum": 0, "maximum": 6, "description": "weekly: 0 Monday"},
    "group_kind": {"type": "string", "enum": ["all", "settlement", "transformer", "tariff"], "default": "all"},
    "group_code": {
        "type": ["string", "null"],
        "description": "settlement: region and settlement code (6401); transformer or tariff: its id",
    },
    "window_start": {"type": "string", "pattern": "^\\d{2}:\\d{2}$", "description": "local time, HH:MM"},
    "window_end": {
        "type": "string",
        "pattern": "^\\d{2}:\\d{2}$",
        "description": "at or before start: crosses midnight",
    },
    "enabled": {"type": "boolean", "default": True},
}

SCHEMAS: dict[str, Any] = {
    "ReadingPlanInput": {
        "type": "object",
        "properties": _PLAN_FIELDS,
        "required": ["name", "window_start", "window_end"],
        "additionalProperties": False,
    },
    "ReadingPlan": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, **_PLAN_FIELDS, "meters": {"type": "integer"}},
        "additionalProperties": True,
    },
    "ReadingRun": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "plan_id": {"type": "integer"},
            "occasion": {"type": "string", "description": "the local day of a scheduled run, or manual:<time>"},
            "status": {"type": "string", "enum": ["running", "done"]},
            "rate_per_s": {"type": "number", "description": "read requests a second (0: all at once)"},
            "meters": {"type": "integer"},
            "queued": {"type": "integer"},
            "answered": {"type": "integer", "description": "read requests processed by the meter (1:1)"},
            "not_answered": {"type": "integer", "description": "read requests that ended without the answer"},
            "waiting": {"type": "integer", "description": "read requests on their way"},
            "unanswered": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": True},
                "description": "the meters that have not answered (run report only)",
            },
        },
        "additionalProperties": True,
    },
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    from web.api.openapi import _ID, _ok, _page_of, _problem
    from web.api.openapi_registry import _body, _ref, operation

    not_found = _problem("404", "no such reading plan")
    paths["/api/v1/reading-plans"] = {
        "get": operation(
            "listReadingPlans", "The reading plans", "readings", "meters.read", _ok(_page_of("ReadingPlan"))
        ),
        "post": operation(
            "createReadingPlan",
            "Add a reading plan: what is read from which group, how often, in which local window (audited)",
            "readings",
            "readings.plans",
            {**_ok(_ref("ReadingPlan"), "created", "201"), **_problem("422", "not a valid plan")},
            body=_body(_ref("ReadingPlanInput")),
        ),
    }
    paths["/api/v1/reading-plans/{id}"] = {
        "get": operation(
            "getReadingPlan",
            "One reading plan, with how many meters its group holds",
            "readings",
            "meters.read",
            {**_ok(_ref("ReadingPlan")), **not_found},
            parameters=_ID,
        ),
    }
    paths["/api/v1/reading-plans/{id}/runs"] = {
        "get": operation(
            "listReadingRuns",
            "A plan's runs, newest first, with their progress",
            "readings",
            "meters.read",
            {**_ok(_page_of("ReadingRun")), **not_found},
            parameters=_ID,
        ),
        "post": operation(
            "startReadingRun",
            "Run the plan now, as fast as the reading budget allows (audited as a bulk job)",
            "readings",
            "readings.plans",
            {**_ok(_ref("ReadingRun"), "started", "201"), **not_found},
            parameters=_ID,
        ),
    }
    paths["/api/v1/reading-runs/{id}"] = {
        "get": operation(
            "getReadingRun",
            "A run's progress and the meters that have not answered",
            "readings",
            "meters.read",
            {**_ok(_ref("ReadingRun")), **_problem("404", "no such run")},
            parameters=_ID,
        ),
    }
    schemas.update(SCHEMAS)
