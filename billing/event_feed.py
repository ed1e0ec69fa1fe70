"""The events of what the gateway records — readings, alarms, command outcomes — taken from the rows it wrote.

Readings, alarms and command history rows are written on the gateway's busiest paths (the inbound batch and
the recorder, a few statements per batch of hundreds of SMS), and by billing in several places (readings
typed in or imported, losses and top-up alarms); rather than add an event insert to each of them, this feed
reads those rows incrementally and writes their events (`store.events`) in the transaction that moves its
watermark (`job_watermarks`, one per source: `events:reading`, `events:alarm`, `events:command`). The rows are
the record, written in the transaction of the change; an event follows within a run of the job. As in the
consumption job, a row younger than `SETTLE` waits for the next run, since a transaction that is still open may
commit a lower id; the feed reads ids in order and stops at the first unsettled row. Event ids come from the
row (`reading:<id>`, `alarm:<id>`, `command:<command id>:<state>`), so a repeated run writes nothing twice.
Payments are different: their events are written by billing's crediting in the payment's own transaction.

A source no active subscription wants is skipped: its watermark moves to the newest row without events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.states import FINAL_STATES
from store.events import Event, EventKind, emit
from store.schema import commands as C  # noqa: N812
from store.schema.consumption import job_watermarks
from store.schema.events import event_subscriptions
from store.schema.registry import meters
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress

SETTLE = timedelta(seconds=10)
BATCH = 2000

W, M = job_watermarks.c, meters.c


@dataclass(frozen=True, slots=True)
class _Source:
    kind: EventKind
    table: Any
    time: Any  # the column that says when the row was written
    query: Callable[[int], Any]  # rows after a watermark, in id order, with the time column as `written_at`
    event: Callable[[Any], Event]


def _readings_after(position: int) -> Any:
    r = C.readings.c
    return (
        select(
            r.id,
            r.meter_id,
            M.code,
            r.register,
            r.value,
            r.read_at,
            r.source,
            r.status,
            r.received_at.label("written_at"),
        )
        .select_from(C.readings.join(meters, M.id == r.meter_id))
        .where(r.id > position)
        .order_by(r.id)
        .limit(BATCH)
    )


def _reading_event(row: Any) -> Event:
    return Event(
        f"reading:{row.id}",
        EventKind.READING,
        row.read_at,
        {
            "reading_id": int(row.id),
            "meter": row.code,
            "register": row.register,
            "value": int(row.value),
            "read_at": row.read_at.isoformat(),
            "source": row.source,
            "status": row.status,
        },
    )


def _alarms_after(position: int) -> Any:
    a = C.alarms.c
    return (
        select(a.id, M.code, a.command_id, a.kind, a.severity, a.raised_at, a.detail, a.raised_at.label("written_at"))
        .select_from(C.alarms.outerjoin(meters, M.id == a.meter_id))
        .where(a.id > position)
        .order_by(a.id)
        .limit(BATCH)
    )


def _alarm_event(row: Any) -> Event:
    return Event(
        f"alarm:{row.id}",
        EventKind.ALARM,
        row.raised_at,
        {
            "alarm_id": int(row.id),
            "meter": row.code,
            "command_id": row.command_id,
            "kind": row.kind,
            "severity": row.severity,
            "raised_at": row.raised_at.isoformat(),
            "detail": row.detail,
        },
    )


_FINAL = sorted(s.value for s in FINAL_STATES)


def _outcomes_after(position: int) -> Any:
    h, c = C.command_history.c, C.commands.c
    return (
        select(
            h.id,
            h.command_id,
            c.kind,
            M.code,
            h.from_state,
            h.to_state,
            h.source,
            h.detail,
            h.at,
            h.at.label("written_at"),
        )
        .select_from(C.command_history.join(C.commands, c.id == h.command_id).join(meters, M.id == c.meter_id))
        .where(h.id > position)
        .order_by(h.id)
        .limit(BATCH)
    )


def _outcome_event(row: Any) -> Event:
    return Event(
        f"command:{row.command_id}:{row.to_state}",
        EventKind.COMMAND,
        row.at,
        {
            "command_id": int(row.command_id),
            "meter": row.code,
            "command": row.kind,
            "state": row.to_state,
            "from_state": row.from_state,
            "source": row.source,
            "detail": row.detail,
            "at": row.at.isoformat(),
        },
    )


SOURCES = (
    _Source(EventKind.READING, C.readings, C.readings.c.received_at, _readings_after, _reading_event),
    _Source(EventKind.ALARM, C.alarms, C.alarms.c.raised_at, _alarms_after, _alarm_event),
    _Source(EventKind.COMMAND, C.command_history, C.command_history.c.at, _outcomes_after, _outcome_event),
)


async def _watermark(conn: AsyncConnection, source: _Source, now: datetime) -> int:
    name = f"events:{source.kind.value}"
    position = await conn.scalar(select(W.position).where(W.name == name))
    if position is None:  # a new head end, or one that had no webhooks: events start from now on
        position = int(await conn.scalar(select(func.coalesce(func.max(source.table.c.id), 0))) or 0)
        await conn.execute(insert(job_watermarks).values(name=name, position=position, updated_at=now))
    return int(position)


async def _move(conn: AsyncConnection, source: _Source, position: int, now: datetime) -> None:
    name = f"events:{source.kind.value}"
    await conn.execute(update(job_watermarks).where(W.name == name).values(position=position, updated_at=now))


async def _wanted_kinds(conn: AsyncConnection) -> set[str]:
    """The event kinds some active subscription wants."""
    rows = await conn.execute(select(event_subscriptions.c.kinds).where(event_subscriptions.c.active == 1))
    return {k for row in rows for k in str(row.kinds).split(",")}


def _settled(rows: Sequence[Any], now: datetime) -> list[Any]:
    out = []
    for row in rows:
        if row.written_at > now - SETTLE:
            break
        out.append(row)
    return out


async def feed_events(uow: UnitOfWork, now: datetime, progress: JobProgress = UNWATCHED) -> int:
    """Write the events of the readings, alarms and command outcomes stored since the last run; how many."""
    written = 0
    async with uow.connect() as conn:
        wanted = await _wanted_kinds(conn)
    for source in SOURCES:
        while not progress.stop_requested:
            async with uow.begin() as conn:
                position = await _watermark(conn, source, now)
                if source.kind.value not in wanted:
                    newest = await conn.scalar(select(func.max(source.table.c.id)).where(source.table.c.id > position))
                    if newest is not None:
                        await _move(conn, source, int(newest), now)
                    break
                rows = (await conn.execute(source.query(position))).all()
                settled = _settled(rows, now)
                if not settled:
                    break
                events = [source.event(r) for r in settled]
                if source.kind is EventKind.COMMAND:
                    events = [e for e, r in zip(events, settled, strict=True) if r.to_state in _FINAL]
                await emit(conn, events, now)
                await _move(conn, source, int(settled[-1].id), now)
            written += len(events)
            progress.advanced(len(settled))
            if len(settled) < BATCH:
                break
    return written
