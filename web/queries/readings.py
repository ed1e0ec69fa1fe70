"""The meter card's readings (read-only): the register history page by page, daily consumption for the
last 30 days in the utility's time zone, and the load profile (the meter's interval energies, or hourly
consumption from its register where it sent no profile)."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from billing.meter_readings import Group, list_readings
from billing.readings import meter_consumption
from billing.rules.consumption import Granularity
from billing.rules.readings import ENTERABLE_REGISTERS, INSTANT_REGISTERS
from billing.rules.units import unit_of

PAGE = 20
PROFILE_HOURS = 48


def _kwh(energy_wh: int) -> float:
    return round(energy_wh / 1000, 2)  # a display value for a chart bar


async def readings_panel(
    conn: Any,
    meter_id: int,
    tz: tzinfo,
    now: datetime,
    *,
    kind: str = "electricity",
    heat_in_gcal: bool = False,
    offset: int = 0,
    limit: int = PAGE,
) -> dict[str, Any]:
    """In the unit of the meter's kind (kWh from the energy register; m³ from the volume register; kWh or Gcal
    from the heat register)."""
    unit = unit_of(kind, heat_in_gcal=heat_in_gcal)
    group = Group(meter_id=meter_id)
    items, total = await list_readings(
        conn,
        group,
        None,
        None,
        exclude_registers=sorted(INSTANT_REGISTERS),
        limit=limit,
        offset=offset,
        newest_first=True,
    )
    day_start = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    daily = await meter_consumption(
        conn, meter_id, day_start - timedelta(days=29), now, Granularity.DAY, tz, register=unit.register
    )
    since = now - timedelta(hours=PROFILE_HOURS)
    intervals, _ = await list_readings(conn, group, since, now, registers=("profile_wh",), limit=PROFILE_HOURS * 4)
    if intervals:
        profile_source = "profile"
        profile = [
            {"label": i["read_at"].astimezone(tz).strftime("%H:%M"), "value": _kwh(i["value"])} for i in intervals
        ]
    else:
        profile_source = "register"
        hourly = await meter_consumption(conn, meter_id, since, now, Granularity.HOUR, tz, register=unit.register)
        profile = [{"label": at.strftime("%H:00"), "value": unit.chart_value(q)} for at, q in hourly.items()]
    return {
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
        "daily": [{"label": at.strftime("%m-%d"), "value": unit.chart_value(q)} for at, q in daily.items()],
        "unit": unit.symbol,
        "profile": profile,
        "profile_source": profile_source,
        "registers": ENTERABLE_REGISTERS,
        "today": now.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S"),
    }
