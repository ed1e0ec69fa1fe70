"""The set-based path for payment confirmations of the common shape: a payment found by our reference,
not credited yet, matching what was asked, with nothing to take back. For a batch: the event ids recorded in
one statement, the payment rows locked in id order in one, billing's credit for all of them through the
applier's `credit_many`, and the payments marked credited with their events' outcomes (`store.bulk`'s
`update_rows_together`: one statement on PostgreSQL).
Every other confirmation is sorted out to the one-by-one path (`payments.one_event`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import PaymentNotYetKnown, PaymentRefused
from payments.events import (
    PaymentSucceeded,
    ProviderEvent,
)
from payments.one_event import credit_request, meters_paid_for
from payments.outcomes import (
    RECORD_OUTCOMES,
    Conflict,
    EventResult,
    Outcome,
    event_facts,
    outcome_rows,
    record_conflict,
)
from payments.ports import PaymentApplier
from payments.rows import link_ids
from store.bulk import OnConflict, RowUpdate, insert_new, insert_rows, select_among, update_rows_together
from store.schema.payments import payment_disputes, payments, webhook_events

log = logging.getLogger("smsmeter.payments")


@dataclass(slots=True)
class ClaimedConfirmation:
    index: int
    event: PaymentSucceeded
    row_id: int


async def claim_confirmations(
    conn: AsyncConnection,
    events: Sequence[tuple[ProviderEvent, datetime]],
    results: list[EventResult | PaymentNotYetKnown | None],
) -> list[ClaimedConfirmation]:
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
    inserted = await insert_new(conn, webhook_events, rows, ("provider", "event_id"), ("id", "provider", "event_id"))
    row_ids = {(p, e): int(i) for i, p, e in inserted}
    claimed = []
    for key, i in first.items():
        if key not in row_ids:
            results[i] = EventResult(Outcome.DUPLICATE, detail="event already processed")
            continue
        event = events[i][0]
        assert isinstance(event, PaymentSucceeded)
        claimed.append(ClaimedConfirmation(i, event, row_ids[key]))
    return claimed


_DISPUTED = select(payment_disputes.c.id).where(payment_disputes.c.payment_id == payments.c.id).exists()
# the payment rows with what `_plain_credit` needs (locked in id order); built once
_TO_CREDIT = (*payments.c, _DISPUTED.label("has_disputes"))
_BY_ID = (payments.c.id,)
_PROVIDER_KEY = (payments.c.provider, payments.c.provider_ref)


@dataclass(frozen=True, slots=True)
class ToCredit:
    """A payment row (locked) with the codes, as billing names them, of whom it was asked for."""

    row: Row[Any]
    subscriber_code: str
    meter_code: str | None


async def _payments_to_credit(conn: AsyncConnection, key: Any, values: Collection[Any]) -> list[Row[Any]]:
    return await select_among(conn, _TO_CREDIT, key, values, order_by=_BY_ID, lock_of=payments)


def _at_the_provider(event: PaymentSucceeded) -> bool:
    """A payment made at a provider's side (not a Checkout of ours): found by the provider's own id."""
    return event.payment.provider != "stripe" and not event.payment.reference


async def sort_out(
    conn: AsyncConnection, claimed: list[ClaimedConfirmation], applier: PaymentApplier, now: datetime
) -> tuple[list[tuple[ClaimedConfirmation, ToCredit]], list[ClaimedConfirmation]]:
    """Which confirmations are credited set-based (their payment rows locked, in id order), which one by one.
    Our Checkouts' payments are found by our reference; payments made at a provider's side by the provider's
    id, registered first when this is the provider's first word about them (`_register_provider_payments`)."""
    references = sorted({r for c in claimed if (r := c.event.payment.reference)})
    by_reference: dict[str, Row[Any]] = {}
    if references:
        by_reference = {row.reference: row for row in await _payments_to_credit(conn, payments.c.reference, references)}
    at_provider = [c for c in claimed if _at_the_provider(c.event)]
    by_key: dict[tuple[str, str], Row[Any]] = {}
    if at_provider:
        await _register_provider_payments(conn, [c.event for c in at_provider], applier, now)
        keys = {(c.event.payment.provider, c.event.payment.provider_ref) for c in at_provider}
        by_key = {(row.provider, row.provider_ref): row for row in await _payments_to_credit(conn, _PROVIDER_KEY, keys)}
    found = [*by_reference.values(), *by_key.values()]
    subscriber_codes, meter_codes = await applier.codes(
        conn, {r.subscriber_id for r in found}, {r.meter_id for r in found if r.meter_id is not None}
    )
    fast: list[tuple[ClaimedConfirmation, ToCredit]] = []
    slow: list[ClaimedConfirmation] = []
    taken: set[int] = set()
    for item in claimed:
        event = item.event
        if _at_the_provider(event):
            row = by_key.get((event.payment.provider, event.payment.provider_ref))
        else:
            row = by_reference.get(event.payment.reference or "")
        if row is None or row.id in taken:
            slow.append(item)
            continue
        payment = ToCredit(row, subscriber_codes[row.subscriber_id], meter_codes.get(row.meter_id))
        if not _plain_credit(payment, event):
            slow.append(item)
            continue
        taken.add(row.id)
        fast.append((item, payment))
    return fast, slow


