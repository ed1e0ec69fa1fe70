"""The `smsmeter` command line: serve, demo, simulate, db upgrade/downgrade/current, version."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from config import ConfigError, Settings, load_settings
from smsmeter import __version__

log = logging.getLogger("smsmeter")

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsmeter", description="Prepaid head end for SMS smart meters.")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (else SMSMETER_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web service, gateway workers and scheduler")
    serve.add_argument("--demo", action="store_true", help="load the demo utility first (idempotent)")

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

    sub.add_parser("version", help="print the version")
    return parser


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from smsmeter.app import build_app

    if args.demo:
        _run(_demo(settings))
    web.run_app(
        build_app(settings),
        host=settings.http.host,
        port=settings.http.port,
        print=lambda _msg: log.info("listening on http://%s:%s", settings.http.host, settings.http.port),
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

    configure_logging(settings)
    commands: dict[str, Callable[[], int | None]] = {
        "serve": lambda: _serve(settings, args),
        "demo": lambda: _run(_demo(settings)),
        "simulate": lambda: _run(_simulate(settings, args)),
        "db": lambda: _run(_db(settings, args)),
    }
    try:
        return commands[args.command]() or 0
    except ConfigError as exc:
        print(f"smsmeter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
