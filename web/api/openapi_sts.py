"""The OpenAPI description of the STS operations in `web.api.sts` (merged into the document by
`web.api.openapi.document`; `x-roles` come from the route permission table)."""

from __future__ import annotations

from typing import Any

from web.api.openapi import _ID, _ok, _problem

_TOKEN = {
    "type": "object",
    "properties": {
        "topup_id": {"type": "integer"},
        "meter_id": {"type": "integer"},
        "token": {"type": "string", "pattern": "^[0-9]{20}$"},
        "token_grouped": {"type": "string", "description": "five groups of four digits, as printed"},
        "amount_minor": {"type": "integer", "description": "what the token carries"},
        "remainder_minor": {"type": "integer", "description": "what a token cannot carry exactly: back to the wallet"},
        "currency": {"type": "string"},
        "cancelled_command_id": {
            "type": ["integer", "null"],
            "description": "the SMS credit cancelled (it had not left)",
        },
        "delivered_by": {"type": "string", "enum": ["token"]},
        "duplicate": {"type": "boolean", "description": "issued before: the same token"},
    },
}
_KEYPAD = {
    "type": "object",
    "properties": {
        "meter_id": {"type": "integer"},
        "supply_group_code": {"type": "string"},
        "tariff_index": {"type": "integer"},
        "key_revision": {"type": "integer"},
        "key_type": {"type": "integer"},
        "base_date_year": {"type": "integer", "enum": [1993, 2014]},
        "key_change_state": {"type": "string", "enum": ["none", "issued", "accepted"]},
        "key_change_revision": {"type": ["integer", "null"]},
        "key_change_pair": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": 4,
            "description": "in the order to enter them: two, or four for a 16-byte (MISTY1) key",
        },
        "key_change_rollover": {"type": "boolean"},
        "key_change_issued_at": {"type": ["string", "null"], "format": "date-time"},
        "key_change_accepted_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
_KEYPAD_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["supply_group_code"],
                "properties": {
                    "supply_group_code": {"type": "string", "pattern": "^[0-9]{6}$"},
                    "tariff_index": {"type": "integer", "minimum": 0, "maximum": 99, "default": 1},
                    "key_revision": {"type": "integer", "minimum": 1, "maximum": 9, "default": 1},
                },
            }
        }
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/topups/{id}/sts-token": {
        "post": {
            "operationId": "issueStsToken",
            "summary": "The 20-digit STS token of a credit stuck before 1:1; audited",
            "description": (
                "One transfer, two paths: an SMS still in the outbox is cancelled; one that has left is turned into "
                "a token only once it is stuck; the top-up becomes delivered by token. A later acknowledgement "
                "of the SMS is recorded and alarmed, never credited twice. Asking again gives the same token."
            ),
            "tags": ["payments"],
            "parameters": _ID,
            "responses": {
                **_ok(_TOKEN, "issued", "201"),
                **_ok(_TOKEN, "issued before: the same token"),
                **_problem("404", "no such top-up"),
                **_problem(
                    "409", "delivered already, its SMS still on its way, no keypad, or the 1993 base date run out"
                ),
            },
        }
    },
    "/api/v1/meters/{id}/sts-keypad": {
        "get": {
            "operationId": "getStsKeypad",
            "summary": "A meter's STS keypad parameters and its key change state",
            "tags": ["meters"],
            "parameters": _ID,
            "responses": {**_ok(_KEYPAD, "the keypad"), **_problem("404", "no keypad recorded")},
        },
        "put": {
            "operationId": "registerStsKeypad",
            "summary": "Record that a meter has an STS keypad (supply group, tariff index, key revision); audited",
            "tags": ["meters"],
            "parameters": _ID,
            "requestBody": _KEYPAD_BODY,
            "responses": {
                **_ok(_KEYPAD, "recorded", "201"),
                **_problem("404", "no such meter"),
                **_problem("409", "a keypad is recorded already"),
                **_problem("422", "a field is invalid"),
            },
        },
    },
    "/api/v1/meters/{id}/sts-key-change": {
        "post": {
            "operationId": "issueStsKeyChange",
            "summary": "The key change token pair to KRN+1 with the rollover to the 2014 base date; audited",
            "tags": ["meters"],
            "parameters": _ID,
            "responses": {
                **_ok(_KEYPAD, "issued (the pair in key_change_pair)", "201"),
                **_problem("404", "no keypad recorded"),
                **_problem("409", "rolled over already, or no higher key revision"),
            },
        }
    },
    "/api/v1/meters/{id}/sts-key-change/accept": {
        "post": {
            "operationId": "acceptStsKeyChange",
            "summary": "The meter took the key change pair: the new KRN and base date are in force; audited",
            "tags": ["meters"],
            "parameters": _ID,
            "responses": {
                **_ok(_KEYPAD, "accepted"),
                **_problem("404", "no keypad recorded"),
                **_problem("409", "no key change is waiting"),
            },
        }
    },
}
