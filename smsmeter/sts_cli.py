"""`smsmeter sts ...`: add an STS vending key (read from a file as hex, stored wrapped under the master key,
audited without the key), for a supply group and key revision (docs/sts.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sts = sub.add_parser("sts", help="STS keypad tokens: vending keys")
    s_sub = sts.add_subparsers(dest="sts_command", required=True)
    add = s_sub.add_parser(
        "add-vending-key",
        help="store a vending key (KEY_FILE: 16 hex digits for DKGA02, 40 or more for DKGA04), wrapped",
    )
    add.add_argument("--supply-group", required=True, metavar="SGC", help="six digits")
    add.add_argument("--revision", required=True, type=int, metavar="KRN", help="1 to 9")
    add.add_argument("key_file", metavar="KEY_FILE")
    add.add_argument("--operator", default="cli", help="the name the audit log records (default: cli)")


async def _add(settings: Settings, args: argparse.Namespace) -> int:
    from billing.errors import BillingError
    from billing.sts_vending import add_vending_key
    from smsmeter.masterkey import load_master_key
    from store import migrate
    from store.audit import Actor
    from store.engine import create_engine
    from store.uow import UnitOfWork

    try:
        key = bytes.fromhex((await asyncio.to_thread(Path(args.key_file).read_text)).strip())
    except (OSError, ValueError) as exc:
        print(f"smsmeter sts: cannot read a hexadecimal key from {args.key_file}: {exc}", file=sys.stderr)
        return 1
    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        async with UnitOfWork(engine).begin() as conn:
            key_id = await add_vending_key(
                conn,
                Actor("operator", args.operator),
                load_master_key(settings),
                args.supply_group,
                args.revision,
                key,
                datetime.now(UTC),
            )
    except BillingError as exc:
        print(f"smsmeter sts: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(f"vending key {key_id} stored for supply group {args.supply_group}, revision {args.revision} (wrapped)")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_add(settings, args))
