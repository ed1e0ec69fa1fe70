"""The event outbox: what the head end tells the systems that follow it (readings, alarms, command outcomes,
payments), written with the connection of the transaction that makes the change, so the change and its event
commit together or not at all — as `store.audit` does for the audit trail.

Each event's `event_id` is derived from its cause (`payment:<top-up id>`, `reading:<reading id>` …) and unique:
writing the same cause again is a no-op, and the receiver deduplicates by the same id. Delivery (one row per
subscription, signed POSTs, retries) is billing's (`billing.event_delivery`), after the commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.events import event_outbox
from store.sql import insert_ignoring_duplicates


class EventKind(StrEnum):
    READING = "reading"
    ALARM = "alarm"
    COMMAND = "command"  # a command's outcome: a final state
    PAYMENT = "payment"  # a payment credited


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    kind: EventKind
    occurred_at: datetime
    data: Mapping[str, Any]


async def emit(conn: AsyncConnection, events: Sequence[Event], now: datetime) -> None:
    """Write the events in the caller's transaction, in one statement; an event id written before is skipped."""
    if not events:
        return
    await conn.execute(
        insert_ignoring_duplicates(event_outbox, ["event_id"], conn),
        [
            {
                "event_id": e.event_id,
                "kind": e.kind.value,
                "occurred_at": e.occurred_at,
                "payload": dict(e.data),
                "created_at": now,
            }
            for e in events
        ],
    )
