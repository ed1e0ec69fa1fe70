"""Backing up and restoring the database: one file, the whole database, on either backend.

PostgreSQL: `pg_dump --format=custom` and `pg_restore`, run as child processes without blocking the event loop
(the password goes to them in PGPASSWORD, never on a command line that `ps` shows). SQLite: the sqlite3 online
backup API, in a worker thread, so a running service can keep writing while the copy is taken.

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
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from store import audit, migrate
from store.audit import Actor
from store.engine import create_engine

PG_MAGIC = b"PGDMP"  # the first bytes of a pg_dump custom-format archive
SQLITE_MAGIC = b"SQLite format 3\x00"


class BackupError(Exception):
    """A backup or restore could not be made; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    backend: str  # postgresql | sqlite
    size_bytes: int


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    if name not in ("postgresql", "sqlite"):
        raise BackupError(f"cannot back up a {name} database")
    return name


# --- PostgreSQL -----------------------------------------------------------------------------------------------


def _libpq_args(url: URL) -> tuple[list[str], dict[str, str]]:
    """Connection options for pg_dump/pg_restore and the environment that carries the password."""
    args = []
    if url.host:
        args += ["--host", url.host]
    if url.port:
        args += ["--port", str(url.port)]
    if url.username:
        args += ["--username", url.username]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    ssl = url.query.get("ssl") or url.query.get("sslmode")
    if isinstance(ssl, str):
        env["PGSSLMODE"] = {"true": "require"}.get(ssl, ssl)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return [*args, "--no-password"], env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found on PATH (install the PostgreSQL client, e.g. postgresql-client)")
    return path


async def _run_tool(argv: list[str], env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _stdout, stderr = await process.communicate()
    except BaseException:  # cancelled: do not leave the child running
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()
        raise BackupError(f"{Path(argv[0]).name} failed (exit {process.returncode}): {lines[-1] if lines else ''}")


async def _pg_backup(url: URL, partial: Path) -> None:
    conn_args, env = _libpq_args(url)
    await _run_tool(
        [
            _tool("pg_dump"),
            *conn_args,
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--file={partial}",
            f"--dbname={url.database}",
        ],
        env,
    )


async def _pg_restore(url: URL, path: Path) -> None:
    conn_args, env = _libpq_args(url)
    await _run_tool(
        [
            _tool("pg_restore"),
            *conn_args,
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={url.database}",
            str(path),
        ],
        env,
    )


# --- SQLite ---------------------------------------------------------------------------------------------------


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy one SQLite database into another with the online backup API, then check the copy."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst, pages=4096)  # in steps, so writers are not held off for the whole copy
            (verdict,) = dst.execute("PRAGMA integrity_check").fetchone()
            if verdict != "ok":
                raise BackupError(f"the copy failed its integrity check: {verdict}")
        finally:
            dst.close()
    finally:
        src.close()


def _sqlite_backup(url: URL, partial: Path) -> None:
    source = _sqlite_path(url)
    if not source.exists():
        raise BackupError(f"no database at {source}")
    _sqlite_copy(source, partial)


def _sqlite_restore(url: URL, path: Path) -> None:
    target = _sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (verdict,) = src.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            raise BackupError(f"{path} failed its integrity check: {verdict}")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # replaces every page of the target, WAL included
        finally:
            dst.close()
    finally:
        src.close()


# --- the two operations ---------------------------------------------------------------------------------------


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
    url = make_url(database_url)
    backend = _backend(url)
    partial = path.with_name(path.name + ".partial")
    await asyncio.to_thread(_prepare, path, partial)
    try:
        if backend == "postgresql":
            await _pg_backup(url, partial)
        else:
            await asyncio.to_thread(_sqlite_backup, url, partial)
        size_bytes = await asyncio.to_thread(_put_in_place, partial, path)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if actor is not None:
        after = {"file": str(path), "backend": backend, "size_bytes": size_bytes}
        await _audit(database_url, actor, "database.backup", after=after)
    return BackupResult(path, backend, size_bytes)


def _check_archive(path: Path, backend: str) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        raise BackupError(f"no backup at {path}") from None
    expected = PG_MAGIC if backend == "postgresql" else SQLITE_MAGIC
    if not head.startswith(expected):
        other = "SQLite" if backend == "postgresql" else "PostgreSQL (pg_dump custom format)"
        raise BackupError(f"{path} is not a {backend} backup; the configured database is {backend}, not {other}")


async def database_revision(database_url: str) -> str | None:
    """The schema revision of the database, None when it holds no smsmeter schema."""
    engine = create_engine(database_url)
    try:
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


async def _pg_empty_public_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def restore_database(
    database_url: str, path: Path, *, replace: bool = False, actor: Actor | None = None
) -> str | None:
    """Make the database at `database_url` hold exactly the backup at `path`; return the restored revision, and
    audit it as `actor` in the restored database (`database.restore`, with the revision it replaced).

    A database that already holds a schema is replaced only with `replace=True`. Stop the service first:
    restoring under a running service swaps the data beneath it. Raises `BackupError`."""
    url = make_url(database_url)
    backend = _backend(url)
    _check_archive(path, backend)
    replaced = await database_revision(database_url)
    if not replace and replaced is not None:
        raise BackupError("the database is not empty; restoring replaces all of it (use --replace to confirm)")
    if backend == "postgresql":
        if replace:
            await _pg_empty_public_schema(database_url)
        await _pg_restore(url, path)
    else:
        try:
            await asyncio.to_thread(_sqlite_restore, url, path)
        except sqlite3.Error as exc:
            raise BackupError(f"restore failed: {exc}") from exc
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
