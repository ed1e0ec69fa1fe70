"""A command to a meter as the API takes it in JSON (`{"kind": "relay_off", "reason": "operator"}`), parsed
into the protocol's message; billing's `control.send_command` sends it. Top-ups and tariffs are not
sent this way: billing's use cases keep the ledger and the tariff versions in step with the meter.
Also the fields of the other meter doors: amounts and times of day as people type them, and a group
of meters (a transformer, a street, a building)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import meter_protocol as mp
from billing.control import Group
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


def optional_minor(form: Any, name: str, digits: int = 2) -> int | None:
    """An amount typed by a person ("2.50", "0") → minor units; None when left empty. Zero is allowed."""
    raw = form.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):  # JSON: already minor units
        if raw < 0:
            raise InvalidInput(name, "must be zero or more")
        return int(raw)
    text = str(raw).strip().replace(",", ".").replace(" ", "")
    whole, _sep, frac = text.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > digits:
        raise InvalidInput(name, f"must be an amount with at most {digits} decimals")
    value: int = int(whole) * 10**digits + int((frac or "0").ljust(digits, "0"))
    return value


def optional_minute_of_day(form: Any, name: str) -> int | None:
    """ "HH:MM" (or minutes as a JSON number) → the minute of the day; None when left empty."""
    raw = form.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        hours, sep, minutes = str(raw).strip().partition(":")
        if not sep or not hours.isdigit() or not minutes.isdigit() or int(minutes) > 59:
            raise InvalidInput(name, "must be a time of day, HH:MM")
        value = int(hours) * 60 + int(minutes)
    if not 0 <= value < 24 * 60:
        raise InvalidInput(name, "must be a time of day, 00:00-23:59")
    return value


def group_from_fields(fields: Any) -> Group:
    """Which meters a group command is for: `transformer_id`, or `street` (the first 7 digits of its
    subscriber codes: region, settlement, street) or `building` (the first 11). Exactly one."""
    given = [name for name in ("transformer_id", "street", "building") if str(fields.get(name) or "").strip()]
    if len(given) != 1:
        raise InvalidInput("group", "give one of transformer_id, street (7 digits) or building (11 digits)")
    raw = str(fields.get(given[0])).strip()
    if given[0] == "transformer_id":
        if not raw.isdigit() or int(raw) < 1:
            raise InvalidInput("transformer_id", "must be a transformer id")
        return Group(transformer_id=int(raw))
    code = raw.replace(" ", "").replace("-", "")
    if given[0] == "street":
        if len(code) != 7 or not code.isdigit():
            raise InvalidInput("street", "the 7 digits of region, settlement and street")
        return Group(street=(code[:2], code[2:4], code[4:7]))
    if len(code) != 11 or not code.isdigit():
        raise InvalidInput("building", "the 11 digits of region, settlement, street and building")
    return Group(building=(code[:2], code[2:4], code[4:7], code[7:11]))
