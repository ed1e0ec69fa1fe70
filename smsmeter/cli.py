"""The `smsmeter` command line: serve, demo, simulate, import, db upgrade/downgrade/current, reconcile, version."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from config import ConfigError, Settings, load_settings
from smsmeter import __version__

log = logging.getLogger("smsmeter")

EXIT_CONFIG = 2
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsmeter", description="Prepaid head end for SMS smart meters.")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (else SMSMETER_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web service, gateway workers and scheduler")
    serve.add_argument("--demo", action="store_true", help="load the demo utility first (idempotent)")
    serve.add_argument(
        "--role",
        action="append",
        choices=["web", "gateway", "scheduler", "all"],
        help="what this process runs (repeatable; default all): web = API, console, portal, webhooks; gateway = the "
        "SMS channel and dispatcher; scheduler = retries, expiries, notices, reconciliation",
    )

    sub.add_parser("demo", help="load a small demo utility: subscribers, meters, a tariff, an operator")

    simulate = sub.add_parser(
        "simulate", help="run the simulated SMSC with the registry's meters as reference meters, on an SMPP port"
    )
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    simulate.add_argument("--port", type=int, default=None, help="SMPP port (default: smpp.port of the settings)")

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate to a revision (default: the latest)")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="migrate down to a revision ('base' empties the database)")
    down.add_argument("revision")
    db_sub.add_parser("current", help="print the database's revision")

    imp = sub.add_parser("import", help="load subscribers and meters from a CSV or XLSX file")
    imp.add_argument("file", help="a .csv or .xlsx file; the first row names the columns")
    imp.add_argument(
        "--partial", action="store_true", help="import the good rows and report the bad ones (default: all or nothing)"
    )
    imp.add_argument("--report", metavar="FILE", help="write the rejected rows and reasons to this CSV file")
    imp.add_argument("--operator", default="import", help="the name the audit log records (default: import)")

    backup = sub.add_parser("backup", help="write the whole database to FILE (pg_dump custom format / SQLite copy)")
    backup.add_argument("file", metavar="FILE")
    _operator_option(backup)
    restore = sub.add_parser("restore", help="replace the database with the backup in FILE (stop the service first)")
    restore.add_argument("file", metavar="FILE")
    restore.add_argument("--replace", action="store_true", help="confirm that a non-empty database is replaced")
    _operator_option(restore)

    masterkey = sub.add_parser("masterkey", help="the master key that wraps meter keys at rest")
    mk_sub = masterkey.add_subparsers(dest="masterkey_command", required=True)
    rotate = mk_sub.add_parser("rotate", help="re-wrap every meter key under the new key in NEW_KEY_FILE (hex)")
    rotate.add_argument("new_key_file", metavar="NEW_KEY_FILE")
    _operator_option(rotate)

    rec = sub.add_parser(
        "reconcile",
        help="match Stripe's payments with ours for a window, apply what a webhook missed, write CSV and XLSX",
    )
    rec.add_argument("--from", dest="start", metavar="WHEN", help="UTC: YYYY-MM-DD or ISO time")
    rec.add_argument("--to", dest="end", metavar="WHEN", help="UTC: YYYY-MM-DD (that whole day included) or ISO time")
    rec.add_argument("--resume", type=int, metavar="RUN", help="carry on a run a restart or a stop cut off")
    rec.add_argument("--list", action="store_true", help="list the recent runs, with their status and counts")
    rec.add_argument("--out", metavar="DIR", help="folder for the reports (default: <data_dir>/reports)")

    from smsmeter import cli_meters, conformance_cli

    cli_meters.add_parsers(sub)
    conformance_cli.add_parser(sub)

    from smsmeter import readings_cli

    readings_cli.add_parser(sub)
    from smsmeter import sts_cli

    sts_cli.add_parser(sub)
    from smsmeter import cli_registry

    cli_registry.add_parsers(sub)
    from smsmeter import vouchers_cli

    vouchers_cli.add_parser(sub)
    from smsmeter import webhooks_cli

    webhooks_cli.add_parser(sub)
    from smsmeter import retention_cli

    retention_cli.add_parsers(sub)
    sub.add_parser("version", help="print the version")
    return parser


def _operator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator", default=None, help="the name the audit log records (default: the system user running it)"
    )


def _cli_actor(args: argparse.Namespace) -> Any:
    """Who the audit log names for a command run from the command line."""
    import getpass

    from store.audit import Actor

    name = getattr(args, "operator", None)
    if not name:
        try:
            name = f"cli:{getpass.getuser()}"
        except (KeyError, OSError):
            name = "cli"
    return Actor("operator", name)


def _roles(args: argparse.Namespace) -> str:
    chosen = args.role if getattr(args, "role", None) else ["all"]
    return "all" if "all" in chosen else ",".join(sorted(set(chosen)))


async def _reconcile(settings: Settings, args: argparse.Namespace) -> int:

    from gateway.keys import KeyRing
    from payments.errors import RunBusy, RunNotFound, WindowInvalid
    from payments.reconcile import KINDS, format_console
    from payments.reconcile_runs import recent_runs, window_of
    from smsmeter.masterkey import load_master_key
    from smsmeter.payments_wiring import run_reconciliation, stripe_api
    from store import migrate
    from store.audit import Actor
    from store.engine import create_engine
    from store.uow import UnitOfWork

    if not args.list and args.resume is None and not (args.start and args.end):
        raise ConfigError("reconcile", "give --from and --to, or --resume RUN, or --list")
    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        uow = UnitOfWork(engine)
        if args.list:
            async with uow.connect() as conn:
                runs, total = await recent_runs(conn, datetime.now(UTC), limit=20)
            print(f"{'run':>6}  {'window (UTC)':<35} {'status':<9} {'by':<22} " + " ".join(KINDS))
            for r in runs:
                window = f"{r['window_start']:%Y-%m-%d %H:%M}..{r['window_end']:%Y-%m-%d %H:%M}"
                counts = " ".join(str(r["counts"].get(k, "-")) for k in KINDS)
                print(f"{r['id']:>6}  {window:<35} {r['status']:<9} {r['triggered_by'][:22]:<22} {counts}")
            print(f"{total} runs")
            return 0
        start = end = datetime.now(UTC)
        if args.resume is None:
            try:
                start, end = window_of(args.start, args.end)
            except WindowInvalid as exc:
                raise ConfigError(f"reconcile --{exc.field}", exc.reason) from None
        api = stripe_api(settings)
        if api is None:
            raise ConfigError("stripe.api_key", "is required to reconcile with Stripe")
        try:
            report, files = await run_reconciliation(
                settings,
                uow,
                api,
                KeyRing(load_master_key(settings)),
                start,
                end,
                datetime.now(UTC),
                triggered_by="cli:reconcile",
                out_dir=Path(args.out) if args.out else None,
                resume=args.resume,
                clock=lambda: datetime.now(UTC),
                actor=Actor("cli", "reconcile"),
            )
        except (RunBusy, RunNotFound) as exc:
            raise ConfigError("reconcile --resume", str(exc)) from None
        finally:
            await api.close()
    finally:
        await engine.dispose()
    print(format_console(report))
    if files is None:  # not asked to stop from a shell; kept for the type
        return 1
    print(f"report: {files.csv}")
    print(f"report: {files.xlsx}")
    return 0


def _addresses(banner: str) -> str:
    """The addresses in aiohttp's "Running on ..." banner: the ports actually bound (http.port 0: any free one)."""
    return banner.partition("Running on ")[2].partition(" ===")[0] or banner


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter.app import ALL_ROLES, Role, build_app, settle_heap

    roles = _roles(args)
    if args.demo:
        _run(_demo(settings))
    settle_heap()
    web.run_app(
        build_app(settings, ALL_ROLES if roles == "all" else frozenset(Role(r) for r in roles.split(","))),
        host=settings.http.host,
        port=settings.http.port,
        print=lambda msg: log.info("listening on %s", _addresses(msg)),
        shutdown_timeout=15,
        access_log=None,
    )
    return 0


