"""What a verified meter message becomes (gateway.inbound decides which SMS get this far): an acknowledgement
to settle, or the rows of readings, balance reports and alarms with the events told after the commit; and the
row of an SMS refused, with its reason. Pure: the rows are gathered in a `Work`, written by
`gateway.inbound_store` in the batch's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import meter_protocol as mp
from gateway.events import AlarmRaised, BalanceReported, GatewayEvent, ReadingReceived
from gateway.ports import InboundSms
from meter_protocol.registers import EXPORT, has_export, main_register

_SEVERITY = {
    mp.EventKind.TAMPER: "critical",
    mp.EventKind.MAGNETIC_FIELD: "critical",
    mp.EventKind.COVER_OPEN: "critical",
    mp.EventKind.NEUTRAL_MISSING: "critical",
    mp.EventKind.CREDIT_EXHAUSTED: "warning",
    mp.EventKind.LOW_CREDIT: "warning",
    mp.EventKind.POWER_LIMIT_EXCEEDED: "warning",
    mp.EventKind.OUTAGE: "warning",
}
_ALARM_KIND = {mp.EventKind.MAGNETIC_FIELD: "magnetic"}
# A reading's source: what the meter sent on its own, or its answer to a read request (readings, load profile).
_REPORT, _ANSWER = "meter_report", "read_request"


def alarm_kind(event: mp.EventKind) -> str:
    """The alarm kind an event report raises: the event's name in lower case ("magnetic" for the field)."""
    return _ALARM_KIND.get(event, event.name.lower())


def _epoch_to_utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(slots=True)
class Work:
    """One transaction's worth of effects, gathered while the batch is decoded."""

    wrong: list[dict[str, Any]] = field(default_factory=list)
    windows: dict[int, mp.ReplayWindow] = field(default_factory=dict)
    acks: list[tuple[int, mp.Ack]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)
    balances: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    events: list[GatewayEvent] = field(default_factory=list)
    texts: list[InboundSms] = field(default_factory=list)


def add_message(
    work: Work, meter_id: int, message: mp.Message, now: datetime, short_number: str, kind: str = "electricity"
) -> None:
    """What `message` from meter `meter_id` asks: an acknowledgement to settle, or rows to write. The main
    register is stored under the name of what the meter's `kind` measures (`volume_l` for water …)."""
    main = main_register(kind)
    if isinstance(message, mp.Ack):
        work.acks.append((meter_id, message))
    elif isinstance(message, mp.Readings):
        at = _epoch_to_utc(message.taken_at)
        registers = [(main, message.import_wh), ("power_w", message.power_w), ("voltage_dv", message.voltage_dv)]
        if has_export(kind):
            registers.insert(1, (EXPORT, message.export_wh))
        for register, value in registers:
            _reading(work, meter_id, at, register, value, now, _ANSWER)
    elif isinstance(message, mp.BalanceReport):
        _balance(
            work,
            meter_id,
            _epoch_to_utc(message.taken_at),
            message.credit_minor,
            message.relay_closed,
            message.emergency_active,
            message.last_transfer_id,
            now,
        )
    elif isinstance(message, mp.PeriodicReport):
        at = _epoch_to_utc(message.taken_at)
        _reading(work, meter_id, at, main, message.import_wh, now)
        _reading(work, meter_id, at, "power_w", message.power_w, now)
        _balance(work, meter_id, at, message.credit_minor, message.relay_closed, message.emergency_active, None, now)
    elif isinstance(message, mp.LoadProfile):
        for i, energy_wh in enumerate(message.energies_wh):
            at = _epoch_to_utc(message.start_at + i * message.interval_s)
            _reading(work, meter_id, at, "profile_wh", energy_wh, now, _ANSWER)
    elif isinstance(message, mp.EventReport):
        kind = alarm_kind(message.event)
        severity = _SEVERITY.get(message.event, "info")
        at = _epoch_to_utc(message.occurred_at)
        detail = f"{message.event.name.lower()} value {message.value}"
        work.alarms.append(
            {"meter_id": meter_id, "kind": kind, "severity": severity, "raised_at": at, "detail": detail}
        )
        work.events.append(AlarmRaised(meter_id, kind, severity, at, detail))
    else:  # a head-end message type cannot get here (direction checked), but never crash on one
        work.wrong.append(wrong_sms_row(meter_id, "", short_number, b"", "not_a_report", type(message).__name__, now))


def _reading(
    work: Work, meter_id: int, at: datetime, register: str, value: int, now: datetime, source: str = _REPORT
) -> None:
    work.readings.append(
        {
            "meter_id": meter_id,
            "read_at": at,
            "register": register,
            "value": value,
            "received_at": now,
            "source": source,
        }
    )
    work.events.append(ReadingReceived(meter_id, at, register, value))


def _balance(
    work: Work,
    meter_id: int,
    at: datetime,
    credit_minor: int,
    relay_closed: bool,
    emergency_active: bool,
    last_transfer_id: int | None,
    now: datetime,
) -> None:
    work.balances.append(
        {
            "meter_id": meter_id,
            "reported_at": at,
            "credit_minor": credit_minor,
            "relay_closed": int(relay_closed),
            "received_at": now,
        }
    )
    work.events.append(BalanceReported(meter_id, at, credit_minor, relay_closed, emergency_active, last_transfer_id))


def wrong_sms_row(
    meter_id: int | None, source: str, destination: str, body: bytes, reason: str, detail: str, at: datetime
) -> dict[str, Any]:
    return {
        "received_at": at,
        "source": source[:30],
        "destination": destination[:30],
        "body": bytes(body),
        "reason": reason,
        "detail": detail[:500],
        "meter_id": meter_id,
    }
