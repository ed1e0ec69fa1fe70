"""The meters in stock (received with their key file, not installed yet), for the console's meters page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.registry import meters

STOCK_PAGE = 200


async def stock_meters(conn: AsyncConnection, *, limit: int = STOCK_PAGE) -> tuple[list[dict[str, Any]], int]:
    """(the newest meters in stock, how many there are)."""
    m = meters.c
    columns = (m.id, m.code, m.msisdn, m.profile, m.firmware, m.kind, m.key_id, m.installed_at.label("received_at"))
    rows = await conn.execute(select(*columns).where(m.status == "stock").order_by(m.id.desc()).limit(limit))
    total = await conn.scalar(select(func.count()).select_from(meters).where(m.status == "stock"))
    return [dict(r._mapping) for r in rows], int(total or 0)
