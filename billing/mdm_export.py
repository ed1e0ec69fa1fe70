"""The daily bulk export to an MDM: every reading of one local day (the utility's time zone), as CSV and as
IEC 61968-9 MeterReadings XML (`billing.mdm`), written meter by meter so memory stays flat, to temporary
files renamed into place when complete. The scheduled job exports each finished day once (a watermark
keeps the last day exported) and catches up a few days after an outage."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.mdm import ExportReading, MeterDay, meter_reading, write_csv, xml_document
from store.schema import commands as C  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.schema.consumption import job_watermarks
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress

JOB = "mdm_export"
METERS_PER_BATCH = 200
CATCH_UP_DAYS = 7

_r, _m, _s = C.readings.c, R.meters.c, R.subscribers.c


@dataclass(frozen=True, slots=True)
class ExportFiles:
    day: date
    csv: Path
    xml: Path
    meters: int
    readings: int


def _day_window(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    return datetime.combine(day, time(0), tzinfo=tz), datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


async def _meter_ids(conn: AsyncConnection, start: datetime, end: datetime, after: int) -> list[int]:
    rows = await conn.execute(
        select(_r.meter_id)
        .where(_r.read_at >= start, _r.read_at < end, _r.meter_id > after)
        .group_by(_r.meter_id)
        .order_by(_r.meter_id)
        .limit(METERS_PER_BATCH)
    )
    return [int(r.meter_id) for r in rows]


async def _meter_days(conn: AsyncConnection, ids: list[int], start: datetime, end: datetime) -> list[MeterDay]:
    who = {
        int(row.id): (row.code, row.subscriber_code)
        for row in await conn.execute(
            select(_m.id, _m.code, _s.code.label("subscriber_code"))
            .outerjoin(R.subscribers, _s.id == _m.subscriber_id)
            .where(_m.id.in_(ids))
        )
    }
    readings: dict[int, list[ExportReading]] = {i: [] for i in ids}
    for row in await conn.execute(
        select(_r.meter_id, _r.register, _r.read_at, _r.value, _r.source, _r.status)
        .where(_r.meter_id.in_(ids), _r.read_at >= start, _r.read_at < end)
        .order_by(_r.meter_id, _r.register, _r.read_at)
    ):
        readings[int(row.meter_id)].append(
            ExportReading(row.register, row.read_at, int(row.value), row.source, row.status)
        )
    return [MeterDay(who[i][0], who[i][1], readings[i]) for i in ids]


def _write_xml_batch(doc: Any, meters: list[MeterDay], start: datetime, end: datetime) -> None:
    for meter in meters:
        doc.write(meter_reading(meter, start, end))


async def export_day(uow: UnitOfWork, day: date, tz: tzinfo, out_dir: Path) -> ExportFiles:
    """readings-YYYY-MM-DD.csv and .xml in `out_dir` for the local `day`."""
    start, end = _day_window(day, tz)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    csv_path, xml_path = out_dir / f"readings-{day.isoformat()}.csv", out_dir / f"readings-{day.isoformat()}.xml"
    csv_tmp, xml_tmp = csv_path.with_suffix(".csv.part"), xml_path.with_suffix(".xml.part")
    meters = readings = 0
    csv_file: IO[bytes] = await asyncio.to_thread(csv_tmp.open, "wb")
    xml_file: IO[bytes] = await asyncio.to_thread(xml_tmp.open, "wb")
    try:
        with xml_document(xml_file) as doc:
            await asyncio.to_thread(write_csv, csv_file, [], header=True)
            after = 0
            while True:
                async with uow.connect() as conn:
                    ids = await _meter_ids(conn, start, end, after)
                    if not ids:
                        break
                    batch = await _meter_days(conn, ids, start, end)
                after = ids[-1]
                meters += len(batch)
                readings += sum(len(m.readings) for m in batch)
                await asyncio.to_thread(write_csv, csv_file, batch, header=False)
                await asyncio.to_thread(_write_xml_batch, doc, batch, start, end)
    finally:
        await asyncio.to_thread(csv_file.close)
        await asyncio.to_thread(xml_file.close)
    await asyncio.to_thread(os.replace, csv_tmp, csv_path)
    await asyncio.to_thread(os.replace, xml_tmp, xml_path)
    return ExportFiles(day, csv_path, xml_path, meters, readings)


async def export_finished_days(
    uow: UnitOfWork, tz: tzinfo, out_dir: Path, now: datetime, progress: JobProgress = UNWATCHED
) -> list[ExportFiles]:
    """Export every finished local day after the last one exported (the first run: yesterday), at most
    CATCH_UP_DAYS back; the watermark moves after each day's files are in place."""
    yesterday = now.astimezone(tz).date() - timedelta(days=1)
    w = job_watermarks.c
    async with uow.begin() as conn:
        position = await conn.scalar(select(w.position).where(w.name == JOB))
        if position is None:
            await conn.execute(
                insert(job_watermarks).values(
                    name=JOB, position=(yesterday - timedelta(days=1)).toordinal(), updated_at=now
                )
            )
            position = (yesterday - timedelta(days=1)).toordinal()
    day = max(date.fromordinal(int(position)) + timedelta(days=1), yesterday - timedelta(days=CATCH_UP_DAYS - 1))
    done: list[ExportFiles] = []
    while day <= yesterday and not progress.stop_requested:
        files = await export_day(uow, day, tz, out_dir)
        async with uow.begin() as conn:
            await conn.execute(
                update(job_watermarks).where(w.name == JOB).values(position=day.toordinal(), updated_at=now)
            )
        progress.advanced(files.readings)
        done.append(files)
        day += timedelta(days=1)
    return done
