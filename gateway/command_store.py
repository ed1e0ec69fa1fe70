"""The command store: what the dispatcher reads and writes of commands, their SMS parts and history.

Every statement is set-based (`store.bulk`: one statement over arrays on PostgreSQL, an executemany on
SQLite) and takes its state conditions from `gateway.states`: a state only ever moves to one of its
successors (`predecessors(target)` in the WHERE or CASE of each update), every move with its history row.
Nothing here decides: the recorder hands in what `gateway.states` decided, this module persists it.

Claiming and leases are in `gateway.claims`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.claims import Claimed
from gateway.errors import TransportError
from gateway.events import AlarmRaised, CommandSettled, GatewayEvent
from gateway.states import OPEN_STATES, CommandState, Source, predecessors
from store.bulk import OnConflict, RowUpdate, Values, insert_rows, lock_in_id_order, one_of, select_among, update_rows
from store.schema.commands import alarms, command_history, command_parts, commands
from store.types import UtcDateTime

_OPEN = sorted(s.value for s in OPEN_STATES)


@dataclass(slots=True)
class SendResult:
    """What the transport said to one attempt: a message id (or None) and a status per part, or an error."""

    command: Claimed
    attempt: int
    bodies: list[tuple[bytes, bool]]
    message_ids: list[str | None]
    statuses: list[int | None]
    error: TransportError | None
    at: datetime
    # set when this only reports submit_sm_resp that came after the submit timeout: the parts (1-based) whose
    # message ids came late; only their rows are written, and the command moves to 0:1 once every part has one
    late_seqs: tuple[int, ...] = ()


@dataclass(slots=True)
class Final:
    """A command to end in `state` (only from an open state)."""

    command_id: int
    meter_id: int
    kind: str
    state: CommandState
    source: Source
    detail: str
    smsc_status: int | None = None
    attempts: int | None = None  # the command's attempts to keep (a claim that ended it sent nothing)


@dataclass(frozen=True, slots=True)
class Reschedule:
    """A command's row after attempt `attempts`: when to look at it again, its last SMSC status and the state
    the attempt moved it to (None: keep its state). `undo`: the attempt did not count (throttled, nothing
    taken by the SMSC), so the attempts go back one — unless a later claim has begun another since.

    A result for an attempt older than the command's newest (its lease ran out and it was claimed and sent
    again before this result was recorded) moves the state forward and leaves the newer claim alone."""

    command_id: int
    attempts: int
    next_attempt_at: datetime | None
    smsc_status: int | None
    to_state: CommandState | None = None
    undo: bool = False


@dataclass(frozen=True, slots=True)
class PartMark:
    """A part's receipt: its new state, when, and the receipt's error code."""

    part_id: int
    state: str
    at: datetime
    error_code: int | None


def history_row(
    command_id: int, from_state: CommandState, to_state: CommandState, at: datetime, source: Source, detail: str
) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "from_state": from_state.value,
        "to_state": to_state.value,
        "at": at,
        "source": source.value,
        "detail": detail[:500],
    }


async def lock(conn: AsyncConnection, command_ids: set[int]) -> None:
    """Lock every command row this transaction will change, in id order, before changing any: the inbound
    path locks in the same order, so the two never deadlock."""
    await lock_in_id_order(conn, commands, command_ids)


async def parts_by_message_id(conn: AsyncConnection, message_ids: set[str]) -> dict[str, Any]:
    p = command_parts.c
    rows = await select_among(conn, (p.id, p.command_id, p.attempt, p.message_id, p.state), p.message_id, message_ids)
    return {row.message_id: row for row in rows}


# -- recording attempts ----------------------------------------------------------------------------


def _advance(t: Any, v: Values) -> Any:
    """The state an attempt moves a command to: forward only (0:0 → 0:1, 0:0 / 0:1 → 1:0), else as it is."""
    steps = [
        (and_(v.c.to_state == target.value, one_of(t.c.state, {s.value for s in predecessors(target)})), target.value)
        for target in (CommandState.DELIVERED, CommandState.ACCEPTED)
    ]
    return case(*steps, else_=t.c.state)


def _after_attempt(t: Any, v: Values) -> dict[str, Any]:
    newest = t.c.attempts <= v.c.attempts  # no later claim of the command has begun since this attempt
    return {
        "attempts": case(
            (and_(v.c.undo == 1, t.c.attempts == v.c.attempts), v.c.attempts - 1),
            (newest, v.c.attempts),
            else_=t.c.attempts,
        ),
        "next_attempt_at": case(
            (~newest, t.c.next_attempt_at), (one_of(t.c.state, _OPEN), v.c.next_attempt_at), else_=None
        ),
        "smsc_status": func.coalesce(v.c.status, t.c.smsc_status),
        "claimed_by": case((newest, None), else_=t.c.claimed_by),
        "claimed_until": case((newest, None), else_=t.c.claimed_until),
        "updated_at": bindparam("now", type_=UtcDateTime()),
        "state": _advance(t, v),
    }


_RESCHEDULE = RowUpdate(
    commands,
    {
        "id": None,
        "attempts": None,
        "next_attempt_at": None,
        "status": commands.c.smsc_status.type,
        "to_state": commands.c.state.type,
        "undo": Integer(),
    },
    _after_attempt,
    before=("state",),
    returning=("state",),
)

_PARTS_ON_CONFLICT = OnConflict(
    ("command_id", "attempt", "seq"), ("message_id", "state", "smsc_status", "submitted_at", "delivered_at")
)


async def record_parts(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """The parts of attempts, one row per (command, attempt, part); a row already there takes the new values.
    One statement never names a key twice (PostgreSQL refuses that): of two rows for one part the later
    wins, unless only the earlier carries the SMSC's message id."""
    unique: dict[tuple[int, int, int], Mapping[str, Any]] = {}
    for row in rows:
        key = (row["command_id"], row["attempt"], row["seq"])
        earlier = unique.get(key)
        if earlier is None or row.get("message_id") is not None or earlier.get("message_id") is None:
            unique[key] = row
    await insert_rows(conn, command_parts, list(unique.values()), _PARTS_ON_CONFLICT)


