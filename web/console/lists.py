"""Console lists and reports: the communication log, wrong SMS, alarms, arrears, the audit log, reports
with charts and CSV/XLSX export, operators and API keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select

from billing import alarms as alarms_service
from store import audit
from store.schema.auth import api_keys, operators
from web import auth
from web.errors import InvalidInput, NotFound
from web.exports import FORMATS, download, export, to_csv, to_xlsx
from web.i18n import gettext
from web.keys import CLOCK, CURRENCY
from web.listing import filters, list_page
from web.middleware import require_principal, uow_of
from web.params import bounded_int, choice, path_id, text
from web.permissions import STAFF_ROLES, requires
from web.queries import lists, reports
from web.render import render
from web.security import client_address


@requires("communication.read")
async def communication(request: web.Request) -> web.Response:
    page = await list_page(request, "commands")
    q = request.query
    return render(
        request, "console/communication.html", {"page": page, "state": q.get("state", ""), "kind": q.get("kind", "")}
    )


@requires("commands.read")
async def command_detail(request: web.Request) -> web.Response:
    command_id = path_id(request, what="command")
    async with uow_of(request).connect() as conn:
        row = await lists.command(conn, command_id)
    if row is None:
        raise NotFound("command", command_id)
    return render(request, "console/command.html", {"c": row})


@requires("communication.read")
async def wrong_sms(request: web.Request) -> web.Response:
    page = await list_page(request, "wrong_sms")
    return render(request, "console/wrong_sms.html", {"page": page, "reason": request.query.get("reason", "")})


@requires("alarms.read")
async def alarms(request: web.Request) -> web.Response:
    page = await list_page(request, "alarms")
    return render(request, "console/alarms.html", {"page": page})


@requires("alarms.ack")
async def acknowledge_alarm(request: web.Request) -> web.Response:
    alarm_id = path_id(request, what="alarm")
    form = await request.post()
    await alarms_service.acknowledge_alarm(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        alarm_id,
        request.app[CLOCK](),
        note=text(form, "note", max_length=200, required=False),
    )
    back = "/console/alarms?open=true&ok=alarm_ack" if form.get("open") == "true" else "/console/alarms?ok=alarm_ack"
    raise web.HTTPSeeOther(back)


@requires("arrears.read")
async def arrears(request: web.Request) -> web.Response:
    now = request.app[CLOCK]()
    async with uow_of(request).connect() as conn:
        report = await reports.arrears_report(conn, now - timedelta(days=1), now)
    return render(request, "console/arrears.html", {"report": report})


def _period(request: web.Request) -> tuple[Any, Any, int]:
    days = bounded_int(request.query, "days", 30, 1, 366)
    until = request.app[CLOCK]().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return until - timedelta(days=days), until, days


def _report_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in reports.BUILDERS:
        raise NotFound("report", name)
    return name


@requires("reports.read")
async def reports_index(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console/reports/revenue")


@requires("reports.read")
async def report(request: web.Request) -> web.Response:
    name = _report_name(request)
    since, until, days = _period(request)
    async with uow_of(request).connect() as conn:
        result = await reports.BUILDERS[name](conn, since, until)
    return render(request, "console/report.html", {"report": result, "days": days, "names": reports.REPORTS})


@requires("reports.export")
async def report_export(request: web.Request) -> web.Response:
    name = _report_name(request)
    fmt = choice({"fmt": request.match_info["fmt"]}, "fmt", FORMATS)
    since, until, days = _period(request)
    principal = require_principal(request)
    async with uow_of(request).begin() as conn:
        result = await reports.BUILDERS[name](conn, since, until)
        await audit.record(
            conn,
            principal.actor(client_address(request)),
            "report.export",
            request.app[CLOCK](),
            target=f"report:{name}",
            after={"format": fmt, "days": days, "rows": len(result.rows)},
        )
    headers = [gettext(c.title) for c in result.columns]
    keys = [c.key for c in result.columns]
    kinds = [c.kind for c in result.columns]
    currency = request.app[CURRENCY]
    filename = f"{name}-{since:%Y%m%d}-{until:%Y%m%d}"
    title, subtitle = gettext(reports.REPORTS[name]), reports.period_text(since, until)
    return download(export(fmt, title, subtitle, headers, keys, kinds, result.rows, currency), filename, fmt)


AUDIT_COLUMNS = [
    ("at", "time"),
    ("actor_kind", "text"),
    ("actor", "text"),
    ("action", "text"),
    ("target", "text"),
    ("before", "text"),
    ("after", "text"),
    ("address", "text"),
]


@requires("audit.read")
async def audit_log(request: web.Request) -> web.Response:
    page = await list_page(request, "audit")
    return render(
        request,
        "console/audit.html",
        {"page": page, "actor": request.query.get("actor", ""), "action": request.query.get("action", "")},
    )


@requires("audit.export")
async def audit_export(request: web.Request) -> web.Response:
    fmt = choice({"fmt": request.match_info["fmt"]}, "fmt", ("csv", "xlsx"))
    arguments = filters("audit", request.query)
    principal = require_principal(request)
    async with uow_of(request).begin() as conn:
        page = await lists.audit_page(conn, **arguments, limit=100_000, offset=0)
        await audit.record(
            conn,
            principal.actor(client_address(request)),
            "audit.export",
            request.app[CLOCK](),
            after={"format": fmt, "rows": len(page.items)},
        )
    keys = [k for k, _kind in AUDIT_COLUMNS]
    kinds = [kind for _k, kind in AUDIT_COLUMNS]
    currency = request.app[CURRENCY]
    if fmt == "csv":
        return download(to_csv(keys, keys, kinds, page.items, currency), "audit-log", fmt)
    return download(to_xlsx("audit", keys, keys, kinds, page.items, currency), "audit-log", fmt)


@requires("operators.manage")
async def operators_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        rows = [dict(r) for r in (await conn.execute(select(operators).order_by(operators.c.username))).mappings()]
    for row in rows:
        row["local"] = bool(row.pop("password_hash", None))
    return render(request, "console/operators.html", {"operators": rows, "roles": STAFF_ROLES})


@requires("operators.manage")
async def create_operator(request: web.Request) -> web.Response:
    form = await request.post()
    username = text(form, "username", max_length=100)
    role = choice(form, "role", STAFF_ROLES)
    password = text(form, "password", required=False, max_length=200)
    if password and len(password) < 12:
        raise InvalidInput("password", "at least 12 characters (or empty for a RADIUS-only account)")
    principal = require_principal(request)
    now = request.app[CLOCK]()
    async with uow_of(request).begin() as conn:
        if await conn.scalar(select(operators.c.id).where(operators.c.username == username)) is not None:
            raise InvalidInput("username", "is taken")
        operator_id = await auth.create_operator(
            conn,
            username=username,
            display_name=text(form, "display_name", required=False, max_length=200) or username,
            role=role,
            password=password or None,
            now=now,
            email=text(form, "email", required=False, max_length=320) or None,
            phone=text(form, "phone", required=False, max_length=30) or None,
        )
        await audit.record(
            conn,
            principal.actor(client_address(request)),
            "operator.create",
            now,
            target=f"operator:{username}",
            after={"id": operator_id, "role": role, "local_password": bool(password)},
        )
    raise web.HTTPSeeOther("/console/operators?ok=operator_created")


@requires("operators.manage")
async def set_operator_contact(request: web.Request) -> web.Response:
    form = await request.post()
    async with uow_of(request).begin() as conn:
        await auth.set_operator_contact(
            conn,
            require_principal(request).actor(client_address(request)),
            path_id(request, what="operator"),
            email=text(form, "email", required=False, max_length=320) or None,
            phone=text(form, "phone", required=False, max_length=30) or None,
            now=request.app[CLOCK](),
        )
    raise web.HTTPSeeOther("/console/operators?ok=operator_contact")


@requires("apikeys.manage")
async def api_keys_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        rows = [dict(r) for r in (await conn.execute(select(api_keys).order_by(api_keys.c.name))).mappings()]
    for row in rows:
        row.pop("key_hash", None)
    return render(request, "console/api_keys.html", {"keys": rows, "roles": STAFF_ROLES, "new_key": None})


@requires("apikeys.manage")
async def create_api_key(request: web.Request) -> web.Response:
    form = await request.post()
    name = text(form, "name", max_length=100)
    role = choice(form, "role", STAFF_ROLES)
    principal = require_principal(request)
    now = request.app[CLOCK]()
    async with uow_of(request).begin() as conn:
        if await conn.scalar(select(api_keys.c.id).where(api_keys.c.name == name)) is not None:
            raise InvalidInput("name", "is taken")
        key_id, raw = await auth.create_api_key(conn, name=name, role=role, now=now)
        await audit.record(
            conn,
            principal.actor(client_address(request)),
            "apikey.create",
            now,
            target=f"api_key:{name}",
            after={"id": key_id, "role": role},
        )
        rows = [dict(r) for r in (await conn.execute(select(api_keys).order_by(api_keys.c.name))).mappings()]
    return render(request, "console/api_keys.html", {"keys": rows, "roles": STAFF_ROLES, "new_key": raw})


@requires("apikeys.manage")
async def revoke_api_key(request: web.Request) -> web.Response:
    key_id = path_id(request, what="API key")
    principal = require_principal(request)
    now = request.app[CLOCK]()
    async with uow_of(request).begin() as conn:
        if not await auth.revoke_api_key(conn, key_id, now):
            raise NotFound("active API key", key_id)
        await audit.record(
            conn, principal.actor(client_address(request)), "apikey.revoke", now, target=f"api_key:{key_id}"
        )
    raise web.HTTPSeeOther("/console/api-keys?ok=key_revoked")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/communication", communication)
    r.add_get("/console/commands/{id}", command_detail)
    r.add_get("/console/wrong-sms", wrong_sms)
    r.add_get("/console/alarms", alarms)
    r.add_post("/console/alarms/{id}/acknowledge", acknowledge_alarm)
    r.add_get("/console/arrears", arrears)
    r.add_get("/console/reports", reports_index)
    r.add_get("/console/reports/{name}.{fmt}", report_export)  # before {name}, which would take "revenue.csv"
    r.add_get("/console/reports/{name}", report)
    r.add_get("/console/audit", audit_log)
    r.add_get("/console/audit.{fmt}", audit_export)
    r.add_get("/console/operators", operators_page)
    r.add_post("/console/operators", create_operator)
    r.add_post("/console/operators/{id}/contact", set_operator_contact)
    r.add_get("/console/api-keys", api_keys_page)
    r.add_post("/console/api-keys", create_api_key)
    r.add_post("/console/api-keys/{id}/revoke", revoke_api_key)
