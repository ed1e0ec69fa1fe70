"""The command outbox: the only way anything sends a command to a meter.

`enqueue_command` / `enqueue_commands` run INSIDE the caller's transaction (the same connection as the
ledger rows that cause the command): they allocate the meter's next head-end counters
(meter_counters.next_counter), seal each frame with meter_protocol and the meter's key, and write the command in
state 0:0 with its first history row. Nothing is sent here: after the commit a dispatcher claims the
row and sends exactly these bytes — every retry resends the same frame with the same counter, so the
meter applies it at most once.

Counters are never reused; a counter may be skipped (a request that turns out to repeat an earlier
idempotency key still consumed one), which the meter's replay window accepts.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, cast, func, insert, literal, null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from gateway.errors import (
    CannotCancel,
    CommandNotFound,
    MeterKeyMissing,
    NotACommand,
    UnknownDependency,
    UnknownMeter,
)
from gateway.keys import KeyRing
from gateway.states import CommandState, Source
from store.bulk import Follower, add_to_counters, ignoring_duplicates, insert_returning, insert_rows, select_among
from store.schema.commands import command_history, command_parts, commands, meter_counters
from store.schema.registry import meters
from store.types import UtcDateTime

_CHUNK = 1000
# PostgreSQL: NOTIFY'd by a statement that inserts commands (a trigger, migration 0007), delivered when (and
# only if) its transaction commits, several in one transaction folded into one: a dispatcher in another
# process listening on the channel claims at once.
COMMANDS_CHANNEL = "smsmeter_commands"


@dataclass(frozen=True, slots=True)
class CommandRequest:
    meter_id: int
    message: mp.Command  # a head-end → meter message of meter_protocol
    created_by: str  # "operator:alice", "system:topup", "api:cis" …
    idempotency_key: str | None = None  # unique; a second request with the same key returns the first command
    depends_on_id: int | None = None  # not sent before that command is final (and cancelled if it failed)
    note: str | None = None  # the person's words (a relay reason typed by an operator), kept in the payload


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    from_state: str | None
    to_state: str
    at: datetime
    source: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class PartView:
    seq: int
    attempt: int
    message_id: str | None
    state: str
    smsc_status: int | None
    submitted_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class CommandView:
    id: int
    meter_id: int
    kind: str
    state: CommandState
    counter: int
    key_id: int
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime | None
    depends_on_id: int | None
    idempotency_key: str | None
    smsc_status: int | None
    result_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    final_at: datetime | None
    frame: bytes
    history: tuple[HistoryEntry, ...]
    parts: tuple[PartView, ...]

    @property
    def is_final(self) -> bool:
        return self.state.is_final


def command_kind(message: mp.Message) -> str:
    """`top_up`, `set_tariff`, `relay_on` …: the message type's name in lower case."""
    return message.message_type.name.lower()


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name if value.name is not None else int(value.value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def message_payload(message: mp.Message) -> dict[str, Any]:
    """The message's fields as JSON-ready values, for display and audit (keys as hex, enums by name)."""
    fields = _plain(message)
    assert isinstance(fields, dict)
    return fields


def _payload(request: CommandRequest) -> dict[str, Any]:
    """The command's stored fields: the message's, and the note a person gave with it (`note`)."""
    payload = message_payload(request.message)
    if request.note:
        payload["note"] = request.note
    return payload


def _profile(name: str) -> mp.Profile:
    return mp.Profile.XML if name == "xml" else mp.Profile.BINARY


async def enqueue_command(conn: AsyncConnection, keys: KeyRing, request: CommandRequest, now: datetime) -> int:
    """Write one command (state 0:0) in the caller's transaction; returns its id. Raises an OutboxError
    subclass (UnknownMeter, MeterKeyMissing, NotACommand, UnknownDependency) or a ProtocolError."""
    return (await enqueue_commands(conn, keys, [request], now))[0]


async def enqueue_commands(
    conn: AsyncConnection,
    keys: KeyRing,
    requests: Sequence[CommandRequest],
    now: datetime,
    *,
    keys_are_new: bool = False,
) -> list[int]:
    """Write many commands in the caller's transaction (bulk: one statement per step, 1,000 rows a
    statement); returns their ids in request order. All or nothing: any bad request raises and the
    caller's transaction should roll back. On PostgreSQL the transaction also NOTIFYs `COMMANDS_CHANNEL`
    when it writes a new command (the commands table's trigger does).

    `keys_are_new`: the caller knows that no command carries its requests' idempotency keys yet (a
    top-up's key is unique in its own table first). The lookup of existing keys is skipped; should a key
    exist all the same, the insert fails on its unique index and the caller's transaction rolls back."""
    if not requests:
        return []
    for request in requests:
        if request.message.message_type.direction is not mp.Direction.DOWNLINK:
            raise NotACommand(request.message.message_type.name)

    ids: list[int | None] = [None] * len(requests)
    keyed = {r.idempotency_key for r in requests if r.idempotency_key is not None}
    existing = {} if keys_are_new else await _existing_by_key(conn, keyed)
    first_index_of_key: dict[str, int] = {}
    fresh: list[int] = []  # indexes of requests that make a new command
    duplicate_of: dict[int, int] = {}  # index → index of the first request with the same key in this call
    for i, request in enumerate(requests):
        key = request.idempotency_key
        if key is not None and key in existing:
            ids[i] = existing[key]
        elif key is not None and key in first_index_of_key:
            duplicate_of[i] = first_index_of_key[key]
        else:
            if key is not None:
                first_index_of_key[key] = i
            fresh.append(i)

    if fresh:
        await _check_dependencies(conn, {d for i in fresh if (d := requests[i].depends_on_id) is not None})
        new_ids = await _insert_fresh(conn, keys, [requests[i] for i in fresh], now, keys_are_new=keys_are_new)
        for i, command_id in zip(fresh, new_ids, strict=True):
            ids[i] = command_id
    for i, first in duplicate_of.items():
        ids[i] = ids[first]
    return [i for i in ids if i is not None]


async def _existing_by_key(conn: AsyncConnection, keys: set[str]) -> dict[str, int]:
    rows = await select_among(conn, _BY_KEY, commands.c.idempotency_key, keys)
    return {k: i for k, i in rows}


_BY_KEY = (commands.c.idempotency_key, commands.c.id)


async def _check_dependencies(conn: AsyncConnection, depends_on: set[int]) -> None:
    ordered = sorted(depends_on)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        found = set((await conn.execute(select(commands.c.id).where(commands.c.id.in_(chunk)))).scalars())
        for dep in chunk:
            if dep not in found:
                raise UnknownDependency(dep)


async def _allocate_counters(
    conn: AsyncConnection, per_meter: Counter[int]
) -> dict[int, tuple[int, str, str, int | None]]:
    """Reserve `per_meter[m]` consecutive counters for each meter; returns meter → (first counter, code,
    profile, key id in force). Rows are locked in id order (no deadlock between two bulk enqueues)."""
    meter_ids = sorted(per_meter)
    rows = await add_to_counters(
        conn, meter_counters, "next_counter", per_meter, meters, ("code", "profile", "status", "key_id"), start=1
    )
    allocated: dict[int, tuple[int, str, str, int | None]] = {}
    for meter_id, next_counter, code, profile, status, key_id in rows:
        if status != "active":
            raise UnknownMeter(meter_id)
        allocated[meter_id] = (next_counter - per_meter[meter_id], code, profile, key_id)
    for meter_id in meter_ids:
        if meter_id not in allocated:
            raise UnknownMeter(meter_id)
    return allocated


async def _insert_fresh(
    conn: AsyncConnection, keys: KeyRing, requests: Sequence[CommandRequest], now: datetime, *, keys_are_new: bool
) -> list[int]:
    per_meter = Counter(r.meter_id for r in requests)
    allocated = await _allocate_counters(conn, per_meter)
    in_force = {(m, key_id) for m, (_, _, _, key_id) in allocated.items() if key_id is not None}
    meter_keys = await keys.keys_by_id(conn, in_force)  # unwrapped keys are cached: most often no statement
    next_of: dict[int, int] = defaultdict(int)
    rows: list[dict[str, Any]] = []
    for request in requests:
        first, code, profile, key_id = allocated[request.meter_id]
        if key_id is None or (request.meter_id, key_id) not in meter_keys:
            raise MeterKeyMissing(request.meter_id, -1, "no usable key in force")
        key = meter_keys[(request.meter_id, key_id)]
        counter = first + next_of[request.meter_id]
        next_of[request.meter_id] += 1
        frame = mp.encode_frame(
            request.message, meter_code=code, key=key, key_id=key_id, counter=counter, profile=_profile(profile)
        )
        rows.append(
            {
                "meter_id": request.meter_id,
                "kind": command_kind(request.message),
                "counter": counter,
                "key_id": key_id,
                "frame": frame,
                "payload": _payload(request),
                "state": CommandState.SENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "depends_on_id": request.depends_on_id,
                "idempotency_key": request.idempotency_key,
                "created_by": request.created_by,
                "created_at": now,
                "updated_at": now,
            }
        )
    if len(rows) == 1 and rows[0]["idempotency_key"] is not None and not keys_are_new:
        command_id, new = await _insert_one_keyed(conn, rows[0])
        if new:
            await insert_rows(conn, command_history, [_first_history(command_id, rows[0], now)])
        return [command_id]
    made = {
        (m, n): i
        for i, m, n, _by in await insert_returning(
            conn,
            commands,
            rows,
            ("id", "meter_id", "counter", "created_by"),  # the first history row names who created it
            _FIRST_HISTORY,
            now=now,
            outbox=Source.OUTBOX.value,
        )
    }
    return [made[(r["meter_id"], r["counter"])] for r in rows]


def _first_history(command_id: int, row: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "from_state": None,
        "to_state": CommandState.SENDING.value,
        "at": now,
        "source": Source.OUTBOX.value,
        "detail": f"counter {row['counter']} by {row['created_by']}"[:500],
    }


def _first_history_values(new: Any) -> list[Any]:
    """A new command's first history row (none → 0:0), from its row: the same text as `_first_history`."""
    detail = literal("counter ", String) + cast(new.c.counter, String) + literal(" by ", String) + new.c.created_by
    return [
        new.c.id,
        null(),
        literal(CommandState.SENDING.value, String),
        bindparam("now", type_=UtcDateTime()),
        bindparam("outbox", type_=String),
        func.substr(detail, 1, 500),
    ]


_FIRST_HISTORY = Follower(
    command_history, ("command_id", "from_state", "to_state", "at", "source", "detail"), _first_history_values
)


async def _insert_one_keyed(conn: AsyncConnection, row: dict[str, Any]) -> tuple[int, bool]:
    """Insert one command with an idempotency key; if a concurrent transaction committed the same key
    first, return that command instead (ON CONFLICT DO NOTHING, then read)."""
    stmt = ignoring_duplicates(conn, commands, ["idempotency_key"])
    command_id = await conn.scalar(stmt.values(row).returning(commands.c.id))
    if command_id is not None:
        return int(command_id), True
    existing = await conn.scalar(select(commands.c.id).where(commands.c.idempotency_key == row["idempotency_key"]))
    assert existing is not None
    return int(existing), False


async def get_command(conn: AsyncConnection, command_id: int) -> CommandView:
    """The command with its state history and SMS parts. Raises CommandNotFound."""
    row = (await conn.execute(select(commands).where(commands.c.id == command_id))).mappings().first()
    if row is None:
        raise CommandNotFound(command_id)
    history = await conn.execute(
        select(
            command_history.c.from_state,
            command_history.c.to_state,
            command_history.c.at,
            command_history.c.source,
            command_history.c.detail,
        )
        .where(command_history.c.command_id == command_id)
        .order_by(command_history.c.id)
    )
    parts = await conn.execute(
        select(
            command_parts.c.seq,
            command_parts.c.attempt,
            command_parts.c.message_id,
            command_parts.c.state,
            command_parts.c.smsc_status,
            command_parts.c.submitted_at,
            command_parts.c.delivered_at,
        )
        .where(command_parts.c.command_id == command_id)
        .order_by(command_parts.c.attempt, command_parts.c.seq)
    )
    return CommandView(
        id=row["id"],
        meter_id=row["meter_id"],
        kind=row["kind"],
        state=CommandState(row["state"]),
        counter=row["counter"],
        key_id=row["key_id"],
        payload=dict(row["payload"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        depends_on_id=row["depends_on_id"],
        idempotency_key=row["idempotency_key"],
        smsc_status=row["smsc_status"],
        result_reason=row["result_reason"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        final_at=row["final_at"],
        frame=bytes(row["frame"]),
        history=tuple(HistoryEntry(*h) for h in history),
        parts=tuple(PartView(*p) for p in parts),
    )


async def hold_commands(conn: AsyncConnection, command_ids: Sequence[int], until: datetime) -> None:
    """Send those commands no earlier than `until` (a job spacing its commands out over the minutes)."""
    await conn.execute(update(commands).where(commands.c.id.in_(list(command_ids))).values(next_attempt_at=until))


async def cancel_command(conn: AsyncConnection, command_id: int, now: datetime, *, by: str, reason: str) -> None:
    """Cancel a command that has not been handed to the SMSC yet (state 0:0, not claimed by a dispatcher
    right now). Raises CommandNotFound or CannotCancel."""
    changed = await conn.scalar(
        update(commands)
        .where(
            commands.c.id == command_id,
            commands.c.state == CommandState.SENDING.value,
            (commands.c.claimed_until.is_(None)) | (commands.c.claimed_until < now),
        )
        .values(
            state=CommandState.CANCELLED.value,
            result_reason=reason[:200],
            next_attempt_at=None,
            updated_at=now,
            final_at=now,
        )
        .returning(commands.c.id)
    )
    if changed is None:
        state = await conn.scalar(select(commands.c.state).where(commands.c.id == command_id))
        if state is None:
            raise CommandNotFound(command_id)
        raise CannotCancel(command_id, state)
    await conn.execute(
        insert(command_history).values(
            command_id=command_id,
            from_state=CommandState.SENDING.value,
            to_state=CommandState.CANCELLED.value,
            at=now,
            source=Source.OPERATOR.value,
            detail=f"{by}: {reason}"[:500],
        )
    )


__all__ = [
    "CommandRequest",
    "CommandView",
    "HistoryEntry",
    "PartView",
    "cancel_command",
    "command_kind",
    "enqueue_command",
    "enqueue_commands",
    "get_command",
    "hold_commands",
    "message_payload",
]
