"""Operator actions on a command already queued: cancel one that has not left yet (state 0:0, not claimed
by a dispatcher). The outbox's `cancel_command` moves it to `cancelled` with a history row; here the same
transaction writes the audit row and, for a credit, marks its top-up failed, so the credit (still booked as
sent on the ledger) can be re-issued with the same transfer id (`topup.reissue_top_up`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from billing.errors import InvalidField
from gateway import outbox
from gateway.states import CommandState
from store import audit
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812
from store.schema.commands import commands
from store.uow import UnitOfWork

MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class Cancelled:
    command_id: int
    kind: str
    topup_id: int | None  # the credit's top-up, now failed (re-issue it), when the command was a credit


async def cancel_command(uow: UnitOfWork, actor: Actor, command_id: int, now: datetime, *, reason: str) -> Cancelled:
    """Cancel a command still in 0:0. Raises InvalidField (no reason), the outbox's CommandNotFound, or
    CannotCancel when it has left already (or a dispatcher holds it right now)."""
    reason = reason.strip()
    if not reason:
        raise InvalidField("reason", "say why the command is cancelled")
    if len(reason) > MAX_REASON:
        raise InvalidField("reason", f"at most {MAX_REASON} characters")
    async with uow.begin() as conn:
        await outbox.cancel_command(conn, command_id, now, by=str(actor), reason=reason)
        c = commands.c
        row = (await conn.execute(select(c.kind, c.meter_id).where(c.id == command_id))).one()
        t = L.topups.c
        topup_id = await conn.scalar(
            update(L.topups)
            .where(t.command_id == command_id, t.state == "queued")
            .values(state="failed", updated_at=now)
            .returning(t.id)
        )
        after: dict[str, object] = {"state": CommandState.CANCELLED.value, "reason": reason}
        if topup_id is not None:
            after["topup_id"] = topup_id
            after["topup_state"] = "failed"
        await audit.record(
            conn,
            actor,
            "command.cancel",
            now,
            target=f"command:{command_id}",
            before={"state": CommandState.SENDING.value, "kind": row.kind, "meter_id": row.meter_id},
            after=after,
        )
    return Cancelled(command_id, row.kind, topup_id)
