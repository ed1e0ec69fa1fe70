"""Applying one verified event to its payment row, under the row's lock, in the caller's transaction.

A confirmation is checked against what was asked (amount, currency, reference, subscriber, meter) and
credited once (`paid_at` is set once) through the `PaymentApplier`; a failure or a wait only changes the
row's status; a refund or dispute is recorded and the ledger brought in line (`payments.settling`). A
provider's first word about a payment made at its side registers the payment row.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import PaymentNotYetKnown, PaymentRefused
from payments.events import (
    DisputeClosed,
    DisputeOpened,
    PaymentAwaiting,
    PaymentEvent,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)
from payments.outcomes import Conflict, EventResult, Outcome, event_facts, record_conflict
from payments.ports import CreditRequest, Payer, PaymentApplier
from payments.rows import codes_of, find_payment, link_ids
from payments.settling import settle_reversals
from store.schema.payments import payment_disputes, payments
from store.sql import insert_ignoring_duplicates

log = logging.getLogger("smsmeter.payments")


async def apply_event(
    conn: AsyncConnection, event: PaymentEvent, applier: PaymentApplier, now: datetime
) -> EventResult:
    loc = event.payment
    payment = await find_payment(conn, loc)
    if payment is None and isinstance(event, PaymentSucceeded) and loc.provider != "stripe":
        try:
            payment = await _register_provider_payment(conn, applier, event, now)
        except Conflict as conflict:
            return await record_conflict(conn, event, None, conflict, now)
    if payment is None:
        if isinstance(event, PaymentRefunded | DisputeOpened | DisputeClosed):
            raise PaymentNotYetKnown(loc.provider, loc.payment_intent_id or loc.charge_id or loc.provider_ref)
        if isinstance(event, PaymentSucceeded):
            unknown = Conflict("unknown payment reference", {"reference": loc.reference, **event_facts(event)})
            return await record_conflict(conn, event, None, unknown, now)
        return EventResult(Outcome.IGNORED, detail="no such payment here")
    await link_ids(conn, payment, loc, now)
    if isinstance(event, PaymentSucceeded):
        try:
            await _check_matches(conn, applier, payment, event)
        except Conflict as conflict:
            return await record_conflict(conn, event, payment, conflict, now)
        return await _credit(conn, payment, event, applier, now)
    if isinstance(event, PaymentAwaiting | PaymentFailed):
        return await _mark_unpaid(conn, payment, event, now)
    if event.currency != payment.currency:
        differs = Conflict("currency differs", {"asked": payment.currency, **event_facts(event)})
        return await record_conflict(conn, event, payment, differs, now)
    if isinstance(event, PaymentRefunded):
        await conn.execute(
            update(payments)
            .where(payments.c.id == payment.id, payments.c.refunded_minor < event.refunded_total_minor)
            .values(refunded_minor=event.refunded_total_minor, updated_at=now)
        )
    else:
        await _record_dispute(conn, payment, event, now)
    return await settle_reversals(conn, payment.id, applier, now, detail=event.event_type, event_id=event.event_id)


async def _check_matches(
    conn: AsyncConnection, applier: PaymentApplier, payment: Row[Any], event: PaymentSucceeded
) -> None:
    """Raise Conflict when the provider's payment differs from what was asked."""
    problems = []
    if event.amount_minor != payment.amount_minor:
        problems.append("amount differs")
    if event.currency != payment.currency:
        problems.append("currency differs")
    if event.payment.reference and payment.reference and event.payment.reference != payment.reference:
        problems.append("reference differs")
    if event.subscriber_code is not None or event.meter_code is not None:
        subscriber_code, meter_code = await codes_of(conn, applier, payment)
        if event.subscriber_code is not None and event.subscriber_code != subscriber_code:
            problems.append("subscriber differs")
        if event.meter_code is not None and event.meter_code != meter_code:
            problems.append("meter differs")
    if problems:
        asked = {"amount_minor": payment.amount_minor, "currency": payment.currency, "reference": payment.reference}
        raise Conflict(", ".join(problems), {"asked": asked, **event_facts(event)})


def credit_request(
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
    subscriber_code, meter_code = await codes_of(conn, applier, payment)
    try:
        async with conn.begin_nested():  # a refusal by the ledger side undoes only this part
            await conn.execute(
                update(payments)
                .where(payments.c.id == payment.id)
                .values(status="paid", paid_at=now, updated_at=now, failure_reason=None)
            )
            applied = await applier.credit(
                conn, credit_request(payment, subscriber_code, meter_code, event.event_id), now
            )
    except PaymentRefused as refused:
        conflict = Conflict(f"refused by the ledger: {refused.reason}", event_facts(event))
        return await record_conflict(conn, event, payment, conflict, now)
    if applied.command_id is not None:
        await conn.execute(
            update(payments).where(payments.c.id == payment.id).values(credit_command_id=applied.command_id)
        )
    # A refund or dispute may have arrived before the payment itself: take it back now.
    if payment.refunded_minor > 0 or await _has_disputes(conn, payment.id):
        await settle_reversals(conn, payment.id, applier, now, detail="", event_id=event.event_id)
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
        insert_ignoring_duplicates(payment_disputes, ["provider", "dispute_id"], conn)
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


async def _register_provider_payment(
    conn: AsyncConnection, applier: PaymentApplier, event: PaymentSucceeded, now: datetime
) -> Row[Any]:
    """A provider's first word about a payment made at its side: check who it is for, then record it."""
    loc = event.payment
    if not event.subscriber_code:
        raise Conflict("no subscriber account in the payment", event_facts(event))
    payer = (await applier.payers(conn, [event.subscriber_code])).get(event.subscriber_code)
    if payer is None:
        raise Conflict("unknown subscriber account", event_facts(event))
    if payer.currency is not None and payer.currency != event.currency:
        raise Conflict("currency differs from the account's", {"asked": payer.currency, **event_facts(event)})
    if event.amount_minor <= 0:
        raise Conflict("amount must be positive", event_facts(event))
    meter_ids = meters_paid_for(event, payer)
    if meter_ids is None:
        raise Conflict("meter is not the subscriber's", event_facts(event))
    await conn.execute(
        insert_ignoring_duplicates(payments, ["provider", "provider_ref"], conn).values(
            provider=loc.provider,
            provider_ref=loc.provider_ref,
            subscriber_id=payer.subscriber_id,
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


def meters_paid_for(event: PaymentSucceeded, payer: Payer) -> list[int] | None:
    """The meters a provider's payment for `payer` may be for: the one it names (None when that is not theirs),
    or else the account's active ones (one: the payment is for it; none or several: for the account)."""
    if event.meter_code:
        named = [m.id for m in payer.meters if m.code == event.meter_code]
        return named or None
    return [m.id for m in payer.meters if m.active]
