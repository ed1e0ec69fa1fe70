"""The daily consumption pre-aggregate: `consumption_daily` (meter, register, local day) kept up to date by
a watermarked job, and consumption read from it by group of the network (building, street, settlement,
region, transformer) for the dashboard, the API and the export.

The job takes the readings stored since its watermark (readings.id) in batches; for each meter and
cumulative register they touch it recomputes the days from the reading before the earliest new one up to
the register's last reading (`billing.rules.consumption.daily_quantities`), in the utility's time zone,
and moves the watermark in the same transaction; the readings meters sent in those series are validated first
(`meter_readings.validate_reported`: gap, backwards, spike). Then, for active subscriber meters that reported nothing
since a day, the days up to yesterday are estimated from the subscriber's normative consumption and
marked `estimated`; a reading that comes later replaces the estimates it covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.meter_readings import Group, validate_reported
from billing.readings import groups_consumption
from billing.rules.consumption import DayQuantity, Granularity, daily_quantities, estimate_days
from billing.rules.readings import INSTANT_REGISTERS
from meter_protocol.registers import MAIN_REGISTERS, kinds_reporting
from store.schema import commands as C  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.schema.consumption import consumption_daily, job_watermarks
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress

JOB = "consumption_daily"
BATCH = 5000
SETTLE = timedelta(seconds=30)  # readings younger than this wait for the next run (a transaction may still commit
# a lower id)
ESTIMATE_DAYS = 31  # how far back a silent meter's days are estimated

_r, _d = C.readings.c, consumption_daily.c


async def _watermark(conn: AsyncConnection, now: datetime) -> int:
    w = job_watermarks.c
    position = await conn.scalar(select(w.position).where(w.name == JOB))
    if position is None:
        await conn.execute(insert(job_watermarks).values(name=JOB, position=0, updated_at=now))
        return 0
    return int(position)


async def _recompute(
    conn: AsyncConnection, meter_id: int, register: str, since: datetime, tz: tzinfo, now: datetime
) -> int:
    """Rewrite the meter's days of `register` from the local day of the reading before `since` on."""
    baseline = await conn.scalar(
        select(func.max(_r.read_at)).where(_r.meter_id == meter_id, _r.register == register, _r.read_at < since)
    )
    start = baseline or since
    first_day = start.astimezone(tz).date()
    rows = await conn.execute(
        select(_r.read_at, _r.value)
        .where(_r.meter_id == meter_id, _r.register == register, _r.read_at >= start)
        .order_by(_r.read_at)
    )
    days = daily_quantities([(row.read_at, int(row.value)) for row in rows], tz)
    await conn.execute(
        delete(consumption_daily).where(_d.meter_id == meter_id, _d.register == register, _d.day >= first_day)
    )
    await _write(conn, meter_id, register, {d: q for d, q in days.items() if d >= first_day}, now)
    return len(days)


async def _write(
    conn: AsyncConnection, meter_id: int, register: str, days: dict[date, DayQuantity], now: datetime
) -> None:
    if days:
        await conn.execute(
            insert(consumption_daily),
            [
                {
                    "meter_id": meter_id,
                    "register": register,
                    "day": day,
                    "quantity": q.quantity,
                    "readings": q.readings,
                    "estimated": int(q.estimated),
                    "updated_at": now,
                }
                for day, q in days.items()
            ],
        )


@dataclass
class AggregationReport:
    readings: int = 0
    series: int = 0  # (meter, register) pairs recomputed
    estimated_days: int = 0
    flagged: dict[str, int] = field(default_factory=dict)  # meter-sent readings marked gap, backwards, spike


