"""The tables that grow for years, from the settings: `smsmeter partitions ensure` (PostgreSQL's month partitions
ahead), `smsmeter retention run` (old rows archived, then removed), and the scheduled job that does both."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings
from store import partitions
from store.retention import RetentionPolicy, apply_retention
from telemetry import UNWATCHED, JobProgress


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parts = sub.add_parser("partitions", help="PostgreSQL's month partitions of the tables that grow for years")
    p_sub = parts.add_subparsers(dest="partitions_command", required=True)
    ensure = p_sub.add_parser("ensure", help="create this month's partitions and those ahead (retention.months_ahead)")
    ensure.add_argument("--months-ahead", type=int, default=None, help="default: retention.months_ahead")
    retention = sub.add_parser("retention", help="archive, then remove, rows older than each table's policy")
    r_sub = retention.add_subparsers(dest="retention_command", required=True)
    r_sub.add_parser("run", help="apply the [retention] settings now (the daily job does it too)")


def archive_dir(settings: Settings) -> Path | None:
    if not settings.retention.archive:
        return None
    folder = Path(settings.retention.archive_dir)
    return folder if folder.is_absolute() else Path(settings.data_dir) / folder


def retention_policy(settings: Settings) -> RetentionPolicy:
    r = settings.retention
    return RetentionPolicy(r.months(), archive_dir(settings), batch_rows=r.batch_rows)


async def keep_tables(
    engine: AsyncEngine, settings: Settings, now: datetime, progress: JobProgress = UNWATCHED
) -> dict[str, object]:
    """The scheduled job: the partitions ahead, then the retention policy. Returns what it did."""
    async with engine.begin() as conn:
        created = await partitions.ensure(conn, now, settings.retention.months_ahead)
    report = await apply_retention(engine, retention_policy(settings), now, progress)
    return {
        "partitions_created": created,
        "partitions_dropped": report.partitions_dropped,
        "rows_removed": report.rows_removed,
        "files": report.files,
    }


async def _ensure(settings: Settings, months_ahead: int | None) -> int:
    from store import migrate
    from store.engine import create_engine

    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            ahead = settings.retention.months_ahead if months_ahead is None else months_ahead
            created = await partitions.ensure(conn, datetime.now(UTC), ahead)
    finally:
        await engine.dispose()
    print(json.dumps({"partitions_created": created}))
    return 0


async def _run(settings: Settings) -> int:
    from store import migrate
    from store.engine import create_engine

    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        done = await keep_tables(engine, settings, datetime.now(UTC))
    finally:
        await engine.dispose()
    print(json.dumps(done))
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "partitions":
        return asyncio.run(_ensure(settings, args.months_ahead))
    return asyncio.run(_run(settings))
