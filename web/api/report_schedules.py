"""/api/v1 for reports sent by e-mail on a schedule (`web.scheduled_reports`). Handlers parse, call one use case,
answer JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from web import scheduled_reports as schedules
from web.api.json import read_json, respond
from web.errors import InvalidInput
from web.exports import FORMATS
from web.keys import CLOCK
from web.middleware import require_principal, uow_of
from web.params import path_id
from web.permissions import requires
from web.security import client_address

PREFIX = "/api/v1"

SCHEMAS: dict[str, Any] = {
    "ReportScheduleInput": {
        "type": "object",
        "properties": {
            "report": {"type": "string", "enum": ["revenue", "payments", "arrears", "losses", "communication"]},
            "period": {"type": "string", "enum": list(schedules.PERIODS)},
            "format": {"type": "string", "enum": list(FORMATS), "default": "csv", "description": "the file attached"},
            "recipients": {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 20},
        },
        "required": ["report", "period", "recipients"],
        "additionalProperties": False,
    },
    "ReportSchedule": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "report": {"type": "string"},
            "period": {"type": "string", "enum": list(schedules.PERIODS)},
            "format": {"type": "string", "enum": list(FORMATS)},
            "recipients": {"type": "array", "items": {"type": "string"}},
            "active": {"type": "boolean"},
            "next_run_at": {"type": "string", "format": "date-time"},
            "last_run_at": {"type": ["string", "null"], "format": "date-time"},
            "last_status": {"type": ["string", "null"], "enum": ["sent", "failed", None]},
            "last_error": {"type": ["string", "null"]},
        },
        "additionalProperties": True,
    },
}


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


@requires("reports.read")
async def list_schedules(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await schedules.list_schedules(conn)
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("reports.schedule")
async def create_schedule(request: web.Request) -> web.Response:
    body = await read_json(request)
    recipients = body.get("recipients")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise InvalidInput("recipients", "must be a list of e-mail addresses")
    created = await schedules.create_schedule(
        uow_of(request),
        _actor(request),
        str(body.get("report", "")),
        str(body.get("period", "")),
        recipients,
        request.app[CLOCK](),
        fmt=str(body.get("format", "csv")),
    )
    return respond(created, status=201)


@requires("reports.schedule")
async def delete_schedule(request: web.Request) -> web.Response:
    schedule_id = path_id(request, what="report schedule")
    await schedules.delete_schedule(uow_of(request), _actor(request), schedule_id, request.app[CLOCK]())
    return web.Response(status=204)


@requires("reports.schedule")
async def send_now(request: web.Request) -> web.Response:
    schedule_id = path_id(request, what="report schedule")
    await schedules.send_now(uow_of(request), _actor(request), schedule_id, request.app[CLOCK]())
    return web.Response(status=202)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/report-schedules", list_schedules)
    r.add_post(f"{PREFIX}/report-schedules", create_schedule)
    r.add_delete(f"{PREFIX}/report-schedules/{{id}}", delete_schedule)
    r.add_post(f"{PREFIX}/report-schedules/{{id}}/send-now", send_now)


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    from web.api.openapi import _ERRORS, _ID, _ok, _page_of, _problem
    from web.api.openapi_registry import _body, _ref, operation

    described = (
        "Sent by the scheduler as CSV, XLSX or PDF through the utility's SMTP server (smtp.host), at midnight UTC."
    )
    paths["/api/v1/report-schedules"] = {
        "get": operation(
            "listReportSchedules",
            "Reports sent by e-mail on a schedule",
            "reports",
            "reports.read",
            _ok(_page_of("ReportSchedule")),
            description=described,
        ),
        "post": operation(
            "createReportSchedule",
            "Send a report by e-mail daily (yesterday), weekly (7 days) or monthly (30 days) (audited)",
            "reports",
            "reports.schedule",
            {**_ok(_ref("ReportSchedule"), "created", "201"), **_problem("422", "not a valid schedule")},
            body=_body(_ref("ReportScheduleInput")),
            description=described,
        ),
    }
    paths["/api/v1/report-schedules/{id}"] = {
        "delete": operation(
            "deleteReportSchedule",
            "Stop a scheduled report (audited)",
            "reports",
            "reports.schedule",
            {"204": {"description": "removed"}, **_ERRORS, **_problem("404", "no such schedule")},
            parameters=_ID,
        ),
    }
    paths["/api/v1/report-schedules/{id}/send-now"] = {
        "post": operation(
            "sendReportScheduleNow",
            "Make a scheduled report due now: the scheduler sends it on its next run (audited)",
            "reports",
            "reports.schedule",
            {"202": {"description": "due now"}, **_ERRORS, **_problem("404", "no such schedule")},
            parameters=_ID,
        ),
    }
    schemas.update(SCHEMAS)
