"""The gateway's own troubles raised as alarm rows, not only as metrics: commands stuck in 0:0 (not handed
to the SMSC) for longer than a set time, and the SMS channel (SMPP bind, modem) down for longer than a set
time. One alarm stays open per condition (`alarms.open_key`): the condition seen again while its alarm is
not acknowledged raises nothing new; once acknowledged, the next occurrence raises a new alarm."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.events import AlarmRaised
from gateway.ports import TransportState
from gateway.states import CommandState
from store.schema.commands import alarms, commands
from store.sql import insert_ignoring_duplicates
from store.uow import UnitOfWork

log = logging.getLogger("smsmeter.gateway.watch")

STUCK = "commands_stuck"
SMSC_DOWN = "smsc_down"


async def raise_open_alarm(
    conn: AsyncConnection, kind: str, detail: str, now: datetime, *, severity: str = "critical", key: str | None = None
) -> AlarmRaised | None:
    """Raise the alarm unless one for the same condition (`key`, default the kind) is open. Returns the
    event of the alarm raised, None when one was open already."""
    result = await conn.execute(
        insert_ignoring_duplicates(alarms, ["open_key"], conn),
        [{"kind": kind, "severity": severity, "raised_at": now, "detail": detail[:500], "open_key": key or kind}],
    )
    if result.rowcount == 0:
        return None
    log.warning("alarm %s: %s", kind, detail)
    return AlarmRaised(None, kind, severity, now, detail[:500])


async def check_stuck_commands(uow: UnitOfWork, now: datetime, *, older_than: timedelta) -> AlarmRaised | None:
    """An alarm when commands have waited in 0:0 longer than `older_than`."""
    c = commands.c
    async with uow.begin() as conn:
        count, oldest = (
            await conn.execute(
                select(func.count(), func.min(c.created_at)).where(
                    c.state == CommandState.SENDING.value, c.created_at < now - older_than
                )
            )
        ).one()
        if not count:
            return None
        minutes = int(older_than.total_seconds() // 60)
        detail = f"{count} commands in 0:0 for more than {minutes} min (the oldest since {oldest:%Y-%m-%d %H:%M} UTC)"
        return await raise_open_alarm(conn, STUCK, detail, now)


class BindWatch:
    """Watches the SMS channel's state: once it has not been bound for `down_after`, an alarm row."""

    def __init__(self, uow: UnitOfWork, state: Callable[[], TransportState], *, down_after: timedelta) -> None:
        self.uow, self.state, self.down_after = uow, state, down_after
        self.down_since: datetime | None = None

    async def check(self, now: datetime) -> AlarmRaised | None:
        state = self.state()
        if state is TransportState.BOUND:
            self.down_since = None
            return None
        if self.down_since is None:
            self.down_since = now
        if now - self.down_since < self.down_after:
            return None
        detail = f"the SMS channel is {state.value} since {self.down_since:%Y-%m-%d %H:%M:%S} UTC"
        async with self.uow.begin() as conn:
            return await raise_open_alarm(conn, SMSC_DOWN, detail, now)
