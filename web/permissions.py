"""Who may do what: ONE table, action → roles. Every route names its action with `@requires(...)` or is
marked `@public`; a route with neither is refused (fail closed). The permission matrix test walks every
route and every role against this table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

ADMIN, OPERATOR, CASHIER, VIEWER, AUDITOR = "admin", "operator", "cashier", "viewer", "auditor"
SUBSCRIBER = "subscriber"  # a subscriber signed in to the portal; sees only their own data

STAFF_ROLES: Final = (ADMIN, OPERATOR, CASHIER, VIEWER, AUDITOR)
ROLES: Final = (*STAFF_ROLES, SUBSCRIBER)

_STAFF = frozenset(STAFF_ROLES)
_WATCHERS = frozenset({ADMIN, OPERATOR, VIEWER, AUDITOR})  # read communication, alarms, reports

PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "console.view": _STAFF,
    "profile.edit": _STAFF | {SUBSCRIBER},
    "session.logout": _STAFF | {SUBSCRIBER},
    "subscribers.read": _STAFF,
    "subscribers.write": frozenset({ADMIN, OPERATOR}),  # create and edit (CIS integrations too)
    "meters.read": _STAFF,
    "meters.write": frozenset({ADMIN, OPERATOR}),  # install, replace, archive
    "registry.write": frozenset({ADMIN, OPERATOR}),  # transformers and their balance meters, holidays
    "tariffs.read": _STAFF,
    "tariffs.assign": frozenset({ADMIN, OPERATOR}),  # a subscriber's tariff; a version pushed to the meters
    "tariffs.manage": frozenset({ADMIN}),  # define tariffs and their price versions
    "ledger.read": _STAFF,
    "ledger.charge": frozenset({ADMIN, OPERATOR}),  # a penalty or fixed charge on the debt
    "ledger.adjust": frozenset({ADMIN}),  # a correction on a book; a write-off of debt
    "readings.write": frozenset({ADMIN, OPERATOR}),  # a reading typed in; a CSV file of readings
    "commands.read": _STAFF,
    "commands.issue": frozenset({ADMIN, OPERATOR}),  # relay off/on, read request, tariff push
    "commands.cancel": frozenset({ADMIN, OPERATOR}),  # a command that has not left yet (0:0)
    "commands.group": frozenset({ADMIN, OPERATOR}),  # one command to a transformer, street or building
    "readings.plans": frozenset({ADMIN, OPERATOR}),  # scheduled reading: plans per group, a run started by hand
    "meters.configure": frozenset({ADMIN, OPERATOR}),  # low-credit threshold, emergency credit, friendly hours
    "meters.keys": frozenset({ADMIN}),  # key change over the air, one meter or a group
    "credit.emergency": frozenset({ADMIN, OPERATOR}),  # emergency credit on loan
    "topups.reissue": frozenset({ADMIN, OPERATOR}),  # a failed credit sent again, same transfer id
    "sts.token": frozenset({ADMIN, OPERATOR, CASHIER}),  # an STS keypad token for a credit stuck before 1:1
    "payments.read": _STAFF,
    "payments.cash": frozenset({ADMIN, CASHIER}),  # cashier top-up; payments a CIS took at a bank
    "payments.refund": frozenset({ADMIN, CASHIER}),  # give back a cash payment
    "vouchers.read": _STAFF,
    "vouchers.generate": frozenset({ADMIN, CASHIER}),  # a batch of scratch-card vouchers, paid by SMS
    "vouchers.void": frozenset({ADMIN, CASHIER}),  # withdraw a batch of vouchers or one code
    "payments.resolve": frozenset({ADMIN, OPERATOR}),  # credit or dismiss a payment conflict
    "payments.reconcile": frozenset({ADMIN, OPERATOR}),  # a reconciliation with the provider, started or carried on
    "notices.read": _STAFF,
    "invoices.read": _STAFF,
    "communication.read": _WATCHERS,  # communication log and wrong SMS
    "sms_outbox.read": frozenset({ADMIN, OPERATOR}),  # the simulated network's SMS to people, sign-in codes too
    "handset.send": frozenset({ADMIN, OPERATOR}),  # a simulated phone texts the short number (simulator only)
    "alarms.read": _WATCHERS,
    "alarms.ack": frozenset({ADMIN, OPERATOR}),
    "alarms.rules": frozenset({ADMIN}),  # who is told of which alarm, and what is done automatically
    "events.read": _WATCHERS,  # outbound event webhooks: subscriptions, deliveries, failures
    "events.manage": frozenset({ADMIN}),  # add, change or disable a subscription (its secret signs the events)
    "events.resend": frozenset({ADMIN, OPERATOR}),  # a dead delivery sent again
    "arrears.read": _STAFF,
    "reports.read": _WATCHERS,
    "reports.export": _WATCHERS,
    "reports.schedule": frozenset({ADMIN}),  # a report sent by e-mail on a schedule, to addresses outside the console
    "audit.read": frozenset({ADMIN, AUDITOR}),
    "audit.export": frozenset({ADMIN, AUDITOR}),
    "operators.manage": frozenset({ADMIN}),
    "apikeys.manage": frozenset({ADMIN}),
    "portal.view": frozenset({SUBSCRIBER}),
    "portal.topup": frozenset({SUBSCRIBER}),
    "portal.sts_token": frozenset({SUBSCRIBER}),  # the keypad token of one's own stuck top-up
}

PUBLIC: Final = "public"  # the marker of routes anyone may call (login pages, health, the OpenAPI document)

_H = TypeVar("_H", bound=Callable[..., Any])


def allowed(role: str, action: str) -> bool:
    return role in PERMISSIONS[action]


def requires(action: str) -> Callable[[_H], _H]:
    """Mark a handler with the action it performs; the permission middleware checks it."""
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r}: add it to PERMISSIONS")

    def mark(handler: _H) -> _H:
        handler.permission = action  # type: ignore[attr-defined]
        return handler

    return mark


def public(handler: _H) -> _H:
    handler.permission = PUBLIC  # type: ignore[attr-defined]
    return handler


def permission_of(handler: object) -> str | None:
    return getattr(handler, "permission", None)
