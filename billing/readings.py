"""Consumption from stored meter readings: hourly, daily and monthly per meter, subscriber, building and
transformer (for charts and reports), and a meter's total over a period (invoices, losses).

Readings are cumulative registers (`readings`, written by the gateway from meter reports); the bucket
arithmetic is `billing.rules.consumption`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from itertools import pairwise

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.rules.consumption import Granularity, add_buckets, consumption_buckets
from store.schema import commands as C  # noqa: N812
from store.schema import registry as R  # noqa: N812

IMPORT = "import_wh"


async def _series(
    conn: AsyncConnection, meter_id: int, start: datetime, end: datetime, register: str
) -> list[tuple[datetime, int]]:
    """The meter's readings in [start, end), with the last one before `start` as the baseline."""
    r = C.readings.c
    baseline = (
        await conn.execute(
            select(r.read_at, r.value)
            .where(r.meter_id == meter_id, r.register == register, r.read_at < start)
            .order_by(r.read_at.desc())
            .limit(1)
        )
    ).first()
    rows = await conn.execute(
        select(r.read_at, r.value)
        .where(r.meter_id == meter_id, r.register == register, r.read_at >= start, r.read_at < end)
        .order_by(r.read_at)
    )
    series = [(row.read_at, int(row.value)) for row in rows]
    return ([(baseline.read_at, int(baseline.value))] if baseline else []) + series


async def meter_consumption(
    conn: AsyncConnection,
    meter_id: int,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    tz: tzinfo,
    *,
    register: str = IMPORT,
) -> dict[datetime, int]:
    return consumption_buckets(await _series(conn, meter_id, start, end, register), granularity, tz)


async def meters_consumption(
    conn: AsyncConnection,
    meter_ids: Sequence[int],
    start: datetime,
    end: datetime,
    granularity: Granularity,
    tz: tzinfo,
    *,
    register: str = IMPORT,
) -> dict[datetime, int]:
    series = [await meter_consumption(conn, m, start, end, granularity, tz, register=register) for m in meter_ids]
    return add_buckets(*series)


async def meter_total_wh(
    conn: AsyncConnection, meter_id: int, start: datetime, end: datetime, *, register: str = IMPORT
) -> int:
    series = await _series(conn, meter_id, start, end, register)
    total = 0
    for (_, a), (_, b) in pairwise(series):
        if b > a:
            total += b - a
    return total


async def scope_meters(
    conn: AsyncConnection,
    *,
    subscriber_id: int | None = None,
    building: tuple[str, str, str, str] | None = None,
    transformer_id: int | None = None,
) -> list[int]:
    """Subscriber meters (archived ones too: their readings count for their time) of a subscriber, a
    building or a transformer; balance meters never count as consumption."""
    m, s = R.meters.c, R.subscribers.c
    stmt = select(m.id).where(m.is_balance_meter == 0)
    if subscriber_id is not None:
        stmt = stmt.where(m.subscriber_id == subscriber_id)
    if transformer_id is not None:
        stmt = stmt.where(m.transformer_id == transformer_id)
    if building is not None:
        stmt = stmt.join(R.subscribers, s.id == m.subscriber_id).where(
            and_(
                s.region_code == building[0],
                s.settlement_code == building[1],
                s.street_code == building[2],
                s.building == building[3],
            )
        )
    return list((await conn.scalars(stmt.order_by(m.id))).all())


async def consumption(
    conn: AsyncConnection,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    tz: tzinfo,
    *,
    subscriber_id: int | None = None,
    building: tuple[str, str, str, str] | None = None,
    transformer_id: int | None = None,
) -> dict[datetime, int]:
    """{bucket start (local): Wh} for a subscriber, a building or a transformer's subscribers."""
    meters = await scope_meters(conn, subscriber_id=subscriber_id, building=building, transformer_id=transformer_id)
    return await meters_consumption(conn, meters, start, end, granularity, tz)
