"""The OpenAPI 3.1 description of /api/v1. Written by hand, beside the routes; a test checks that the
two describe the same operations and that the document is valid OpenAPI 3.1."""

from __future__ import annotations

from typing import Any

VERSION = "1.0.0"  # the API's own version; it changes only with the API

_PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
]
_TIME_RANGE = [
    {
        "name": "since",
        "in": "query",
        "description": "from this time (ISO 8601, UTC)",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "until",
        "in": "query",
        "description": "before this time (ISO 8601, UTC)",
        "schema": {"type": "string", "format": "date-time"},
    },
]
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}]


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema or {"type": "string"}}


def _problem(status: str, description: str) -> dict[str, Any]:
    return {
        status: {
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    }


_ERRORS = {**_problem("401", "no or unknown credentials"), **_problem("403", "the role may not do this")}


def _ok(schema: dict[str, Any], description: str = "OK", status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {"application/json": {"schema": schema}}}, **_ERRORS}


def _page_of(ref: str) -> dict[str, Any]:
    return {
        "allOf": [
            {"$ref": "#/components/schemas/Page"},
            {
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"}}},
            },
        ]
    }


def _list(op_id: str, summary: str, tag: str, item: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": op_id,
            "summary": summary,
            "tags": [tag],
            "parameters": [*params, *_PAGING],
            "responses": {**_ok(_page_of(item)), **_problem("422", "a filter is malformed")},
        }
    }


def _one(op_id: str, summary: str, tag: str, item: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": op_id,
            "summary": summary,
            "tags": [tag],
            "parameters": _ID,
            "responses": {**_ok({"$ref": f"#/components/schemas/{item}"}), **_problem("404", "no such record")},
        }
    }


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": True}