async def _register_provider_payments(
    conn: AsyncConnection, events: Sequence[PaymentSucceeded], applier: PaymentApplier, now: datetime
) -> None:
    """A provider's first word about payments made at its side, for many at once: the payment rows of those
    whose first confirmation in `events` names a known account, in its currency, a positive amount and a meter
    of that account, as `one_event` registers a single one (one question to billing for the accounts, one
    insert; rows known already are left as they are). The others are left to the one-by-one path, which
    records why not."""
    first: dict[tuple[str, str], PaymentSucceeded] = {}
    for event in events:
        first.setdefault((event.payment.provider, event.payment.provider_ref), event)
    codes = {e.subscriber_code for e in first.values() if e.subscriber_code}
    if not codes:
        return
    payers = await applier.payers(conn, codes)
    rows = []
    for (provider, provider_ref), event in sorted(first.items()):  # one order: concurrent batches never deadlock
        payer = payers.get(event.subscriber_code or "")
        if payer is None or event.amount_minor <= 0:
            continue
        if payer.currency is not None and payer.currency != event.currency:
            continue
        meter_ids = meters_paid_for(event, payer)
        if meter_ids is None:
            continue
        rows.append(
            {
                "provider": provider,
                "provider_ref": provider_ref,
                "subscriber_id": payer.subscriber_id,
                "meter_id": meter_ids[0] if len(meter_ids) == 1 else None,
                "amount_minor": event.amount_minor,
                "currency": event.currency,
                "status": "pending",
                "created_at": now,
                "updated_at": now,
            }
        )
    await insert_rows(conn, payments, rows, OnConflict(("provider", "provider_ref")))


def _plain_credit(payment: ToCredit, event: PaymentSucceeded) -> bool:
    """Not credited yet, nothing to take back, and exactly what was asked."""
    row = payment.row
    return (
        row.paid_at is None
        and row.refunded_minor == 0
        and not row.has_disputes
        and payment.meter_code is not None
        and event.amount_minor == row.amount_minor
        and event.currency == row.currency
        and (event.subscriber_code is None or event.subscriber_code == payment.subscriber_code)
        and (event.meter_code is None or event.meter_code == payment.meter_code)
    )


async def credit_many(
    conn: AsyncConnection,
    fast: list[tuple[ClaimedConfirmation, ToCredit]],
    applier: PaymentApplier,
    now: datetime,
    results: list[EventResult | PaymentNotYetKnown | None],
) -> dict[int, EventResult]:
    """Credit the plain confirmations through the applier and mark their payments credited, recording their
    events' outcomes with them; returns the results of their events (by event row id) that are still to be
    recorded (the conflicts)."""
    requests = [
        credit_request(payment.row, payment.subscriber_code, payment.meter_code, item.event.event_id)
        for item, payment in fast
    ]
    answers = await applier.credit_many(conn, requests, now)
    outcomes: dict[int, EventResult] = {}
    paid: list[dict[str, Any]] = []
    for (item, to_credit), answer in zip(fast, answers, strict=True):
        payment = to_credit.row
        if isinstance(answer, PaymentRefused):
            await link_ids(conn, payment, item.event.payment, now)
            conflict = Conflict(f"refused by the ledger: {answer.reason}", event_facts(item.event))
            result = await record_conflict(conn, item.event, payment, conflict, now)
        else:
            loc = item.event.payment
            paid.append(
                {
                    "id": payment.id,
                    "credit_command_id": answer.command_id,
                    "payment_intent_id": payment.payment_intent_id or loc.payment_intent_id,
                    "checkout_session_id": payment.checkout_session_id or loc.checkout_session_id,
                    "charge_id": payment.charge_id or loc.charge_id,
                }
            )
            result = EventResult(Outcome.APPLIED, payment.id, f"credited {payment.amount_minor}", answer.command_id)
        results[item.index] = outcomes[item.row_id] = result
    # the payments marked credited and their events' outcomes recorded together (one statement on PostgreSQL)
    applied = {row_id: r for row_id, r in outcomes.items() if r.outcome is Outcome.APPLIED}
    await update_rows_together(conn, [(_MARK_CREDITED, paid), (RECORD_OUTCOMES, outcome_rows(applied))], now=now)
    return {row_id: r for row_id, r in outcomes.items() if row_id not in applied}


_NOW = bindparam("now", type_=payments.c.paid_at.type)
_MARK_CREDITED = RowUpdate(
    payments,
    dict.fromkeys(("id", "credit_command_id", "payment_intent_id", "checkout_session_id", "charge_id")),
    lambda _t, v: {
        "status": "paid",
        "paid_at": _NOW,
        "updated_at": _NOW,
        "failure_reason": None,
        "credit_command_id": v.c.credit_command_id,
        "payment_intent_id": v.c.payment_intent_id,
        "checkout_session_id": v.c.checkout_session_id,
        "charge_id": v.c.charge_id,
    },
    prefix="p",
)
