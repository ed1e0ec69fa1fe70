"""/api/v1 for alarm rules: who is told of which alarm, by e-mail and/or SMS, and the automatic action.
Handlers parse, call one use case of `billing.alarm_rules`, answer JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import alarm_rules as rules_service
from web.api.json import read_json, respond
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import require_principal, uow_of
from web.params import path_id
from web.permissions import requires
from web.queries.operators import OPERATORS
from web.security import client_address

PREFIX = "/api/v1"


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(name, "must be true or false")
    return value


def _string(body: dict[str, Any], name: str, default: str | None = None, max_length: int = 100) -> str | None:
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(name, f"must be a string of at most {max_length} characters")
    return value


def rule_fields(body: dict[str, Any]) -> rules_service.RuleFields:
    recipients = body.get("recipients", [])
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise InvalidInput("recipients", "must be a list of e-mail addresses and phone numbers")
    return rules_service.RuleFields(
        name=_string(body, "name", "") or "",
        kind=_string(body, "kind", "", 30) or "",
        min_severity=_string(body, "min_severity", "warning", 10) or "",
        email=_flag(body, "email", True),
        sms=_flag(body, "sms", False),
        role=_string(body, "role", None, 20) or None,
        recipients=recipients,
        action=_string(body, "action", "none", 20) or "none",
        enabled=_flag(body, "enabled", True),
    )


@requires("alarms.read")
async def list_rules(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await rules_service.list_rules(conn)
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("alarms.read")
async def get_rule(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        return respond(await rules_service.get_rule(conn, path_id(request, what="alarm rule")))


@requires("alarms.rules")
async def create_rule(request: web.Request) -> web.Response:
    fields = rule_fields(await read_json(request))
    rule = await rules_service.create_rule(
        uow_of(request), _actor(request), fields, request.app[CLOCK](), operators=OPERATORS
    )
    return respond(rule, status=201)


@requires("alarms.rules")
async def update_rule(request: web.Request) -> web.Response:
    rule_id = path_id(request, what="alarm rule")
    fields = rule_fields(await read_json(request))
    return respond(
        await rules_service.update_rule(
            uow_of(request), _actor(request), rule_id, fields, request.app[CLOCK](), operators=OPERATORS
        )
    )


@requires("alarms.rules")
async def delete_rule(request: web.Request) -> web.Response:
    rule_id = path_id(request, what="alarm rule")
    await rules_service.delete_rule(uow_of(request), _actor(request), rule_id, request.app[CLOCK]())
    return web.Response(status=204)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/alarm-rules", list_rules)
    r.add_post(f"{PREFIX}/alarm-rules", create_rule)
    r.add_get(f"{PREFIX}/alarm-rules/{{id}}", get_rule)
    r.add_put(f"{PREFIX}/alarm-rules/{{id}}", update_rule)
    r.add_delete(f"{PREFIX}/alarm-rules/{{id}}", delete_rule)
