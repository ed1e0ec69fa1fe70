"""Top-up transfer ids: per meter, increasing (`meters.next_transfer_id`). A meter credits a transfer id
once, so a credit sent again with the same id is answered `duplicate`. Both the top-ups and emergency
credit (arrears) take them here."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import NotFound
from store.bulk import add_in_id_order
from store.schema import registry as R  # noqa: N812


async def next_transfer_id(conn: AsyncConnection, meter_id: int) -> int:
    """Allocate the meter's next top-up transfer id (locks the meter row until commit)."""
    m = R.meters.c
    new = await conn.scalar(
        update(R.meters)
        .where(m.id == meter_id)
        .values(next_transfer_id=m.next_transfer_id + 1)
        .returning(m.next_transfer_id)
    )
    if new is None:
        raise NotFound("meter", meter_id)
    return int(new) - 1


async def next_transfer_ids(conn: AsyncConnection, per_meter: Mapping[int, int]) -> dict[int, int]:
    """Allocate `per_meter[m]` consecutive transfer ids for each meter (rows locked in id order, one
    statement); returns each meter's first. Raises NotFound for a meter that does not exist."""
    rows = await add_in_id_order(conn, R.meters, "next_transfer_id", per_meter)
    first = {int(i): int(n) - per_meter[int(i)] for i, n in rows}
    for i in sorted(per_meter):
        if i not in first:
            raise NotFound("meter", i)
    return first
