"""`smsmeter vouchers ...`: scratch-card vouchers (docs/self-service.md). `generate` makes a batch of single-use
codes worth one amount each and writes them, printed in groups of four, as CSV (to a file or standard output):
the codes are shown this once, only their SHA-256 is kept. `list` shows the batches and how many were used or withdrawn;
`void` withdraws a batch's unused codes or one code (audited)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

from config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    vouchers = sub.add_parser("vouchers", help="scratch-card vouchers paid by SMS (PAY <code>)")
    v_sub = vouchers.add_subparsers(dest="vouchers_command", required=True)
    gen = v_sub.add_parser("generate", help="a batch of single-use codes, written as CSV to print")
    gen.add_argument("--count", required=True, type=int, help="how many vouchers (1 to 10000)")
    gen.add_argument("--amount", required=True, type=int, metavar="MINOR", help="each voucher's worth, minor units")
    gen.add_argument("--note", help="e.g. the kiosk or the print run")
    gen.add_argument("--out", metavar="FILE", help="the CSV file (default: standard output)")
    gen.add_argument("--operator", default="cli", help="the name the audit log records (default: cli)")
    v_sub.add_parser("list", help="the batches: amount, count, used, withdrawn")
    void = v_sub.add_parser("void", help="withdraw a batch's unused codes, or one code: PAY with them is refused")
    which = void.add_mutually_exclusive_group(required=True)
    which.add_argument("--batch", type=int, metavar="ID", help="the batch (smsmeter vouchers list)")
    which.add_argument("--code", help="one code, as printed")
    void.add_argument("--reason", required=True, help="why (kept in the audit log)")
    void.add_argument("--operator", default="cli", help="the name the audit log records (default: cli)")


async def _vouchers(settings: Settings, args: argparse.Namespace) -> int:
    from billing import vouchers as voucher_use
    from billing.errors import BillingError
    from billing.rules.money import Money
    from billing.rules.self_service import printed
    from store import migrate
    from store.audit import Actor
    from store.engine import create_engine
    from store.uow import UnitOfWork

    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        uow = UnitOfWork(engine)
        if args.vouchers_command == "list":
            async with uow.connect() as conn:
                for b in await voucher_use.voucher_batches_list(conn):
                    amount = Money(int(b["amount_minor"]), b["currency"]).format()
                    made = f"{b['count']} made\t{b['used']} used\t{b['void']} withdrawn"
                    print(f"batch {b['id']}\t{amount}\t{made}\t{b['note'] or ''}")
            return 0
        if args.vouchers_command == "void":
            done = await voucher_use.void_vouchers(
                uow,
                Actor("operator", args.operator),
                datetime.now(UTC),
                reason=args.reason,
                batch_id=args.batch,
                code=args.code,
            )
            print(f"batch {done.batch_id}: {done.voided} withdrawn, {done.used} already used stay used")
            return 0
        batch = await voucher_use.generate_vouchers(
            uow,
            Actor("operator", args.operator),
            args.count,
            Money(args.amount, settings.utility.currency),
            datetime.now(UTC),
            note=args.note,
        )
    except BillingError as exc:
        print(f"smsmeter vouchers: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["batch", "amount", "code"])
    for code in batch.codes:
        writer.writerow([batch.id, batch.amount.format(), printed(code)])
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, out.getvalue())
        print(f"batch {batch.id}: {len(batch.codes)} vouchers of {batch.amount.format()} written to {args.out}")
    else:
        sys.stdout.write(out.getvalue())
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_vouchers(settings, args))
