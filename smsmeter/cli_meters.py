"""`smsmeter meters import-keys` and `smsmeter meters export-keys`: the manufacturer's key file
(docs/operations.md §7b)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from datetime import UTC, datetime
from pathlib import Path

from config import Settings

EXIT_FAILED = 1


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    meters = sub.add_parser("meters", help="meters as the utility receives them: the manufacturer's key file")
    m_sub = meters.add_subparsers(dest="meters_command", required=True)

    imp = m_sub.add_parser(
        "import-keys", help="register the meters of a key file in stock, their keys re-wrapped under the master key"
    )
    imp.add_argument("file", metavar="FILE", help="the key file, CSV or JSON (docs/operations.md)")
    _transport_key_arguments(imp)
    imp.add_argument("--report", metavar="FILE", help="write the problems (line, field, reason) to this CSV file")
    imp.add_argument("--operator", default="import", help="the name the audit log records (default: import)")

    exp = m_sub.add_parser(
        "export-keys", help="make keys for a batch of meter codes, register them in stock, write the factory's key file"
    )
    exp.add_argument(
        "batch", metavar="BATCH", help="meter codes, one a line, or CSV naming meter_code (msisdn, profile, firmware)"
    )
    _transport_key_arguments(exp)
    exp.add_argument("--out", metavar="FILE", required=True, help="the key file to write (.json: JSON, else CSV)")
    exp.add_argument("--key-id", type=int, default=0, help="the key id the meters leave the factory with (default 0)")
    exp.add_argument("--report", metavar="FILE", help="write the problems (line, field, reason) to this CSV file")
    exp.add_argument("--operator", default="export", help="the name the audit log records (default: export)")

    from smsmeter import cli_registry

    cli_registry.add_meter_parsers(m_sub)  # install, replace, archive: the registry's doors


def _transport_key_arguments(parser: argparse.ArgumentParser) -> None:
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--transport-key", metavar="KEY_FILE", help="a file holding the transport key in hexadecimal (mode 0600)"
    )
    given.add_argument("--transport-key-hex", metavar="HEX", help="the transport key itself (visible to `ps`)")


def _transport_key(args: argparse.Namespace) -> bytes:
    from billing.rules.key_file import parse_transport_key

    text = args.transport_key_hex
    if text is None:
        text = Path(args.transport_key).read_text()
    return parse_transport_key(text)


def _write_report(path: str | None, rejects: list[object]) -> None:
    if not path:
        return
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["line", "field", "reason"])
        for r in rejects:
            writer.writerow([getattr(r, "line"), getattr(r, "field"), getattr(r, "reason")])  # noqa: B009


def run(settings: Settings, args: argparse.Namespace) -> int:
    from billing.errors import BillingError
    from billing.rules.key_file import KeyFileRejected

    name = "import-keys" if args.meters_command == "import-keys" else "export-keys"
    try:
        transport_key = _transport_key(args)
        if args.meters_command == "import-keys":
            data = Path(args.file).read_bytes()
            message = asyncio.run(_import(settings, args, data, transport_key))
        else:
            data = Path(args.batch).read_bytes()
            if Path(args.out).exists():
                raise OSError(f"{args.out} exists: a key file is written once, to a new file")
            message = asyncio.run(_export(settings, args, data, transport_key))
    except OSError as exc:
        print(f"smsmeter meters {name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyFileRejected as exc:
        print(f"smsmeter meters {name}: nothing done: {exc.reason}", file=sys.stderr)
        for r in exc.rejects[:50]:
            print(f"  line {r.line}, {r.field or 'entry'}: {r.reason}", file=sys.stderr)
        if len(exc.rejects) > 50:
            print(f"  … and {len(exc.rejects) - 50} more (--report FILE lists them all)", file=sys.stderr)
        _write_report(args.report, list(exc.rejects))
        return EXIT_FAILED
    except BillingError as exc:
        print(f"smsmeter meters {name}: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    print(message)
    return 0


async def _import(settings: Settings, args: argparse.Namespace, data: bytes, transport_key: bytes) -> str:
    from billing.provisioning import import_key_file
    from smsmeter.masterkey import load_master_key
    from store import migrate
    from store.audit import Actor
    from store.engine import create_engine
    from store.uow import UnitOfWork

    master_key = load_master_key(settings)
    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        result = await import_key_file(
            UnitOfWork(engine),
            Actor("operator", args.operator),
            data,
            transport_key,
            file_name=Path(args.file).name,
            master_key=master_key,
            now=datetime.now(UTC),
        )
    finally:
        await engine.dispose()
    return f"imported {result.rows} meters: {result.created} registered in stock, {result.updated} in stock updated"


async def _export(settings: Settings, args: argparse.Namespace, data: bytes, transport_key: bytes) -> str:
    from billing.provisioning import export_key_file, read_batch
    from smsmeter.masterkey import load_master_key
    from store import migrate
    from store.audit import Actor
    from store.engine import create_engine
    from store.uow import UnitOfWork

    batch = read_batch(data)
    out = Path(args.out)
    master_key = load_master_key(settings)
    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        content = await export_key_file(
            UnitOfWork(engine),
            Actor("operator", args.operator),
            batch,
            transport_key,
            master_key=master_key,
            now=datetime.now(UTC),
            key_id=args.key_id,
            as_json=out.suffix.lower() == ".json",
            name=out.name,
        )
    finally:
        await engine.dispose()
    await asyncio.to_thread(out.write_bytes, content)
    return f"{len(batch)} meters registered in stock; key file for the factory: {out}"
