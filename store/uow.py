"""The unit of work: one transaction on one connection, committed on success, rolled back on error.

Use cases write their business rows, ledger entries, outbox rows and audit rows through the same
connection, so they commit together or not at all.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def sqlite_write_lock(engine: AsyncEngine) -> asyncio.Lock | None:
    """The one write lock of a SQLite database in this process, None on PostgreSQL.

    SQLite takes one write transaction at a time for the whole file, and its busy handler is not fair (a
    starved writer fails). Every writer of the process — the gateway's dispatcher and inbound, the payment
    webhooks — queues on this one lock instead, in turn."""
    if engine.dialect.name != "sqlite":
        return None
    return _SQLITE_WRITERS.setdefault(engine.sync_engine, asyncio.Lock())


class UnitOfWork:
    """Hands out transactions on an engine. `async with uow.begin() as conn: ...`"""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def one_writer(self) -> bool:
        """The database takes one write transaction at a time (SQLite): more writers at once gain nothing."""
        return sqlite_write_lock(self.engine) is not None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autocommit off; nothing written is kept unless committed)."""
        async with self.engine.connect() as conn:
            yield conn
