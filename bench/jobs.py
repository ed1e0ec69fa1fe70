"""Every scheduled billing job over a large generated utility on PostgreSQL: time, items and peak memory.

    .venv/bin/python bench/jobs.py [--subscribers 1000000] [--in-arrears 0.1] [--url postgresql://...]

Makes a throwaway database (dropped at the end) and generates subscribers, accounts, meters with keys, a
month of payments and credits and a share of debts as bench/billing.py does. Then runs, one after the
other and exactly as `serve` schedules them (the same service object, the same progress reporting), the
arrears sweep, the monthly invoices, sending the queued notices, the scheduled time sync and the key-change
settlement, and prints for each its time, what it did and the peak RSS after it. A job that cannot finish
in bounded memory shows it here: RSS stays flat in the number of subscribers.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import generated as bench_billing  # noqa: E402
from config.settings import load_settings  # noqa: E402
from gateway.keys import KeyRing  # noqa: E402
from smsmeter.billing_setup import JobRun, build_billing  # noqa: E402
from store import migrate  # noqa: E402
from store.engine import create_engine  # noqa: E402
from store.uow import UnitOfWork  # noqa: E402
from telemetry import NO_METRICS  # noqa: E402

NOW = datetime(2026, 4, 7, 10, 0, tzinfo=UTC)  # a Tuesday morning, a month after the generated payments


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _said(result: Any) -> str:
    if result is None:
        return "nothing to do"
    if isinstance(result, int):
        return f"{result:,} items"
    fields = getattr(result, "__dataclass_fields__", None)
    if fields:
        return ", ".join(f"{name} {getattr(result, name)}" for name in fields if not name.startswith("_"))
    return str(result)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--in-arrears", type=float, default=0.1)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    name = f"smsmeter_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{args.url.rsplit('/', 1)[0]}/{name}"
    engine = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"), pool_size=4)
    try:
        await migrate.upgrade(engine)
        started = time.perf_counter()
        await bench_billing.generate(dsn, args.subscribers, args.in_arrears, False)
        print(f"generated {args.subscribers:,} subscribers in {time.perf_counter() - started:.1f} s")
        settings = load_settings(None, {"SMSMETER_BILLING_TIME_SYNC_DAYS": "7"})
        billing = build_billing(settings, UnitOfWork(engine), KeyRing(bench_billing.MASTER))
        jobs = [
            ("arrears sweep", billing.sweep),
            ("monthly invoices", billing.monthly),
            ("notices", billing.send_notices),
            ("time sync", billing.sync_clocks),
            ("key changes", billing.settle_key_changes),
        ]
        print(f"{'job':<18} {'seconds':>8} {'items':>10} {'peak RSS MB':>12}  result")
        for job_name, job in jobs:
            run = JobRun(job_name, asyncio.Event(), NO_METRICS, time.monotonic)
            t0 = time.perf_counter()
            result = await job(NOW, run)
            seconds = time.perf_counter() - t0
            print(f"{job_name:<18} {seconds:8.1f} {run.items:10,} {rss_mb():12.0f}  {_said(result)}", flush=True)
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
