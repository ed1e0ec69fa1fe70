"""A command's outcome as the console's live box follows it: its state, whether that is final, the meter's
reason when it refused, the credit the meter reported with its answer, and whose meter it is (read-only)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.states import CommandState, Source
from store.schema.commands import command_history, commands
from store.schema.ledger import accounts
from store.schema.registry import meters

# The meter's acknowledgement as the inbound path writes it into the history row ("rejected no_credit,
# credit 0"): the credit on the meter when it answered, in minor units.
_ACK_CREDIT = re.compile(r"credit (-?\d+)")


async def command_outcome(conn: AsyncConnection, command_id: int) -> dict[str, Any] | None:
    """{id, kind, state, final, failed, reason, note, meter_id, meter_code, subscriber_id, currency,
    meter_credit_minor}; None when there is no such command."""
    c = commands.c
    row = (
        await conn.execute(
            select(
                c.id,
                c.kind,
                c.state,
                c.result_reason,
                c.payload,
                c.meter_id,
                meters.c.code.label("meter_code"),
                meters.c.subscriber_id,
                accounts.c.currency,
            )
            .join(meters, meters.c.id == c.meter_id)
            .outerjoin(accounts, accounts.c.subscriber_id == meters.c.subscriber_id)
            .where(c.id == command_id)
        )
    ).first()
    if row is None:
        return None
    state = CommandState(row.state)
    credit: int | None = None
    if state is CommandState.REJECTED_METER:
        h = command_history.c
        detail = await conn.scalar(
            select(h.detail)
            .where(h.command_id == command_id, h.source == Source.METER.value)
            .order_by(h.id.desc())
            .limit(1)
        )
        found = _ACK_CREDIT.search(detail or "")
        credit = int(found.group(1)) if found else None
    return {
        "id": row.id,
        "kind": row.kind,
        "state": state.value,
        "final": state.is_final,
        "failed": state.is_failure,
        "reason": row.result_reason,
        "note": (row.payload or {}).get("note"),
        "meter_id": row.meter_id,
        "meter_code": row.meter_code,
        "subscriber_id": row.subscriber_id,
        "currency": row.currency,
        "meter_credit_minor": credit,
    }


async def latest_command_of_subscriber(conn: AsyncConnection, subscriber_id: int, kind: str) -> int | None:
    """The newest command of `kind` to any of the subscriber's meters (e.g. the tariff a change just sent)."""
    c = commands.c
    found = await conn.scalar(
        select(c.id)
        .join(meters, meters.c.id == c.meter_id)
        .where(meters.c.subscriber_id == subscriber_id, c.kind == kind)
        .order_by(c.id.desc())
        .limit(1)
    )
    return int(found) if found is not None else None
