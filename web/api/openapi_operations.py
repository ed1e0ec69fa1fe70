"""The OpenAPI description of the operations in `web.api.operations` (merged into the document by
`web.api.openapi.document`)."""

from __future__ import annotations

from typing import Any

from web.api.openapi import _ID, _ok, _problem

_CMD = {"$ref": "#/components/schemas/CommandDetail"}


def _body(properties: dict[str, Any], required: list[str], *, optional: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return {"required": not optional, "content": {"application/json": {"schema": schema}}}


_REASON = {"type": "string", "minLength": 1, "maxLength": 200}

PATHS: dict[str, Any] = {
    "/api/v1/commands/{id}/cancel": {
        "post": {
            "operationId": "cancelCommand",
            "summary": "Cancel a command that has not left yet (state 0:0); audited",
            "description": (
                "A credit's top-up becomes `failed`: its money stays booked as sent, and it can be re-issued "
                "with the same transfer id. A command handed to the SMSC already, or held by a dispatcher at "
                "this moment, is not cancelled (409)."
            ),
            "tags": ["commands"],
            "parameters": _ID,
            "requestBody": _body({"reason": _REASON}, ["reason"]),
            "responses": {
                **_ok(_CMD, "cancelled"),
                **_problem("404", "no such command"),
                **_problem("409", "the command has left already"),
                **_problem("422", "no reason given"),
            },
        }
    },
    "/api/v1/topups/{id}/reissue": {
        "post": {
            "operationId": "reissueTopUp",
            "summary": "Send a failed credit again: a new command, the same transfer id and amount; audited",
            "description": "A meter that applied the first one answers `duplicate` and credits nothing twice.",
            "tags": ["payments"],
            "parameters": _ID,
            "responses": {
                **_ok(_CMD, "queued (0:0)", "201"),
                **_problem("404", "no such top-up"),
                **_problem("422", "the credit has not failed"),
            },
        }
    },
}

_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "a retry with the same key answers the first result",
    "schema": {"type": "string", "maxLength": 150},
}
_GROUP = {
    "transformer_id": {"type": "integer", "minimum": 1},
    "street": {
        "type": "string",
        "pattern": "^[0-9]{7}$",
        "description": "region, settlement and street: the first 7 digits of its subscriber codes",
    },
    "building": {
        "type": "string",
        "pattern": "^[0-9]{11}$",
        "description": "region, settlement, street and building: the first 11 digits of its subscriber codes",
    },
}
_SETTINGS = {
    "low_credit_minor": {"type": "integer", "minimum": 0, "description": "the low-credit alarm threshold"},
    "emergency_credit_minor": {
        "type": "integer",
        "minimum": 0,
        "description": "how far below zero before disconnection",
    },
    "friendly_start": {
        "type": "string",
        "pattern": "^[0-9]{1,2}:[0-9]{2}$",
        "description": "no disconnection from HH:MM",
    },
    "friendly_end": {"type": "string", "pattern": "^[0-9]{1,2}:[0-9]{2}$", "description": "until HH:MM (local time)"},
    "note": _REASON,
}
_KEY_STATE = {
    "type": "object",
    "properties": {
        "meter_id": {"type": "integer"},
        "key_id": {"type": "integer", "description": "the key id in force: commands are sealed under it"},
        "pending": {
            "type": ["object", "null"],
            "description": "a key change under way: the meter has not acknowledged the new key yet",
            "properties": {
                "key_id": {"type": "integer"},
                "command_id": {"type": ["integer", "null"]},
                "state": {"type": ["string", "null"]},
            },
        },
        "last_change": {"type": ["object", "null"]},
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key_id": {"type": "integer"},
                    "status": {"type": "string", "enum": ["active", "pending", "retired", "failed"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "retired_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
        },
        "command_id": {"type": "integer", "description": "the key-change command (when one was started)"},
    },
}
_JOB = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "description": {"type": "string"},
        "total": {"type": "integer"},
        "done": {"type": "integer", "description": "meters whose command is queued"},
        "skipped": {"type": "integer"},
        "percent": {"type": "integer"},
        "processed": {"type": "integer", "description": "commands the meters processed (1:1)"},
        "commands": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "count by state"},
        "status": {"type": "string", "enum": ["running", "done", "failed"]},
    },
    "additionalProperties": True,
}

