"""The OpenAPI description of alarm rules. Merged into the document by `web.api.openapi.document`, which adds
to each operation the roles that may call it (from the permission table)."""

from __future__ import annotations

from typing import Any

from web.api.openapi import _ERRORS, _ID, _ok, _page_of, _problem
from web.api.openapi_registry import _body, _ref, operation

_RULE_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 100},
    "kind": {
        "type": "string",
        "description": "an alarm kind (tamper, command_failed, commands_stuck, smsc_down …) or *",
    },
    "min_severity": {"type": "string", "enum": ["info", "warning", "critical"]},
    "email": {"type": "boolean", "default": True},
    "sms": {"type": "boolean", "default": False},
    "role": {"type": ["string", "null"], "description": "the operators of this role are told too"},
    "recipients": {"type": "array", "items": {"type": "string"}, "description": "e-mail addresses and phone numbers"},
    "action": {
        "type": "string",
        "enum": ["none", "relay_off"],
        "description": "relay_off runs only when billing.alarm_actions is on, and only in friendly hours",
    },
    "enabled": {"type": "boolean", "default": True},
}

SCHEMAS: dict[str, Any] = {
    "AlarmRuleInput": {
        "type": "object",
        "properties": _RULE_FIELDS,
        "required": ["name", "kind", "min_severity"],
        "additionalProperties": False,
    },
    "AlarmRule": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            **_RULE_FIELDS,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": True,
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/alarm-rules": {
        "get": operation(
            "listAlarmRules",
            "The alarm rules (who is told of which alarm)",
            "alarms",
            "alarms.read",
            _ok(_page_of("AlarmRule")),
        ),
        "post": operation(
            "createAlarmRule",
            "Add an alarm rule (audited)",
            "alarms",
            "alarms.rules",
            {**_ok(_ref("AlarmRule"), "created", "201"), **_problem("422", "not a valid rule")},
            body=_body(_ref("AlarmRuleInput")),
        ),
    },
    "/api/v1/alarm-rules/{id}": {
        "get": operation(
            "getAlarmRule",
            "One alarm rule",
            "alarms",
            "alarms.read",
            {**_ok(_ref("AlarmRule")), **_problem("404", "no such rule")},
            parameters=_ID,
        ),
        "put": operation(
            "updateAlarmRule",
            "Change an alarm rule (audited with before and after)",
            "alarms",
            "alarms.rules",
            {**_ok(_ref("AlarmRule")), **_problem("404", "no such rule"), **_problem("422", "not a valid rule")},
            parameters=_ID,
            body=_body(_ref("AlarmRuleInput")),
        ),
        "delete": operation(
            "deleteAlarmRule",
            "Remove an alarm rule (audited)",
            "alarms",
            "alarms.rules",
            {"204": {"description": "removed"}, **_ERRORS, **_problem("404", "no such rule")},
            parameters=_ID,
        ),
    },
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    for path, item in PATHS.items():
        paths[path] = {**paths.get(path, {}), **item}
    schemas.update(SCHEMAS)
