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

import enum
import functools
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Row, String, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import PaymentNotYetKnown, PaymentRefused
from payments.events import (
    DisputeClosed,
    DisputeOpened,
    Ignored,
    PaymentAwaiting,
    PaymentEvent,
    PaymentFailed,
    PaymentLocator,
    PaymentRefunded,
    PaymentSucceeded,
    ProviderEvent,
    provider_of,
)
from payments.ports import CreditRequest, PaymentApplier, ReversalRequest
from store.schema.ledger import accounts
from store.schema.payments import payment_conflicts, payment_disputes, payments, webhook_events
from store.schema.registry import meters, subscribers
from store.sql import among_param, insert_ignoring_duplicates
from store.uow import UnitOfWork, sqlite_write_lock

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


class _Conflict(Exception):
    def __init__(self, reason: str, details: Mapping[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = dict(details)


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
        insert_ignoring_duplicates(webhook_events, ["provider", "event_id"], conn.dialect.name == "postgresql")
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
    result = await _apply(conn, event, applier, now)
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


_RECORD_OUTCOMES = (
    update(webhook_events)
    .where(webhook_events.c.id == bindparam("w_id"))
    .values(outcome=bindparam("w_outcome"), payment_id=bindparam("w_payment"), detail=bindparam("w_detail"))
)


@dataclass(slots=True)
class _Claimed:
    index: int
    event: PaymentSucceeded
    row_id: int


async def _process_batch(
    conn: AsyncConnection,
    events: Sequence[tuple[ProviderEvent, datetime]],
    applier: PaymentApplier,
    now: datetime,
    results: list[EventResult | PaymentNotYetKnown | None],
) -> None:
    claimed = await _claim_confirmations(conn, events, results)
    outcomes: dict[int, EventResult] = {}  # event row id → its result
    fast, slow = await _sort_out(conn, claimed)
    if fast:
        outcomes.update(await _credit_many(conn, fast, applier, now, results))
    for item in slow:
        result = await _apply(conn, item.event, applier, now)
        results[item.index] = outcomes[item.row_id] = result
    for i, (event, received_at) in enumerate(events):
        if results[i] is not None or isinstance(event, Ignored | PaymentSucceeded):
            continue
        try:
            async with conn.begin_nested():  # a payment not known yet records nothing for this event only
                results[i] = await _process_one(conn, event, applier, received_at, now)
        except PaymentNotYetKnown as exc:
            results[i] = exc
    if outcomes:
        await conn.execute(
            _RECORD_OUTCOMES,
            [
                {
                    "w_id": row_id,
                    "w_outcome": r.outcome.value,
                    "w_payment": r.payment_id,
                    "w_detail": r.detail[:500] or None,
                }
                for row_id, r in outcomes.items()
            ],
        )


@functools.cache
def _claim_events(postgres: bool) -> Any:
    """Record event ids, skipping those recorded already; returns the rows it wrote."""
    w = webhook_events.c
    return insert_ignoring_duplicates(webhook_events, ["provider", "event_id"], postgres).returning(
        w.id, w.provider, w.event_id
    )


async def _claim_confirmations(
    conn: AsyncConnection,
    events: Sequence[tuple[ProviderEvent, datetime]],
    results: list[EventResult | PaymentNotYetKnown | None],
) -> list[_Claimed]:
    """Record the event ids of the batch's payment confirmations in one statement; a duplicate (here or in
    the batch) is answered as such."""
    first: dict[tuple[str, str], int] = {}
    for i, (event, _) in enumerate(events):
        if not isinstance(event, PaymentSucceeded):
            continue
        key = (event.payment.provider, event.event_id)
        if key in first:
            results[i] = EventResult(Outcome.DUPLICATE, detail="event already processed")
        else:
            first[key] = i
    if not first:
        return []
    rows = [
        {
            "provider": provider,
            "event_id": event_id,
            "event_type": events[i][0].event_type,
            "received_at": events[i][1],
            "outcome": "processing",
        }
        for (provider, event_id), i in sorted(first.items())  # one order: concurrent batches never deadlock
    ]
    inserted = await conn.execute(_claim_events(conn.dialect.name == "postgresql"), rows)
    row_ids = {(p, e): int(i) for i, p, e in inserted}
    claimed = []
    for key, i in first.items():
        if key not in row_ids:
            results[i] = EventResult(Outcome.DUPLICATE, detail="event already processed")
            continue
        event = events[i][0]
        assert isinstance(event, PaymentSucceeded)
        claimed.append(_Claimed(i, event, row_ids[key]))
    return claimed


@functools.cache
def _payments_to_credit(postgres: bool) -> Any:
    """The payments of our references (`refs`), locked in id order, with what `_plain_credit` needs."""
    disputed = select(payment_disputes.c.id).where(payment_disputes.c.payment_id == payments.c.id).exists()
    return (
        select(
            payments,
            subscribers.c.code.label("subscriber_code"),
            meters.c.code.label("meter_code"),
            disputed.label("has_disputes"),
        )
        .select_from(
            payments.join(subscribers, subscribers.c.id == payments.c.subscriber_id).outerjoin(
                meters, meters.c.id == payments.c.meter_id
            )
        )
        .where(among_param(payments.c.reference, "refs", postgres))
        .order_by(payments.c.id)
        .with_for_update(of=payments)
    )


async def _sort_out(
    conn: AsyncConnection, claimed: list[_Claimed]
) -> tuple[list[tuple[_Claimed, Row[Any]]], list[_Claimed]]:
    """Which confirmations are credited set-based (their payment rows locked, in id order), which one by one."""
    references = sorted({r for c in claimed if (r := c.event.payment.reference)})
    by_reference: dict[str, Row[Any]] = {}
    if references:
        rows = await conn.execute(_payments_to_credit(conn.dialect.name == "postgresql"), {"refs": references})
        by_reference = {row.reference: row for row in rows}
    fast: list[tuple[_Claimed, Row[Any]]] = []
    slow: list[_Claimed] = []
    taken: set[int] = set()
    for item in claimed:
        event = item.event
        payment = by_reference.get(event.payment.reference or "")
        if payment is None or payment.id in taken or not _plain_credit(payment, event):
            slow.append(item)
            continue
        taken.add(payment.id)
        fast.append((item, payment))
    return fast, slow


def _plain_credit(payment: Row[Any], event: PaymentSucceeded) -> bool:
    """Not credited yet, nothing to take back, and exactly what was asked."""
    return (
        payment.paid_at is None
        and payment.refunded_minor == 0
        and not payment.has_disputes
        and payment.meter_code is not None
        and event.amount_minor == payment.amount_minor
        and event.currency == payment.currency
        and (event.subscriber_code is None or event.subscriber_code == payment.subscriber_code)
        and (event.meter_code is None or event.meter_code == payment.meter_code)
    )


async def _credit_many(
    conn: AsyncConnection,
    fast: list[tuple[_Claimed, Row[Any]]],
    applier: PaymentApplier,
    now: datetime,
    results: list[EventResult | PaymentNotYetKnown | None],
) -> dict[int, EventResult]:
    """Credit the plain confirmations through the applier and mark their payments credited; returns the
    results of their events (by event row id) that are still to be recorded (on PostgreSQL those credited
    are recorded here, with the payments, in one statement)."""
    requests = [
        _payment_credit(payment, payment.subscriber_code, payment.meter_code, item.event.event_id)
        for item, payment in fast
    ]
    answers = await applier.credit_many(conn, requests, now)
    outcomes: dict[int, EventResult] = {}
    paid: list[dict[str, Any]] = []
    for (item, payment), answer in zip(fast, answers, strict=True):
        if isinstance(answer, PaymentRefused):
            await _link_ids(conn, payment, item.event.payment, now)
            conflict = _Conflict(f"refused by the ledger: {answer.reason}", _event_facts(item.event))
            result = await _record_conflict(conn, item.event, payment, conflict, now)
        else:
            loc = item.event.payment
            paid.append(
                {
                    "p_id": payment.id,
                    "p_command": answer.command_id,
                    "p_intent": payment.payment_intent_id or loc.payment_intent_id,
                    "p_session": payment.checkout_session_id or loc.checkout_session_id,
                    "p_charge": payment.charge_id or loc.charge_id,
                    "p_now": now,
                }
            )
            result = EventResult(Outcome.APPLIED, payment.id, f"credited {payment.amount_minor}", answer.command_id)
        results[item.index] = outcomes[item.row_id] = result
    if paid and conn.dialect.name == "postgresql":
        # one statement marks the payments credited and records their events' outcomes
        applied = {row_id: r for row_id, r in outcomes.items() if r.outcome is Outcome.APPLIED}
        await conn.execute(_MARK_CREDITED_AND_RECORD, _credited_arrays(paid, applied, now))
        return {row_id: r for row_id, r in outcomes.items() if row_id not in applied}
    if paid:
        await conn.execute(_MARK_CREDITED, paid)
    return outcomes


def _credited_arrays(paid: list[dict[str, Any]], applied: Mapping[int, EventResult], now: datetime) -> dict[str, Any]:
    return {
        "now": now,
        "p_ids": [p["p_id"] for p in paid],
        "p_commands": [p["p_command"] for p in paid],
        "p_intents": [p["p_intent"] for p in paid],
        "p_sessions": [p["p_session"] for p in paid],
        "p_charges": [p["p_charge"] for p in paid],
        "w_ids": list(applied),
        "w_outcomes": [r.outcome.value for r in applied.values()],
        "w_payments": [r.payment_id for r in applied.values()],
        "w_details": [r.detail[:500] or None for r in applied.values()],
    }


def _mark_credited_and_record() -> Any:
    """PostgreSQL: `_MARK_CREDITED` and `_RECORD_OUTCOMES` for the credited ones in one round trip — WITH
    marked AS (UPDATE payments … FROM unnest(…)) UPDATE webhook_events … FROM unnest(…), the values bound as
    one array per column (an element per payment, an element per event); built once."""
    p, now = payments.c, bindparam("now", type_=payments.c.paid_at.type)
    v = func.unnest(
        bindparam("p_ids", type_=ARRAY(BigInteger)),
        bindparam("p_commands", type_=ARRAY(BigInteger)),
        bindparam("p_intents", type_=ARRAY(String)),
        bindparam("p_sessions", type_=ARRAY(String)),
        bindparam("p_charges", type_=ARRAY(String)),
    ).table_valued("id", "command", "intent", "session", "charge")
    v = v.render_derived(name="v")
    marked = (
        update(payments)
        .where(p.id == v.c.id)
        .values(
            status="paid",
            paid_at=now,
            updated_at=now,
            failure_reason=None,
            credit_command_id=v.c.command,
            payment_intent_id=v.c.intent,
            checkout_session_id=v.c.session,
            charge_id=v.c.charge,
        )
    )
    w = func.unnest(
        bindparam("w_ids", type_=ARRAY(BigInteger)),
        bindparam("w_outcomes", type_=ARRAY(String)),
        bindparam("w_payments", type_=ARRAY(BigInteger)),
        bindparam("w_details", type_=ARRAY(String)),
    ).table_valued("id", "outcome", "payment", "detail")
    w = w.render_derived(name="w")
    return (
        update(webhook_events)
        .where(webhook_events.c.id == w.c.id)
        .values(outcome=w.c.outcome, payment_id=w.c.payment, detail=w.c.detail)
        .add_cte(marked.cte("marked"))
    )


_MARK_CREDITED_AND_RECORD = _mark_credited_and_record()


_MARK_CREDITED = (
    update(payments)
    .where(payments.c.id == bindparam("p_id"))
    .values(
        status="paid",
        paid_at=bindparam("p_now"),
        updated_at=bindparam("p_now"),
        failure_reason=None,
        credit_command_id=bindparam("p_command"),
        payment_intent_id=bindparam("p_intent"),
        checkout_session_id=bindparam("p_session"),
        charge_id=bindparam("p_charge"),
    )
)


async def _apply(conn: AsyncConnection, event: PaymentEvent, applier: PaymentApplier, now: datetime) -> EventResult:
    loc = event.payment
    payment = await _find_payment(conn, loc)
    if payment is None and isinstance(event, PaymentSucceeded) and loc.provider != "stripe":
        try:
            payment = await _register_provider_payment(conn, event, now)
        except _Conflict as conflict:
            return await _record_conflict(conn, event, None, conflict, now)
    if payment is None:
        if isinstance(event, PaymentRefunded | DisputeOpened | DisputeClosed):
            raise PaymentNotYetKnown(loc.provider, loc.payment_intent_id or loc.charge_id or loc.provider_ref)
        if isinstance(event, PaymentSucceeded):
            conflict = _Conflict("unknown payment reference", {"reference": loc.reference, **_event_facts(event)})
            return await _record_conflict(conn, event, None, conflict, now)
        return EventResult(Outcome.IGNORED, detail="no such payment here")
    await _link_ids(conn, payment, loc, now)
    if isinstance(event, PaymentSucceeded):
        try:
            await _check_matches(conn, payment, event)
        except _Conflict as conflict:
            return await _record_conflict(conn, event, payment, conflict, now)
        return await _credit(conn, payment, event, applier, now)
    if isinstance(event, PaymentAwaiting | PaymentFailed):
        return await _mark_unpaid(conn, payment, event, now)
    if event.currency != payment.currency:
        conflict = _Conflict("currency differs", {"asked": payment.currency, **_event_facts(event)})
        return await _record_conflict(conn, event, payment, conflict, now)
    if isinstance(event, PaymentRefunded):
        await conn.execute(
            update(payments)
            .where(payments.c.id == payment.id, payments.c.refunded_minor < event.refunded_total_minor)
            .values(refunded_minor=event.refunded_total_minor, updated_at=now)
        )
    else:
        await _record_dispute(conn, payment, event, now)
    return await _settle_reversals(conn, payment.id, applier, now, detail=event.event_type, event_id=event.event_id)


async def _find_payment(conn: AsyncConnection, loc: PaymentLocator) -> Row[Any] | None:
    for column, value in (
        (payments.c.reference, loc.reference),
        (payments.c.checkout_session_id, loc.checkout_session_id),
        (payments.c.payment_intent_id, loc.payment_intent_id),
        (payments.c.charge_id, loc.charge_id),
    ):
        if value:
            row = (await conn.execute(select(payments).where(column == value).with_for_update())).first()
            if row is not None:
                return row
    query = select(payments).where(payments.c.provider == loc.provider, payments.c.provider_ref == loc.provider_ref)
    return (await conn.execute(query.with_for_update())).first()


async def _link_ids(conn: AsyncConnection, payment: Row[Any], loc: PaymentLocator, now: datetime) -> None:
    values = {}
    if loc.payment_intent_id and payment.payment_intent_id is None:
        values["payment_intent_id"] = loc.payment_intent_id
    if loc.checkout_session_id and payment.checkout_session_id is None:
        values["checkout_session_id"] = loc.checkout_session_id
    if loc.charge_id and payment.charge_id is None:
        values["charge_id"] = loc.charge_id
    if values:
        await conn.execute(update(payments).where(payments.c.id == payment.id).values(updated_at=now, **values))


def _event_facts(event: PaymentEvent) -> dict[str, Any]:
    facts: dict[str, Any] = {"event_id": event.event_id, "event_type": event.event_type}
    if isinstance(event, PaymentSucceeded):
        facts.update(
            amount_minor=event.amount_minor,
            currency=event.currency,
            subscriber=event.subscriber_code,
            meter=event.meter_code,
        )
    return facts


async def _codes(conn: AsyncConnection, payment: Row[Any]) -> tuple[str, str | None]:
    row = (
        await conn.execute(
            select(subscribers.c.code, meters.c.code.label("meter_code"))
            .select_from(subscribers.outerjoin(meters, meters.c.id == payment.meter_id))
            .where(subscribers.c.id == payment.subscriber_id)
        )
    ).one()
    return str(row.code), row.meter_code


async def _check_matches(conn: AsyncConnection, payment: Row[Any], event: PaymentSucceeded) -> None:
    """Raise _Conflict when the provider's payment differs from what was asked."""
    problems = []
    if event.amount_minor != payment.amount_minor:
        problems.append("amount differs")
    if event.currency != payment.currency:
        problems.append("currency differs")
    if event.payment.reference and payment.reference and event.payment.reference != payment.reference:
        problems.append("reference differs")
    if event.subscriber_code is not None or event.meter_code is not None:
        subscriber_code, meter_code = await _codes(conn, payment)
        if event.subscriber_code is not None and event.subscriber_code != subscriber_code:
            problems.append("subscriber differs")
        if event.meter_code is not None and event.meter_code != meter_code:
            problems.append("meter differs")
    if problems:
        asked = {"amount_minor": payment.amount_minor, "currency": payment.currency, "reference": payment.reference}
        raise _Conflict(", ".join(problems), {"asked": asked, **_event_facts(event)})


async def _record_conflict(
    conn: AsyncConnection, event: PaymentEvent, payment: Row[Any] | None, conflict: _Conflict, now: datetime
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


def _payment_credit(
    payment: Row[Any], subscriber_code: str, meter_code: str | None, event_id: str | None
) -> CreditRequest:
    """What billing is asked to credit for a paid `payment` (its ledger reference is the provider's)."""
    return CreditRequest(
        payment_id=payment.id,
        subscriber_id=payment.subscriber_id,
        subscriber_code=subscriber_code,
        meter_id=payment.meter_id,
        meter_code=meter_code,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        provider=payment.provider,
        provider_ref=payment.provider_ref,
        ledger_ref=payment.provider_ref,
        idempotency_key=f"pay:{payment.id}",
        reason="payment",
        event_id=event_id,
    )


async def _credit(
    conn: AsyncConnection, payment: Row[Any], event: PaymentSucceeded, applier: PaymentApplier, now: datetime
) -> EventResult:
    if payment.paid_at is not None:
        return EventResult(Outcome.RECORDED, payment.id, "already credited")
    subscriber_code, meter_code = await _codes(conn, payment)
    try:
        async with conn.begin_nested():  # a refusal by the ledger side undoes only this part
            await conn.execute(
                update(payments)
                .where(payments.c.id == payment.id)
                .values(status="paid", paid_at=now, updated_at=now, failure_reason=None)
            )
            applied = await applier.credit(
                conn, _payment_credit(payment, subscriber_code, meter_code, event.event_id), now
            )
    except PaymentRefused as refused:
        conflict = _Conflict(f"refused by the ledger: {refused.reason}", _event_facts(event))
        return await _record_conflict(conn, event, payment, conflict, now)
    if applied.command_id is not None:
        await conn.execute(
            update(payments).where(payments.c.id == payment.id).values(credit_command_id=applied.command_id)
        )
    # A refund or dispute may have arrived before the payment itself: take it back now.
    if payment.refunded_minor > 0 or await _has_disputes(conn, payment.id):
        await _settle_reversals(conn, payment.id, applier, now, detail="", event_id=event.event_id)
    return EventResult(Outcome.APPLIED, payment.id, f"credited {payment.amount_minor}", applied.command_id)


async def _has_disputes(conn: AsyncConnection, payment_id: int) -> bool:
    query = select(payment_disputes.c.id).where(payment_disputes.c.payment_id == payment_id).limit(1)
    return (await conn.execute(query)).first() is not None


async def _mark_unpaid(
    conn: AsyncConnection, payment: Row[Any], event: PaymentAwaiting | PaymentFailed, now: datetime
) -> EventResult:
    if payment.paid_at is not None:
        return EventResult(Outcome.RECORDED, payment.id, "already credited; later failure of an attempt noted")
    if isinstance(event, PaymentFailed):
        values: dict[str, Any] = {"status": "failed", "failure_reason": event.reason[:200]}
    else:
        values = {"status": "awaiting"}
    await conn.execute(update(payments).where(payments.c.id == payment.id).values(updated_at=now, **values))
    return EventResult(Outcome.RECORDED, payment.id, values["status"])


async def _record_dispute(
    conn: AsyncConnection, payment: Row[Any], event: DisputeOpened | DisputeClosed, now: datetime
) -> None:
    if isinstance(event, DisputeOpened):
        state, closed_at = ("open" if event.funds_withdrawn else "inquiry"), None
    else:
        state, closed_at = ("won" if event.won else "lost"), now
    inserted = await conn.execute(
        insert_ignoring_duplicates(payment_disputes, ["provider", "dispute_id"], conn.dialect.name == "postgresql")
        .values(
            provider=event.payment.provider,
            dispute_id=event.dispute_id,
            payment_id=payment.id,
            amount_minor=event.amount_minor,
            state=state,
            opened_at=now,
            closed_at=closed_at,
        )
        .returning(payment_disputes.c.id)
    )
    if inserted.scalar_one_or_none() is None and isinstance(event, DisputeClosed):
        await conn.execute(  # closed disputes never reopen; an opened event after closing changes nothing
            update(payment_disputes)
            .where(
                payment_disputes.c.provider == event.payment.provider,
                payment_disputes.c.dispute_id == event.dispute_id,
                payment_disputes.c.closed_at.is_(None),
            )
            .values(state=state, closed_at=closed_at, amount_minor=event.amount_minor)
        )


async def _settle_reversals(
    conn: AsyncConnection,
    payment_id: int,
    applier: PaymentApplier,
    now: datetime,
    *,
    detail: str,
    event_id: str | None = None,
) -> EventResult:
    """Bring what the ledger has taken back in line with the provider's refunds and disputes."""
    payment = (await conn.execute(select(payments).where(payments.c.id == payment_id))).one()
    disputed = (
        await conn.execute(
            select(func.coalesce(func.sum(payment_disputes.c.amount_minor), 0)).where(
                payment_disputes.c.payment_id == payment_id, payment_disputes.c.state.in_(("open", "lost"))
            )
        )
    ).scalar_one()
    refunded = payment.refunded_minor
    status = payment.status
    if payment.paid_at is not None:
        status = "paid"
        if refunded > 0:
            status = "refunded" if refunded >= payment.amount_minor else "partially_refunded"
        if disputed > 0:
            status = "disputed"
    if payment.paid_at is None:
        await conn.execute(update(payments).where(payments.c.id == payment_id).values(updated_at=now))
        return EventResult(Outcome.RECORDED, payment_id, f"{detail}: noted before the payment was credited")
    target = min(payment.amount_minor, int(refunded) + int(disputed))
    delta = target - payment.reversed_minor
    values: dict[str, Any] = {"status": status, "updated_at": now}
    outcome, what = Outcome.RECORDED, "nothing more to take back"
    if delta != 0:
        n = payment.adjustments + 1
        values.update(reversed_minor=target, adjustments=n)
        subscriber_code, meter_code = await _codes(conn, payment)
        common = {
            "payment_id": payment_id,
            "subscriber_id": payment.subscriber_id,
            "subscriber_code": subscriber_code,
            "meter_id": payment.meter_id,
            "meter_code": meter_code,
            "currency": payment.currency,
            "provider": payment.provider,
            "provider_ref": payment.provider_ref,
            "event_id": event_id,
        }
        if delta > 0:
            reason = "refund" if refunded > payment.reversed_minor else "dispute"
            try:
                await applier.reverse(
                    conn,
                    ReversalRequest(
                        amount_minor=delta,
                        ledger_ref=payment.provider_ref,
                        idempotency_key=f"reverse:{payment_id}:{n}",
                        reason=reason,
                        **common,
                    ),
                    now,
                )
            except PaymentRefused as refused:  # the provider's word stays recorded; a person squares the ledger
                await conn.execute(update(payments).where(payments.c.id == payment_id).values(updated_at=now))
                facts = {"payment_id": payment_id, "amount_minor": delta, "reason": reason, "event_id": event_id}
                await conn.execute(
                    insert(payment_conflicts).values(
                        provider=payment.provider,
                        provider_ref=payment.provider_ref,
                        reason=f"reversal refused by the ledger: {refused.reason}"[:200],
                        details=facts,
                        created_at=now,
                        event_id=event_id,
                        payment_id=payment_id,
                    )
                )
                log.warning(
                    "payment %s %s: taking back %d (%s) refused by the ledger: %s (see payment_conflicts)",
                    payment.provider,
                    payment.provider_ref,
                    delta,
                    reason,
                    refused.reason,
                )
                return EventResult(Outcome.CONFLICT, payment_id, f"{detail}: reversal refused: {refused.reason}")
            outcome, what = Outcome.APPLIED, f"took back {delta} ({reason})"
        else:
            await applier.credit(
                conn,
                CreditRequest(
                    amount_minor=-delta,
                    ledger_ref=f"{payment.provider_ref}:reinstate:{n}",
                    idempotency_key=f"reinstate:{payment_id}:{n}",
                    reason="reinstated",
                    **common,
                ),
                now,
            )
            outcome, what = Outcome.APPLIED, f"reinstated {-delta} (dispute won)"
    await conn.execute(update(payments).where(payments.c.id == payment_id).values(**values))
    return EventResult(outcome, payment_id, f"{detail}: {what}" if detail else what)


async def _register_provider_payment(conn: AsyncConnection, event: PaymentSucceeded, now: datetime) -> Row[Any]:
    """A provider's first word about a payment made at its side: check who it is for, then record it."""
    loc = event.payment
    if not event.subscriber_code:
        raise _Conflict("no subscriber account in the payment", _event_facts(event))
    subscriber = (
        await conn.execute(
            select(subscribers.c.id, subscribers.c.status, accounts.c.currency)
            .select_from(subscribers.outerjoin(accounts, accounts.c.subscriber_id == subscribers.c.id))
            .where(subscribers.c.code == event.subscriber_code)
        )
    ).first()
    if subscriber is None:
        raise _Conflict("unknown subscriber account", _event_facts(event))
    if subscriber.currency is not None and subscriber.currency != event.currency:
        raise _Conflict("currency differs from the account's", {"asked": subscriber.currency, **_event_facts(event)})
    if event.amount_minor <= 0:
        raise _Conflict("amount must be positive", _event_facts(event))
    meter_query = select(meters.c.id).where(meters.c.subscriber_id == subscriber.id, meters.c.status == "active")
    if event.meter_code:
        meter_query = select(meters.c.id).where(
            and_(meters.c.code == event.meter_code, meters.c.subscriber_id == subscriber.id)
        )
    meter_ids = (await conn.execute(meter_query.order_by(meters.c.id))).scalars().all()
    if event.meter_code and not meter_ids:
        raise _Conflict("meter is not the subscriber's", _event_facts(event))
    await conn.execute(
        insert_ignoring_duplicates(payments, ["provider", "provider_ref"], conn.dialect.name == "postgresql").values(
            provider=loc.provider,
            provider_ref=loc.provider_ref,
            subscriber_id=subscriber.id,
            meter_id=meter_ids[0] if len(meter_ids) == 1 else None,
            amount_minor=event.amount_minor,
            currency=event.currency,
            status="pending",
            created_at=now,
            updated_at=now,
        )
    )
    query = select(payments).where(payments.c.provider == loc.provider, payments.c.provider_ref == loc.provider_ref)
    return (await conn.execute(query.with_for_update())).one()