async def _demo(settings: Settings) -> None:
    from smsmeter.demo import load_demo

    await load_demo(settings)


async def _simulate(settings: Settings, args: argparse.Namespace) -> None:
    from smsmeter.simulate import run_simulator

    await run_simulator(settings, host=args.host, port=settings.smpp.port if args.port is None else args.port)


async def _db(settings: Settings, args: argparse.Namespace) -> None:
    from store import migrate
    from store.engine import create_engine

    engine = create_engine(settings.database.url)
    try:
        if args.db_command == "upgrade":
            await migrate.upgrade(engine, args.revision)
            print(f"database at revision {await migrate.current_revision(engine)}")
        elif args.db_command == "downgrade":
            await migrate.downgrade(engine, args.revision)
            print(f"database at revision {await migrate.current_revision(engine)}")
        else:
            print(await migrate.current_revision(engine) or "empty")
    finally:
        await engine.dispose()


def _progress(total: int) -> Callable[[int], None]:
    def show(done: int) -> None:
        if done == total or done % 100 == 0:
            width = 30
            filled = width * done // max(total, 1)
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)
            if done == total:
                print(file=sys.stderr)

    return show


def _import(settings: Settings, args: argparse.Namespace) -> int:
    import csv
    from pathlib import Path

    path = Path(args.file)
    if not path.is_file():
        print(f"smsmeter import: no such file: {path}", file=sys.stderr)
        return 1
    outcome, rejected = asyncio.run(_import_file(settings, args, path))
    if outcome is not None:
        print(outcome)
    for line, reason in rejected[:20]:
        print(f"  row {line}: {reason}", file=sys.stderr)
    if args.report and rejected:
        with Path(args.report).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["row", "reason"])
            writer.writerows(rejected)
    return 1 if rejected or outcome is None else 0