_INT = {"type": "integer"}
_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": ["string", "null"], "format": "date-time"}
_MINOR = {"type": "integer", "description": "an amount in minor units of the currency (cents), never a float"}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "properties": {
            "type": _STR,
            "title": _STR,
            "status": _INT,
            "detail": _STR,
            "instance": _STR,
            "errors": {"type": "array", "items": _obj(field=_STR, reason=_STR)},
        },
        "required": ["type", "title", "status"],
    },
    "Page": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {}}, "total": _INT, "limit": _INT, "offset": _INT},
        "required": ["items", "total", "limit", "offset"],
    },
    "Me": _obj(kind=_STR, name=_STR, role=_STR, actions={"type": "array", "items": _STR}),
    "Subscriber": _obj(
        id=_INT,
        code={"type": "string", "pattern": "^[0-9]{15}$"},
        name=_STR,
        address=_STR,
        phone=_NSTR,
        status=_STR,
        language=_STR,
        meters={"type": "array", "items": _STR},
        balance_minor=_MINOR,
        debt_minor=_MINOR,
        currency=_NSTR,
    ),
    "LedgerEntry": _obj(
        id=_INT,
        entry_type=_STR,
        book=_STR,
        amount_minor=_MINOR,
        idempotency_key=_STR,
        memo=_NSTR,
        created_at=_TIME,
        created_by=_STR,
    ),
    "Meter": _obj(
        id=_INT,
        code={"type": "string", "pattern": "^[0-9]{20}$"},
        subscriber_id={"type": ["integer", "null"]},
        msisdn=_STR,
        make=_NSTR,
        model=_NSTR,
        profile=_STR,
        kind=_STR,
        status=_STR,
        installed_at=_TIME,
    ),
    "Tariff": _obj(
        id=_INT,
        code=_STR,
        name=_STR,
        kind=_STR,
        versions={"type": "array", "items": _obj(version=_INT, effective_from=_TIME, body={"type": "object"})},
    ),
    "Command": _obj(
        id=_INT,
        meter_id=_INT,
        meter_code=_STR,
        kind=_STR,
        state={
            "type": "string",
            "description": (
                "0:0 sending, 0:1 accepted by the operator, 1:0 received by the meter, "
                "1:1 processed by the meter, or a final failure"
            ),
        },
        payload={"type": "object"},
        attempts=_INT,
        result_reason=_NSTR,
        created_by=_STR,
        created_at=_TIME,
        updated_at=_TIME,
        final_at=_NTIME,
    ),
    "CommandDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/Command"},
            _obj(
                history={
                    "type": "array",
                    "items": _obj(from_state=_NSTR, to_state=_STR, at=_TIME, source=_STR, detail=_NSTR),
                },
                parts={"type": "array", "items": _obj(seq=_INT, state=_STR, message_id=_NSTR)},
            ),
        ]
    },
    "CommandRequest": {
        "type": "object",
        "properties": {
            "meter_id": _INT,
            "kind": {
                "type": "string",
                "enum": [
                    "relay_off",
                    "relay_on",
                    "read_request",
                    "set_power_limit",
                    "time_sync",
                    "clear_tamper",
                    "ping",
                ],
            },
            "reason": {
                "type": "string",
                "enum": ["operator", "arrears", "tamper", "maintenance", "credit", "power_limit", "customer_request"],
            },
            "items": {"type": "array", "items": {"type": "string", "enum": ["registers", "balance", "load_profile"]}},
            "limit_w": {"type": "integer", "minimum": 0},
            "note": {
                "type": "string",
                "maxLength": 200,
                "description": "why, in the sender's words: kept on the command (its payload) and in the audit log",
            },
        },
        "required": ["meter_id", "kind"],
    },
    "Payment": _obj(
        id=_INT,
        provider=_STR,
        provider_ref=_STR,
        subscriber_id=_INT,
        amount_minor=_MINOR,
        currency=_STR,
        status=_STR,
        created_at=_TIME,
        paid_at=_NTIME,
    ),
    "Notice": _obj(
        id=_INT,
        subscriber_id=_INT,
        channel=_STR,
        stage=_STR,
        status=_STR,
        subject=_NSTR,
        body=_STR,
        created_at=_TIME,
        sent_at=_NTIME,
    ),
    "WrongSms": _obj(
        id=_INT,
        received_at=_TIME,
        source=_STR,
        destination=_STR,
        body={"type": "string", "description": "hex"},
        reason=_STR,
        detail=_NSTR,
    ),
    "Alarm": _obj(
        id=_INT,
        meter_id={"type": ["integer", "null"]},
        meter_code=_NSTR,
        kind=_STR,
        severity=_STR,
        raised_at=_TIME,
        detail=_NSTR,
        acknowledged_at=_NTIME,
        acknowledged_by=_NSTR,
    ),
    "AlarmAcknowledged": {
        "allOf": [
            {"$ref": "#/components/schemas/Alarm"},
            _obj(already_acknowledged={"type": "boolean", "description": "acknowledged before this call"}),
        ]
    },
    "Report": _obj(
        name=_STR,
        since=_TIME,
        until=_TIME,
        columns={
            "type": "array",
            "items": _obj(
                key=_STR, title=_STR, kind={"type": "string", "enum": ["text", "money", "number", "percent", "time"]}
            ),
        },
        rows={"type": "array", "items": {"type": "object"}},
        series={
            "type": "array",
            "description": "lines over time (losses: each transformer's loss per local day, in per cent, from the "
            "daily consumption); empty for the other reports",
            "items": _obj(
                name=_STR,
                points={"type": "array", "items": _obj(label=_STR, value={"type": "number"})},
            ),
        },
    ),
    "AuditEntry": _obj(
        id=_INT,
        at=_TIME,
        actor_kind=_STR,
        actor=_STR,
        action=_STR,
        target=_NSTR,
        before={"type": ["object", "null"]},
        after={"type": ["object", "null"]},
        address=_NSTR,
    ),
}

