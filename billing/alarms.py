"""Acknowledging alarms (a tamper, an open cover, a command that failed, a transformer's losses): an
operator says they have seen it. Who and when go on the alarm row, and the audit row is written in the
same transaction. An alarm is acknowledged once: a second acknowledgement (a double submit, another
operator a moment later) changes nothing and reports who was first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from billing.errors import InvalidField, NotFound
from store import audit
from store.audit import Actor
from store.schema.commands import alarms
from store.uow import UnitOfWork

MAX_NOTE = 200


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    alarm_id: int
    acknowledged_at: datetime
    acknowledged_by: str  # "operator:alice", "api_key:scada"
    already: bool  # acknowledged before this call (by `acknowledged_by`): nothing was written


async def acknowledge_alarm(
    uow: UnitOfWork, actor: Actor, alarm_id: int, now: datetime, *, note: str = ""
) -> Acknowledgement:
    """Raises NotFound for an unknown alarm, InvalidField for a note over 200 characters."""
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise InvalidField("note", f"at most {MAX_NOTE} characters")
    a = alarms.c
    async with uow.begin() as conn:
        changed = await conn.execute(
            update(alarms)
            .where(a.id == alarm_id, a.acknowledged_at.is_(None))
            .values(acknowledged_at=now, acknowledged_by=str(actor), open_key=None)  # the condition may alarm again
        )
        row = (await conn.execute(select(alarms).where(a.id == alarm_id))).first()
        if row is None:
            raise NotFound("alarm", alarm_id)
        if changed.rowcount == 0:  # someone was first; their acknowledgement stands
            return Acknowledgement(alarm_id, row.acknowledged_at, row.acknowledged_by or "", already=True)
        after: dict[str, object] = {"kind": row.kind, "severity": row.severity, "meter_id": row.meter_id}
        if note:
            after["note"] = note
        await audit.record(
            conn,
            actor,
            "alarm.acknowledge",
            now,
            target=f"alarm:{alarm_id}",
            before={"acknowledged_at": None},
            after=after,
        )
    return Acknowledgement(alarm_id, now, str(actor), already=False)
