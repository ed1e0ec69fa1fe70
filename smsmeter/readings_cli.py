"""`smsmeter readings ...`: `import` a CSV file of readings taken by hand or with an optical probe;
`export` one day's readings for an MDM as CSV and IEC 61968-9 MeterReadings XML; `plans` lists the reading
plans and their last runs; `run-plan ID` starts a run of a plan now (its first slice queued at the reading
budget; the service's scheduled pass queues the rest)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    readings = sub.add_parser("readings", help="meter readings: import a CSV file, export a day for an MDM")
    r_sub = readings.add_subparsers(dest="readings_command", required=True)
    imp = r_sub.add_parser("import", help="store the readings of a CSV file (meter_code, read_at, register, value)")
    imp.add_argument("file", metavar="FILE", help="CSV: meter_code, read_at, [register,] value (or kwh, m3)")
    imp.add_argument("--operator", default="import", help="the name the audit log records (default: import)")
    exp = r_sub.add_parser(
        "export", help="write one local day's readings for an MDM: CSV and IEC 61968-9 MeterReadings XML"
    )
    exp.add_argument("--day", required=True, metavar="YYYY-MM-DD", help="the day, in the utility's time zone")
    exp.add_argument("--out", metavar="DIR", help="folder for the files (default: billing.mdm_export_dir)")
    r_sub.add_parser("plans", help="the reading plans and their last runs (meters answered, not answered)")
    run = r_sub.add_parser("run-plan", help="start a run of a reading plan now")
    run.add_argument("plan_id", type=int, metavar="ID")
    run.add_argument("--operator", default="cli", help="the name the audit log records (default: cli)")


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    from billing.errors import BillingError
    from billing.meter_readings import import_readings
    from store import migrate
    from store.audit import Actor
    from store.engine import create_engine
    from store.uow import UnitOfWork

    path = Path(args.file)
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"smsmeter readings import: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        async with UnitOfWork(engine).begin() as conn:
            report = await import_readings(
                conn,
                Actor("operator", args.operator),
                text,
                datetime.now(UTC),
                ZoneInfo(settings.utility.timezone),
                file_name=path.name,
            )
    except BillingError as exc:
        print(f"smsmeter readings import: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    statuses = ", ".join(f"{k} {v}" for k, v in report.statuses.items() if v)
    rejected = len(report.rejected)
    print(f"imported {report.imported} of {report.rows} readings ({statuses or 'none'}); {rejected} rejected")
    for line, reason in report.rejected[:20]:
        print(f"  line {line}: {reason}", file=sys.stderr)
    return 1 if report.rejected else 0


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date

    from billing.mdm import validate
    from billing.mdm_export import export_day
    from smsmeter.billing_setup import mdm_export_dir
    from store import migrate
    from store.engine import create_engine
    from store.uow import UnitOfWork

    try:
        day = date.fromisoformat(args.day)
    except ValueError:
        print("smsmeter readings export: --day takes YYYY-MM-DD", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else mdm_export_dir(settings)
    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        files = await export_day(UnitOfWork(engine), day, ZoneInfo(settings.utility.timezone), out)
    finally:
        await engine.dispose()
    problems = await asyncio.to_thread(validate, files.xml)
    print(f"{files.readings} readings of {files.meters} meters on {day.isoformat()}")
    print(f"csv: {files.csv}")
    print(f"xml: {files.xml} ({'valid' if not problems else 'NOT valid'} against the MeterReadings schema)")
    for problem in problems[:10]:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


async def _plans(settings: Settings, args: argparse.Namespace) -> int:
    from billing import reading_plans
    from billing.errors import BillingError
    from billing.rules.reading_plans import reading_budget_per_s
    from gateway.keys import KeyRing
    from smsmeter.masterkey import load_master_key
    from store import migrate
    from store.audit import Actor
    from store.engine import create_engine
    from store.uow import UnitOfWork

    engine = create_engine(settings.database.url)
    uow = UnitOfWork(engine)
    try:
        await migrate.upgrade(engine)
        if args.readings_command == "run-plan":
            budget = reading_budget_per_s(settings.smpp.rate_per_s, settings.billing.reading_share_percent)
            try:
                run_id = await reading_plans.start_run_now(
                    uow,
                    Actor("operator", args.operator),
                    args.plan_id,
                    datetime.now(UTC),
                    keys=KeyRing(load_master_key(settings)),
                    budget_per_s=budget,
                )
            except BillingError as exc:
                print(f"smsmeter readings run-plan: {exc}", file=sys.stderr)
                return 1
            async with uow.connect() as conn:
                report = await reading_plans.run_report(conn, run_id)
            print(f"run {run_id}: {report['queued']} of {report['meters']} read requests queued")
            return 0
        async with uow.connect() as conn:
            plans = await reading_plans.list_plans(conn)
            runs = {r["id"]: r for r in await reading_plans.list_runs(conn, limit=100)}
    finally:
        await engine.dispose()
    for p in plans:
        group = p["group_kind"] + (f" {p['group_code']}" if p["group_code"] else "")
        line = f"{p['id']:>4}  {p['name']}  {p['items']} {p['every']}  {group}  {p['window_start']}-{p['window_end']}"
        last = runs.get(p["last_run_id"])
        if last is not None:
            line += (
                f"  last run {last['id']} {last['status']}: {last['answered']} answered, "
                f"{last['not_answered']} did not, {last['waiting']} on their way"
            )
        print(line if p["enabled"] else line + "  (paused)")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.readings_command in ("plans", "run-plan"):
        return asyncio.run(_plans(settings, args))
    if args.readings_command == "export":
        return asyncio.run(_export(settings, args))
    return asyncio.run(_import(settings, args))
