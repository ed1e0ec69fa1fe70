"""The arrears sweep over generated subscribers on PostgreSQL: time and peak memory.

    .venv/bin/python bench/billing.py [--subscribers 1000000] [--in-arrears 0.1] [--url postgresql://...]

Makes a throwaway database (dropped at the end), bulk-generates subscribers, accounts, meters with keys
and ledger entries with set-based SQL (generate_series), gives a share of them debts of various ages,
then runs the sweep twice: the first run decides penalties, notices and disconnects (sealed commands in
the outbox); the second, at the same moment, must change nothing. Target: < 60 s for 1,000,000
subscribers with memory flat in the number of subscribers (the sweep streams keyset-paginated batches).
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

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing.arrears import run_arrears_sweep
from billing.rules.arrears import ArrearsPolicy, FriendlyCalendar, PenaltyRule
from gateway.keys import KeyRing
from meter_protocol import meter_code_with_check_digit
from store import migrate
from store.crypto import wrap_for_storage
from store.engine import create_engine
from store.uow import UnitOfWork

MASTER = bytes(range(16))
NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # a Tuesday morning: disconnects are allowed


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def generate(dsn: str, n: int, share: float, backlog: bool) -> None:
    conn = await asyncpg.connect(dsn)
    t0 = time.perf_counter()

    def log(step: str) -> None:
        print(f"  {time.perf_counter() - t0:6.1f} s  {step}", flush=True)

    try:
        await conn.execute("INSERT INTO regions VALUES ('64', 'Nord')")
        await conn.execute("INSERT INTO settlements VALUES ('64', '01', 'Balti')")
        streets = max(1, (n + 9999) // 10000)
        await conn.execute(
            "INSERT INTO streets SELECT '64', '01', lpad(s::text, 3, '0'), 'Street ' || s"
            " FROM generate_series(1, $1) s",
            streets,
        )
        await conn.execute(
            """
            INSERT INTO subscribers (id, code, region_code, settlement_code, street_code, building, apartment, name,
                                     phone, language, status, created_at, updated_at)
            SELECT i + 1,
                   '6401' || lpad((i / 10000 + 1)::text, 3, '0') || lpad((i / 100 % 100 + 1)::text, 4, '0')
                          || lpad((i % 100 + 1)::text, 4, '0'),
                   '64', '01', lpad((i / 10000 + 1)::text, 3, '0'), lpad((i / 100 % 100 + 1)::text, 4, '0'),
                   lpad((i % 100 + 1)::text, 4, '0'), 'Subscriber ' || i, '3736' || lpad(i::text, 7, '0'),
                   (ARRAY['en', 'ro', 'ru'])[i % 3 + 1], 'active', $2, $2
            FROM generate_series(0, $1 - 1) i
            """,
            n,
            NOW,
        )
        log("subscribers")
        await conn.execute(
            "INSERT INTO accounts (id, subscriber_id, currency, created_at) SELECT id, id, 'USD', $1 FROM subscribers",
            NOW,
        )
        await conn.copy_records_to_table(
            "meters",
            columns=[
                "id",
                "code",
                "subscriber_id",
                "msisdn",
                "kind",
                "phases",
                "profile",
                "is_balance_meter",
                "status",
                "installed_at",
                "key_id",
                "next_transfer_id",
            ],
            records=(
                (
                    i,
                    meter_code_with_check_digit(f"{i:019d}"),
                    i,
                    f"3736{i:08d}",
                    "electricity",
                    1,
                    "binary",
                    0,
                    "active",
                    NOW,
                    0,
                    1,
                )
                for i in range(1, n + 1)
            ),
        )
        log("meters")
        await conn.execute(
            "INSERT INTO meter_keys (meter_id, key_id, wrapped_key, status, created_at)"
            " SELECT id, 0, $1, 'active', $2 FROM meters",
            wrap_for_storage(MASTER, bytes(16)),
            NOW,
        )
        log("meter keys")
        await conn.execute("INSERT INTO meter_counters (meter_id) SELECT id FROM meters")  # the gateway's counters
        log("meter counters")
        # everyone paid and received credit; a share owes a fixed charge of a varying age and size
        await conn.execute(
            """
            INSERT INTO ledger_entries
                (account_id, entry_type, book, amount_minor, idempotency_key, created_at, created_by)
            SELECT id, t.entry_type, 'wallet', t.sign * (1000 + id % 500), 'gen:' || id || ':' || t.entry_type, $1,
                   'bench'
            FROM accounts, (VALUES ('payment', 1), ('credit_sent', -1)) AS t(entry_type, sign)
            """,
            NOW - timedelta(days=60),
        )
        log("payments and credits")
        debtors = int(n * share)
        await conn.execute(
            """
            INSERT INTO ledger_entries
                (account_id, entry_type, book, amount_minor, idempotency_key, created_at, created_by)
            SELECT a, 'fixed_charge', 'debt', -(200 + a % 5000), 'gen:' || a || ':fixed', $2, 'bench'
            FROM generate_series(1, $1) g, LATERAL (SELECT (g * 7919) % $3 + 1 AS a) x
            ON CONFLICT DO NOTHING
            """,
            debtors,
            NOW - timedelta(days=40),
            n,
        )
        log("debts")
        # their arrears episodes started 0..59 days ago; as of yesterday's sweep (steady state) each is at the stage
        # and penalty count its age gave it then, so today's sweep acts on those that cross a threshold today;
        # with --backlog every episode is still at stage none (a first sweep after an import)
        await conn.execute(
            """
            INSERT INTO arrears (account_id, overdue_since, stage, penalties_applied, disconnected_at, updated_at)
            SELECT account_id, $1::timestamptz - make_interval(days => age), stage, penalties,
                   CASE WHEN stage = 'disconnect' THEN $1::timestamptz - interval '1 day' END, $1
            FROM (
                SELECT account_id, (account_id % 60)::int AS age,
                       CASE WHEN $2 THEN 'none'
                            WHEN account_id % 60 - 1 >= 15 THEN 'disconnect'
                            WHEN account_id % 60 - 1 >= 10 THEN 'final'
                            WHEN account_id % 60 - 1 >= 3 THEN 'reminder' ELSE 'none' END AS stage,
                       CASE WHEN $2 THEN 0 ELSE greatest(account_id % 60 - 1, 0) / 30 END AS penalties
                FROM ledger_entries WHERE book = 'debt'
            ) e
            """,
            NOW,
            backlog,
        )
        log(f"arrears states ({'backlog' if backlog else 'steady state'})")
        for table in ("subscribers", "accounts", "meters"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        await conn.execute("ANALYZE")
        log("analyze")
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--in-arrears", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=20000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--backlog", action="store_true", help="every episode at stage none (a first sweep)")
    parser.add_argument("--keep", action="store_true", help="keep the generated database (its name is printed)")
    args = parser.parse_args()
    name = f"smsmeter_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = args.url.rsplit("/", 1)[0]
    dsn = f"{base}/{name}"
    engine = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"), pool_size=2)
    try:
        await migrate.upgrade(engine)
        started = time.perf_counter()
        await generate(dsn, args.subscribers, args.in_arrears, args.backlog)
        print(
            f"generated {args.subscribers:,} subscribers ({args.in_arrears:.0%} in arrears) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        if args.generate_only:
            return
        policy = ArrearsPolicy(
            min_debt_minor=100,
            reminder_after_days=3,
            final_after_days=10,
            disconnect_after_days=15,
            penalty=PenaltyRule(percent_bp=100, fixed_minor=50, period_days=30),
        )
        uow = UnitOfWork(engine)
        keys = KeyRing(MASTER)
        rss_before = rss_mb()
        first = await run_arrears_sweep(
            uow, policy, FriendlyCalendar(), NOW, keys=keys, utility="Bench", batch_size=args.batch
        )
        rss_first = rss_mb()
        second = await run_arrears_sweep(
            uow, policy, FriendlyCalendar(), NOW, keys=keys, utility="Bench", batch_size=args.batch
        )
        print(
            f"sweep 1: {first.seconds:.1f} s over {args.subscribers:,} subscribers in {first.batches} batches — "
            f"{first.accounts:,} in arrears, {first.penalties:,} penalties, {first.notices:,} notices, "
            f"{first.disconnects:,} disconnect commands sealed and queued"
        )
        print(
            f"sweep 2 (same moment, nothing to change): {second.seconds:.1f} s, "
            f"{second.notices} notices, {second.disconnects} disconnects"
        )
        print(
            f"peak RSS: {rss_before:.0f} MB before the sweeps, {rss_first:.0f} MB after the first, "
            f"{rss_mb():.0f} MB after the second"
        )
        target = "met" if first.seconds < 60 else "MISSED"
        print(f"target < 60 s: {target}")
    finally:
        await engine.dispose()
        if args.keep:
            print(f"kept database {name}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
