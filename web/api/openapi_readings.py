"""The OpenAPI description of readings, load profiles, consumption and the MDM export. Merged into the
document by `web.api.openapi.document`, which adds the roles that may call each operation (`x-roles`)."""

from __future__ import annotations

from typing import Any

from billing.consumption_daily import LEVELS
from web.api.openapi import _ID, _INT, _NSTR, _STR, _TIME, _obj, _ok, _page_of, _problem
from web.api.openapi_registry import _body, operation

_READING = _obj(
    id=_INT,
    meter_id=_INT,
    meter_code=_STR,
    register={
        **_STR,
        "description": "import_wh, export_wh, t1_wh…, volume_l, heat_wh; power_w, voltage_dv; profile_wh",
    },
    read_at=_TIME,
    value={**_INT, "description": "the register's integer unit: Wh, litres, W, decivolts"},
    source={"type": "string", "enum": ["meter_report", "read_request", "manual", "import"]},
    status={"type": "string", "enum": ["ok", "gap", "backwards", "spike", "estimated"]},
    entered_by=_NSTR,
)

_WINDOW = [
    {"name": "from", "in": "query", "schema": _TIME, "description": "from this UTC time, included"},
    {"name": "to", "in": "query", "schema": _TIME, "description": "up to this UTC time, excluded"},
]
_PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 100}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
]
_REGISTER = [
    {
        "name": "register",
        "in": "query",
        "schema": _STR,
        "description": "registers, comma-separated; default every register but the load profile",
    }
]
GROUP = [
    {"name": "region", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,2}$"}},
    {"name": "settlement", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,2}$"}},
    {"name": "street", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,3}$"}},
    {"name": "building", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,4}$"}},
    {"name": "transformer_id", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "meter_id", "in": "query", "schema": {"type": "integer", "minimum": 1}},
]

SCHEMAS: dict[str, Any] = {
    "Reading": _READING,
    "NewReading": {
        "type": "object",
        "properties": {
            "register": {
                "type": "string",
                "enum": ["import_wh", "export_wh", "t1_wh", "t2_wh", "t3_wh", "t4_wh", "volume_l", "heat_wh"],
            },
            "read_at": _TIME,
            "value": {"type": "integer", "minimum": 0, "description": "Wh (litres for volume_l; heat Wh for heat_wh)"},
        },
        "required": ["read_at", "value"],
    },
    "ReadingsImport": _obj(
        rows=_INT,
        imported=_INT,
        rejected={"type": "array", "items": _obj(line=_INT, reason=_STR)},
        statuses={"type": "object", "additionalProperties": _INT},
    ),
}

PATHS: dict[str, Any] = {
    "/api/v1/meters/{id}/readings": {
        "get": operation(
            "listMeterReadings",
            "A meter's readings, oldest first, with their source and validation status",
            "readings",
            "meters.read",
            {**_ok(_page_of("Reading")), **_problem("404", "no such meter")},
            parameters=[*_ID, *_WINDOW, *_REGISTER, *_PAGING],
        ),
        "post": operation(
            "enterReading",
            "Enter a reading taken by hand (validated against the meter's history, audited)",
            "readings",
            "readings.write",
            {
                **_ok({"$ref": "#/components/schemas/Reading"}, "stored", "201"),
                **_problem("404", "no such meter"),
                **_problem("409", "the meter has a reading of that register at that time"),
                **_problem("422", "not a valid reading"),
            },
            parameters=_ID,
            body=_body({"$ref": "#/components/schemas/NewReading"}),
        ),
    },
    "/api/v1/readings/import": {
        "post": operation(
            "importReadings",
            "Import a CSV file of readings (meter_code, read_at, [register,] value | kwh | m3)",
            "readings",
            "readings.write",
            {**_ok({"$ref": "#/components/schemas/ReadingsImport"}), **_problem("422", "not a readings file")},
            parameters=[{"name": "file_name", "in": "query", "schema": _STR, "description": "for the audit log"}],
            body={"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
            description="Good rows are stored, each validated; bad rows are reported with their line number.",
        )
    },
}


SCHEMAS["ProfileInterval"] = _obj(start_at=_TIME, energy_wh=_INT, source=_STR)
_QUANTITY = _obj(period=_STR, quantity=_INT, estimated={**_INT, "description": "the part of it that is estimated"})
SCHEMAS["ConsumptionMember"] = _obj(
    key={**_STR, "description": "region-settlement-street-building codes, or the transformer or meter id"},
    quantity=_INT,
    estimated=_INT,
    periods={"type": "array", "items": {"$ref": "#/components/schemas/ConsumptionPeriod"}},
)
SCHEMAS["ConsumptionPeriod"] = _QUANTITY
SCHEMAS["Consumption"] = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/ConsumptionMember"}},
        "total": _INT,
        "limit": _INT,
        "offset": _INT,
        "by": _STR,
        "granularity": _STR,
        "register": _STR,
    },
    "required": ["items", "total", "limit", "offset"],
}
_DAY = {"type": "string", "format": "date"}
PATHS["/api/v1/readings"] = {
    "get": operation(
        "listReadings",
        "Readings of a group of meters (by address, transformer or meter) in a time window",
        "readings",
        "meters.read",
        _ok(_page_of("Reading")),
        parameters=[*GROUP, *_WINDOW, *_REGISTER, *_PAGING],
    )
}
PATHS["/api/v1/meters/{id}/load-profile"] = {
    "get": operation(
        "getLoadProfile",
        "A meter's load profile: energy per interval, oldest first",
        "readings",
        "meters.read",
        {**_ok(_page_of("ProfileInterval")), **_problem("404", "no such meter")},
        parameters=[*_ID, *_WINDOW, *_PAGING],
    )
}
PATHS["/api/v1/consumption"] = {
    "get": operation(
        "getConsumption",
        "Consumption per local day or month, per region, settlement, street, building, transformer or meter",
        "readings",
        "meters.read",
        _ok({"$ref": "#/components/schemas/Consumption"}),
        parameters=[
            {"name": "by", "in": "query", "schema": {"type": "string", "enum": list(LEVELS), "default": "settlement"}},
            {"name": "granularity", "in": "query", "schema": {"type": "string", "enum": ["day", "month"]}},
            {"name": "from", "in": "query", "schema": _DAY, "description": "first local day (default 30 days ago)"},
            {"name": "to", "in": "query", "schema": _DAY, "description": "last local day, included (default today)"},
            {"name": "register", "in": "query", "schema": _STR, "description": "default import_wh"},
            *GROUP,
            *_PAGING,
        ],
        description="From the daily pre-aggregate, in the utility's time zone; balance meters never count; "
        "days a meter said nothing about are estimated from the subscriber's normative consumption.",
    )
}

PATHS["/api/v1/exports/readings"] = {
    "get": operation(
        "exportReadings",
        "One local day's readings for an MDM: CSV, or IEC 61968-9 MeterReadings XML (valid against the shipped XSD)",
        "readings",
        "reports.export",
        {
            "200": {
                "description": "the file",
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/xml": {"schema": {"type": "string"}},
                },
            },
            **{k: v for k, v in _ok({"type": "object"}).items() if k != "200"},
            **_problem("422", "not a day"),
        },
        parameters=[
            {"name": "day", "in": "query", "schema": _DAY, "description": "the local day (default yesterday)"},
            {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["csv", "xml"], "default": "xml"}},
        ],
    )
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    for path, item in PATHS.items():
        paths[path] = {**paths.get(path, {}), **item}
    schemas.update(SCHEMAS)
