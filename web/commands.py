"""A command to a meter as the API takes it in JSON (`{"kind": "relay_off", "reason": "operator"}`), parsed
into the protocol's message; billing's `control.send_command` sends it. Top-ups and tariffs are not
sent this way: billing's use cases keep the ledger and the tariff versions in step with the meter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import meter_protocol as mp
from web.errors import InvalidInput

RELAY_REASONS = {reason.name.lower(): reason for reason in mp.RelayReason}


def command_from_fields(body: dict[str, Any], now: datetime) -> Any:
    """A command from the API's JSON form: {"kind": "relay_off", "reason": "operator", ...}."""
    kind = body.get("kind")
    if kind in ("relay_off", "relay_on"):
        reason_name = str(body.get("reason", "operator")).lower()
        if reason_name not in RELAY_REASONS:
            raise InvalidInput("reason", f"must be one of {', '.join(RELAY_REASONS)}")
        cls = mp.RelayOff if kind == "relay_off" else mp.RelayOn
        return cls(reason=RELAY_REASONS[reason_name])
    if kind == "read_request":
        names = body.get("items", ["registers", "balance"])
        if not isinstance(names, list) or not names:
            raise InvalidInput("items", "must be a list of registers, balance, load_profile")
        items = mp.ReadItems(0)
        for name in names:
            try:
                items |= mp.ReadItems[str(name).upper()]
            except KeyError:
                raise InvalidInput("items", f"unknown item {name!r}") from None
        return mp.ReadRequest(items=items)
    if kind == "set_power_limit":
        limit = body.get("limit_w")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise InvalidInput("limit_w", "must be a whole number of watts, 0 for no limit")
        return mp.SetPowerLimit(limit_w=limit)
    if kind == "time_sync":
        return mp.TimeSync(utc_at=int(now.timestamp()))
    if kind == "clear_tamper":
        return mp.ClearTamper()
    if kind == "ping":
        return mp.Ping()
    raise InvalidInput(
        "kind", "must be one of relay_off, relay_on, read_request, set_power_limit, time_sync, clear_tamper, ping"
    )
