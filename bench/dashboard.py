"""The consumption dashboard over a large fleet on PostgreSQL: how long the console's page query takes.

    .venv/bin/python bench/dashboard.py [--meters 100000] [--days 30] [--rounds 5]
                                        [--url postgresql://...]

Makes a throwaway database (dropped at the end) with the generated utility of bench/billing.py (`--meters`
subscribers, each with a meter, in one settlement of `--meters`/10,000 streets), fills the daily pre-aggregate
(`consumption_daily`: each meter's import register for `--days` days, as the consumption job leaves it), then
times `web.queries.consumption.dashboard` — what the console's Consumption page and `/api/v1/consumption` run —
at the top (every region) and one level down (the settlement's streets), `--rounds` times each after one warm-up,
and prints the median and the range. Target (issue 19): < 1 s for 100,000 meters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.generated import generate
from billing.meter_readings import Group
from store import migrate
from store.engine import create_engine
from web.queries.consumption import dashboard

TODAY = date(2026, 3, 31)


async def fill_days(dsn: str, days: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO consumption_daily (meter_id, register, day, quantity, readings, estimated, updated_at)"
            " SELECT m.id, 'import_wh', $1::date - d, 3000 + (m.id * 37 + d * 11) % 4000, 24, (m.id % 50 = 0)::int,"
            " now() FROM meters m CROSS JOIN generate_series(0, $2 - 1) d",
            TODAY,
            days,
        )
        await conn.execute("ANALYZE consumption_daily")
        await conn.execute("ANALYZE meters")
        await conn.execute("ANALYZE subscribers")
        return int(await conn.fetchval("SELECT count(*) FROM consumption_daily"))
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"smsmeter_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{args.url.rsplit('/', 1)[0]}/{name}"
    engine = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"), pool_size=2)
    try:
        await migrate.upgrade(engine)
        await generate(dsn, args.meters, 0.0, False)
        started = time.perf_counter()
        rows = await fill_days(dsn, args.days)
        print(
            f"consumption_daily: {rows:,} rows ({args.meters:,} meters x {args.days} days) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        for label, level, group in (
            ("top (every region)", "region", Group()),
            ("the settlement's streets", "street", Group(region="64", settlement="01")),
        ):
            times = []
            async with engine.connect() as conn:
                page = await dashboard(conn, level, group, TODAY, args.days)  # warm-up
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    page = await dashboard(conn, level, group, TODAY, args.days)
                    times.append(time.perf_counter() - t0)
            total = page["sections"][0]["total"] if page["sections"] else 0
            print(
                f"dashboard, {label}: median {statistics.median(times) * 1000:,.0f} ms"
                f" [{min(times) * 1000:,.0f}-{max(times) * 1000:,.0f}] over {args.rounds} rounds;"
                f" {page['total_members']} members, total {total} {page['sections'][0]['unit']}"
            )
            verdict = "met" if statistics.median(times) < 1 else "MISSED"
            print(f"  target < 1 s for {args.meters:,} meters: {verdict}")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
