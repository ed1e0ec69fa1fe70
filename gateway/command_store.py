"""The command store: what the dispatcher reads and writes of commands, their SMS parts and history.

Every statement is set-based (`store.bulk`: one statement over arrays on PostgreSQL, an executemany on
SQLite) and takes its state conditions from `gateway.states`: a state only ever moves to one of its
successors (`predecessors(target)` in the WHERE or CASE of each update), every move with its history row.
Nothing here decides: the recorder hands in what `gateway.states` decided, this module persists it.

Claiming. A command is due when it is open (0:0, 0:1, 1:0), `next_attempt_at` has passed and no live
claim holds it. The claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`
(several dispatcher processes share one PostgreSQL database; SQLite, one process, has no lock clause),
returning each command's meter address and the state of the command it depends on. A claim is a lease
(`claimed_until`): if the process dies, the lease runs out and another dispatcher picks the command up.
A claim is also the next attempt (`attempts + 1`), and the attempt's part rows are written before its SMS
leave (`sending_part_rows`), so every send that went out has its own (command, attempt, part) rows.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Update, and_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import TransportError
from gateway.events import AlarmRaised, CommandSettled, GatewayEvent
from gateway.states import OPEN_STATES, CommandState, Source, predecessors
from store.bulk import OnConflict, RowUpdate, Values, insert_rows, lock_in_id_order, one_of, select_among, update_rows
from store.schema.commands import alarms, command_history, command_parts, commands
from store.schema.registry import meters
from store.types import UtcDateTime

_OPEN = sorted(s.value for s in OPEN_STATES)
_dependency = commands.alias("dependency")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A command claimed for sending, with its meter's address and the state of the command it depends on.
    `attempts` counts this claim: it is the number of the attempt the claim is for."""

    id: int
    meter_id: int
    kind: str
    state: CommandState
    attempts: int
    frame: bytes
    counter: int
    msisdn: str
    app_port: int | None
    depends_on_id: int | None
    dependency_state: str | None


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


# -- claiming ---------------------------------------------------------------------------------------


@functools.cache
def _claim_statement() -> Update:
    """Claim up to `limit` due commands for `worker` until `until` (a lease), as of `now`; returns each with
    its meter's address and the state of the command it depends on."""
    now = bindparam("now", type_=commands.c.next_attempt_at.type)
    due = (
        select(commands.c.id)
        .where(
            commands.c.state.in_(_OPEN),
            commands.c.next_attempt_at <= now,
            or_(commands.c.claimed_until.is_(None), commands.c.claimed_until < now),
            or_(
                commands.c.depends_on_id.is_(None),
                ~exists().where(_dependency.c.id == commands.c.depends_on_id, _dependency.c.state.in_(_OPEN)),
            ),
        )
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, key_share=True, of=commands)  # PostgreSQL; SQLite has one writer
    )
    lease = {
        "claimed_by": bindparam("worker", type_=commands.c.claimed_by.type),
        "claimed_until": bindparam("until", type_=commands.c.claimed_until.type),
        # a claim is the next attempt: a command sent again after its lease ran out (its first send never
        # recorded) is a new attempt, never a second send under the same number
        "attempts": commands.c.attempts + 1,
    }

    # looked up through subqueries whose columns are named apart from those of `commands`: SQLite writes
    # the RETURNING list without table names, so a column name both sides share would bind to the inner one
    address = select(
        meters.c.id.label("address_id"),
        meters.c.msisdn.label("address_msisdn"),
        meters.c.app_port.label("address_port"),
    ).subquery("address")
    dependency = select(
        _dependency.c.id.label("dependency_id"), _dependency.c.state.label("dependency_state")
    ).subquery("dependency_of")

    def of_meter(col: Any) -> Any:
        return select(col).where(address.c.address_id == commands.c.meter_id).scalar_subquery()

    dependency_state = (
        select(dependency.c.dependency_state)
        .where(dependency.c.dependency_id == commands.c.depends_on_id)
        .scalar_subquery()
    )
    return (
        update(commands)
        .where(commands.c.id.in_(due.scalar_subquery()))
        .values(lease)
        .returning(
            commands.c.id,
            commands.c.meter_id,
            commands.c.kind,
            commands.c.state,
            commands.c.attempts,
            commands.c.frame,
            commands.c.counter,
            commands.c.depends_on_id,
            of_meter(address.c.address_msisdn).label("msisdn"),
            of_meter(address.c.address_port).label("app_port"),
            dependency_state.label("dependency_state"),
        )
    )


