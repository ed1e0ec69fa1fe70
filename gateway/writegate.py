"""One writer at a time on SQLite; no serialisation on PostgreSQL. Pacing of the gateway's group commits.

SQLite takes one write transaction at a time for the whole file; the gateway's own writers (dispatcher,
inbound) queue on this gate instead of spinning on the busy timeout — on the one lock of the database
(`store.uow.sqlite_write_lock`), which the payment webhooks take too. On PostgreSQL rows are locked
individually and the gate lets everything through.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from store.uow import sqlite_write_lock


class WriteGate:
    def __init__(self, serialise: bool, lock: asyncio.Lock | None = None) -> None:
        self._lock = lock or (asyncio.Lock() if serialise else None)

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> WriteGate:
        """The gate on the process's one SQLite write lock (shared with the other writers, e.g. payments)."""
        lock = sqlite_write_lock(engine)
        return cls(lock is not None, lock)

    async def __aenter__(self) -> None:
        if self._lock is not None:
            await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()


class Pacer:
    """At most one write transaction per `interval_s` under load: a writer that began one less than
    `interval_s` ago waits out the rest before the next, and what arrives meanwhile joins that next one; a
    writer that was idle writes at once. Fewer, larger transactions when busy (each costs its BEGIN, COMMIT
    and a statement per step, whatever its size), no added wait when quiet."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = float("-inf")

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last + self.interval_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last = loop.time()
