"""The OpenAPI description of outbound event webhooks. Merged into the document by `web.api.openapi.document`,
which adds to each operation the roles that may call it (from the permission table)."""

from __future__ import annotations

from typing import Any

from web.api.openapi import _ID, _PAGING, _ok, _page_of, _problem, _q
from web.api.openapi_registry import _body, _ref, operation

_KINDS = {"type": "array", "items": {"type": "string", "enum": ["reading", "alarm", "command", "payment"]}}
_AT = {"type": "string", "format": "date-time"}
_AT_OR_NULL = {"type": ["string", "null"], "format": "date-time"}

_DESCRIPTION = (
    "Each event is POSTed as JSON `{id, kind, occurred_at, data}` with the headers `Smsmeter-Event-Id`, "
    "`Smsmeter-Event-Kind` and `Smsmeter-Signature: t=<unix seconds>,v1=<hex>`, where v1 is HMAC-SHA256 keyed "
    "with the subscription's secret over `<t>.<raw body>`; for a while after a secret is rotated there is one "
    "`v1` per secret still signing (accept the request when any matches). Any 2xx answer delivers it; "
    "anything else is tried again with exponential backoff, then the delivery is dead until it is sent again. "
    "Delivery is at least once: deduplicate by the event id. See docs/operations.md, Event webhooks."
)

SCHEMAS: dict[str, Any] = {
    "EventSubscriptionInput": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": 500},
            "kinds": _KINDS,
            "description": {"type": ["string", "null"], "maxLength": 200},
        },
        "required": ["url", "kinds"],
        "additionalProperties": False,
    },
    "SecretRotation": {
        "type": "object",
        "properties": {
            "keep_previous_hours": {
                "type": "integer",
                "minimum": 0,
                "maximum": 168,
                "default": 24,
                "description": "the secret replaced goes on signing beside the new one this long (0: stops at once)",
            },
        },
        "additionalProperties": False,
    },
    "EventSubscriptionChange": {
        "type": "object",
        "properties": {
            "active": {"type": "boolean", "description": "false: no new deliveries; pending ones wait"},
            "url": {"type": "string", "format": "uri", "maxLength": 500},
            "kinds": _KINDS,
            "description": {"type": ["string", "null"], "maxLength": 200},
        },
        "additionalProperties": False,
    },
    "EventSubscription": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "url": {"type": "string"},
            "kinds": _KINDS,
            "description": {"type": ["string", "null"]},
            "active": {"type": "boolean"},
            "secret": {"type": "string", "description": "the signing secret: answered only when it is added"},
            "secret_hint": {"type": "string", "description": "its last four characters"},
            "previous_until": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "after a rotation: until when the secret it replaced signs beside the new one",
            },
            "deliveries": {
                "type": "object",
                "properties": {s: {"type": "integer"} for s in ("pending", "delivered", "dead")},
            },
            "created_by": {"type": "string"},
            "created_at": _AT,
            "updated_at": _AT,
        },
        "additionalProperties": True,
    },
    "EventDelivery": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "subscription_id": {"type": "integer"},
            "url": {"type": "string"},
            "event_id": {"type": "string", "description": "the id receivers deduplicate by"},
            "kind": {"type": "string", "enum": ["reading", "alarm", "command", "payment"]},
            "occurred_at": _AT,
            "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "attempts": {"type": "integer"},
            "next_attempt_at": _AT_OR_NULL,
            "last_status": {"type": ["integer", "null"], "description": "the receiver's HTTP status"},
            "last_error": {"type": ["string", "null"]},
            "delivered_at": _AT_OR_NULL,
            "created_at": _AT,
            "data": {"type": "object", "description": "the event's data (one delivery only)"},
            "attempt_log": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "at": _AT,
                        "status": {"type": ["integer", "null"]},
                        "error": {"type": ["string", "null"]},
                        "duration_ms": {"type": "integer"},
                    },
                },
            },
        },
        "additionalProperties": True,
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/event-subscriptions": {
        "get": operation(
            "listEventSubscriptions",
            "The event webhook subscriptions, with their deliveries by state",
            "events",
            "events.read",
            _ok(_page_of("EventSubscription")),
            description=_DESCRIPTION,
        ),
        "post": operation(
            "createEventSubscription",
            "Add a subscription; the answer holds its signing secret, shown only this once (audited)",
            "events",
            "events.manage",
            {**_ok(_ref("EventSubscription"), "created", "201"), **_problem("422", "not a valid subscription")},
            body=_body(_ref("EventSubscriptionInput")),
            description=_DESCRIPTION,
        ),
    },
    "/api/v1/event-subscriptions/{id}": {
        "get": operation(
            "getEventSubscription",
            "One subscription",
            "events",
            "events.read",
            {**_ok(_ref("EventSubscription")), **_problem("404", "no such subscription")},
            parameters=_ID,
        ),
        "patch": operation(
            "changeEventSubscription",
            "Disable or enable a subscription, or change its URL, kinds or description (audited)",
            "events",
            "events.manage",
            {
                **_ok(_ref("EventSubscription")),
                **_problem("404", "no such subscription"),
                **_problem("422", "not a valid change"),
            },
            parameters=_ID,
            body=_body(_ref("EventSubscriptionChange")),
        ),
    },
    "/api/v1/event-subscriptions/{id}/rotate-secret": {
        "post": operation(
            "rotateEventSubscriptionSecret",
            "A new signing secret, answered only this once; the one it replaces may sign beside it a while (audited)",
            "events",
            "events.manage",
            {
                **_ok(_ref("EventSubscription")),
                **_problem("404", "no such subscription"),
                **_problem("422", "not a valid overlap"),
            },
            parameters=_ID,
            body=_body(_ref("SecretRotation"), required=False),
        ),
    },
    "/api/v1/event-deliveries": {
        "get": operation(
            "listEventDeliveries",
            "Deliveries of events to subscriptions, newest first (state=dead: the failures a person should see)",
            "events",
            "events.read",
            {**_ok(_page_of("EventDelivery")), **_problem("422", "not a valid filter")},
            parameters=[
                *_PAGING,
                _q("state", "pending, delivered or dead", {"type": "string", "enum": ["pending", "delivered", "dead"]}),
                _q("subscription_id", "one subscription's deliveries", {"type": "integer"}),
            ],
        ),
    },
    "/api/v1/event-deliveries/{id}": {
        "get": operation(
            "getEventDelivery",
            "One delivery with its event's data and every attempt",
            "events",
            "events.read",
            {**_ok(_ref("EventDelivery")), **_problem("404", "no such delivery")},
            parameters=_ID,
        ),
    },
    "/api/v1/event-deliveries/{id}/resend": {
        "post": operation(
            "resendEventDelivery",
            "Send a dead (or delivered) delivery again, same event id, a fresh series of attempts (audited)",
            "events",
            "events.resend",
            {
                **_ok(_ref("EventDelivery")),
                **_problem("404", "no such delivery"),
                **_problem("409", "it is still being delivered"),
            },
            parameters=_ID,
        ),
    },
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    for path, item in PATHS.items():
        paths[path] = {**paths.get(path, {}), **item}
    schemas.update(SCHEMAS)