async def _import_file(
    settings: Settings, args: argparse.Namespace, path: object
) -> tuple[str | None, list[tuple[int, str]]]:
    from datetime import UTC, datetime
    from pathlib import Path

    from billing.errors import BillingError, ImportRejected
    from billing.importer import count_rows, import_file
    from smsmeter.masterkey import load_master_key
    from store import migrate
    from store.audit import Actor
    from store.engine import create_engine
    from store.uow import UnitOfWork

    assert isinstance(path, Path)
    master_key = load_master_key(settings)
    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        total = await asyncio.to_thread(count_rows, path)
        report = await import_file(
            UnitOfWork(engine),
            Actor("operator", args.operator),
            path,
            currency=settings.utility.currency,
            master_key=master_key,
            now=datetime.now(UTC),
            all_or_nothing=not args.partial,
            progress=_progress(total),
        )
    except ImportRejected as exc:
        return f"nothing imported: {len(exc.rejects)} rows rejected", exc.rejects
    except BillingError as exc:
        print(f"smsmeter import: {exc.reason}", file=sys.stderr)
        return None, []
    finally:
        await engine.dispose()
    summary = (
        f"imported {report.imported} of {report.rows} rows ({report.meters} meters); {len(report.rejected)} rejected"
    )
    return summary, report.rejected


async def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter.backup import BackupError, backup_database

    try:
        result = await backup_database(settings.database.url, Path(args.file), actor=_cli_actor(args))
    except BackupError as exc:
        print(f"smsmeter: backup failed: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    print(f"backup written: {result.path} ({result.backend}, {result.size_bytes} bytes)")
    print("the master key is not in the backup: keep it safe separately", file=sys.stderr)
    return 0


async def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter.backup import BackupError, restore_database

    try:
        revision = await restore_database(
            settings.database.url, Path(args.file), replace=args.replace, actor=_cli_actor(args)
        )
    except BackupError as exc:
        print(f"smsmeter: restore failed: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    print(f"database restored from {args.file}, at revision {revision or 'empty'}")
    return 0


async def _masterkey(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter.masterkey import load_master_key
    from smsmeter.rekey import RotationError, rotate_master_key
    from store.engine import create_engine

    try:
        new_key = bytes.fromhex((await asyncio.to_thread(Path(args.new_key_file).read_text)).strip())
    except (OSError, ValueError) as exc:
        print(f"smsmeter: cannot read a hexadecimal key from {args.new_key_file}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if len(new_key) not in (16, 32):
        print("smsmeter: the new master key must be 32 or 64 hexadecimal digits", file=sys.stderr)
        return EXIT_FAILED
    engine = create_engine(settings.database.url)
    try:
        result = await rotate_master_key(engine, load_master_key(settings), new_key, actor=_cli_actor(args))
    except RotationError as exc:
        print(f"smsmeter: master key not rotated: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await engine.dispose()
    print(f"meter keys re-wrapped: {result.rewrapped} (already under the new key: {result.already_new})")
    print("now configure the new master key (SMSMETER_MASTER_KEY or <data_dir>/master.key) and start the service")
    return 0


def _readings(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter import readings_cli

    return readings_cli.run(settings, args)


def _meters(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter import cli_meters, cli_registry

    if args.meters_command in cli_registry.REGISTRY_METER_COMMANDS:
        return cli_registry.run(settings, args)
    return cli_meters.run(settings, args)


def _registry(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter import cli_registry

    return cli_registry.run(settings, args)


def _sts(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter import sts_cli

    return sts_cli.run(settings, args)


def _conformance(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter import conformance_cli

    return conformance_cli.run(settings, args)


def _vouchers(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter import vouchers_cli

    return vouchers_cli.run(settings, args)


def _webhooks(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter import webhooks_cli

    return webhooks_cli.run(settings, args)


def _retention(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter import retention_cli

    return retention_cli.run(settings, args)


def _run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    try:
        settings = load_settings(args.config, os.environ if environ is None else environ)
    except ConfigError as exc:
        print(f"smsmeter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from smsmeter.logs import configure_logging

    configure_logging(settings, _roles(args))
    commands: dict[str, Callable[[], int | None]] = {
        "serve": lambda: _serve(settings, args),
        "demo": lambda: _run(_demo(settings)),
        "simulate": lambda: _run(_simulate(settings, args)),
        "db": lambda: _run(_db(settings, args)),
        "import": lambda: _import(settings, args),
        "reconcile": lambda: asyncio.run(_reconcile(settings, args)),
        "backup": lambda: asyncio.run(_backup(settings, args)),
        "restore": lambda: asyncio.run(_restore(settings, args)),
        "masterkey": lambda: asyncio.run(_masterkey(settings, args)),
        "readings": lambda: _readings(settings, args),
        "meters": lambda: _meters(settings, args),
        "sts": lambda: _sts(settings, args),
        "subscribers": lambda: _registry(settings, args),
        "tariffs": lambda: _registry(settings, args),
        "alarm-rules": lambda: _registry(settings, args),
        "conformance": lambda: _conformance(settings, args),
        "vouchers": lambda: _vouchers(settings, args),
        "webhooks": lambda: _webhooks(settings, args),
        "partitions": lambda: _retention(settings, args),
        "retention": lambda: _retention(settings, args),
    }
    try:
        return commands[args.command]() or 0
    except ConfigError as exc:
        print(f"smsmeter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
