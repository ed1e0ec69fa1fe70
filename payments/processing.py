"""Applying verified payment events exactly once, in any order, whatever is duplicated.

`process_event` runs one event in one transaction: it records the event id first (INSERT … ON CONFLICT DO
NOTHING, so a concurrent duplicate finds the row and does nothing), then changes the payment row under a
row lock and asks the `PaymentApplier` for the ledger effects, on the same connection. Everything commits
together or not at all.

Ledger effects converge on the provider's state, so order does not matter: a payment is credited once
(`paid_at` is set once); what must be taken back is min(amount, refunded total + open or lost disputes),
and the difference from what was already taken back (`reversed_minor`) is reversed or reinstated.
A payment that does not match what was asked (amount, currency, subscriber, meter, reference) is recorded
in `payment_conflicts` for a person and never reaches the ledger. A refund or dispute for a payment we do
not know yet raises `PaymentNotYetKnown` and records nothing: the provider retries.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import PaymentNotYetKnown
from payments.events import (
    Ignored,
    PaymentEvent,
    PaymentSucceeded,
    ProviderEvent,
    provider_of,
)
from payments.grouped import claim_confirmations, credit_many, sort_out
from payments.one_event import apply_event
from payments.outcomes import RECORD_OUTCOMES, EventResult, Outcome, outcome_rows
from payments.ports import PaymentApplier
from store.bulk import update_rows
from store.schema.payments import webhook_events
from store.sql import insert_ignoring_duplicates
from store.uow import UnitOfWork, sqlite_write_lock

log = logging.getLogger("smsmeter.payments")


@asynccontextmanager
async def _one_writer(uow: UnitOfWork) -> AsyncIterator[None]:
    """SQLite has one writer at a time: queue our webhook transactions on the database's one write lock
    (shared with the gateway's writers), fairly, instead of racing for the file lock."""
    lock = sqlite_write_lock(uow.engine)
    if lock is None:
        yield
        return
    async with lock:
        yield


async def process_event(uow: UnitOfWork, event: ProviderEvent, applier: PaymentApplier, now: datetime) -> EventResult:
    """Apply one verified event. Raises PaymentNotYetKnown (nothing recorded) when the provider must retry.


    An event of a type we do not act on has no effect, so it is answered without touching the database."""
    if isinstance(event, Ignored):
        return EventResult(Outcome.IGNORED, detail=f"event type {event.event_type} is not used")
    async with _one_writer(uow):
        return await _process(uow, event, applier, now)


async def _process(uow: UnitOfWork, event: PaymentEvent, applier: PaymentApplier, now: datetime) -> EventResult:
    async with uow.begin() as conn:
        return await _process_one(conn, event, applier, now, now)


async def _process_one(
    conn: AsyncConnection, event: PaymentEvent, applier: PaymentApplier, received_at: datetime, now: datetime
) -> EventResult:
    stmt = (
        insert_ignoring_duplicates(webhook_events, ["provider", "event_id"], conn)
        .values(
            provider=provider_of(event),
            event_id=event.event_id,
            event_type=event.event_type,
            received_at=received_at,
            outcome="processing",
        )
        .returning(webhook_events.c.id)
    )
    event_row_id = (await conn.execute(stmt)).scalar_one_or_none()
    if event_row_id is None:
        return EventResult(Outcome.DUPLICATE, detail="event already processed")
    result = await apply_event(conn, event, applier, now)
    await conn.execute(
        update(webhook_events)
        .where(webhook_events.c.id == event_row_id)
        .values(outcome=result.outcome.value, payment_id=result.payment_id, detail=result.detail[:500] or None)
    )
    return result


async def process_events(
    uow: UnitOfWork,
    events: Sequence[tuple[ProviderEvent, datetime]],
    applier: PaymentApplier,
    *,
    conn: AsyncConnection | None = None,
) -> list[EventResult | PaymentNotYetKnown]:
    """Apply many verified events (each with the time it was received) in ONE transaction, with the effects
    `process_event` has for each: one result per event, in order, or the PaymentNotYetKnown to answer
    with (that event alone recorded nothing). Any other error rolls the whole batch back and propagates:
    the caller then runs the events one by one (`process_event`).


    Payment confirmations of the common shape (a payment found by our reference, not credited yet, matching
    what was asked, with no refund or dispute waiting) are credited set-based, through the applier's
    `credit_many`; every other event takes the one-by-one path afterwards, in the same transaction.
    `conn`: a connection (with no transaction open) to run it on, instead of one from the pool."""
    results: list[EventResult | PaymentNotYetKnown | None] = [None] * len(events)
    for i, (event, _) in enumerate(events):
        if isinstance(event, Ignored):
            results[i] = EventResult(Outcome.IGNORED, detail=f"event type {event.event_type} is not used")
    if all(r is not None for r in results):
        return [r for r in results if r is not None]
    now = max(at for _, at in events)
    async with _one_writer(uow):
        if conn is None:
            async with uow.begin() as own:
                await _process_batch(own, events, applier, now, results)
        else:
            async with conn.begin():
                await _process_batch(conn, events, applier, now, results)
    return [r for r in results if r is not None]


async def _process_batch(
    conn: AsyncConnection,
    events: Sequence[tuple[ProviderEvent, datetime]],
    applier: PaymentApplier,
    now: datetime,
    results: list[EventResult | PaymentNotYetKnown | None],
) -> None:
    claimed = await claim_confirmations(conn, events, results)
    outcomes: dict[int, EventResult] = {}  # event row id → its result
    fast, slow = await sort_out(conn, claimed, applier, now)
    if fast:
        outcomes.update(await credit_many(conn, fast, applier, now, results))
    for item in slow:
        result = await apply_event(conn, item.event, applier, now)
        results[item.index] = outcomes[item.row_id] = result
    for i, (event, received_at) in enumerate(events):
        if results[i] is not None or isinstance(event, Ignored | PaymentSucceeded):
            continue
        try:
            async with conn.begin_nested():  # a payment not known yet records nothing for this event only
                results[i] = await _process_one(conn, event, applier, received_at, now)
        except PaymentNotYetKnown as exc:
            results[i] = exc
    await update_rows(conn, RECORD_OUTCOMES, outcome_rows(outcomes))


__all__ = ["EventResult", "Outcome", "process_event", "process_events"]
