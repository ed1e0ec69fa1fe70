"""What the gateway learns from meters, as plain values handed to a callback after the commit.

The composition root wires the callback to billing (a top-up settled, a balance reported …); the
gateway never imports billing. Every event is also a row (commands, readings, balance_reports, alarms)
written in the same transaction that produced it, so a callback that fails loses nothing: the rows are
the record, the callback only a notification.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

log = logging.getLogger("smsmeter.gateway")


@dataclass(frozen=True, slots=True)
class CommandSettled:
    """A command reached a final state: "1:1" (processed) or a failure ("rejected_meter", "failed" …)."""

    command_id: int
    meter_id: int
    kind: str  # top_up | set_tariff | relay_off | relay_on | ... (meter_protocol's message type, lower case)
    state: str  # a gateway.states.CommandState value
    reason: str | None = None
    at: datetime | None = None
    credit_minor: int | None = None  # the meter's credit after processing, when its acknowledgement said


@dataclass(frozen=True, slots=True)
class ReadingReceived:
    meter_id: int
    read_at: datetime
    register: str  # import_wh | export_wh | power_w | voltage_dv | profile_wh
    value: int


@dataclass(frozen=True, slots=True)
class BalanceReported:
    meter_id: int
    reported_at: datetime
    credit_minor: int
    relay_closed: bool
    emergency_active: bool = False
    last_transfer_id: int | None = None


@dataclass(frozen=True, slots=True)
class AlarmRaised:
    meter_id: int | None
    kind: str  # tamper | magnetic | cover_open | neutral_missing | command_failed | ...
    severity: str  # info | warning | critical
    raised_at: datetime
    detail: str | None = None
    command_id: int | None = None


GatewayEvent = CommandSettled | ReadingReceived | BalanceReported | AlarmRaised
EventHandler = Callable[[GatewayEvent], Awaitable[None]]


async def ignore_event(_event: GatewayEvent) -> None:
    """The handler when nobody listens."""


async def publish(handler: EventHandler, events: Iterable[GatewayEvent]) -> None:
    """Hand each event to `handler`; a failing handler is logged and never stops the gateway."""
    for event in events:
        try:
            await handler(event)
        except Exception:
            log.exception("event handler failed on %s", type(event).__name__)
