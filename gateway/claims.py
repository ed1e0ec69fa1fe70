"""Claims: which commands are due, and each one leased to a dispatcher as its next attempt.

A command is due when it is open (0:0, 0:1, 1:0), `next_attempt_at` has passed and no live claim holds it.
The claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` (several dispatcher
processes share one PostgreSQL database; SQLite, one process, has no lock clause), returning each
command's meter address and the state of the command it depends on. A claim is a lease (`claimed_until`):
the dispatcher renews it for its sends under way (`renew`); if the process dies, the lease runs out and
another dispatcher picks the command up. A claim is also the next attempt (`attempts + 1`), and the
attempt's part rows are written in the claim's transaction, before its SMS leave (`sending_part_rows`), so
every send that went out has its own (command, attempt, part) rows.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Update, bindparam, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.states import OPEN_STATES, CommandState
from store.bulk import RowUpdate, lock_in_id_order, one_of, update_rows
from store.schema.commands import commands
from store.schema.registry import meters

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
    await lock_in_id_order(conn, commands, {command_id for command_id, _attempt in sends})
    rows = [{"id": command_id, "attempts": attempt} for command_id, attempt in sorted(sends)]
    await update_rows(conn, _RENEW, rows, worker=worker, until=until)


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


__all__ = ["Claimed", "claim", "release", "renew", "sending_part_rows"]
