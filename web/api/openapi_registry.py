"""The OpenAPI description of the registry's writes (meters, transformers, holidays), tariffs, payment
conflicts, charges, write-offs and refunds. Merged into the document by `web.api.openapi.document`, which
adds to each operation the roles that may call it (from the permission table)."""

from __future__ import annotations

from typing import Any

from web.permissions import PERMISSIONS

_INT = {"type": "integer"}
_NINT = {"type": ["integer", "null"]}
_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": ["string", "null"], "format": "date-time"}
_MINOR = {"type": "integer", "description": "an amount in minor units of the currency (cents), never a float"}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}]


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": True}


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


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(name: str) -> dict[str, Any]:
    return {
        "allOf": [
            _ref("Page"),
            {"type": "object", "properties": {"items": {"type": "array", "items": _ref(name)}}},
        ]
    }


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def operation(
    op_id: str,
    summary: str,
    tag: str,
    action: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """An operation; `action` is the permission table's action its route requires (the document adds the
    roles allowed from the routes themselves, `x-roles`)."""
    assert action in PERMISSIONS, action
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if description:
        out["description"] = description
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = body
    return out


_NEW_METER = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[0-9 ]{20,30}$", "description": "the 20-digit meter code"},
        "msisdn": {"type": "string", "description": "the meter SIM's number"},
        "subscriber_id": {**_NINT, "description": "the subscriber; none for a transformer's balance meter"},
        "make": _NSTR,
        "model": _NSTR,
        "profile": {"type": "string", "enum": ["binary", "xml"]},
        "app_port": _NINT,
        "kind": {"type": "string", "enum": ["electricity", "water", "gas", "heat"]},
        "phases": {"type": "integer", "enum": [1, 3]},
        "transformer_id": _NINT,
        "is_balance_meter": {"type": "boolean"},
        "key_hex": {
            "type": "string",
            "pattern": "^[0-9a-fA-F]{32}$",
            "description": "the key the factory loaded into the meter; else a fresh random key",
        },
        "carried_credit_minor": {**_MINOR, "description": "replace only: credit left on the old meter"},
    },
    "required": ["code", "msisdn"],
}

SCHEMAS: dict[str, Any] = {
    "NewMeter": _NEW_METER,
    "MeterCard": _obj(
        id=_INT,
        code=_STR,
        status=_STR,
        subscriber=_obj(id=_INT, code=_STR, name=_STR),
        transformer=_obj(id=_INT, code=_STR, name=_STR),
        is_balance_meter={"type": "boolean"},
        replaced_by_code=_NSTR,
        tariff=_obj(
            running={
                "description": "the newest tariff version the meter acknowledged at 1:1",
                **_obj(wire_version=_INT, tariff_code=_STR, version=_INT, acknowledged_at=_NTIME),
            },
            pending=_obj(wire_version=_INT, tariff_code=_STR, version=_INT, state=_STR),
        ),
        keys={"type": "array", "items": _obj(key_id=_INT, status=_STR, created_at=_TIME, retired_at=_NTIME)},
        history={"type": "array", "items": _ref("MeterHistoryEntry")},
    ),
    "MeterHistoryEntry": _obj(at=_TIME, by=_STR, event=_STR, detail={"type": "object"}),
    "Transformer": _obj(
        id=_INT,
        code=_STR,
        name=_STR,
        feeder=_NSTR,
        loss_alarm_percent=_INT,
        meters={**_INT, "description": "active subscriber meters on it"},
        balance_meters={"type": "array", "items": _obj(id=_INT, code=_STR)},
    ),
    "Holiday": _obj(day={"type": "string", "format": "date"}, name=_STR),
}

_DAY = [{"name": "day", "in": "path", "required": True, "schema": {"type": "string", "format": "date"}}]

