"""Waking the dispatcher when another process enqueues commands (PostgreSQL LISTEN/NOTIFY).

A transaction that enqueues commands NOTIFYs a channel (the gateway's `COMMANDS_CHANNEL`); PostgreSQL delivers it
at commit, so the dispatcher claims rows it can already see. One dedicated connection (not one of the engine's
pool) listens and calls the dispatcher's `wake`. The dispatcher's poll stays the safety net: while this
connection is down (a database outage, a restart) commands are found by the poll, the listener reconnects by
itself with a growing pause, and wakes the dispatcher once when it listens again (a commit it may have missed).
SQLite has no notifications: `wake_on_notify` gives nothing to run there, and the poll alone finds the commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("smsmeter")

CONNECT_TIMEOUT_S = 5.0
CHECK_EVERY_S = 10.0  # a query on the idle connection, so a silently dead one is noticed
RETRY_MIN_S = 0.5
RETRY_MAX_S = 15.0
APPLICATION_NAME = "smsmeter-command-listener"  # how the connection shows in pg_stat_activity
# options of the URL's query that SQLAlchemy's asyncpg dialect takes for itself, not asyncpg.connect
_SQLALCHEMY_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


def wake_on_notify(engine: AsyncEngine, channel: str, wake: Callable[[], None]) -> Coroutine[Any, Any, None] | None:
    """The loop that calls `wake()` at every notification on `channel` of `engine`'s database, to run as a
    task; None where the database has no notifications (SQLite)."""
    if engine.dialect.name != "postgresql":
        return None
    return listen_for_commands(engine.url, channel, wake)


async def listen_for_commands(
    url: URL,
    channel: str,
    wake: Callable[[], None],
    *,
    check_every_s: float = CHECK_EVERY_S,
    retry_max_s: float = RETRY_MAX_S,
) -> None:
    """Call `wake()` whenever commands are enqueued (a notification on `channel`) in the PostgreSQL database
    at `url`, until cancelled. Never raises for the database being away: it logs, waits and reconnects."""
    args = connect_args(url)
    pause_s = RETRY_MIN_S
    while True:
        try:
            conn: Any = await asyncpg.connect(
                **args, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": APPLICATION_NAME}
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.debug("command notifications: cannot connect (%s); polling meanwhile", type(exc).__name__)
        else:
            try:
                await _listen(conn, channel, wake, check_every_s)
                pause_s = RETRY_MIN_S
                log.warning("command notifications: connection lost; polling until it is back")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("command notifications: %s; polling until the connection is back", type(exc).__name__)
            finally:
                conn.terminate()
        await asyncio.sleep(pause_s)
        pause_s = min(pause_s * 2, retry_max_s)


def connect_args(url: URL) -> dict[str, Any]:
    """`asyncpg.connect` arguments for `url`, read as the engine reads it: the options in its query (a Unix
    socket folder in `?host=`, `ssl`, several hosts) included; SQLAlchemy's own options left out."""
    _, kwargs = url.get_dialect()().create_connect_args(url)
    for own in _SQLALCHEMY_OPTIONS:
        kwargs.pop(own, None)
    return dict(kwargs)


async def _listen(conn: Any, channel: str, wake: Callable[[], None], check_every_s: float) -> None:
    """Listen on `conn` until it is lost (returns) or a check fails (raises)."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())
    await conn.add_listener(channel, lambda *_args: wake())
    wake()  # a commit while nobody listened is found now, not at the next poll
    while not lost.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(check_every_s):
                await lost.wait()
        if not lost.is_set():
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await conn.execute("SELECT 1")