async def aggregate_consumption(
    uow: UnitOfWork, tz: tzinfo, now: datetime, progress: JobProgress = UNWATCHED, *, batch: int = BATCH
) -> AggregationReport:
    report = AggregationReport()
    while not progress.stop_requested:
        async with uow.begin() as conn:
            position = await _watermark(conn, now)
            rows = (
                await conn.execute(
                    select(_r.id, _r.meter_id, _r.register, _r.read_at)
                    .where(_r.id > position, _r.received_at <= now - SETTLE)
                    .order_by(_r.id)
                    .limit(batch)
                )
            ).all()
            if not rows:
                break
            earliest: dict[tuple[int, str], datetime] = {}
            for row in rows:
                if row.register in INSTANT_REGISTERS:
                    continue
                key = (int(row.meter_id), str(row.register))
                earliest[key] = min(earliest.get(key, row.read_at), row.read_at)
            for (meter_id, register), since in sorted(earliest.items()):
                for status, n in (await validate_reported(conn, meter_id, register, since)).items():
                    report.flagged[status] = report.flagged.get(status, 0) + n
                await _recompute(conn, meter_id, register, since, tz, now)
            w = job_watermarks.c
            await conn.execute(
                update(job_watermarks).where(w.name == JOB).values(position=int(rows[-1].id), updated_at=now)
            )
        report.readings += len(rows)
        report.series += len(earliest)
        progress.advanced(len(rows))
        if len(rows) < batch:
            break
    if not progress.stop_requested:
        async with uow.begin() as conn:
            for register in MAIN_REGISTERS:  # each meter in the register its kind reports
                report.estimated_days += await _estimate_silent_meters(conn, tz, now, register)
    return report


async def _estimate_silent_meters(conn: AsyncConnection, tz: tzinfo, now: datetime, register: str) -> int:
    """Estimated days of `register`, up to yesterday, for the active subscriber meters whose kind reports it
    and whose last measured day is older (at most ESTIMATE_DAYS back); days already estimated stay as they
    are."""
    m, s = R.meters.c, R.subscribers.c
    yesterday = now.astimezone(tz).date() - timedelta(days=1)
    floor = yesterday - timedelta(days=ESTIMATE_DAYS - 1)
    measured = (
        select(_d.meter_id, func.max(_d.day).label("last_day"))
        .where(_d.register == register)
        .group_by(_d.meter_id)
        .subquery()
    )
    rows = await conn.execute(
        select(m.id, m.installed_at, s.normative_wh_month, measured.c.last_day)
        .join(R.subscribers, s.id == m.subscriber_id)
        .outerjoin(measured, measured.c.meter_id == m.id)
        .where(m.status == "active", m.is_balance_meter == 0, s.normative_wh_month.is_not(None))
        .where(m.kind.in_(kinds_reporting(register)))
        .where((measured.c.last_day.is_(None)) | (measured.c.last_day < yesterday))
    )
    written = 0
    for row in rows:
        first = max(floor, row.installed_at.astimezone(tz).date())
        if row.last_day is not None:
            first = max(first, row.last_day + timedelta(days=1))
        days = estimate_days(first, yesterday, row.normative_wh_month)
        if days:
            await _write(conn, int(row.id), register, days, now)
            written += len(days)
    return written


# --- reading it ---------------------------------------------------------------------------------------

LEVELS = ("region", "settlement", "street", "building", "transformer", "phase", "meter")
HOURLY_MAX_DAYS = 31  # hourly consumption is read from the readings themselves: a month at most


def _level_columns(level: str) -> list[Any]:
    m, s = R.meters.c, R.subscribers.c
    address = [s.region_code, s.settlement_code, s.street_code, s.building]
    by = {
        "region": address[:1],
        "settlement": address[:2],
        "street": address[:3],
        "building": address,
        "transformer": [m.transformer_id],
        "phase": [m.phases],  # single- and three-phase meters
        "meter": [m.id],
    }
    return by[level]


def _key(level: str, values: Sequence[Any]) -> str:
    if level in ("transformer", "phase", "meter"):
        return "" if values[0] is None else str(values[0])
    return "-".join(str(v) for v in values)


def _of_kinds(kinds: Sequence[str]) -> list[Any]:
    return [R.meters.c.kind.in_(list(kinds))] if kinds else []


