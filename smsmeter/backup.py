"""Backing up and restoring the database: one file, the whole database, on either backend (the copy itself, which
differs by backend, is `store.backup`'s).

A backup is written to `FILE.partial` and renamed into place only when complete, so a crash or a full disk never
leaves a truncated file under the name an operator will restore from. The master key is NOT in the backup:
meter keys are stored wrapped under it, so keep the key (SMSMETER_MASTER_KEY or `<data_dir>/master.key`) in a
separate, safer place — a backup without its key cannot seal or open a single frame.

Each backup and restore is written to the audit log (`database.backup`, `database.restore`) of the database it
was taken from or restored into: a backup's row comes after the copy (the backup does not hold it), a restore's
row goes into the restored database, with the revision it replaced.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from store import audit, migrate
from store.audit import Actor
from store.backup import BackupError, copier
from store.engine import create_engine

__all__ = ["BackupError", "BackupResult", "backup_database", "database_revision", "restore_database"]


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    backend: str  # postgresql | sqlite
    size_bytes: int


def _prepare(path: Path, partial: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)


def _put_in_place(partial: Path, path: Path) -> int:
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)  # on disk before it takes the name an operator restores from
    finally:
        os.close(fd)
    partial.replace(path)
    return path.stat().st_size


async def _audit(database_url: str, actor: Actor, action: str, **values: Any) -> None:
    """One audit row in the database at `database_url`, when it holds a schema."""
    engine = create_engine(database_url)
    try:
        if await migrate.current_revision(engine) is None:
            return
        async with engine.begin() as conn:
            await audit.record(conn, actor, action, datetime.now(UTC), target="database", **values)
    finally:
        await engine.dispose()


async def backup_database(database_url: str, path: Path, *, actor: Actor | None = None) -> BackupResult:
    """Write a complete backup of the database at `database_url` to `path` (replaced if it exists), and audit
    it as `actor` (`database.backup`).

    Raises `BackupError`."""
    database = copier(database_url, os.environ)
    backend = database.backend
    partial = path.with_name(path.name + ".partial")
    await asyncio.to_thread(_prepare, path, partial)
    try:
        await database.dump(partial)
        size_bytes = await asyncio.to_thread(_put_in_place, partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if actor is not None:
        after = {"file": str(path), "backend": backend, "size_bytes": size_bytes}
        await _audit(database_url, actor, "database.backup", after=after)
    return BackupResult(path, backend, size_bytes)


async def database_revision(database_url: str) -> str | None:
    """The schema revision of the database, None when it holds no smsmeter schema."""
    engine = create_engine(database_url)
    try:
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


async def restore_database(
    database_url: str, path: Path, *, replace: bool = False, actor: Actor | None = None
) -> str | None:
    """Make the database at `database_url` hold exactly the backup at `path`; return the restored revision, and
    audit it as `actor` in the restored database (`database.restore`, with the revision it replaced).

    A database that already holds a schema is replaced only with `replace=True`. Stop the service first:
    restoring under a running service swaps the data beneath it. Raises `BackupError`."""
    database = copier(database_url, os.environ)
    backend = database.backend
    database.check_archive(path)
    replaced = await database_revision(database_url)
    if not replace and replaced is not None:
        raise BackupError("the database is not empty; restoring replaces all of it (use --replace to confirm)")
    await database.load(path, replace=replace)
    revision = await database_revision(database_url)
    if actor is not None:
        await _audit(
            database_url,
            actor,
            "database.restore",
            before={"revision": replaced},
            after={"file": str(path), "backend": backend, "revision": revision},
        )
    return revision