_ISSUE = {
    "operationId": "issueCommand",
    "summary": "Send a command to a meter (relay off/on, read, power limit, time sync, clear tamper, ping)",
    "description": (
        "As JSON, or as the protocol's XML document (application/xml, validated against the protocol's XSD) with "
        "`meter_id` as a query parameter. Credit, tariffs and keys are not sent here: billing sends them. "
        "The command starts in state 0:0; follow it at its Location."
    ),
    "tags": ["commands"],
    "parameters": [
        {
            "name": "meter_id",
            "in": "query",
            "description": "the meter, with an XML body",
            "schema": {"type": "integer"},
        },
        {
            "name": "Idempotency-Key",
            "in": "header",
            "description": "a retry with the same key returns the same command",
            "schema": {"type": "string", "maxLength": 150},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CommandRequest"}},
            "application/xml": {
                "schema": {
                    "type": "string",
                    "description": 'e.g. <relayOff xmlns="urn:smsmeter:protocol:1" reason="operator"/>',
                }
            },
        },
    },
    "responses": {
        **_ok({"$ref": "#/components/schemas/CommandDetail"}, "queued (0:0)", "201"),
        **_problem("404", "no such meter"),
        **_problem("415", "neither JSON nor XML"),
        **_problem("422", "not a valid command"),
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        }
    },
    "/api/v1/me": {
        "get": {
            "operationId": "getMe",
            "summary": "Who the caller is and what its role may do",
            "tags": ["meta"],
            "responses": _ok({"$ref": "#/components/schemas/Me"}),
        }
    },
    "/api/v1/subscribers": _list(
        "listSubscribers",
        "Search subscribers",
        "subscribers",
        "Subscriber",
        [_q("q", "code or meter number prefix, name, street, phone"), _q("status", "active | suspended | closed")],
    ),
    "/api/v1/subscribers/{id}": _one(
        "getSubscriber", "A subscriber with balance and meters", "subscribers", "Subscriber"
    ),
    "/api/v1/subscribers/{id}/ledger": {
        "get": {
            **_list("listLedger", "A subscriber's ledger entries, newest first", "subscribers", "LedgerEntry", _ID)[
                "get"
            ]
        }
    },
    "/api/v1/meters": _list(
        "listMeters",
        "Meters",
        "meters",
        "Meter",
        [_q("q", "meter code or SIM number prefix"), _q("status", "active | archived")],
    ),
    "/api/v1/meters/{id}": _one("getMeter", "A meter", "meters", "Meter"),
    "/api/v1/tariffs": {
        "get": {
            "operationId": "listTariffs",
            "summary": "Tariffs with their versions",
            "tags": ["tariffs"],
            "responses": _ok(_page_of("Tariff")),
        }
    },
    "/api/v1/commands": {
        **_list(
            "listCommands",
            "Commands to meters",
            "commands",
            "Command",
            [
                _q("meter_id", "one meter", {"type": "integer"}),
                _q("state", "a state code, e.g. 1:1"),
                _q("kind", "top_up, relay_off, ..."),
                *_TIME_RANGE,
            ],
        ),
        "post": _ISSUE,
    },
    "/api/v1/commands/{id}": _one(
        "getCommand", "A command with its state history and SMS parts", "commands", "CommandDetail"
    ),
    "/api/v1/payments": _list(
        "listPayments",
        "Payments",
        "payments",
        "Payment",
        [
            _q("subscriber_id", "one subscriber", {"type": "integer"}),
            _q("status", "paid, pending, refunded, ..."),
            _q("provider", "stripe, cash, ..."),
            *_TIME_RANGE,
        ],
    ),
    "/api/v1/notices": _list(
        "listNotices",
        "Arrears and credit notices",
        "notices",
        "Notice",
        [
            _q("subscriber_id", "one subscriber", {"type": "integer"}),
            _q("status", "queued | sent | failed"),
            _q("channel", "sms | email"),
            *_TIME_RANGE,
        ],
    ),
    "/api/v1/wrong-sms": _list(
        "listWrongSms",
        "SMS that were refused (unknown sender, bad tag, replay, ...)",
        "communication",
        "WrongSms",
        [
            _q("reason", "unknown_sender | bad_tag | replay | malformed | wrong_number"),
            _q("source", "the sender's number"),
            *_TIME_RANGE,
        ],
    ),
    "/api/v1/alarms": _list(
        "listAlarms",
        "Alarms from meters and the gateway",
        "alarms",
        "Alarm",
        [
            _q("kind", "tamper, magnetic, cover_open, command_failed, ..."),
            _q("meter_id", "one meter", {"type": "integer"}),
            _q("open", "only unacknowledged", {"type": "string", "enum": ["true", "false"]}),
            *_TIME_RANGE,
        ],
    ),
    "/api/v1/alarms/{id}/acknowledge": {
        "post": {
            "operationId": "acknowledgeAlarm",
            "summary": "Acknowledge an alarm (who and when are recorded, with an audit row)",
            "description": "Acknowledging an acknowledged alarm changes nothing: the answer says who was first.",
            "tags": ["alarms"],
            "parameters": _ID,
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"note": {"type": "string", "maxLength": 200}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                **_ok({"$ref": "#/components/schemas/AlarmAcknowledged"}),
                **_problem("404", "no such alarm"),
                **_problem("415", "a body that is not JSON"),
                **_problem("422", "the note is too long"),
            },
        }
    },
    "/api/v1/audit": _list(
        "listAudit",
        "The audit log (auditors and admins)",
        "audit",
        "AuditEntry",
        [_q("actor", "who"), _q("action", "what, e.g. login, meter.relay_off"), *_TIME_RANGE],
    ),
}


