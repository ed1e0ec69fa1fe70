"""Reads for the STS doors: which of these meters have a keypad, and one meter's keypad parameters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.sts import sts_meters

_SHOWN = (
    sts_meters.c.meter_id,
    sts_meters.c.supply_group_code,
    sts_meters.c.tariff_index,
    sts_meters.c.key_revision,
    sts_meters.c.key_type,
    sts_meters.c.base_date_year,
    sts_meters.c.key_change_state,
    sts_meters.c.key_change_revision,
    sts_meters.c.key_change_tokens,
    sts_meters.c.key_change_issued_at,
    sts_meters.c.key_change_accepted_at,
)


async def keypads(conn: AsyncConnection, meter_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    ids = sorted(set(meter_ids))
    if not ids:
        return {}
    rows = await conn.execute(select(*_SHOWN).where(sts_meters.c.meter_id.in_(ids)))
    return {int(r["meter_id"]): _view(dict(r)) for r in rows.mappings()}


def _view(row: dict[str, Any]) -> dict[str, Any]:
    tokens = (row.get("key_change_tokens") or "").split()
    row["key_change_pair"] = [t for t in tokens if t != "R"]  # two tokens, or four for a 16-byte key
    row["key_change_rollover"] = tokens[-1:] == ["R"]
    del row["key_change_tokens"]
    return row
