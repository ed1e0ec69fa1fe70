"""Payment conflicts as billing reads them to let a person resolve one (billing/conflicts.py): a conflict, the
payment it holds, and a page of conflicts newest first with what their payments asked. Billing reads no table
of payments'; the writes it asks are in `payments.recorded`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.payments import payment_conflicts, payments


async def conflict_row(conn: AsyncConnection, conflict_id: int) -> Row[Any] | None:
    return (await conn.execute(select(payment_conflicts).where(payment_conflicts.c.id == conflict_id))).first()


async def payment_row(conn: AsyncConnection, payment_id: int) -> Row[Any] | None:
    return (await conn.execute(select(payments).where(payments.c.id == payment_id))).first()


async def conflict_rows(
    conn: AsyncConnection, *, open_only: bool, limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    """A page of conflicts newest first, each with its payment's `subscriber_id` and `asked_minor` (None when
    it holds no payment of ours), and how many there are in all."""
    c = payment_conflicts.c
    query = select(
        payment_conflicts, payments.c.subscriber_id, payments.c.amount_minor.label("asked_minor")
    ).select_from(payment_conflicts.outerjoin(payments, payments.c.id == c.payment_id))
    if open_only:
        query = query.where(c.resolved_at.is_(None))
    total = int(await conn.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = (await conn.execute(query.order_by(c.id.desc()).limit(limit).offset(offset))).all()
    return list(rows), total
