"""Meter keys as the card and the API show them (read-only): the key id in force, a change under way with
its command's state, and every key the meter has had — never the keys themselves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.commands import commands
from store.schema.registry import meter_keys, meters

KEY_CHANGE = "key_change"


async def key_states(conn: AsyncConnection, meter_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """meter → {"key_id": in force, "pending": {key_id, command_id, state} | None, "last_change": the latest
    key change's {command_id, key_id, state} | None}."""
    if not meter_ids:
        return {}
    ids = list(meter_ids)
    k, c = meter_keys.c, commands.c
    out: dict[int, dict[str, Any]] = {
        m: {"key_id": key_id, "pending": None, "last_change": None}
        for m, key_id in await conn.execute(select(meters.c.id, meters.c.key_id).where(meters.c.id.in_(ids)))
    }
    changes = await conn.execute(
        select(c.id, c.meter_id, c.state, c.payload).where(c.kind == KEY_CHANGE, c.meter_id.in_(ids)).order_by(c.id)
    )
    for row in changes:
        out[row.meter_id]["last_change"] = {
            "command_id": row.id,
            "key_id": int(row.payload["new_key_id"]),
            "state": row.state,
        }
    pending = await conn.execute(select(k.meter_id, k.key_id).where(k.status == "pending", k.meter_id.in_(ids)))
    for meter_id, key_id in pending:
        last = out[meter_id]["last_change"]
        out[meter_id]["pending"] = {
            "key_id": key_id,
            "command_id": last["command_id"] if last and last["key_id"] == key_id else None,
            "state": last["state"] if last and last["key_id"] == key_id else None,
        }
    return out


async def meter_keys_of(conn: AsyncConnection, meter_id: int) -> list[dict[str, Any]]:
    """Every key the meter has had: id, status (active | pending | retired | failed), when made and retired."""
    k = meter_keys.c
    rows = await conn.execute(
        select(k.key_id, k.status, k.created_at, k.retired_at).where(k.meter_id == meter_id).order_by(k.key_id)
    )
    return [dict(r._mapping) for r in rows]
