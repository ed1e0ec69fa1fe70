"""One writer at a time on SQLite; no serialisation on PostgreSQL.

SQLite takes one write transaction at a time for the whole file; the gateway's own writers (dispatcher,
inbound) queue on this gate instead of spinning on the busy timeout. On PostgreSQL rows are locked
individually and the gate lets everything through.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine


class WriteGate:
    def __init__(self, serialise: bool) -> None:
        self._lock = asyncio.Lock() if serialise else None

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> WriteGate:
        return cls(engine.dialect.name == "sqlite")

    async def __aenter__(self) -> None:
        if self._lock is not None:
            await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()
