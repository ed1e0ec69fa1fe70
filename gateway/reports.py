"""What meters reported, as other parts ask it without reading the gateway's tables: the newest balance report
among some meters (the balance an SMS keyword answers with)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.commands import balance_reports


async def latest_balance(conn: AsyncConnection, meter_ids: Collection[int]) -> tuple[int, datetime] | None:
    """(credit in minor units, when it was reported) of the newest balance report of any of `meter_ids`."""
    if not meter_ids:
        return None
    b = balance_reports.c
    row = (
        await conn.execute(
            select(b.credit_minor, b.reported_at)
            .where(b.meter_id.in_(sorted(meter_ids)))
            .order_by(b.reported_at.desc(), b.id.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else (int(row.credit_minor), row.reported_at)
