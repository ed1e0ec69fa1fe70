"""Consumption from stored meter readings: hourly, daily and monthly per meter, subscriber, building and
transformer (for charts and reports), and a meter's total over a period (invoices, losses).

Readings are cumulative registers (`readings`, written by the gateway from meter reports); the bucket
arithmetic is `billing.rules.consumption`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, tzinfo
from itertools import pairwise
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.rules.consumption import Granularity, add_buckets, consumption_buckets
from store.schema import commands as C  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.sql import among_param, per_dialect

IMPORT = "import_wh"
K = TypeVar("K")
_CHUNK = 1000


@per_dialect
def _baselines(postgres: bool) -> Any:
    """Each meter's last reading of a register before `start`."""
    r = C.readings.c
    last = (
        select(r.meter_id, func.max(r.read_at).label("read_at"))
        .where(
            among_param(r.meter_id, "ids", postgres),
            r.register == bindparam("register"),
            r.read_at < bindparam("start"),
        )
        .group_by(r.meter_id)
        .subquery()
    )
    return select(r.meter_id, r.read_at, r.value).join(
        last, and_(r.meter_id == last.c.meter_id, r.read_at == last.c.read_at, r.register == bindparam("register"))
    )


@per_dialect
def _within(postgres: bool) -> Any:
    r = C.readings.c
    return (
        select(r.meter_id, r.read_at, r.value)
        .where(
            among_param(r.meter_id, "ids", postgres),
            r.register == bindparam("register"),
            r.read_at >= bindparam("start"),
            r.read_at < bindparam("end"),
        )
        .order_by(r.meter_id, r.read_at)
    )


async def _series_many(
    conn: AsyncConnection, meter_ids: Collection[int], start: datetime, end: datetime, register: str = IMPORT
) -> dict[int, list[tuple[datetime, int]]]:
    """Each meter's readings of `register` in [start, end), in time order, after its last one before `start`
    (the baseline): two statements a thousand meters."""
    out: dict[int, list[tuple[datetime, int]]] = {m: [] for m in meter_ids}
    ids = sorted(out)
    for first in range(0, len(ids), _CHUNK):
        params = {"ids": ids[first : first + _CHUNK], "register": register, "start": start, "end": end}
        for row in await conn.execute(_baselines(conn), params):
            out[row.meter_id].append((row.read_at, int(row.value)))
        for row in await conn.execute(_within(conn), params):
            out[row.meter_id].append((row.read_at, int(row.value)))
    return out


async def _series(
    conn: AsyncConnection, meter_id: int, start: datetime, end: datetime, register: str
) -> list[tuple[datetime, int]]:
    return (await _series_many(conn, [meter_id], start, end, register))[meter_id]


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


async def groups_consumption(
    conn: AsyncConnection,
    groups: Mapping[K, Sequence[int]],
    start: datetime,
    end: datetime,
    granularity: Granularity,
    tz: tzinfo,
    *,
    register: str = IMPORT,
) -> dict[K, dict[datetime, int]]:
    """{group: {bucket start: Wh}} for groups of meters (e.g. each subscriber's), read together."""
    series = await _series_many(conn, {m for meters in groups.values() for m in meters}, start, end, register)
    return {
        key: add_buckets(*(consumption_buckets(series[m], granularity, tz) for m in meters))
        for key, meters in groups.items()
    }


async def _meters_consumption(
    conn: AsyncConnection,
    meter_ids: Sequence[int],
    start: datetime,
    end: datetime,
    granularity: Granularity,
    tz: tzinfo,
    *,
    register: str = IMPORT,
) -> dict[datetime, int]:
    grouped = await groups_consumption(conn, {0: meter_ids}, start, end, granularity, tz, register=register)
    return grouped[0]


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


async def subscribers_meters(conn: AsyncConnection, subscriber_ids: Collection[int]) -> dict[int, list[int]]:
    """`scope_meters` of many subscribers: {subscriber id: its meter ids}."""
    out: dict[int, list[int]] = {s: [] for s in subscriber_ids}
    ids = sorted(out)
    for first in range(0, len(ids), _CHUNK):
        rows = await conn.execute(_subscribers_meters(conn), {"ids": ids[first : first + _CHUNK]})
        for row in rows:
            out[row.subscriber_id].append(row.id)
    return out


@per_dialect
def _subscribers_meters(postgres: bool) -> Any:
    m = R.meters.c
    return (
        select(m.id, m.subscriber_id)
        .where(m.is_balance_meter == 0, among_param(m.subscriber_id, "ids", postgres))
        .order_by(m.id)
    )


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
    return await _meters_consumption(conn, meters, start, end, granularity, tz)
