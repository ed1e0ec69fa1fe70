"""Retention of the tables that grow for years (`store.partitions.GROWING`): how many months each keeps, the
older rows archived to a file and then removed, the same policy on both databases.

A table keeps the current month and the `months` before it; `months` 0 keeps everything. What is older:
- PostgreSQL, a split table: each month partition wholly before the cutoff is read out to
  `<archive>/<partition>.jsonl.gz` (written under a temporary name, renamed when complete), then detached
  and dropped — no row-by-row delete, no bloat, no vacuum debt;
- then, on either database, the old rows left (SQLite's, those of the default partition, those of the tables
  that are not split) are taken in batches in id order, each batch archived to
  `<archive>/<table>-<first id>-<last id>.jsonl.gz` and deleted in the same transaction.
An archive file holds one JSON object per row (bytes as hex, times ISO 8601 UTC). Archiving is at least once:
a run stopped between a file and its commit writes that batch's file again next time, under the same name
when the batch is the same.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from store.partitions import add_months, drop, growing, month_start, partitions
from store.schema import metadata
from store.sql import among
from telemetry import UNWATCHED, JobProgress

log = logging.getLogger("smsmeter.store.retention")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    months: Mapping[str, int]  # table → months kept before the current one; 0 or absent: kept for ever
    archive_dir: Path | None  # None: old rows are removed without a copy
    batch_rows: int = 5000


@dataclass
class RetentionReport:
    partitions_dropped: list[str] = field(default_factory=list)
    rows_removed: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def cutoff(now: datetime, months: int) -> datetime:
    """Rows before this go: the start of the month `months` before the current one."""
    return add_months(month_start(now), -months)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _write(path: Path, rows: Sequence[Mapping[str, Any]], *, append: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "at" if append else "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps({k: _jsonable(v) for k, v in row.items()}, ensure_ascii=False) + "\n")


async def apply_retention(
    engine: AsyncEngine, policy: RetentionPolicy, now: datetime, progress: JobProgress = UNWATCHED
) -> RetentionReport:
    """Archive and remove every table's rows older than its policy keeps (see the module docstring)."""
    report = RetentionReport()
    for table_name, months in policy.months.items():
        if months <= 0 or progress.stop_requested:
            continue
        table, at = metadata.tables[table_name], growing(table_name).at
        before = cutoff(now, months)
        removed = await _drop_partitions(engine, policy, table, at, before, report, progress)
        removed += await _delete_in_batches(engine, policy, table, at, before, report, progress)
        report.rows_removed[table_name] = removed
        if removed:
            log.info("retention: %s rows of %s before %s archived and removed", removed, table_name, before.date())
    return report


async def _drop_partitions(
    engine: AsyncEngine,
    policy: RetentionPolicy,
    table: Table,
    at: str,
    before: datetime,
    report: RetentionReport,
    progress: JobProgress,
) -> int:
    async with engine.connect() as conn:
        expired = [p for p in await partitions(conn, table.name) if p.high is not None and p.high <= before]
    removed = 0
    for p in expired:
        if progress.stop_requested:
            break
        count = 0
        condition = [table.c[at] < p.high] + ([table.c[at] >= p.low] if p.low is not None else [])
        if policy.archive_dir is not None:
            path = policy.archive_dir / f"{p.name}.jsonl.gz"
            partial = path.with_name(path.name + ".part")
            await asyncio.to_thread(_write, partial, [], append=False)
            after = 0
            while True:
                async with engine.connect() as conn:
                    rows = [
                        dict(r._mapping)
                        for r in await conn.execute(
                            select(table)
                            .where(*condition, table.c.id > after)
                            .order_by(table.c.id)
                            .limit(policy.batch_rows)
                        )
                    ]
                if not rows:
                    break
                await asyncio.to_thread(_write, partial, rows, append=True)
                count, after = count + len(rows), rows[-1]["id"]
            await asyncio.to_thread(os.replace, partial, path)
            report.files.append(str(path))
        async with engine.begin() as conn:
            if policy.archive_dir is None:
                count = int(await conn.scalar(select(func.count()).select_from(table).where(*condition)) or 0)
            dropped = await drop(conn, table.name, p.name)
        if dropped:
            report.partitions_dropped.append(p.name)
            removed += count
            progress.advanced(count)
    return removed


async def _delete_in_batches(
    engine: AsyncEngine,
    policy: RetentionPolicy,
    table: Table,
    at: str,
    before: datetime,
    report: RetentionReport,
    progress: JobProgress,
) -> int:
    removed = 0
    while not progress.stop_requested:
        async with engine.begin() as conn:
            rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    select(table).where(table.c[at] < before).order_by(table.c.id).limit(policy.batch_rows)
                )
            ]
            if not rows:
                break
            ids = [r["id"] for r in rows]
            if policy.archive_dir is not None:
                path = policy.archive_dir / f"{table.name}-{ids[0]}-{ids[-1]}.jsonl.gz"
                await asyncio.to_thread(_write, path, rows, append=False)
                report.files.append(str(path))
            await conn.execute(table.delete().where(among(table.c.id, ids, conn), table.c[at] < before))
        removed += len(rows)
        progress.advanced(len(rows))
    return removed
