"""The consumption dashboard (read-only): the network's hierarchy — regions, settlements, streets,
buildings, their meters — and transformers, each level with its members' consumption over the chosen days
from the daily pre-aggregate, a chart of the group's daily total, and the way down a level."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.consumption_daily import consumption_by, totals_by_day
from billing.meter_readings import Group
from store.schema import registry as R  # noqa: N812

NEXT_LEVEL = {"region": "settlement", "settlement": "street", "street": "building", "building": "meter"}


def _kwh(wh: int) -> float:
    return round(wh / 1000, 1)  # a display value for a chart bar


async def _names(conn: AsyncConnection, level: str) -> dict[str, str]:
    if level == "region":
        rows = await conn.execute(select(R.regions.c.code, R.regions.c.name))
        return {r.code: r.name for r in rows}
    if level == "settlement":
        s = R.settlements.c
        return {f"{r.region_code}-{r.code}": r.name for r in await conn.execute(select(s.region_code, s.code, s.name))}
    if level in ("street", "building"):
        t = R.streets.c
        rows = await conn.execute(select(t.region_code, t.settlement_code, t.code, t.name))
        return {f"{r.region_code}-{r.settlement_code}-{r.code}": r.name for r in rows}
    if level == "transformer":
        t = R.transformers.c
        return {str(r.id): f"{r.code} · {r.name}" for r in await conn.execute(select(t.id, t.code, t.name))}
    m = R.meters.c
    return {str(r.id): r.code for r in await conn.execute(select(m.id, m.code))}


def _filters_of(level: str, key: str) -> dict[str, str]:
    """The query filters that select one member of `level` (its address codes, or the transformer)."""
    if level == "transformer":
        return {"transformer_id": key}
    if level == "meter":
        return {"meter_id": key}
    names = ("region", "settlement", "street", "building")
    return dict(zip(names, key.split("-"), strict=False))


async def dashboard(conn: AsyncConnection, level: str, group: Group, today: date, days: int) -> dict[str, Any]:
    first, last = today - timedelta(days=days - 1), today
    members, total = await consumption_by(conn, level, group, first, last, limit=500)
    names = await _names(conn, level)
    down = NEXT_LEVEL.get(level) if level != "transformer" else "meter"
    for member in members:
        key = member["key"]
        member["name"] = names.get(key if level != "building" else key.rsplit("-", 1)[0], "")
        if level == "building":
            member["name"] = f"{member['name']} {key.rsplit('-', 1)[1].lstrip('0')}".strip()
        member["filters"] = _filters_of(level, key)
        member["kwh"] = _kwh(member["quantity"])
        member["estimated_kwh"] = _kwh(member["estimated"])
    chart = await totals_by_day(conn, group, first, last)
    return {
        "members": members,
        "total_members": total,
        "down": down,
        "chart": [{"label": p["period"][5:], "value": _kwh(p["quantity"])} for p in chart],
        "total_kwh": _kwh(sum(p["quantity"] for p in chart)),
        "estimated_kwh": _kwh(sum(p["estimated"] for p in chart)),
        "first": first,
        "last": last,
    }
