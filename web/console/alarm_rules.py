"""Console page of alarm rules: the rules, a form to add one, edit and remove. Each action parses the form,
calls one use case of `billing.alarm_rules`, redirects."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import alarm_rules as rules_service
from billing.rules.alarms import AutoAction, Severity
from web.keys import CLOCK
from web.middleware import require_principal, uow_of
from web.params import choice, path_id, text
from web.permissions import STAFF_ROLES, requires
from web.queries.operators import OPERATORS
from web.render import render
from web.security import client_address

_SEVERITIES = tuple(s.value for s in Severity)
_ACTIONS = tuple(a.value for a in AutoAction)


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def _fields(form: Any) -> rules_service.RuleFields:
    recipients = text(form, "recipients", required=False, max_length=2000).replace(";", ",").replace("\n", ",")
    return rules_service.RuleFields(
        name=text(form, "name", max_length=100),
        kind=text(form, "kind", max_length=30),
        min_severity=choice(form, "min_severity", _SEVERITIES, "warning"),
        email=form.get("email") in ("1", "on", "true"),
        sms=form.get("sms") in ("1", "on", "true"),
        role=choice(form, "role", ("", *STAFF_ROLES), "") or None,
        recipients=[r for r in recipients.split(",") if r.strip()],
        action=choice(form, "action", _ACTIONS, "none"),
        enabled=form.get("enabled") in ("1", "on", "true"),
    )


def _context(rules: list[dict[str, Any]], edit: dict[str, Any] | None) -> dict[str, Any]:
    return {"rules": rules, "edit": edit, "roles": STAFF_ROLES, "severities": _SEVERITIES, "actions": _ACTIONS}


@requires("alarms.read")
async def rules_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        rules = await rules_service.list_rules(conn)
    return render(request, "console/alarm_rules.html", _context(rules, None))


@requires("alarms.rules")
async def edit_rule_form(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        rule = await rules_service.get_rule(conn, path_id(request, what="alarm rule"))
        rules = await rules_service.list_rules(conn)
    return render(request, "console/alarm_rules.html", _context(rules, rule))


@requires("alarms.rules")
async def create_rule(request: web.Request) -> web.Response:
    fields = _fields(await request.post())
    await rules_service.create_rule(uow_of(request), _actor(request), fields, request.app[CLOCK](), operators=OPERATORS)
    raise web.HTTPSeeOther("/console/alarm-rules?ok=alarm_rule_saved")


@requires("alarms.rules")
async def update_rule(request: web.Request) -> web.Response:
    rule_id = path_id(request, what="alarm rule")
    fields = _fields(await request.post())
    await rules_service.update_rule(
        uow_of(request), _actor(request), rule_id, fields, request.app[CLOCK](), operators=OPERATORS
    )
    raise web.HTTPSeeOther("/console/alarm-rules?ok=alarm_rule_saved")


@requires("alarms.rules")
async def delete_rule(request: web.Request) -> web.Response:
    rule_id = path_id(request, what="alarm rule")
    await rules_service.delete_rule(uow_of(request), _actor(request), rule_id, request.app[CLOCK]())
    raise web.HTTPSeeOther("/console/alarm-rules?ok=alarm_rule_removed")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/alarm-rules", rules_page)
    r.add_post("/console/alarm-rules", create_rule)
    r.add_get("/console/alarm-rules/{id}/edit", edit_rule_form)
    r.add_post("/console/alarm-rules/{id}", update_rule)
    r.add_post("/console/alarm-rules/{id}/delete", delete_rule)