PATHS["/api/v1/reports/{name}"] = {
    "get": {
        "operationId": "getReport",
        "summary": "A report over the last `days` days: revenue, payments, arrears, losses, communication",
        "tags": ["reports"],
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": ["revenue", "payments", "arrears", "losses", "communication"]},
            },
            {"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 366, "default": 30}},
        ],
        "responses": {**_ok({"$ref": "#/components/schemas/Report"}), **_problem("404", "no such report")},
    }
}


_SUBSCRIBER_FIELDS = {
    "name": _STR,
    "father_name": _NSTR,
    "phone": _NSTR,
    "email": _NSTR,
    "language": _STR,
    "contract_number": _NSTR,
    "identity_document": _NSTR,
    "family_size": {"type": ["integer", "null"]},
    "rooms": {"type": ["integer", "null"]},
    "registered_on": {"type": ["string", "null"], "format": "date"},
    "ended_on": {"type": ["string", "null"], "format": "date"},
    "status": {"type": "string", "enum": ["active", "suspended", "closed"]},
    "old_code": _NSTR,
    "normative_wh_month": {"type": ["integer", "null"]},
    "tariff_id": {"type": ["integer", "null"]},
}
SCHEMAS["SubscriberFields"] = {"type": "object", "properties": _SUBSCRIBER_FIELDS, "additionalProperties": False}
SCHEMAS["NewSubscriber"] = {
    "type": "object",
    "properties": {
        "code": {
            "type": "string",
            "pattern": "^[0-9]{15}$",
            "description": "region (2 digits), settlement (2), street (3), building (4), apartment (4); the street "
            "must be registered (listStreets). A JSON number of 15 digits is taken too.",
        },
        **_SUBSCRIBER_FIELDS,
    },
    "required": ["code", "name"],
    "additionalProperties": False,
}
SCHEMAS["PaymentReport"] = {
    "type": "object",
    "properties": {
        "provider_ref": {
            "type": "string",
            "maxLength": 150,
            "description": "your transaction id; a second report with it changes nothing",
        },
        "amount_minor": {"type": "integer", "minimum": 1},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "paid_at": {"type": "string", "format": "date-time"},
        "subscriber_code": {"type": "string", "pattern": "^[0-9]{15}$"},
        "meter_code": {"type": "string", "pattern": "^[0-9]{20}$"},
    },
    "required": ["provider_ref", "amount_minor", "subscriber_code"],
}
SCHEMAS["TopUp"] = _obj(
    topup_id=_INT,
    payment_id={"type": ["integer", "null"]},
    command_id={"type": ["integer", "null"]},
    state=_STR,
    amount_minor=_MINOR,
    recovered_minor=_MINOR,
    vended_minor=_MINOR,
    duplicate={"type": "boolean"},
)


def _json_body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