PATHS: dict[str, Any] = {
    "/api/v1/meters": {
        "post": operation(
            "installMeter",
            "Install a meter (for a subscriber, or a transformer's balance meter)",
            "meters",
            "meters.write",
            {
                **_ok(_ref("MeterCard"), "installed", "201"),
                **_problem("404", "no such subscriber or transformer"),
                **_problem("409", "the meter code is registered"),
                **_problem("422", "a field is not valid"),
            },
            body=_body(_ref("NewMeter")),
            description="The key is stored wrapped under the master key; history and audit rows are written.",
        )
    },
    "/api/v1/meters/{id}/replace": {
        "post": operation(
            "replaceMeter",
            "Replace a meter: the new one takes its subscriber, transformer and account; the old one is archived",
            "meters",
            "meters.write",
            {
                **_ok(_ref("MeterCard"), "the new meter", "201"),
                **_problem("404", "no such meter"),
                **_problem("409", "the old meter is not active, or the new code is registered"),
                **_problem("422", "a field is not valid"),
            },
            parameters=_ID,
            body=_body(_ref("NewMeter")),
            description="Credit left on the old meter (`carried_credit_minor`) goes back to the wallet, for the "
            "new meter's next vend.",
        )
    },
    "/api/v1/meters/{id}/archive": {
        "post": operation(
            "archiveMeter",
            "Archive a meter (its keys are retired; its history stays)",
            "meters",
            "meters.write",
            {
                **_ok(_ref("MeterCard")),
                **_problem("404", "no such meter"),
                **_problem("409", "archived already"),
                **_problem("422", "no reason given"),
            },
            parameters=_ID,
            body=_body({"type": "object", "properties": {"reason": _STR}, "required": ["reason"]}),
        )
    },
    "/api/v1/meters/{id}/history": {
        "get": operation(
            "getMeterHistory",
            "A meter's history: installed, replaced, archived, attached to a transformer",
            "meters",
            "meters.read",
            {**_ok(_list_of("MeterHistoryEntry")), **_problem("404", "no such meter")},
            parameters=_ID,
        )
    },
    "/api/v1/transformers": {
        "get": operation(
            "listTransformers",
            "Transformers with their meter counts and balance meters",
            "transformers",
            "meters.read",
            _ok(_list_of("Transformer")),
        ),
        "post": operation(
            "addTransformer",
            "Register a transformer",
            "transformers",
            "registry.write",
            {
                **_ok(_ref("Transformer"), "registered", "201"),
                **_problem("409", "the code exists"),
                **_problem("422", "a field is not valid"),
            },
            body=_body(
                {
                    "type": "object",
                    "properties": {
                        "code": _STR,
                        "name": _STR,
                        "feeder": _NSTR,
                        "loss_alarm_percent": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    "required": ["code", "name"],
                }
            ),
        ),
    },
    "/api/v1/transformers/{id}": {
        "get": operation(
            "getTransformer",
            "A transformer",
            "transformers",
            "meters.read",
            {**_ok(_ref("Transformer")), **_problem("404", "no such transformer")},
            parameters=_ID,
        )
    },
    "/api/v1/transformers/{id}/meters": {
        "post": operation(
            "attachMeters",
            "Attach meters to a transformer and/or name its balance meter",
            "transformers",
            "registry.write",
            {
                **_ok({"allOf": [_ref("Transformer"), _obj(changed=_INT)]}),
                **_problem("404", "no such transformer or meter"),
                **_problem("409", "a meter is archived"),
                **_problem("422", "nothing to attach, or a subscriber's meter as the balance meter"),
            },
            parameters=_ID,
            body=_body(
                {
                    "type": "object",
                    "properties": {
                        "meter_ids": {"type": "array", "items": _INT, "maxItems": 10000},
                        "balance_meter_id": {
                            **_INT,
                            "description": "a meter without a subscriber, at the transformer: the monthly "
                            "losses job compares it with the sum of the transformer's meters",
                        },
                    },
                }
            ),
        )
    },
    "/api/v1/holidays": {
        "get": operation(
            "listHolidays",
            "The holiday calendar (no automatic disconnect on these days)",
            "holidays",
            "meters.read",
            _ok(_list_of("Holiday")),
        )
    },
    "/api/v1/holidays/{day}": {
        "put": operation(
            "setHoliday",
            "Set (or rename) a holiday",
            "holidays",
            "registry.write",
            {**_ok(_ref("Holiday")), **_problem("422", "not a date, or no name")},
            parameters=_DAY,
            body=_body({"type": "object", "properties": {"name": _STR}, "required": ["name"]}),
        ),
        "delete": operation(
            "removeHoliday",
            "Remove a holiday",
            "holidays",
            "registry.write",
            {
                "204": {"description": "removed"},
                **_ERRORS,
                **_problem("404", "no such holiday"),
                **_problem("422", "not a date"),
            },
            parameters=_DAY,
        ),
    },
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Add this module's operations and schemas to the document's (an existing path gains methods)."""
    for path, item in PATHS.items():
        paths[path] = {**paths.get(path, {}), **item}
    schemas.update(SCHEMAS)