PATHS.update(
    {
        "/api/v1/meters/{id}/keys": {
            "get": {
                "operationId": "getMeterKeys",
                "summary": "The key in force, a key change under way, every key the meter had (never the keys)",
                "tags": ["meters"],
                "parameters": _ID,
                "responses": {**_ok(_KEY_STATE), **_problem("404", "no such meter")},
            }
        },
        "/api/v1/meters/{id}/key-change": {
            "post": {
                "operationId": "changeMeterKey",
                "summary": "Change the meter's key over the air; audited",
                "description": (
                    "A new key is stored pending and sent wrapped under the key in force, in a frame sealed under "
                    "it. When the meter acknowledges (1:1, its answer under the new key) the new key is in force "
                    "and the old one retired; if it never does, it keeps the old key. One change at a time (409)."
                ),
                "tags": ["meters"],
                "parameters": [*_ID, _IDEMPOTENCY],
                "responses": {
                    **_ok(_KEY_STATE, "started: follow the command at its Location", "202"),
                    **_problem("404", "no such meter"),
                    **_problem("409", "a key change is under way, or the meter has no usable key"),
                    **_problem("422", "the meter is not active"),
                },
            }
        },
        "/api/v1/meters/{id}/configure": {
            "post": {
                "operationId": "configureMeter",
                "summary": "Send the meter its settings: low-credit threshold, emergency credit, friendly hours",
                "description": "Fields left out take the utility's policy; audited with the settings sent before.",
                "tags": ["meters"],
                "parameters": [*_ID, _IDEMPOTENCY],
                "requestBody": _body(_SETTINGS, [], optional=True),
                "responses": {
                    **_ok(_CMD, "queued (0:0)", "201"),
                    **_problem("404", "no such meter"),
                    **_problem("422", "a setting the protocol cannot carry"),
                },
            }
        },
        "/api/v1/subscribers/{id}/emergency-credit": {
            "post": {
                "operationId": "grantEmergencyCredit",
                "summary": "Emergency credit on loan, once per arrears episode (booked as debt); audited",
                "tags": ["subscribers"],
                "parameters": _ID,
                "responses": {
                    **_ok(_CMD, "the credit command, queued (0:0)", "201"),
                    **_problem("404", "no such subscriber"),
                    **_problem("422", "none in the policy, used in this episode, or no meter"),
                },
            }
        },
        "/api/v1/group-commands": {
            "post": {
                "operationId": "sendGroupCommand",
                "summary": "One command to every active meter of a transformer, a street or a building (a bulk job)",
                "tags": ["commands"],
                "requestBody": _body(
                    {
                        **_GROUP,
                        "action": {
                            "type": "string",
                            "enum": ["relay_off", "relay_on", "power_limit", "time_sync", "read", "configure"],
                        },
                        "reason": _REASON,
                        "limit_w": {"type": "integer", "minimum": 0},
                        **{k: v for k, v in _SETTINGS.items() if k != "note"},
                    },
                    ["action"],
                ),
                "responses": {
                    **_ok(_JOB, "the job, with its progress at its Location", "201"),
                    **_problem("422", "no group, or not a valid command"),
                },
            }
        },
        "/api/v1/key-changes": {
            "post": {
                "operationId": "changeGroupKeys",
                "summary": "A key change for every active meter of a group, throttled, as a bulk job",
                "description": "At most `per_minute` become due a minute; a meter with a change under way is skipped.",
                "tags": ["meters"],
                "requestBody": _body(
                    {**_GROUP, "per_minute": {"type": "integer", "minimum": 1, "maximum": 100000}}, []
                ),
                "responses": {**_ok(_JOB, "the job", "201"), **_problem("422", "no group")},
            }
        },
    }
)
