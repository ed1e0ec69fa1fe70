"""The unit of work: one transaction on one connection, committed on success, rolled back on error.

Use cases write their business rows, ledger entries, outbox rows and audit rows through the same
connection, so they commit together or not at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class UnitOfWork:
    """Hands out transactions on an engine. `async with uow.begin() as conn: ...`"""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autocommit off; nothing written is kept unless committed)."""
        async with self.engine.connect() as conn:
            yield conn
