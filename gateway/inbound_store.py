"""What one batch of meter replies writes, in its transaction (gateway.inbound gathers it): the senders read
and locked with their replay windows, the windows moved on, acknowledged commands settled (each move with its
history row), and the readings, balance reports, alarms, refused SMS and kept texts inserted. Also the door by
which another part keeps an SMS it refused (billing: a keyword it could not read) among the wrong SMS."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from gateway.events import CommandSettled
from gateway.inbound_rows import Work, wrong_sms_row
from gateway.inbound_texts import text_rows
from gateway.ports import InboundSms
from gateway.states import CommandState, Source, ack_target
from store.bulk import OnConflict, RowUpdate, insert_rows, select_among, update_rows
from store.schema.commands import (
    alarms,
    balance_reports,
    command_history,
    commands,
    inbound_texts,
    meter_counters,
    readings,
    wrong_sms,
)
from store.schema.registry import meters
from store.types import UtcDateTime

log = logging.getLogger("smsmeter.gateway.inbound")


@dataclass(frozen=True, slots=True)
class SendingMeter:
    id: int
    code: str
    in_highest: int
    in_bitmap: int
    kind: str = "electricity"  # what its main register measures (meter_protocol.registers)


# the replay window is read, checked and written here: the meters are locked FOR NO KEY UPDATE, not FOR
# UPDATE, since rows that reference the meter (alarms, or a command updated twice in one transaction, whose
# foreign key PostgreSQL checks again) take KEY SHARE locks, which this lets pass; the outbox locks a meter the
# same way before it moves its counter on, so the meter's row guards its `meter_counters` row (a meter without
# one has the window it starts with: nothing seen)
_C = meter_counters.c
_METER_COLUMNS = (
    meters.c.id,
    meters.c.msisdn,
    meters.c.code,
    func.coalesce(_C.in_highest, 0).label("in_highest"),
    func.coalesce(_C.in_bitmap, 0).label("in_bitmap"),
    meters.c.kind,
)
_WITH_COUNTERS = meters.outerjoin(meter_counters, _C.meter_id == meters.c.id)
_ACTIVE = (meters.c.status == "active",)
_BY_ID = (meters.c.id,)

_COMMAND_COLUMNS = (commands.c.id, commands.c.meter_id, commands.c.counter, commands.c.kind, commands.c.state)
_COMMAND_KEY = (commands.c.meter_id, commands.c.counter)
_COMMAND_ORDER = (commands.c.id,)

_REPLAY_WINDOWS = OnConflict(("meter_id",), ("in_highest", "in_bitmap"))  # the row is written the first time

# an acknowledged command moves from the state it was read in (locked) to the one its answer calls for
_SETTLE = RowUpdate(
    commands,
    {"id": None, "state": None, "reason": commands.c.result_reason.type, "was": commands.c.state.type},
    lambda _t, v: {
        "state": v.c.state,
        "result_reason": v.c.reason,
        "next_attempt_at": None,
        "claimed_by": None,
        "claimed_until": None,
        "updated_at": bindparam("now", type_=UtcDateTime()),
        "final_at": bindparam("now", type_=UtcDateTime()),
    },
    lambda t, v: [t.c.state == v.c.was],
)
_READINGS_ONCE = OnConflict(("meter_id", "register", "read_at"))


async def meters_by_number(conn: AsyncConnection, numbers: set[str]) -> dict[str, SendingMeter]:
    """The active meters of those SIM numbers, locked in id order, with their inbound replay windows."""
    rows = await select_among(
        conn,
        _METER_COLUMNS,
        meters.c.msisdn,
        numbers,
        where=_ACTIVE,
        order_by=_BY_ID,
        lock_of=meters,
        from_=_WITH_COUNTERS,
    )
    return {row.msisdn: SendingMeter(row.id, row.code, row.in_highest, row.in_bitmap, row.kind) for row in rows}


async def write_work(conn: AsyncConnection, work: Work, now: datetime, short_number: str) -> None:
    windows = [{"meter_id": m, "in_highest": w.highest, "in_bitmap": w.bitmap} for m, w in sorted(work.windows.items())]
    await insert_rows(conn, meter_counters, windows, _REPLAY_WINDOWS)
    if work.acks:
        await _settle(conn, work, now, short_number)
    await insert_rows(conn, readings, work.readings, _READINGS_ONCE)
    if work.balances:
        await conn.execute(insert(balance_reports), work.balances)
    if work.alarms:
        await conn.execute(insert(alarms), work.alarms)
    if work.wrong:
        await conn.execute(insert(wrong_sms), work.wrong)
    if work.texts:
        await conn.execute(insert(inbound_texts), text_rows(work.texts))


async def _settle(conn: AsyncConnection, work: Work, now: datetime, short_number: str) -> None:
    """Move acknowledged commands forward: OK / DUPLICATE → 1:1, REJECTED → rejected_meter."""
    wanted = sorted({(meter_id, ack.acked_counter) for meter_id, ack in work.acks})
    # the commands are found and locked in id order, as the dispatcher locks them (the two never deadlock)
    rows = await select_among(conn, _COMMAND_COLUMNS, _COMMAND_KEY, wanted, order_by=_COMMAND_ORDER, lock_of=commands)
    current: dict[tuple[int, int], Any] = {(r.meter_id, r.counter): r for r in rows}
    state_now = {k: CommandState(r.state) for k, r in current.items()}
    updates: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for meter_id, ack in work.acks:
        row = current.get((meter_id, ack.acked_counter))
        if row is None:
            log.warning("acknowledgement from meter %s for unknown counter %s", meter_id, ack.acked_counter)
            work.wrong.append(
                wrong_sms_row(
                    meter_id,
                    "",
                    short_number,
                    b"",
                    "unmatched_ack",
                    f"ack for counter {ack.acked_counter}, no such command",
                    now,
                )
            )
            continue
        state = state_now[(meter_id, ack.acked_counter)]
        if state.is_final:
            continue  # a second acknowledgement (e.g. DUPLICATE to a resend): already settled
        target = ack_target(ack.applied)  # a duplicate of a first refusal is a refusal (protocol §9)
        reason = ack.result.name.lower() if target is CommandState.PROCESSED else ack.reason.name.lower()
        updates.append({"id": row.id, "state": target.value, "reason": reason, "was": state.value})
        history.append(
            {
                "command_id": row.id,
                "from_state": state.value,
                "to_state": target.value,
                "at": now,
                "source": Source.METER.value,
                "detail": f"{ack.result.name.lower()}"
                + (f" {ack.reason.name.lower()}" if ack.reason is not mp.ReasonCode.NONE else "")
                + f", credit {ack.credit_minor}",
            }
        )
        # a meter answers each counter once per frame received; the first answer decides
        state_now[(meter_id, ack.acked_counter)] = target
        work.events.append(
            CommandSettled(row.id, meter_id, row.kind, target.value, reason, at=now, credit_minor=ack.credit_minor)
        )
    await update_rows(conn, _SETTLE, updates, now=now)
    await insert_rows(conn, command_history, history)


async def record_wrong_sms(conn: AsyncConnection, sms: InboundSms, reason: str, detail: str) -> None:
    """Keep an SMS another part refused among the wrong SMS, with its reason, in the caller's transaction."""
    row = wrong_sms_row(None, sms.source, sms.destination, sms.body, reason, detail, sms.received_at)
    await conn.execute(insert(wrong_sms).values(**row))
