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