async def _members(
    conn: AsyncConnection,
    level: str,
    group: Group,
    first: date,
    last: date,
    register: str,
    kinds: Sequence[str],
    monthly: bool,
) -> list[dict[str, Any]]:
    """Every member of `level` within `group`, ordered by key, its periods a dict by period."""
    m = R.meters.c
    columns = _level_columns(level)
    stmt = (
        select(*columns, _d.day, func.sum(_d.quantity).label("quantity"))
        .add_columns(func.sum(_d.quantity * _d.estimated).label("estimated"))
        .select_from(consumption_daily)
        .join(R.meters, m.id == _d.meter_id)
        .outerjoin(R.subscribers, R.subscribers.c.id == m.subscriber_id)
        .where(_d.register == register, _d.day >= first, _d.day <= last, m.is_balance_meter == 0, *group.where())
        .where(*_of_kinds(kinds))
        .group_by(*columns, _d.day)
    )
    members: dict[str, dict[str, Any]] = {}
    for row in await conn.execute(stmt):
        values = list(row[: len(columns)])
        key = _key(level, values)
        member = members.setdefault(key, {"key": key, "periods": {}, "quantity": 0, "estimated": 0})
        period = row.day.isoformat()[:7] if monthly else row.day.isoformat()
        slot = member["periods"].setdefault(period, {"period": period, "quantity": 0, "estimated": 0})
        slot["quantity"] += int(row.quantity)
        slot["estimated"] += int(row.estimated)
        member["quantity"] += int(row.quantity)
        member["estimated"] += int(row.estimated)
    return sorted(members.values(), key=lambda x: x["key"])


def _page(ordered: list[dict[str, Any]], limit: int, offset: int) -> list[dict[str, Any]]:
    page = ordered[offset : offset + limit]
    for member in page:
        member["periods"] = sorted(member["periods"].values(), key=lambda p: p["period"])
    return page


async def consumption_by(
    conn: AsyncConnection,
    level: str,
    group: Group,
    first: date,
    last: date,
    *,
    register: str = "import_wh",
    kinds: Sequence[str] = (),
    monthly: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Per member of `level` (e.g. each street) within `group`: the days (or months) [first, last] with their
    quantity and how much of it is estimated, of the meters of `kinds` (empty: every kind). Balance meters
    never count. Members ordered by key."""
    ordered = await _members(conn, level, group, first, last, register, kinds, monthly)
    return _page(ordered, limit, offset), len(ordered)


async def consumption_with_totals(
    conn: AsyncConnection,
    level: str,
    group: Group,
    first: date,
    last: date,
    *,
    register: str = "import_wh",
    kinds: Sequence[str] = (),
    monthly: bool = False,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`consumption_by`'s first page of members and, from the same one query, the group's total per day (or
    month) with its estimated part: every member's periods added (each meter is in exactly one member)."""
    ordered = await _members(conn, level, group, first, last, register, kinds, monthly)
    totals: dict[str, dict[str, Any]] = {}
    for member in ordered:
        for period, slot in member["periods"].items():
            total = totals.setdefault(period, {"period": period, "quantity": 0, "estimated": 0})
            total["quantity"] += slot["quantity"]
            total["estimated"] += slot["estimated"]
    return _page(ordered, limit, 0), [totals[p] for p in sorted(totals)]


async def consumption_by_hour(
    conn: AsyncConnection,
    level: str,
    group: Group,
    first: date,
    last: date,
    tz: tzinfo,
    *,
    register: str = "import_wh",
    kinds: Sequence[str] = (),
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """As `consumption_by`, per local hour of the days [first, last] (in `tz`), from the readings themselves
    (the daily pre-aggregate has no hours): each member's meters' register increases bucketed by local hour.
    Members ordered by key; periods are local ISO hours ("2026-03-02T14:00+02:00")."""
    m = R.meters.c
    columns = _level_columns(level)
    rows = await conn.execute(
        select(m.id, *columns)
        .outerjoin(R.subscribers, R.subscribers.c.id == m.subscriber_id)
        .where(m.is_balance_meter == 0, *group.where(), *_of_kinds(kinds))
    )
    members: dict[str, list[int]] = {}
    for row in rows:
        members.setdefault(_key(level, list(row[1:])), []).append(int(row.id))
    keys = sorted(members)
    page = keys[offset : offset + limit]
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tz).astimezone(UTC)
    hourly = await groups_consumption(
        conn, {k: members[k] for k in page}, start, end, Granularity.HOUR, tz, register=register
    )
    out = []
    for key in page:
        periods: list[dict[str, Any]] = [
            {"period": at.isoformat(timespec="minutes"), "quantity": q, "estimated": 0}
            for at, q in sorted(hourly[key].items())
            if start <= at < end
        ]
        out.append({"key": key, "periods": periods, "quantity": sum(q for q in hourly[key].values()), "estimated": 0})
    return out, len(keys)
