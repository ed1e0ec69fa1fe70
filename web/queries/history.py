"""A subscriber's top-ups (with their credit command's state) and invoices: read by the portal and by the
console's subscriber page alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import invoices as invoices_service
from store.schema.commands import commands
from store.schema.ledger import invoices, topups


async def top_ups(conn: AsyncConnection, subscriber_id: int, *, limit: int = 20) -> list[dict[str, Any]]:
    """The subscriber's top-ups with the state of the credit command (0:0 … 1:1)."""
    rows = await conn.execute(
        select(
            topups.c.id,
            topups.c.created_at,
            topups.c.amount_minor,
            topups.c.vend_minor,
            topups.c.recovered_minor,
            topups.c.currency,
            topups.c.provider,
            topups.c.state,
            topups.c.receipt_number,
            topups.c.meter_id,
            topups.c.delivered_by,
            topups.c.sts_token,
            commands.c.state.label("command_state"),
        )
        .outerjoin(commands, commands.c.id == topups.c.command_id)
        .where(topups.c.subscriber_id == subscriber_id)
        .order_by(topups.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in rows.mappings()]


async def top_up(conn: AsyncConnection, subscriber_id: int, topup_id: int) -> dict[str, Any] | None:
    """One of the subscriber's own top-ups; None for anyone else's."""
    for row in await top_ups(conn, subscriber_id, limit=1000):
        if row["id"] == topup_id:
            return row
    return None


async def invoices_of(conn: AsyncConnection, subscriber_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(
            invoices.c.id,
            invoices.c.number,
            invoices.c.period_start,
            invoices.c.period_end,
            invoices.c.issued_at,
            invoices.c.content,
        )
        .where(invoices.c.subscriber_id == subscriber_id)
        .order_by(invoices.c.period_start.desc())
    )
    return [dict(r) for r in rows.mappings()]


async def invoice_pdf(conn: AsyncConnection, subscriber_id: int | None, invoice_id: int) -> tuple[str, bytes] | None:
    """(number, PDF) of an invoice — only of `subscriber_id`'s own when given (the portal)."""
    return await invoices_service.invoice_document(conn, invoice_id, subscriber_id=subscriber_id)
