"""Every scheduled billing job over a large generated utility on PostgreSQL: time, items and peak memory.

    .venv/bin/python bench/jobs.py [--subscribers 1000000] [--in-arrears 0.1] [--card-payments N]
                                   [--only JOB ...] [--url postgresql://...]

Makes a throwaway database (dropped at the end) and generates subscribers, accounts, meters with keys, a
month of payments and credits and a share of debts as bench/billing.py does, and one Stripe payment in the
last two days for every fifteenth subscriber (`payments` rows, paid; `--card-payments` sets another count).
Then runs, one after the other and exactly as `serve` schedules them (the same service object, the same
progress reporting), the arrears sweep, the monthly invoices, sending the queued notices, the scheduled time
sync, the key-change settlement, the consumption pre-aggregate, the partitions and retention job and the
daily reconciliation (reporting its batches to the JobRun as in service), and prints for each its time, what
it did and the peak RSS after it. A job that cannot finish in bounded
memory shows it here: RSS stays flat in the number of subscribers. `--only` runs the named jobs alone (e.g.
`--only reconciliation`).

- reading plans: one plan over every active meter, run at once (`start_run_now`) and then pass after pass
  of the scheduled job with no reading budget (every meter as fast as the passes queue them; in service
  the budget spreads a run over its window) until the run has queued its last meter.
- reconciliation: the daily job's `run_reconciliation` over the last 48 hours with the provider's listing
  answered by `GeneratedProvider`, a fake of the provider port (`payments.reconcile.PaymentLister`) that
  lists the generated payments as Stripe would (with a fee each): each is matched and its fee stored.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import generated as bench_billing  # noqa: E402
from billing import reading_plans  # noqa: E402
from config.settings import load_settings  # noqa: E402
from gateway.keys import KeyRing  # noqa: E402
from payments.stripe_api import BalanceTransaction, ProviderPayment  # noqa: E402
from smsmeter.billing_setup import JobRun, build_billing  # noqa: E402
from smsmeter.payments_wiring import RECONCILE_LOOKBACK, run_reconciliation  # noqa: E402
from smsmeter.retention_cli import keep_tables  # noqa: E402
from store import migrate  # noqa: E402
from store.audit import Actor  # noqa: E402
from store.engine import create_engine  # noqa: E402
from store.schema.reading_plans import reading_plan_runs  # noqa: E402
from store.uow import UnitOfWork  # noqa: E402
from telemetry import NO_METRICS  # noqa: E402

NOW = datetime(2026, 4, 7, 10, 0, tzinfo=UTC)  # a Tuesday morning, a month after the generated payments
PAYING_EVERY = 15  # one subscriber in this many paid by card in the last two days
WINDOW_S = int(RECONCILE_LOOKBACK.total_seconds())
BENCH = Actor("operator", "bench")

Job = Callable[[datetime, JobRun], Awaitable[Any]]


def _paid_at(i: int) -> datetime:
    return NOW - timedelta(seconds=60 + i % (WINDOW_S - 120))


def _amount_minor(i: int) -> int:
    return 1000 + i % 5000


async def add_card_payments(dsn: str, subscribers: int, count: int) -> int:
    """The generated payments: the i-th (1-based) for subscriber (i * 7919) % n + 1, paid at `_paid_at(i)`."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO payments (provider, provider_ref, subscriber_id, amount_minor, currency, status,
                                  payment_intent_id, reference, charge_id, created_at, paid_at, updated_at)
            SELECT 'stripe', 'pi_bench_' || g, (g * 7919) % $2 + 1, 1000 + g % 5000, 'USD', 'paid',
                   'pi_bench_' || g, 'bench-' || g, 'ch_bench_' || g, t, t, t
            FROM generate_series(1, $1) g,
                 LATERAL (SELECT $3::timestamptz - make_interval(secs => 60 + g % ($4 - 120)) AS t) x
            """,
            count,
            subscribers,
            NOW,
            WINDOW_S,
        )
        await conn.execute("ANALYZE payments")
    finally:
        await conn.close()
    return count


class GeneratedProvider:
    """The provider's side of the generated payments (`payments.reconcile.PaymentLister`): every one of them
    succeeded, with Stripe's 2.9 % + 30 fee."""

    def __init__(self, count: int) -> None:
        self.count = count

    def _in(self, start: datetime, end: datetime) -> list[int]:
        return [i for i in range(1, self.count + 1) if start <= _paid_at(i) < end]

    async def list_payment_intents(self, start: datetime, end: datetime) -> list[ProviderPayment]:
        return [
            ProviderPayment(
                f"pi_bench_{i}",
                _amount_minor(i),
                "USD",
                _paid_at(i),
                "succeeded",
                f"ch_bench_{i}",
                {"reference": f"bench-{i}"},
            )
            for i in self._in(start, end)
        ]

    async def list_balance_transactions(self, start: datetime, end: datetime) -> list[BalanceTransaction]:
        def fee(i: int) -> int:
            return 30 + _amount_minor(i) * 29 // 1000

        return [
            BalanceTransaction(
                f"txn_bench_{i}",
                f"ch_bench_{i}",
                "charge",
                _amount_minor(i),
                fee(i),
                _amount_minor(i) - fee(i),
                "USD",
                _paid_at(i),
            )
            for i in self._in(start, end)
        ]


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
    parser.add_argument("--card-payments", type=int, help="card payments in the last 48 h (subscribers / 15)")
    parser.add_argument("--only", nargs="+", metavar="JOB", help="run these jobs alone (names as printed)")
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
        card_payments = await add_card_payments(
            dsn, args.subscribers, args.card_payments or args.subscribers // PAYING_EVERY
        )
        print(
            f"generated {args.subscribers:,} subscribers and {card_payments:,} card payments"
            f" in {time.perf_counter() - started:.1f} s"
        )
        settings = load_settings(None, {"SMSMETER_BILLING_TIME_SYNC_DAYS": "7"})
        uow = UnitOfWork(engine)
        keys = KeyRing(bench_billing.MASTER)
        billing = build_billing(settings, uow, keys)

        async def whole_reading_run(now: datetime, run: JobRun) -> Any:
            plan = await reading_plans.create_plan(
                uow, BENCH, reading_plans.PlanFields("every meter", "registers", "daily", "all"), now
            )
            run_id = await reading_plans.start_run_now(uow, BENCH, plan["id"], now, keys=keys, budget_per_s=0)
            passes = 1
            while await _reading_run_status(run_id) == "running":
                await reading_plans.run_plans(uow, now, keys=keys, tz=billing.tz, budget_per_s=0)
                passes += 1
            async with uow.connect() as conn:
                report = await reading_plans.run_report(conn, run_id)
            run.advanced(int(report["queued"]))
            return f"{passes} passes, run {report['status']}: {report['queued']:,} queued of {report['meters']:,}"

        async def _reading_run_status(run_id: int) -> Any:
            async with uow.connect() as conn:
                return await conn.scalar(select(reading_plan_runs.c.status).where(reading_plan_runs.c.id == run_id))

        async def partitions_and_retention(now: datetime, run: JobRun) -> Any:
            return await keep_tables(engine, settings, now, run)

        async def reconciliation(now: datetime, run: JobRun) -> Any:
            with tempfile.TemporaryDirectory() as out:
                report, _ = await run_reconciliation(
                    settings,
                    uow,
                    GeneratedProvider(card_payments),
                    keys,
                    now - RECONCILE_LOOKBACK,
                    now,
                    now,
                    triggered_by="system:bench",
                    out_dir=Path(out),
                    progress=run,
                )
            return report.counts()

        jobs: list[tuple[str, Job]] = [
            ("arrears sweep", billing.sweep),
            ("monthly invoices", billing.monthly),
            ("notices", billing.send_notices),
            ("time sync", billing.sync_clocks),
            ("key changes", billing.settle_key_changes),
            ("reading plans", whole_reading_run),
            ("consumption", billing.aggregate_consumption),
            ("partitions/retention", partitions_and_retention),
            ("reconciliation", reconciliation),
        ]
        print(f"{'job':<20} {'seconds':>8} {'items':>10} {'peak RSS MB':>12}  result")
        unknown = set(args.only or ()) - {job_name for job_name, _ in jobs}
        if unknown:
            parser.error(f"no such job: {', '.join(sorted(unknown))}")
        for job_name, job in jobs:
            if args.only and job_name not in args.only:
                continue
            run = JobRun(job_name, asyncio.Event(), NO_METRICS, time.monotonic)
            t0 = time.perf_counter()
            result = await job(NOW, run)
            seconds = time.perf_counter() - t0
            print(f"{job_name:<20} {seconds:8.1f} {run.items:10,} {rss_mb():12.0f}  {_said(result)}", flush=True)
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
