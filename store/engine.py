"""Creating the async engine for PostgreSQL (asyncpg) or SQLite (aiosqlite).

SQLite transactions are begun by SQLAlchemy, not by the driver: pysqlite (under aiosqlite) would defer BEGIN
to the first INSERT/UPDATE/DELETE, so a SAVEPOINT taken before a transaction's first write opened the
transaction itself and its RELEASE committed everything so far — a rollback of the outer transaction then
undid nothing. SQLAlchemy's documented recipe ("Serializable isolation / Savepoints / Transactional DDL")
switches the driver's own transaction handling off (`isolation_level = None` on connect) and emits BEGIN when
SQLAlchemy begins a transaction, so reads, savepoints and DDL are inside the transaction they belong to.

A transaction that reads before it writes then holds a snapshot from its first read, and SQLite refuses its first
write ("database is locked", without waiting for the busy timeout) if another connection committed meanwhile.
So on SQLite `engine.begin()` — the transactions that write — takes the write lock when it begins (BEGIN
IMMEDIATE: it waits, up to the busy timeout, for the writer before it), while the transaction a plain
`engine.connect()` begins for its reads is DEFERRED and never blocks a writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BEGIN = "sqlite_begin"  # a connection's execution option: "immediate" for a transaction that will write


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
    # The driver emits no BEGIN (nor COMMIT before DDL) of its own: `_sqlite_begin` does it.
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    immediate = conn.get_execution_options().get(SQLITE_BEGIN) == "immediate"
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class SqliteEngine(AsyncEngine):
    """An AsyncEngine whose `begin()` begins IMMEDIATE: what the transaction reads is still true when it
    writes. Everything else is AsyncEngine's."""

    __slots__ = ()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.connect() as conn:
            await conn.execution_options(**{SQLITE_BEGIN: "immediate"})
            async with conn.begin():
                yield conn


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An engine for `url`. For a SQLite file, its folder is created; foreign keys, WAL and a busy
    timeout are switched on for every connection, every transaction begins with an explicit BEGIN, and
    `begin()` with BEGIN IMMEDIATE."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo)
        # The same object, with `begin()` taking the write lock (a second proxy of the same Engine would be
        # dropped from SQLAlchemy's proxy registry when the first one is collected).
        engine.__class__ = SqliteEngine
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # No ping per checkout (on PostgreSQL it is a BEGIN and a ROLLBACK, two round trips, for every checkout):
    # after an outage the first statement on a dead connection fails as a disconnect, which makes the pool
    # replace every connection it holds; the callers retry (tests/reliability/test_database_outage.py).
    return create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def backend(engine: AsyncEngine) -> str:
    """The database's kind as an operator reads it: `postgresql` or `sqlite`."""
    return str(engine.dialect.name)


async def probe(engine: AsyncEngine, timeout_s: float) -> None:
    """One round trip to the database within `timeout_s`; raises whatever the driver raises if it does not answer."""
    async with asyncio.timeout(timeout_s), engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
