"""Readings ingest and the daily consumption pre-aggregate on PostgreSQL: rows/s and peak memory.

    .venv/bin/python bench/readings.py [--meters 10000] [--readings-per-meter 24] [--batch 5000]
                                       [--url postgresql://...]

Makes a throwaway database (dropped at the end) with generated meters, then stores readings through the
gateway's write path (`store.bulk.insert_rows` over arrays with ON CONFLICT DO NOTHING, as
`gateway.inbound` writes what a burst of SMS brings: a batch per transaction), four registers per report
(import, export, power, voltage) every hour; then runs the consumption job over all of them (every cumulative
series recomputed, the watermark moved batch by batch). Target (issue 19): ≥ 20,000 reading rows/s ingested.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing.consumption_daily import aggregate_consumption
from store import migrate
from store.bulk import OnConflict, insert_rows
from store.engine import create_engine
from store.schema.commands import readings
from store.uow import UnitOfWork

START = datetime(2026, 3, 1, tzinfo=UTC)
ONCE = OnConflict(("meter_id", "register", "read_at"))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def generate_meters(dsn: str, n: int) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO meters (code, msisdn, installed_at) SELECT lpad(s::text, 20, '0'),"
            " '3736' || lpad(s::text, 8, '0'), $1 FROM generate_series(1, $2) s",
            START,
            n,
        )
        await conn.execute("INSERT INTO meter_counters (meter_id) SELECT id FROM meters")  # the gateway's counters
        return [r["id"] for r in await conn.fetch("SELECT id FROM meters ORDER BY id")]
    finally:
        await conn.close()


def reports(meter_ids: list[int], per_meter: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for hour in range(per_meter):
        at = START + timedelta(hours=hour)
        for m in meter_ids:
            for register, value in (
                ("import_wh", 1_000_000 + m * 7 + hour * 450),
                ("export_wh", hour * 3),
                ("power_w", 450 + m % 100),
                ("voltage_dv", 2300 + m % 50),
            ):
                rows.append({"meter_id": m, "read_at": at, "register": register, "value": value, "received_at": at})
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--readings-per-meter", type=int, default=24, help="hourly reports of 4 registers each")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per transaction")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"smsmeter_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{args.url.rsplit('/', 1)[0]}/{name}"
    engine = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"), pool_size=2)
    try:
        await migrate.upgrade(engine)
        meter_ids = await generate_meters(dsn, args.meters)
        rows = reports(meter_ids, args.readings_per_meter)
        uow = UnitOfWork(engine)
        rss_before = rss_mb()
        started = time.perf_counter()
        for i in range(0, len(rows), args.batch):
            async with uow.begin() as conn:
                await insert_rows(conn, readings, rows[i : i + args.batch], ONCE)
        ingest_s = time.perf_counter() - started
        rate = len(rows) / ingest_s
        print(f"ingest: {len(rows):,} reading rows of {args.meters:,} meters in {ingest_s:.1f} s = {rate:,.0f} rows/s")
        started = time.perf_counter()
        report = await aggregate_consumption(
            uow, ZoneInfo("Europe/Chisinau"), START + timedelta(days=30), batch=args.batch * 4
        )
        job_s = time.perf_counter() - started
        print(
            f"consumption job: {report.readings:,} readings, {report.series:,} series in {job_s:.1f} s"
            f" = {report.readings / job_s:,.0f} readings/s"
        )
        print(f"peak RSS: {rss_before:.0f} MB before the ingest, {rss_mb():.0f} MB after the job")
        print(f"target >= 20,000 rows/s ingested: {'met' if rate >= 20_000 else 'MISSED'}")
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
