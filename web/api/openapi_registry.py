"""The OpenAPI description of the registry's writes (meters, transformers, holidays), tariffs, payment
conflicts, charges, write-offs and refunds. Merged into the document by `web.api.openapi.document`, which
adds to each operation the roles that may call it (from the permission table)."""

from __future__ import annotations

from typing import Any

from web.api.openapi import _ERRORS, _ID, _INT, _MINOR, _NSTR, _NTIME, _STR, _TIME, _obj, _ok, _page_of, _problem
from web.permissions import PERMISSIONS

_NINT = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


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
        "msisdn": {"type": "string", "description": "the meter SIM's number (a meter in stock keeps its own)"},
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
    "required": ["code"],
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
    "Region": _obj(code=_STR, name=_STR),
    "Settlement": _obj(region_code=_STR, code=_STR, name=_STR, prefix=_STR),
    "Street": _obj(
        region_code=_STR, region=_STR, settlement_code=_STR, settlement=_STR, code=_STR, name=_STR, prefix=_STR
    ),
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
            {**_ok(_page_of("MeterHistoryEntry")), **_problem("404", "no such meter")},
            parameters=_ID,
        )
    },
    "/api/v1/regions": {
        "get": operation(
            "listRegions",
            "Registered regions; `code` is the first 2 digits of the subscriber codes in each",
            "subscribers",
            "subscribers.read",
            _ok(_page_of("Region")),
        ),
    },
    "/api/v1/settlements": {
        "get": operation(
            "listSettlements",
            "Registered settlements; `prefix` is the first 4 digits of the subscriber codes in each",
            "subscribers",
            "subscribers.read",
            {**_ok(_page_of("Settlement")), **_problem("422", "region is not 2 digits")},
            parameters=[{"name": "region", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{2}$"}}],
        ),
    },
    "/api/v1/streets": {
        "get": operation(
            "listStreets",
            "Registered streets; `prefix` is the first 7 digits of the subscriber codes on each",
            "subscribers",
            "subscribers.read",
            _ok(_page_of("Street")),
        ),
        "post": operation(
            "addStreet",
            "Register a street of a registered settlement",
            "subscribers",
            "registry.write",
            {
                **_ok(_ref("Street"), "registered", "201"),
                **_problem("404", "no such settlement"),
                **_problem("409", "the street exists"),
                **_problem("422", "a field is not valid"),
            },
            body=_body(
                {
                    "type": "object",
                    "properties": {
                        "region_code": {"type": "string", "pattern": "^[0-9]{2}$"},
                        "settlement_code": {"type": "string", "pattern": "^[0-9]{2}$"},
                        "code": {"type": "string", "pattern": "^[0-9]{3}$"},
                        "name": _STR,
                    },
                    "required": ["region_code", "settlement_code", "code", "name"],
                    "additionalProperties": False,
                }
            ),
        ),
    },
    "/api/v1/transformers": {
        "get": operation(
            "listTransformers",
            "Transformers with their meter counts and balance meters",
            "transformers",
            "meters.read",
            _ok(_page_of("Transformer")),
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
            _ok(_page_of("Holiday")),
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


_TARIFF_BODY = {
    "type": "object",
    "description": "prices in thousandths of a minor unit per kWh; a step's start is 0 (flat), Wh of monthly "
    "consumption (block) or the minute of the day (time-of-use)",
    "properties": {
        "steps": {
            "type": "array",
            "items": {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2},
            "description": "[[start, price_milli_minor_per_kwh], ...], starts increasing from 0",
        },
        "price_minor_per_kwh": {**_INT, "description": "a flat tariff's price in whole minor units (short form)"},
        "standing_charge_minor_per_day": _MINOR,
        "effective_from": {**_TIME, "description": "default: now; a future time travels with the command"},
    },
}
_NET_BILLING = {
    "type": "string",
    "enum": ["off", "net", "carry"],
    "description": "prosumers: off (the import register alone), net (import − export over the period, never "
    "below zero), carry (net, a surplus carried over as energy to the next period)",
}
SCHEMAS["TariffDetail"] = _obj(
    id=_INT,
    code=_STR,
    name=_STR,
    kind={"type": "string", "enum": ["flat", "block", "tou"]},
    net_billing=_NET_BILLING,
    versions={
        "type": "array",
        "items": _obj(version=_INT, wire_version=_INT, effective_from=_TIME, body={"type": "object"}),
    },
)
SCHEMAS["TariffPreview"] = _obj(
    tariff_code=_STR,
    version=_INT,
    wire_version={**_INT, "description": "the version number the meters see (one series for the utility)"},
    effective_from=_TIME,
    summary=_STR,
    fields={"type": "object", "description": "the SetTariff message's fields"},
    payload_hex={"type": "string", "description": "the plaintext payload the frame seals (protocol §6)"},
    payload_bytes=_INT,
    xml={"type": "string", "description": "the same message as the protocol's XML document"},
)
SCHEMAS["Job"] = _obj(
    id=_INT,
    kind=_STR,
    description=_STR,
    total=_INT,
    done={**_INT, "description": "commands queued"},
    skipped=_INT,
    percent=_INT,
    status={"type": "string", "enum": ["running", "done", "failed"]},
    error=_NSTR,
    states={
        "type": "object",
        "description": "tariff pushes: the meters' commands by state",
        "additionalProperties": _INT,
    },
    processed={**_INT, "description": "tariff pushes: meters that acknowledged the version (1:1)"},
    created_at=_TIME,
    finished_at=_NTIME,
)
PATHS["/api/v1/tariffs"] = {
    "post": operation(
        "createTariff",
        "Create a tariff (flat, block or time-of-use); its prices come as versions",
        "tariffs",
        "tariffs.manage",
        {
            **_ok(_ref("TariffDetail"), "created", "201"),
            **_problem("409", "the code exists"),
            **_problem("422", "a field is not valid"),
        },
        body=_body(
            {
                "type": "object",
                "properties": {
                    "code": _STR,
                    "name": _STR,
                    "kind": {"type": "string", "enum": ["flat", "block", "tou"]},
                    "net_billing": {**_NET_BILLING, "default": "off"},
                },
                "required": ["code", "name", "kind"],
            }
        ),
    )
}
PATHS["/api/v1/tariffs/{id}"] = {
    "get": operation(
        "getTariff",
        "A tariff with its versions",
        "tariffs",
        "tariffs.read",
        {**_ok(_ref("TariffDetail")), **_problem("404", "no such tariff")},
        parameters=_ID,
    )
}
PATHS["/api/v1/tariffs/{id}/versions"] = {
    "post": operation(
        "addTariffVersion",
        "Add a price version with its effective time (answers what it will send)",
        "tariffs",
        "tariffs.manage",
        {
            **_ok(_obj(tariff=_ref("TariffDetail"), preview=_ref("TariffPreview")), "added", "201"),
            **_problem("404", "no such tariff"),
            **_problem("422", "the prices are not valid"),
        },
        parameters=_ID,
        body=_body(_TARIFF_BODY),
        description="The meters get it when it is pushed (`POST /api/v1/tariffs/{id}/push`).",
    )
}
PATHS["/api/v1/tariffs/{id}/versions/{version}/preview"] = {
    "get": operation(
        "previewTariffVersion",
        "What a version sends to a meter: the message, its payload bytes and its XML",
        "tariffs",
        "tariffs.read",
        {**_ok(_ref("TariffPreview")), **_problem("404", "no such tariff or version")},
        parameters=[
            *_ID,
            {"name": "version", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
        ],
    )
}
PATHS["/api/v1/tariffs/{id}/push"] = {
    "post": operation(
        "pushTariff",
        "Send the tariff's newest version to every meter on it, as a bulk job",
        "tariffs",
        "tariffs.assign",
        {
            **_ok(_ref("Job"), "the job started; follow it at its Location", "202"),
            **_problem("404", "no such tariff"),
            **_problem("422", "the tariff has no version"),
        },
        parameters=_ID,
        description="Commands are queued a chunk at a time; each meter's card shows the version once the meter "
        "acknowledges it (1:1). Pushing again sends nothing twice.",
    )
}
PATHS["/api/v1/jobs/{id}"] = {
    "get": operation(
        "getJob",
        "A bulk job's progress",
        "commands",
        "commands.read",
        {**_ok(_ref("Job")), **_problem("404", "no such job")},
        parameters=_ID,
    )
}


_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "8-100 characters; a retry with the same key posts nothing twice",
    "schema": {"type": "string", "minLength": 8, "maxLength": 100},
}
_BALANCES = _obj(wallet_minor=_MINOR, debt_minor=_MINOR)
SCHEMAS["Posted"] = _obj(subscriber_id=_INT, before=_BALANCES, after=_BALANCES, duplicate={"type": "boolean"})
SCHEMAS["PaymentConflict"] = _obj(
    id=_INT,
    provider=_STR,
    provider_ref=_STR,
    reason=_STR,
    details={"type": "object", "description": "both sides: what was asked and what the provider reported"},
    created_at=_TIME,
    event_id=_NSTR,
    payment_id=_NINT,
    subscriber_code=_NSTR,
    creditable={"type": "boolean", "description": "a confirmed payment that may be credited as reported"},
    resolved_at=_NTIME,
    resolved_by=_NSTR,
    resolution={"type": ["string", "null"], "enum": ["credit", "dismiss", None]},
    resolution_note=_NSTR,
    topup_id=_NINT,
)
PATHS["/api/v1/payment-conflicts"] = {
    "get": operation(
        "listPaymentConflicts",
        "Payments that did not match what was asked, waiting for a person (`open=true`: unresolved)",
        "payments",
        "payments.read",
        {**_ok(_page_of("PaymentConflict")), **_problem("422", "a filter is malformed")},
        parameters=[
            {"name": "open", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
            {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        ],
    )
}
PATHS["/api/v1/payment-conflicts/{id}/resolve"] = {
    "post": operation(
        "resolvePaymentConflict",
        "Resolve a payment conflict: credit the payment as the provider reported it, or dismiss it",
        "payments",
        "payments.resolve",
        {
            **_ok({"allOf": [_ref("PaymentConflict"), _obj(command_id=_NINT, already_resolved={"type": "boolean"})]}),
            **_problem("404", "no such conflict"),
            **_problem("409", "the payment is credited already"),
            **_problem("422", "no note; not a payment to credit; no subscriber for an unknown reference"),
        },
        parameters=_ID,
        body=_body(
            {
                "type": "object",
                "properties": {
                    "resolution": {"type": "string", "enum": ["credit", "dismiss"]},
                    "note": {"type": "string", "maxLength": 500},
                    "subscriber_code": {
                        "type": "string",
                        "pattern": "^[0-9]{15}$",
                        "description": "credit: the subscriber to credit when our reference was unknown",
                    },
                },
                "required": ["resolution", "note"],
            }
        ),
        description="Credit goes through billing's one path for payments (ledger, debt recovery, the credit "
        "command), once per provider reference. A resolved conflict stays resolved.",
    )
}
PATHS["/api/v1/subscribers/{id}/charges"] = {
    "post": operation(
        "chargeSubscriber",
        "A penalty or fixed charge onto the subscriber's debt",
        "subscribers",
        "ledger.charge",
        {
            **_ok(_ref("Posted"), "posted", "201"),
            "200": {
                "description": "posted before with this key",
                "content": {"application/json": {"schema": _ref("Posted")}},
            },
            **_problem("404", "no such subscriber"),
            **_problem("422", "not a valid charge"),
        },
        parameters=[*_ID, _IDEMPOTENCY],
        body=_body(
            {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": ["fixed_charge", "penalty"]},
                    "amount_minor": {**_MINOR, "minimum": 1},
                    "memo": {"type": "string", "maxLength": 500},
                },
                "required": ["kind", "amount_minor", "memo"],
            }
        ),
    )
}
PATHS["/api/v1/subscribers/{id}/adjustments"] = {
    "post": operation(
        "adjustSubscriberAccount",
        "A correction on the wallet or the debt; a positive debt amount writes debt off",
        "subscribers",
        "ledger.adjust",
        {
            **_ok(_ref("Posted"), "posted", "201"),
            "200": {
                "description": "posted before with this key",
                "content": {"application/json": {"schema": _ref("Posted")}},
            },
            **_problem("404", "no such subscriber"),
            **_problem("409", "the wallet would go below zero"),
            **_problem("422", "not a valid adjustment (the debt would turn positive)"),
        },
        parameters=[*_ID, _IDEMPOTENCY],
        body=_body(
            {
                "type": "object",
                "properties": {
                    "book": {"type": "string", "enum": ["wallet", "debt"]},
                    "amount_minor": {**_MINOR, "description": "signed minor units"},
                    "memo": {"type": "string", "maxLength": 500},
                },
                "required": ["book", "amount_minor", "memo"],
            }
        ),
    )
}
PATHS["/api/v1/topups/{id}/refund"] = {
    "post": operation(
        "refundCashPayment",
        "Give back a cash payment: the ledger takes it back (the wallet first; credit on the meter becomes debt)",
        "payments",
        "payments.refund",
        {
            **_ok(
                _obj(topup_id=_INT, from_wallet_minor=_MINOR, to_debt_minor=_MINOR, duplicate={"type": "boolean"}),
                "refunded",
                "201",
            ),
            "200": {
                "description": "refunded before with this key",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **_problem("404", "no such top-up"),
            **_problem("422", "not a cash payment, or more than is left of it"),
        },
        parameters=[*_ID, _IDEMPOTENCY],
        body=_body(
            {
                "type": "object",
                "properties": {
                    "reason": {"type": "string", "maxLength": 500},
                    "amount_minor": {**_MINOR, "minimum": 1},
                },
                "required": ["reason"],
            }
        ),
    )
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Add this module's operations and schemas to the document's (an existing path gains methods)."""
    for path, item in PATHS.items():
        paths[path] = {**paths.get(path, {}), **item}
    schemas.update(SCHEMAS)