async def reschedule(conn: AsyncConnection, rows: Sequence[Reschedule], now: datetime) -> dict[int, tuple[str, str]]:
    """Write each command's attempts, next look, status and (forward only) state, lease released; returns
    {command id: (state before, state after)}."""
    values = [
        {
            "id": r.command_id,
            "attempts": r.attempts,
            "next_attempt_at": r.next_attempt_at,
            "status": r.smsc_status,
            "to_state": r.to_state.value if r.to_state is not None else None,
            "undo": int(r.undo),
        }
        for r in rows
    ]
    return {int(i): (str(was), str(state)) for i, was, state in await update_rows(conn, _RESCHEDULE, values, now=now)}


async def add_history(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    await insert_rows(conn, command_history, rows)


# -- final states ----------------------------------------------------------------------------------

_FINISH = RowUpdate(
    commands,
    {
        "id": None,
        "state": None,
        "reason": commands.c.result_reason.type,
        "status": commands.c.smsc_status.type,
        "attempts": commands.c.attempts.type,
    },
    lambda t, v: {
        "state": v.c.state,
        "attempts": func.coalesce(v.c.attempts, t.c.attempts),
        "result_reason": v.c.reason,
        "smsc_status": func.coalesce(v.c.status, t.c.smsc_status),
        "next_attempt_at": None,
        "claimed_by": None,
        "claimed_until": None,
        "updated_at": bindparam("now", type_=UtcDateTime()),
        "final_at": bindparam("now", type_=UtcDateTime()),
    },
    # every final state is reached from the open states only
    lambda t, _v: [one_of(t.c.state, _OPEN)],
    before=("state",),
)


async def finish(conn: AsyncConnection, finals: Sequence[Final], now: datetime) -> list[GatewayEvent]:
    """End each command in its final state (only from an open state; the first final of a command wins),
    with its history row, and an alarm unless it was cancelled; returns the events to publish."""
    first: dict[int, Final] = {}
    for f in finals:
        first.setdefault(f.command_id, f)  # as one at a time: a second final for a command finds it final
    if not first:
        return []
    ordered = [first[i] for i in sorted(first)]
    values = [
        {
            "id": f.command_id,
            "state": f.state.value,
            "reason": f.detail[:200],
            "status": f.smsc_status,
            "attempts": f.attempts,
        }
        for f in ordered
    ]
    moved = {int(i): str(was) for i, was in await update_rows(conn, _FINISH, values, now=now)}
    events: list[GatewayEvent] = []
    history: list[dict[str, Any]] = []
    alarm_rows: list[dict[str, Any]] = []
    for f in ordered:
        previous = moved.get(f.command_id)
        if previous is None:
            continue
        history.append(history_row(f.command_id, CommandState(previous), f.state, now, f.source, f.detail))
        events.append(CommandSettled(f.command_id, f.meter_id, f.kind, f.state.value, f.detail, at=now))
        if f.state is not CommandState.CANCELLED:
            detail = f"command {f.command_id} ({f.kind}) {f.state.value}: {f.detail}"[:500]
            alarm_rows.append(
                {
                    "meter_id": f.meter_id,
                    "command_id": f.command_id,
                    "kind": "command_failed",
                    "severity": "warning",
                    "raised_at": now,
                    "detail": detail,
                }
            )
            events.append(AlarmRaised(f.meter_id, "command_failed", "warning", now, detail, f.command_id))
    await add_history(conn, history)
    await insert_rows(conn, alarms, alarm_rows)
    return events


async def raise_alarm(
    conn: AsyncConnection, meter_id: int | None, command_id: int | None, kind: str, detail: str, now: datetime
) -> None:
    await insert_rows(
        conn,
        alarms,
        [
            {
                "meter_id": meter_id,
                "command_id": command_id,
                "kind": kind,
                "severity": "warning",
                "raised_at": now,
                "detail": detail[:500],
            }
        ],
    )


# -- receipts --------------------------------------------------------------------------------------

_MARK_PARTS = RowUpdate(
    command_parts,
    {"id": None, "state": None, "at": command_parts.c.delivered_at.type, "err": command_parts.c.smsc_status.type},
    lambda t, v: {"state": v.c.state, "delivered_at": v.c.at, "smsc_status": func.coalesce(v.c.err, t.c.smsc_status)},
)


async def mark_parts(conn: AsyncConnection, marks: Sequence[PartMark]) -> None:
    await update_rows(
        conn, _MARK_PARTS, [{"id": m.part_id, "state": m.state, "at": m.at, "err": m.error_code} for m in marks]
    )


def _every_part_delivered(t: Any) -> Any:
    """One of the command's attempts has every part the SMSC took (message id known) delivered."""
    p = command_parts.alias("p")
    delivered = func.sum(case((p.c.state == CommandState.DELIVERED.value, 1), else_=0))
    return exists(
        select(1)
        .where(p.c.command_id == t.c.id, p.c.message_id.is_not(None))
        .group_by(p.c.attempt)
        .having(func.count() == delivered)
    )


_MOVE_DELIVERED = RowUpdate(
    commands,
    {"id": None},
    lambda _t, _v: {"state": CommandState.DELIVERED.value, "updated_at": bindparam("now", type_=UtcDateTime())},
    lambda t, _v: [
        one_of(t.c.state, {s.value for s in predecessors(CommandState.DELIVERED)}),
        _every_part_delivered(t),
    ],
    before=("state",),
)


async def move_delivered(conn: AsyncConnection, command_ids: Sequence[int], now: datetime) -> int:
    """0:0 / 0:1 → 1:0 for the commands one of whose attempts has every part delivered, with history."""
    moved = await update_rows(conn, _MOVE_DELIVERED, [{"id": i} for i in sorted(command_ids)], now=now)
    await add_history(
        conn,
        [
            history_row(int(i), CommandState(s), CommandState.DELIVERED, now, Source.RECEIPT, "every part delivered")
            for i, s in moved
        ],
    )
    return len(moved)


async def commands_by_id(conn: AsyncConnection, command_ids: set[int]) -> list[Any]:
    c = commands.c
    return await select_among(conn, (c.id, c.meter_id, c.kind, c.state, c.attempts, c.claimed_until), c.id, command_ids)


_RETRY_LATER = RowUpdate(
    commands,
    {"id": None, "was": commands.c.state.type, "next": commands.c.next_attempt_at.type},
    lambda _t, v: {"next_attempt_at": v.c.next, "updated_at": bindparam("now", type_=UtcDateTime())},
    lambda t, v: [t.c.state == v.c.was],
)


async def retry_later(
    conn: AsyncConnection, retries: Sequence[tuple[int, CommandState, datetime]], now: datetime
) -> None:
    """Bring each command's next attempt to the time given, if it is still in the state it was seen in."""
    rows = [{"id": i, "was": state.value, "next": at} for i, state, at in retries]
    await update_rows(conn, _RETRY_LATER, rows, now=now)


__all__ = [
    "Final",
    "PartMark",
    "Reschedule",
    "SendResult",
    "add_history",
    "commands_by_id",
    "finish",
    "history_row",
    "lock",
    "mark_parts",
    "move_delivered",
    "parts_by_message_id",
    "raise_alarm",
    "record_parts",
    "reschedule",
    "retry_later",
]
