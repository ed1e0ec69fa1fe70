"""Bringing what the ledger has taken back from a payment in line with the provider's refunds and disputes.

What must be taken back is min(amount, refunded total + open or lost disputes); the difference from what
was already taken back (`reversed_minor`) is reversed, or, when a dispute was won, reinstated. Order does
not matter: every event converges on the provider's state.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import PaymentRefused
from payments.outcomes import EventResult, Outcome
from payments.ports import CreditRequest, PaymentApplier, ReversalRequest
from payments.rows import codes_of
from store.schema.payments import payment_conflicts, payment_disputes, payments

log = logging.getLogger("smsmeter.payments")


async def settle_reversals(
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
        subscriber_code, meter_code = await codes_of(conn, applier, payment)
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
                    ledger_ref=payment.provider_ref,
                    idempotency_key=f"reinstate:{payment_id}:{n}",
                    reason="reinstated",
                    **common,
                ),
                now,
            )
            outcome, what = Outcome.APPLIED, f"reinstated {-delta} (dispute won)"
    await conn.execute(update(payments).where(payments.c.id == payment_id).values(**values))
    return EventResult(outcome, payment_id, f"{detail}: {what}" if detail else what)
