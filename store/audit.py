"""The audit log: who did what, when, to what, before and after, from where.

`record` is called with the connection of the transaction that makes the change, so the change and its
audit row commit together or not at all. Nothing in the application updates or deletes audit rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.auth import audit_log


@dataclass(frozen=True, slots=True)
class Actor:
    kind: str  # operator | api_key | subscriber | system
    name: str
    address: str | None = None  # the client's IP address, when there is one

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


SYSTEM = Actor("system", "smsmeter")


async def record(
    conn: AsyncConnection,
    actor: Actor,
    action: str,
    now: datetime,
    *,
    target: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(audit_log).values(
            at=now,
            actor_kind=actor.kind,
            actor=actor.name,
            action=action,
            target=target,
            before=dict(before) if before is not None else None,
            after=dict(after) if after is not None else None,
            address=actor.address,
        )
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit row, for `record_many`."""

    actor: Actor
    action: str
    at: datetime
    target: str | None = None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None


_INSERT_ENTRIES = insert(audit_log)


async def record_many(conn: AsyncConnection, entries: Sequence[Entry]) -> None:
    """`record` for many changes of one transaction, in one statement."""
    if not entries:
        return
    await conn.execute(
        _INSERT_ENTRIES,
        [
            {
                "at": e.at,
                "actor_kind": e.actor.kind,
                "actor": e.actor.name,
                "action": e.action,
                "target": e.target,
                "before": dict(e.before) if e.before is not None else None,
                "after": dict(e.after) if e.after is not None else None,
                "address": e.actor.address,
            }
            for e in entries
        ],
    )
