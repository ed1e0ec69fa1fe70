"""Enqueue and claim speed with years of command history present, on PostgreSQL (the history partitioned by month).

    python -m bench.history [--history 5000000] [--commands 20000] [--meters 2000]

Makes a throwaway database, then runs the same round three times: enqueue `--commands` top-ups (counters,
sealing, the command rows and their first history rows, as the outbox does) and claim them all, 500 a batch,
as the dispatcher does. The first round runs over an empty history; before the second and the third (its
repeat), `--history` rows are written to the command history spread over the 24 months before now, in their
month partitions (created the way the scheduled job does, `store.partitions.ensure`), then vacuumed and
checkpointed. Prints the rounds' rates, the partition count and the load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from bench.gateway import KEYS, fresh_database
from gateway.claims import claim
from gateway.outbox import CommandRequest, enqueue_commands
from store import partitions
from store.engine import create_engine
from store.schema.commands import commands
from tests.integration.gateway.outbox_fixtures import SeededMeter, add_meters


async def one_round(engine: AsyncEngine, fleet: list[SeededMeter], n: int, first_topup: int) -> tuple[float, float]:
    """Enqueue `n` top-ups, then claim them all; returns (enqueued/s, claimed/s)."""
    now = datetime.now(UTC)
    requests = [
        CommandRequest(fleet[i % len(fleet)].id, mp.TopUp(first_topup + i // len(fleet), 100), "bench:topup")
        for i in range(n)
    ]
    started = time.perf_counter()
    for start in range(0, n, 1000):
        async with engine.begin() as conn:
            await enqueue_commands(conn, KEYS, requests[start : start + 1000], now)
    enqueued = n / (time.perf_counter() - started)
    claimed, started = 0, time.perf_counter()
    while claimed < n:
        async with engine.begin() as conn:
            got = await claim(conn, now=now, until=now + timedelta(minutes=10), worker="bench", limit=500)
        if not got:
            break
        claimed += len(got)
    claim_rate = claimed / (time.perf_counter() - started)
    async with engine.begin() as conn:  # settled, so the next round claims only its own
        await conn.execute(update(commands).values(state="1:1", final_at=now, claimed_by=None, claimed_until=None))
    return enqueued, claim_rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=5_000_000)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--meters", type=int, default=2_000)
    args = parser.parse_args()
    print(f"load average at the start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    url, drop = await fresh_database()
    engine = create_engine(url, pool_size=4)
    try:
        async with engine.begin() as conn:
            fleet = await add_meters(conn, args.meters, datetime.now(UTC))
        empty = await one_round(engine, fleet, args.commands, 1)
        now = datetime.now(UTC)
        started = time.perf_counter()
        async with engine.begin() as conn:
            await partitions.ensure(conn, partitions.add_months(now, -24), months_ahead=27)
            await conn.execute(
                text(
                    "INSERT INTO command_history (command_id, from_state, to_state, at, source) "
                    "SELECT c.lo + g % c.n, '0:1', '1:0', now() - (g % 730) * interval '1 day' - "
                    "(g % 86400) * interval '1 second', 'receipt' "
                    "FROM generate_series(1, :h) g, (SELECT min(id) AS lo, count(*) AS n FROM commands) c"
                ),
                {"h": args.history},
            )
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE command_history"))
            await conn.execute(text("CHECKPOINT"))  # the history's write burst out of the rounds that follow
            count = await conn.scalar(text("SELECT count(*) FROM command_history"))
            parts = len(await partitions.partitions(conn, "command_history"))
        print(
            f"wrote {args.history:,} history rows in {time.perf_counter() - started:.0f} s: {count:,} rows, "
            f"{parts} partitions"
        )
        step = args.commands // args.meters + 1
        full = await one_round(engine, fleet, args.commands, 1 + step)
        again = await one_round(engine, fleet, args.commands, 1 + 2 * step)
    finally:
        await engine.dispose()
        await asyncio.to_thread(drop)
    print(f"{args.commands:,} top-ups to {args.meters:,} meters, PostgreSQL")
    print(f"{'':32} {'enqueue /s':>12} {'claim /s':>12}")
    print(f"{'history empty':32} {empty[0]:12,.0f} {empty[1]:12,.0f}")
    print(f"{f'{count:,} history rows':32} {full[0]:12,.0f} {full[1]:12,.0f}")
    print(f"{'  the same, once more':32} {again[0]:12,.0f} {again[1]:12,.0f}")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