PATHS["/api/v1/subscribers"]["post"] = {
    "operationId": "createSubscriber",
    "summary": "Create a subscriber (and their account)",
    "tags": ["subscribers"],
    "requestBody": _json_body("NewSubscriber"),
    "responses": {
        **_ok({"$ref": "#/components/schemas/Subscriber"}, "created", "201"),
        **_problem("409", "the code is taken"),
        **_problem("422", "a field is not valid (also: the code's street is not registered)"),
    },
}
PATHS["/api/v1/subscribers/{id}"]["patch"] = {
    "operationId": "updateSubscriber",
    "summary": "Change a subscriber's fields (history and audit kept)",
    "tags": ["subscribers"],
    "parameters": _ID,
    "requestBody": _json_body("SubscriberFields"),
    "responses": {
        **_ok({"$ref": "#/components/schemas/Subscriber"}),
        **_problem("404", "no such subscriber"),
        **_problem("422", "a field is not valid"),
    },
}
PATHS["/api/v1/payments"]["post"] = {
    "operationId": "reportPayment",
    "summary": "Report a payment taken elsewhere (a bank, a post office); billing applies it once",
    "tags": ["payments"],
    "requestBody": _json_body("PaymentReport"),
    "responses": {
        **_ok({"$ref": "#/components/schemas/TopUp"}, "applied", "201"),
        "200": {
            "description": "reported before: the first result",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TopUp"}}},
        },
        **_problem("404", "no such subscriber"),
        **_problem("422", "not a valid payment"),
    },
}


def _roles_by_operation() -> dict[tuple[str, str], list[str]]:
    """(method, path) → the roles the permission table lets call it, read from the routes themselves."""
    from aiohttp import web

    from web import api
    from web.permissions import PERMISSIONS, PUBLIC, permission_of

    app = web.Application()
    api.setup_routes(app)
    roles: dict[tuple[str, str], list[str]] = {}
    for route in app.router.routes():
        action = permission_of(route.handler)
        if route.resource is None or action is None or action == PUBLIC:
            continue
        roles[(route.method.lower(), route.resource.canonical)] = sorted(PERMISSIONS[action])
    return roles


def _with_roles(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation names the roles allowed to call it (`x-roles`, and in words in its description)."""
    roles = _roles_by_operation()
    out: dict[str, Any] = {}
    for path, item in paths.items():
        out[path] = {}
        for method, operation in item.items():
            allowed = roles.get((method, path))
            if allowed is not None:
                words = "Roles: " + ", ".join(allowed) + "."
                text = operation.get("description")
                operation = {**operation, "x-roles": allowed, "description": f"{text}\n\n{words}" if text else words}
            out[path][method] = operation
    return out


def document() -> dict[str, Any]:
    from web.api import (
        key_files,
        openapi_alarms,
        openapi_events,
        openapi_readings,
        openapi_registry,
        outbox,
        reading_plans,
        reconciliation,
        report_schedules,
        vouchers,
        wallet,
    )
    from web.api.openapi_operations import PATHS as OPERATION_PATHS
    from web.api.openapi_sts import PATHS as STS_PATHS

    paths = {**{path: dict(item) for path, item in PATHS.items()}, **OPERATION_PATHS, **STS_PATHS}
    schemas = dict(SCHEMAS)
    openapi_registry.merge_into(paths, schemas)
    openapi_readings.merge_into(paths, schemas)
    outbox.merge_into(paths, schemas)
    key_files.merge_into(paths, schemas)
    openapi_alarms.merge_into(paths, schemas)
    openapi_events.merge_into(paths, schemas)
    report_schedules.merge_into(paths, schemas)
    wallet.merge_into(paths, schemas)
    vouchers.merge_into(paths, schemas)
    reading_plans.merge_into(paths, schemas)
    reconciliation.merge_into(paths, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smsmeter API",
            "version": VERSION,
            "summary": "Prepaid head end for SMS smart meters",
            "description": (
                "Integrations (CIS, MDM, SCADA) call this API with an API key in `Authorization: Bearer smk_...`. "
                "Each key has a role; the role decides what it may do. Amounts are integer minor units; times are UTC. "
                "Errors are RFC 9457 problem documents."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}, {"session": []}],
        "paths": _with_roles(paths),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key, smk_..."},
                "session": {"type": "apiKey", "in": "cookie", "name": "smsmeter_session"},
            },
        },
    }
