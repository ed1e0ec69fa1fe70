"""The set-based path for payment confirmations of the common shape: a payment found by our reference,
not credited yet, matching what was asked, with nothing to take back. For a batch: the event ids recorded in
one statement, the payment rows locked in id order in one, billing's credit for all of them through the
applier's `credit_many`, and the payments marked credited (with their events' outcomes, on PostgreSQL) in one.
Every other confirmation is sorted out to the one-by-one path (`payments.one_event`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Row, String, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import PaymentNotYetKnown, PaymentRefused
from payments.events import (
    PaymentSucceeded,
    ProviderEvent,
)
from payments.one_event import credit_request
from payments.outcomes import Conflict, EventResult, Outcome, event_facts, record_conflict
from payments.ports import PaymentApplier
from payments.rows import link_ids
from store.schema.payments import payment_disputes, payments, webhook_events
from store.schema.registry import meters, subscribers
from store.sql import among_param, insert_ignoring_duplicates

log = logging.getLogger("smsmeter.payments")


@dataclass(slots=True)
class ClaimedConfirmation:
    index: int
    event: PaymentSucceeded
    row_id: int


@functools.cache
def _claim_events(dialect: str) -> Any:
    """Record event ids, skipping those recorded already; returns the rows it wrote."""
    w = webhook_events.c
    return insert_ignoring_duplicates(webhook_events, ["provider", "event_id"], dialect).returning(
        w.id, w.provider, w.event_id
    )


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
    inserted = await conn.execute(_claim_events(conn.dialect.name), rows)
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


async def sort_out(
    conn: AsyncConnection, claimed: list[ClaimedConfirmation]
) -> tuple[list[tuple[ClaimedConfirmation, Row[Any]]], list[ClaimedConfirmation]]:
    """Which confirmations are credited set-based (their payment rows locked, in id order), which one by one."""
    references = sorted({r for c in claimed if (r := c.event.payment.reference)})
    by_reference: dict[str, Row[Any]] = {}
    if references:
        rows = await conn.execute(_payments_to_credit(conn.dialect.name == "postgresql"), {"refs": references})
        by_reference = {row.reference: row for row in rows}
    fast: list[tuple[ClaimedConfirmation, Row[Any]]] = []
    slow: list[ClaimedConfirmation] = []
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


async def credit_many(
    conn: AsyncConnection,
    fast: list[tuple[ClaimedConfirmation, Row[Any]]],
    applier: PaymentApplier,
    now: datetime,
    results: list[EventResult | PaymentNotYetKnown | None],
) -> dict[int, EventResult]:
    """Credit the plain confirmations through the applier and mark their payments credited; returns the
    results of their events (by event row id) that are still to be recorded (on PostgreSQL those credited
    are recorded here, with the payments, in one statement)."""
    requests = [
        credit_request(payment, payment.subscriber_code, payment.meter_code, item.event.event_id)
        for item, payment in fast
    ]
    answers = await applier.credit_many(conn, requests, now)
    outcomes: dict[int, EventResult] = {}
    paid: list[dict[str, Any]] = []
    for (item, payment), answer in zip(fast, answers, strict=True):
        if isinstance(answer, PaymentRefused):
            await link_ids(conn, payment, item.event.payment, now)
            conflict = Conflict(f"refused by the ledger: {answer.reason}", event_facts(item.event))
            result = await record_conflict(conn, item.event, payment, conflict, now)
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
