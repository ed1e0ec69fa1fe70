"""The consumption dashboard (read-only): the network's hierarchy — regions, settlements, streets,
buildings, their meters — and transformers, each level with its members' consumption over the chosen days
from the daily pre-aggregate, a chart of the group's daily total, and the way down a level. Each unit is its
own total (kWh from the electricity meters, m³ from the water and gas meters' volume register, heat from the
heat meters' heat register): a scope that holds several kinds shows each, never one sum of them."""

from __future__ import annotations

from datetime import date, timedelta, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.consumption_daily import consumption_by_hour, consumption_with_totals
from billing.meter_readings import Group
from billing.rules.units import GCAL, HEAT_KWH, KWH, M3, Unit, kinds_read_in
from store.schema import registry as R  # noqa: N812

NEXT_LEVEL = {"region": "settlement", "settlement": "street", "street": "building", "building": "meter"}
UNITS = {"kwh": KWH, "m3": M3, "heat": HEAT_KWH}  # the dashboard's units, by the key its page elements carry


def units(heat_in_gcal: bool = False) -> dict[str, Unit]:
    """The dashboard's units: heat in Gcal where the utility says so."""
    return {**UNITS, "heat": GCAL} if heat_in_gcal else UNITS


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
    if level == "phase":
        return {}  # no way down: a phase is not a group of the hierarchy
    if level == "meter":
        return {"meter_id": key}
    names = ("region", "settlement", "street", "building")
    return dict(zip(names, key.split("-"), strict=False))


async def _hourly_totals(
    conn: AsyncConnection, group: Group, first: date, last: date, tz: tzinfo, unit: Unit, kinds: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The group's total per local hour: the phases' hours added (the level every meter belongs to)."""
    by_phase, _ = await consumption_by_hour(conn, "phase", group, first, last, tz, register=unit.register, kinds=kinds)
    hours: dict[str, int] = {}
    for member in by_phase:
        for p in member["periods"]:
            hours[p["period"]] = hours.get(p["period"], 0) + p["quantity"]
    return [{"period": h, "quantity": q, "estimated": 0} for h, q in sorted(hours.items())]


async def _section(
    conn: AsyncConnection,
    key: str,
    unit: Unit,
    level: str,
    group: Group,
    first: date,
    last: date,
    tz: tzinfo | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One unit's chart, total and members (the meters of the kinds that read in it); per local hour of `tz`
    when it is given, per day otherwise."""
    kinds = kinds_read_in(unit)
    if tz is None:
        members, chart = await consumption_with_totals(
            conn, level, group, first, last, register=unit.register, kinds=kinds, limit=500
        )
    else:
        members, _ = await consumption_by_hour(
            conn, level, group, first, last, tz, register=unit.register, kinds=kinds, limit=500
        )
        chart = await _hourly_totals(conn, group, first, last, tz, unit, kinds)
    section = {
        "key": key,
        "unit": unit.symbol,
        "chart": [
            {"label": p["period"][5:16].replace("T", " "), "value": unit.chart_value(p["quantity"])} for p in chart
        ],
        "total": unit.chart_value(sum(p["quantity"] for p in chart)),
        "estimated": unit.chart_value(sum(p["estimated"] for p in chart)),
    }
    return section, members


async def dashboard(
    conn: AsyncConnection,
    level: str,
    group: Group,
    today: date,
    days: int,
    *,
    heat_in_gcal: bool = False,
    hourly_tz: tzinfo | None = None,
) -> dict[str, Any]:
    """Per local day, or per local hour of `hourly_tz` when it is given (from the readings)."""
    first, last = today - timedelta(days=days - 1), today
    names = await _names(conn, level)
    down = NEXT_LEVEL.get(level) if level != "transformer" else "meter"
    sections: list[dict[str, Any]] = []
    rows: dict[str, dict[str, Any]] = {}
    for key, unit in units(heat_in_gcal).items():
        section, members = await _section(conn, key, unit, level, group, first, last, hourly_tz)
        if not members and not section["chart"]:
            continue
        sections.append(section)
        for member in members:
            row = rows.setdefault(member["key"], {"key": member["key"], "amounts": {}, "estimated": {}})
            row["amounts"][key] = unit.chart_value(member["quantity"])
            if member["estimated"]:
                row["estimated"][key] = unit.chart_value(member["estimated"])
    if not sections:  # nothing measured yet: an empty energy total
        sections.append((await _section(conn, "kwh", KWH, level, group, first, last, hourly_tz))[0])
    members = [rows[k] for k in sorted(rows)][:500]
    for member in members:
        key = member["key"]
        member["name"] = names.get(key if level != "building" else key.rsplit("-", 1)[0], "")
        if level == "building":
            member["name"] = f"{member['name']} {key.rsplit('-', 1)[1].lstrip('0')}".strip()
        member["filters"] = _filters_of(level, key)
    return {
        "members": members,
        "total_members": len(rows),
        "down": down,
        "sections": sections,
        "first": first,
        "last": last,
    }
