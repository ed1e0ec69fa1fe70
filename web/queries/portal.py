"""The portal's reads: always of one subscriber, the signed-in one (read-only)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.commands import commands, readings
from store.schema.ledger import invoices, topups
from store.schema.payments import payments
from store.schema.registry import meters
from web.queries import registry


async def overview(conn: AsyncConnection, subscriber_id: int, now: datetime) -> dict[str, Any]:
    summary = await registry.subscriber_summary(conn, subscriber_id) or {}
    payment_rows = await conn.execute(
        select(payments).where(payments.c.subscriber_id == subscriber_id).order_by(payments.c.id.desc()).limit(20)
    )
    return {
        **summary,
        "payments": [dict(r) for r in payment_rows.mappings()],
        "top_ups": await top_ups(conn, subscriber_id),
        "invoices": await invoices_of(conn, subscriber_id),
        "daily": await consumption(conn, subscriber_id, "daily", now),
        "monthly": await consumption(conn, subscriber_id, "monthly", now),
    }


async def consumption(conn: AsyncConnection, subscriber_id: int, period: str, now: datetime) -> list[dict[str, Any]]:
    """Energy per day (last 30 days) or per month (last 12), in Wh, from the import register's readings:
    the difference between the last reading of a period and the last reading before it."""
    days = 31 if period == "daily" else 400
    since = now - timedelta(days=days)
    rows = await conn.execute(
        select(readings.c.read_at, readings.c.value)
        .join(meters, meters.c.id == readings.c.meter_id)
        .where(
            meters.c.subscriber_id == subscriber_id,
            readings.c.register == "import_wh",
            readings.c.read_at >= since,
        )
        .order_by(readings.c.meter_id, readings.c.read_at)
    )
    last_of: dict[str, int] = {}
    order: list[str] = []
    for read_at, value in rows:
        key = read_at.strftime("%Y-%m-%d" if period == "daily" else "%Y-%m")
        if key not in last_of:
            order.append(key)
        last_of[key] = max(int(value), last_of.get(key, 0))
    points = []
    previous: int | None = None
    for key in order:
        value = last_of[key]
        if previous is not None:
            points.append({"period": key, "energy_wh": max(0, value - previous)})
        previous = value
    return points


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
    query = select(invoices.c.number, invoices.c.pdf).where(invoices.c.id == invoice_id)
    if subscriber_id is not None:
        query = query.where(invoices.c.subscriber_id == subscriber_id)
    row = (await conn.execute(query)).first()
    return None if row is None else (row.number, bytes(row.pdf))