async def claim(conn: AsyncConnection, *, now: datetime, until: datetime, worker: str, limit: int) -> list[Claimed]:
    rows = await conn.execute(_claim_statement(), {"now": now, "limit": limit, "worker": worker, "until": until})
    return [
        Claimed(
            r.id,
            r.meter_id,
            r.kind,
            CommandState(r.state),
            r.attempts,
            bytes(r.frame),
            r.counter,
            r.msisdn,
            r.app_port,
            r.depends_on_id,
            r.dependency_state if r.depends_on_id is not None else None,
        )
        for r in rows
    ]


_RELEASE = RowUpdate(
    commands,
    {"id": None},
    lambda t, _v: {"claimed_by": None, "claimed_until": None, "attempts": t.c.attempts - 1},
    lambda t, _v: [t.c.claimed_by == bindparam("worker", type_=commands.c.claimed_by.type)],
)


async def release(conn: AsyncConnection, command_ids: Sequence[int], worker: str) -> None:
    """Give claimed commands back that were not sent: lease cleared, the attempt the claim counted taken back."""
    await update_rows(conn, _RELEASE, [{"id": i} for i in command_ids], worker=worker)


_RENEW = RowUpdate(
    commands,
    {"id": None, "attempts": None},
    lambda _t, _v: {"claimed_until": bindparam("until", type_=commands.c.claimed_until.type)},
    lambda t, v: [
        t.c.claimed_by == bindparam("worker", type_=commands.c.claimed_by.type),
        t.c.attempts == v.c.attempts,
        one_of(t.c.state, _OPEN),
    ],
)


async def renew(conn: AsyncConnection, sends: Sequence[tuple[int, int]], worker: str, until: datetime) -> None:
    """Extend the leases of (command, attempt) sends this worker still has under way (in the transport's
    window, or their results not recorded yet), so a live dispatcher's slow send is not claimed again."""
    await lock(conn, {command_id for command_id, _attempt in sends})
    rows = [{"id": command_id, "attempts": attempt} for command_id, attempt in sorted(sends)]
    await update_rows(conn, _RENEW, rows, worker=worker, until=until)


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


def sending_part_rows(
    attempts: Sequence[tuple[Claimed, Sequence[tuple[bytes, bool]]]], now: datetime
) -> list[dict[str, Any]]:
    """The part rows of attempts about to go out (state 0:0, no message id yet), written before the first SMS
    leaves: whatever happens next (a crash, a result never recorded), the command shows the attempt."""
    return [
        {
            "command_id": c.id,
            "seq": seq,
            "body": body,
            "has_udh": int(has_udh),
            "attempt": c.attempts,
            "message_id": None,
            "state": CommandState.SENDING.value,
            "smsc_status": None,
            "submitted_at": now,
            "delivered_at": None,
        }
        for c, bodies in attempts
        for seq, (body, has_udh) in enumerate(bodies, start=1)
    ]


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
    "Claimed",
    "Final",
    "PartMark",
    "Reschedule",
    "SendResult",
    "add_history",
    "claim",
    "commands_by_id",
    "finish",
    "history_row",
    "lock",
    "mark_parts",
    "move_delivered",
    "parts_by_message_id",
    "raise_alarm",
    "record_parts",
    "release",
    "renew",
    "reschedule",
    "retry_later",
    "sending_part_rows",
]
