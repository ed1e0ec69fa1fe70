"""The writes billing asks of payments' own tables, in billing's transaction: the payment row of a payment
taken outside the providers' webhooks (cash at the office, a bank transfer entered through the API), found
again by the provider's id so a payment entered twice is one row; and a payment conflict resolved by a person
(billing/conflicts.py), with the payment it credited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.payments import payment_conflicts, payments


async def record_paid(
    conn: AsyncConnection,
    *,
    provider: str,
    provider_ref: str,
    subscriber_id: int,
    meter_id: int | None,
    amount_minor: int,
    currency: str,
    paid_at: datetime,
    now: datetime,
) -> int:
    """The id of the payment row of (`provider`, `provider_ref`), marked paid at `paid_at`; written now if there
    is none yet. Runs in the caller's transaction (billing's credit of it)."""
    p = payments.c
    row = (await conn.execute(select(p.id).where(p.provider == provider, p.provider_ref == provider_ref))).first()
    if row is not None:
        await conn.execute(
            update(payments).where(p.id == row.id).values(status="paid", paid_at=paid_at, updated_at=now)
        )
        return int(row.id)
    pid = await conn.scalar(
        insert(payments)
        .values(
            provider=provider,
            provider_ref=provider_ref,
            subscriber_id=subscriber_id,
            meter_id=meter_id,
            amount_minor=amount_minor,
            currency=currency,
            status="paid",
            created_at=now,
            paid_at=paid_at,
            updated_at=now,
        )
        .returning(p.id)
    )
    assert pid is not None
    return int(pid)


async def mark_conflict_resolved(
    conn: AsyncConnection,
    conflict_id: int,
    now: datetime,
    *,
    resolved_by: str,
    resolution: str,
    note: str,
    topup_id: int | None,
) -> bool:
    """Mark a payment conflict resolved by a person; False when it was resolved already (nothing changed)."""
    c = payment_conflicts.c
    marked = await conn.execute(
        update(payment_conflicts)
        .where(c.id == conflict_id, c.resolved_at.is_(None))
        .values(
            resolved_at=now, resolved_by=resolved_by, resolution=resolution, resolution_note=note, topup_id=topup_id
        )
    )
    return bool(marked.rowcount)


async def record_paid_as_credited(conn: AsyncConnection, payment_id: int, amount_minor: int, now: datetime) -> None:
    """A conflict credited by a person: what the provider took is what the payment is (its later refunds and
    disputes converge on that amount), paid now unless it was paid before."""
    p = payments.c
    await conn.execute(
        update(payments).where(p.id == payment_id).values(amount_minor=amount_minor, status="paid", updated_at=now)
    )
    await conn.execute(update(payments).where(p.id == payment_id, p.paid_at.is_(None)).values(paid_at=now))
