"""A meter's frame counters as the gateway keeps them (`meter_counters`): the head-end → meter counter the
next command is sealed with and the meter → head-end replay window. The outbox and the inbound path move them
on as they seal and open frames; this is the door for another part that talked to a meter outside them — a
conformance run on a sample meter (docs/protocol.md §14, `billing.conformance`) reads where they stand and
keeps where the run left them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.bulk import OnConflict, insert_rows, lock_in_id_order
from store.schema.commands import meter_counters
from store.schema.registry import meters


@dataclass(frozen=True, slots=True)
class MeterCounters:
    next_counter: int  # the head-end counter the next command is sealed with
    in_highest: int  # the highest meter counter seen
    in_bitmap: int  # the counters seen below it (meter_protocol.ReplayWindow)


STARTING = MeterCounters(1, 0, 0)  # a meter the gateway has not talked to
_C = meter_counters.c
_ALL = OnConflict(("meter_id",), ("next_counter", "in_highest", "in_bitmap"))


async def counters_of(conn: AsyncConnection, meter_id: int) -> MeterCounters:
    row = (
        await conn.execute(select(_C.next_counter, _C.in_highest, _C.in_bitmap).where(_C.meter_id == meter_id))
    ).first()
    return STARTING if row is None else MeterCounters(int(row[0]), int(row[1]), int(row[2]))


async def move_counters_on(conn: AsyncConnection, meter_id: int, reached: MeterCounters) -> MeterCounters:
    """Keep what a meter's counters reached outside the outbox and the inbound path: the next counter moves on
    to `reached.next_counter` and the window to `reached`'s if it is ahead; neither moves back (a counter is
    never reused). The meter's row is locked first, as the outbox locks it. Returns the counters kept."""
    await lock_in_id_order(conn, meters, [meter_id])
    now = await counters_of(conn, meter_id)
    kept = MeterCounters(
        max(now.next_counter, reached.next_counter),
        *(
            (reached.in_highest, reached.in_bitmap)
            if reached.in_highest > now.in_highest
            else (now.in_highest, now.in_bitmap)
        ),
    )
    row = {
        "meter_id": meter_id,
        "next_counter": kept.next_counter,
        "in_highest": kept.in_highest,
        "in_bitmap": kept.in_bitmap,
    }
    await insert_rows(conn, meter_counters, [row], _ALL)
    return kept
