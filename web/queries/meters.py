"""The meter card and the transformer lists (read-only): a meter with its subscriber, transformer, keys,
history, recent commands and the tariff version it runs — the newest one it acknowledged at 1:1."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.states import CommandState
from store.schema.commands import commands
from store.schema.ledger import tariff_versions, tariffs
from store.schema.registry import meter_history, meter_keys, meters, subscribers, transformers
from web.queries.registry import recent_commands

_PROCESSED = CommandState.PROCESSED.value


async def tariff_versions_of(conn: AsyncConnection, meter_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per meter: `running` — the tariff version (wire version = tariff_versions.id) of the newest
    set_tariff the meter acknowledged at 1:1 — and `pending`, a newer one on its way (its state)."""
    if not meter_ids:
        return {}
    rows = (
        await conn.execute(
            select(commands.c.meter_id, commands.c.id, commands.c.state, commands.c.payload, commands.c.final_at)
            .where(commands.c.meter_id.in_(meter_ids), commands.c.kind == "set_tariff")
            .order_by(commands.c.id)
        )
    ).all()
    wire = {int(r.payload.get("version", 0)) for r in rows}
    names = {
        r.id: {"tariff_id": r.tariff_id, "tariff_code": r.code, "tariff_name": r.name, "version": r.version}
        for r in await conn.execute(
            select(tariff_versions.c.id, tariff_versions.c.tariff_id, tariff_versions.c.version, tariffs.c.code)
            .add_columns(tariffs.c.name)
            .join(tariffs, tariffs.c.id == tariff_versions.c.tariff_id)
            .where(tariff_versions.c.id.in_(wire))
        )
    }
    out: dict[int, dict[str, Any]] = {m: {"running": None, "pending": None} for m in meter_ids}
    for r in rows:
        version = int(r.payload.get("version", 0))
        info = {"wire_version": version, "command_id": r.id, "state": r.state, **names.get(version, {})}
        slot = out[r.meter_id]
        if r.state == _PROCESSED:
            if slot["running"] is None or version > slot["running"]["wire_version"]:
                slot["running"] = {**info, "acknowledged_at": r.final_at}
        elif not CommandState(r.state).is_final:
            slot["pending"] = info
    for slot in out.values():
        if slot["pending"] and slot["running"] and slot["pending"]["wire_version"] <= slot["running"]["wire_version"]:
            slot["pending"] = None
    return out


async def meter_card(conn: AsyncConnection, meter_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(meters).where(meters.c.id == meter_id))).mappings().first()
    if row is None:
        return None
    card: dict[str, Any] = dict(row)
    card["is_balance_meter"] = bool(card["is_balance_meter"])
    subscriber = None
    if row["subscriber_id"] is not None:
        found = (
            await conn.execute(
                select(subscribers.c.id, subscribers.c.code, subscribers.c.name).where(
                    subscribers.c.id == row["subscriber_id"]
                )
            )
        ).first()
        subscriber = dict(found._mapping) if found else None
    transformer = None
    if row["transformer_id"] is not None:
        found = (
            await conn.execute(
                select(transformers.c.id, transformers.c.code, transformers.c.name).where(
                    transformers.c.id == row["transformer_id"]
                )
            )
        ).first()
        transformer = dict(found._mapping) if found else None
    replaced_by = None
    if row["replaced_by_id"] is not None:
        replaced_by = await conn.scalar(select(meters.c.code).where(meters.c.id == row["replaced_by_id"]))
    replaces = (
        await conn.execute(select(meters.c.id, meters.c.code).where(meters.c.replaced_by_id == meter_id))
    ).first()
    history = [
        dict(r)
        for r in (
            await conn.execute(
                select(meter_history.c.at, meter_history.c.by, meter_history.c.event, meter_history.c.detail)
                .where(meter_history.c.meter_id == meter_id)
                .order_by(meter_history.c.id)
            )
        ).mappings()
    ]
    keys = [
        dict(r)
        for r in (
            await conn.execute(
                select(meter_keys.c.key_id, meter_keys.c.status, meter_keys.c.created_at, meter_keys.c.retired_at)
                .where(meter_keys.c.meter_id == meter_id)
                .order_by(meter_keys.c.key_id)
            )
        ).mappings()
    ]
    return {
        **card,
        "subscriber": subscriber,
        "transformer": transformer,
        "replaced_by_code": replaced_by,
        "replaces": dict(replaces._mapping) if replaces else None,
        "tariff": (await tariff_versions_of(conn, [meter_id]))[meter_id],
        "keys": keys,
        "history": history,
        "commands": await recent_commands(conn, [meter_id], limit=20),
    }


async def transformer_list(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every transformer with its meter count and balance meters."""
    counts = {
        r.transformer_id: int(r.n)
        for r in await conn.execute(
            select(meters.c.transformer_id, func.count().label("n"))
            .where(meters.c.status == "active", meters.c.is_balance_meter == 0, meters.c.transformer_id.is_not(None))
            .group_by(meters.c.transformer_id)
        )
    }
    balance: dict[int, list[dict[str, Any]]] = {}
    for r in await conn.execute(
        select(meters.c.id, meters.c.code, meters.c.transformer_id).where(
            meters.c.status == "active", meters.c.is_balance_meter == 1, meters.c.transformer_id.is_not(None)
        )
    ):
        balance.setdefault(r.transformer_id, []).append({"id": r.id, "code": r.code})
    rows = (await conn.execute(select(transformers).order_by(transformers.c.code))).mappings()
    return [{**dict(r), "meters": counts.get(r["id"], 0), "balance_meters": balance.get(r["id"], [])} for r in rows]


async def transformer_item(conn: AsyncConnection, transformer_id: int) -> dict[str, Any] | None:
    found = [t for t in await transformer_list(conn) if t["id"] == transformer_id]
    return found[0] if found else None


async def unattached_balance_meters(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Active meters without a subscriber (candidates for a transformer's balance meter)."""
    rows = await conn.execute(
        select(meters.c.id, meters.c.code, meters.c.transformer_id, meters.c.is_balance_meter)
        .where(meters.c.status == "active", meters.c.subscriber_id.is_(None))
        .order_by(meters.c.code)
    )
    return [dict(r) for r in rows.mappings()]
