"""The database copied to one file and back, the difference between the backends inside (smsmeter/backup.py
does the rest: the file put in place whole, the audit rows).

PostgreSQL: `pg_dump --format=custom` and `pg_restore`, run as child processes without blocking the event loop
(the password goes to them in PGPASSWORD, never on a command line that `ps` shows). SQLite: the sqlite3 online
backup API, in a worker thread, so a running service can keep writing while the copy is taken.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from store.engine import create_engine
from store.errors import StoreError

PG_MAGIC = b"PGDMP"  # the first bytes of a pg_dump custom-format archive
SQLITE_MAGIC = b"SQLite format 3\x00"


class BackupError(StoreError):
    """A backup or restore could not be made; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Copier(Protocol):
    """How one backend's database is copied to a file (`dump`) and made to hold one (`load`)."""

    @property
    def backend(self) -> str: ...  # postgresql | sqlite

    async def dump(self, partial: Path) -> None: ...

    def check_archive(self, path: Path) -> None:
        """Raises BackupError when `path` is missing or not this backend's backup."""
        ...

    async def load(self, path: Path, *, replace: bool) -> None:
        """Make the database hold the backup at `path`; `replace`: it holds a schema, which goes first."""
        ...


def copier(database_url: str, environ: Mapping[str, str]) -> Copier:
    """The copier for the database at `database_url`; `environ` is what pg_dump and pg_restore run under (the
    composition root's environment). Raises BackupError for a backend that cannot be backed up."""
    url = make_url(database_url)
    name = url.get_backend_name()
    if name == "postgresql":
        return _PostgresCopier(database_url, url, environ)
    if name == "sqlite":
        return _SqliteCopier(url)
    raise BackupError(f"cannot back up a {name} database")


def _check_magic(path: Path, backend: str, expected: bytes, other: str) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        raise BackupError(f"no backup at {path}") from None
    if not head.startswith(expected):
        raise BackupError(f"{path} is not a {backend} backup; the configured database is {backend}, not {other}")


# --- PostgreSQL -----------------------------------------------------------------------------------------------


class _PostgresCopier:
    backend = "postgresql"

    def __init__(self, database_url: str, url: URL, environ: Mapping[str, str]) -> None:
        self._database_url = database_url
        self._url = url
        self._environ = environ

    def _libpq_args(self) -> tuple[list[str], dict[str, str]]:
        """Connection options for pg_dump/pg_restore and the environment that carries the password."""
        url = self._url
        args = []
        if url.host:
            args += ["--host", url.host]
        if url.port:
            args += ["--port", str(url.port)]
        if url.username:
            args += ["--username", url.username]
        env = dict(self._environ)
        if url.password:
            env["PGPASSWORD"] = str(url.password)
        ssl = url.query.get("ssl") or url.query.get("sslmode")
        if isinstance(ssl, str):
            env["PGSSLMODE"] = {"true": "require"}.get(ssl, ssl)
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return [*args, "--no-password"], env

    async def dump(self, partial: Path) -> None:
        conn_args, env = self._libpq_args()
        await _run_tool(
            [
                _tool("pg_dump"),
                *conn_args,
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--file={partial}",
                f"--dbname={self._url.database}",
            ],
            env,
        )

    def check_archive(self, path: Path) -> None:
        _check_magic(path, self.backend, PG_MAGIC, "SQLite")

    async def load(self, path: Path, *, replace: bool) -> None:
        if replace:
            await self._empty_public_schema()
        conn_args, env = self._libpq_args()
        await _run_tool(
            [
                _tool("pg_restore"),
                *conn_args,
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={self._url.database}",
                str(path),
            ],
            env,
        )

    async def _empty_public_schema(self) -> None:
        engine = create_engine(self._database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        finally:
            await engine.dispose()


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


# --- SQLite ---------------------------------------------------------------------------------------------------


class _SqliteCopier:
    backend = "sqlite"

    def __init__(self, url: URL) -> None:
        self._url = url

    def _path(self) -> Path:
        if not self._url.database or self._url.database == ":memory:":
            raise BackupError("an in-memory SQLite database cannot be backed up")
        return Path(self._url.database)

    async def dump(self, partial: Path) -> None:
        try:
            await asyncio.to_thread(self._backup, partial)
        except sqlite3.Error as exc:
            raise BackupError(f"backup failed: {exc}") from exc

    def _backup(self, partial: Path) -> None:
        source = self._path()
        if not source.exists():
            raise BackupError(f"no database at {source}")
        _sqlite_copy(source, partial)

    def check_archive(self, path: Path) -> None:
        _check_magic(path, self.backend, SQLITE_MAGIC, "PostgreSQL (pg_dump custom format)")

    async def load(self, path: Path, *, replace: bool) -> None:  # every page of the target is replaced
        try:
            await asyncio.to_thread(self._restore, path)
        except sqlite3.Error as exc:
            raise BackupError(f"restore failed: {exc}") from exc

    def _restore(self, path: Path) -> None:
        target = self._path()
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
