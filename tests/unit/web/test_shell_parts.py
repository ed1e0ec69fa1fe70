"""The shell's small parts: the permission table, amounts typed by people, redirects, the throttle,
problem documents for our packages' errors."""

from __future__ import annotations

import pytest

from billing.errors import Conflict, InvalidField, NotFound
from gateway.errors import UnknownMeter
from meter_protocol import BadXml
from web.errors import InvalidInput, TooManyAttempts
from web.params import amount_minor, safe_next
from web.permissions import ADMIN, PERMISSIONS, ROLES, STAFF_ROLES, SUBSCRIBER, requires
from web.problems import ERROR_MAP
from web.security import AddressThrottle


def test_the_permission_table() -> None:
    for action, roles in PERMISSIONS.items():
        assert roles, action
        assert roles <= set(ROLES), action
        if action.startswith("portal."):
            assert roles == {SUBSCRIBER}
        else:
            assert ADMIN in roles, action
    assert PERMISSIONS["audit.export"] == {"admin", "auditor"}
    assert PERMISSIONS["payments.cash"] == {"admin", "cashier"}
    assert PERMISSIONS["commands.issue"] == {"admin", "operator"}
    assert all(
        SUBSCRIBER not in PERMISSIONS[a] for a in PERMISSIONS if not a.startswith(("portal.", "profile.", "session."))
    )
    assert set(STAFF_ROLES) <= PERMISSIONS["subscribers.read"]
    with pytest.raises(KeyError):
        requires("no.such.action")


@pytest.mark.parametrize(
    ("typed", "minor"), [("12.50", 1250), ("12,5", 1250), ("7", 700), ("0.01", 1), (" 1 000.00", 100000)]
)
def test_amounts_typed_by_people_become_minor_units(typed: str, minor: int) -> None:
    assert amount_minor({"amount": typed}, "amount") == minor


@pytest.mark.parametrize("typed", ["", "abc", "1.234", "-5", "0", "0.00", "1e3", "12.5.0"])
def test_bad_amounts_name_the_field(typed: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        amount_minor({"amount": typed}, "amount")
    assert caught.value.field == "amount"


def test_only_local_redirects() -> None:
    assert safe_next("/console/subscribers?q=1", "/") == "/console/subscribers?q=1"
    for bad in ("//evil.example", "https://evil.example/", "/\\evil", "", None):
        assert safe_next(bad, "/console") == "/console"


def test_the_throttle_counts_per_address_in_a_sliding_minute() -> None:
    now = [0.0]
    throttle = AddressThrottle(3, clock=lambda: now[0])
    for _ in range(3):
        throttle.check("10.0.0.1")
    with pytest.raises(TooManyAttempts) as caught:
        throttle.check("10.0.0.1")
    assert 1 <= caught.value.retry_after_s <= 61
    throttle.check("10.0.0.2")  # another address is not affected
    now[0] = 61.0
    throttle.check("10.0.0.1")


def _status(error: BaseException) -> int:
    for kind, status, _title in ERROR_MAP:
        if isinstance(error, kind):
            return status
    raise AssertionError(error)


def test_our_packages_errors_map_to_statuses() -> None:
    assert _status(NotFound("subscriber", 1)) == 404
    assert _status(Conflict("meter", "installed already")) == 409
    assert _status(InvalidField("amount", "negative")) == 422
    assert _status(UnknownMeter(5)) == 404
    assert _status(BadXml("not well-formed")) == 422


def test_the_lists_filters_are_parsed_once_for_the_console_and_the_api() -> None:
    from datetime import UTC, datetime

    from web.errors import InvalidInput
    from web.listing import LISTINGS, filters

    assert filters("alarms", {"open": "true", "kind": "", "meter_id": "5", "since": "2026-01-01T00:00:00Z"}) == {
        "kind": None,
        "meter_id": 5,
        "open_only": True,
        "since": datetime(2026, 1, 1, tzinfo=UTC),
        "until": None,
    }
    assert filters("audit", {"action": "meter.relay_off"})["action"] == "meter.relay_off"
    assert set(LISTINGS) == {"commands", "payments", "notices", "wrong_sms", "alarms", "audit"}
    for bad in ({"meter_id": "x"}, {"meter_id": "0"}, {"since": "yesterday"}, {"until": "2026-01-01T00:00:00"}):
        with pytest.raises(InvalidInput) as refused:
            filters("commands", bad)
        assert refused.value.field in bad
