"""What became of a payment event (`EventResult`), and the conflicts a person decides: a payment that does
not match what was asked, or a ledger effect the ledger refused, goes to `payment_conflicts`, never to the
ledger."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.events import (
    PaymentEvent,
    PaymentSucceeded,
)
from store.bulk import RowUpdate
from store.schema.payments import payment_conflicts, webhook_events

log = logging.getLogger("smsmeter.payments")


class Outcome(enum.Enum):
    APPLIED = "applied"  # a ledger effect was made
    RECORDED = "recorded"  # the payment's state changed, no ledger effect (failed, awaiting, already credited)
    IGNORED = "ignored"  # an event type or payment we do not act on
    CONFLICT = "conflict"  # does not match what was asked: a person decides
    DUPLICATE = "duplicate"  # this event id was processed before: nothing done


@dataclass(frozen=True, slots=True)
class EventResult:
    outcome: Outcome
    payment_id: int | None = None
    detail: str = ""
    command_id: int | None = None


class Conflict(Exception):
    def __init__(self, reason: str, details: Mapping[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = dict(details)


# the outcomes of events, by their webhook_events row: `update_rows(conn, RECORD_OUTCOMES, outcome_rows(…))`
RECORD_OUTCOMES = RowUpdate(
    webhook_events,
    dict.fromkeys(("id", "outcome", "payment_id", "detail")),
    lambda _t, v: {"outcome": v.c.outcome, "payment_id": v.c.payment_id, "detail": v.c.detail},
    prefix="w",
)


def outcome_rows(outcomes: Mapping[int, EventResult]) -> list[dict[str, Any]]:
    """The rows of `RECORD_OUTCOMES` for results by event row id."""
    return [
        {"id": row_id, "outcome": r.outcome.value, "payment_id": r.payment_id, "detail": r.detail[:500] or None}
        for row_id, r in outcomes.items()
    ]


def event_facts(event: PaymentEvent) -> dict[str, Any]:
    facts: dict[str, Any] = {"event_id": event.event_id, "event_type": event.event_type}
    if isinstance(event, PaymentSucceeded):
        facts.update(
            amount_minor=event.amount_minor,
            currency=event.currency,
            subscriber=event.subscriber_code,
            meter=event.meter_code,
        )
    return facts


async def record_conflict(
    conn: AsyncConnection, event: PaymentEvent, payment: Row[Any] | None, conflict: Conflict, now: datetime
) -> EventResult:
    loc = event.payment
    payment_id = payment.id if payment is not None else None
    await conn.execute(
        insert(payment_conflicts).values(
            provider=loc.provider,
            provider_ref=loc.provider_ref,
            reason=conflict.reason[:200],
            details=conflict.details,
            created_at=now,
            event_id=event.event_id,
            payment_id=payment_id,
        )
    )
    log.warning(
        "payment conflict: %s %s event %s: %s (not credited; see payment_conflicts)",
        loc.provider,
        loc.provider_ref,
        event.event_id,
        conflict.reason,
    )
    return EventResult(Outcome.CONFLICT, payment_id, conflict.reason)
