"""The portal's reads: always of one subscriber, the signed-in one (read-only)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.rules.units import unit_of
from meter_protocol.registers import MAIN_REGISTERS, main_register
from store.schema.commands import readings
from store.schema.consumption import consumption_daily
from store.schema.payments import payments
from store.schema.registry import meters
from web.queries import registry
from web.queries.history import invoice_pdf, invoices_of, top_up, top_ups

__all__ = ["consumption", "invoice_pdf", "invoices_of", "meter_charts", "overview", "top_up", "top_ups"]


async def overview(conn: AsyncConnection, subscriber_id: int, now: datetime) -> dict[str, Any]:
    summary = await registry.subscriber_summary(conn, subscriber_id) or {}
    payment_rows = await conn.execute(
        select(payments).where(payments.c.subscriber_id == subscriber_id).order_by(payments.c.id.desc()).limit(20)
    )
    return {
        **summary,
        "payments": [dict(r) for r in payment_rows.mappings()],
        "top_ups": await top_ups(conn, subscriber_id),
        "invoices": await invoices_of(conn, subscriber_id),
        "daily": await consumption(conn, subscriber_id, "daily", now),
        "monthly": await consumption(conn, subscriber_id, "monthly", now),
    }


async def consumption(conn: AsyncConnection, subscriber_id: int, period: str, now: datetime) -> list[dict[str, Any]]:
    """Use per day (last 30 days) or per month (last 12), in the base unit of the meters' main register (Wh;
    litres for water and gas), from its readings: the difference between the last reading of a period and the
    last reading before it."""
    days = 31 if period == "daily" else 400
    since = now - timedelta(days=days)
    rows = await conn.execute(
        select(readings.c.meter_id, readings.c.read_at, readings.c.value, readings.c.register, meters.c.kind)
        .join(meters, meters.c.id == readings.c.meter_id)
        .where(
            meters.c.subscriber_id == subscriber_id,
            readings.c.register.in_(MAIN_REGISTERS),
            readings.c.read_at >= since,
        )
        .order_by(readings.c.meter_id, readings.c.read_at)
    )
    # Each meter's own register (the one its kind reports): a replaced or second meter counts its own
    # differences, never the maximum across meters.
    last_of: dict[int, dict[str, int]] = {}
    for meter_id, read_at, value, register, kind in rows:
        if register != main_register(kind):
            continue
        key = read_at.strftime("%Y-%m-%d" if period == "daily" else "%Y-%m")
        last_of.setdefault(meter_id, {})[key] = int(value)
    energy: dict[str, int] = {}
    for periods in last_of.values():
        previous: int | None = None
        for key, value in periods.items():
            if previous is not None:
                energy[key] = energy.get(key, 0) + max(0, value - previous)
            previous = value
    return [{"period": key, "energy_wh": energy[key]} for key in sorted(energy)]


async def meter_charts(
    conn: AsyncConnection, subscriber_id: int, today: date, *, heat_in_gcal: bool = False
) -> list[dict[str, Any]]:
    """Per meter of the subscriber (a replaced one too, while it has days in the window): its use per local
    day for the last 30 days, and this month so far beside the same days of that month a year ago, from the
    daily pre-aggregate (estimated days included and said)."""
    m, d = meters.c, consumption_daily.c
    first = today - timedelta(days=29)
    month_start = today.replace(day=1)
    year_ago_start = month_start.replace(year=month_start.year - 1)
    year_ago_end = _same_day_last_year(today)
    out = []
    for meter in await conn.execute(
        select(m.id, m.code, m.status, m.kind).where(m.subscriber_id == subscriber_id).order_by(m.status, m.id)
    ):
        unit = unit_of(meter.kind, heat_in_gcal=heat_in_gcal)
        rows = (
            await conn.execute(
                select(d.day, d.quantity, d.estimated).where(
                    d.meter_id == meter.id,
                    d.register == unit.register,
                    ((d.day >= first) & (d.day <= today)) | ((d.day >= year_ago_start) & (d.day <= year_ago_end)),
                )
            )
        ).all()
        recent = sorted((r for r in rows if r.day >= first), key=lambda r: r.day)
        if not recent and meter.status != "active":
            continue
        this_month = sum(int(r.quantity) for r in rows if r.day >= month_start)
        last_year = [r for r in rows if year_ago_start <= r.day <= year_ago_end]
        out.append(
            {
                "id": meter.id,
                "code": meter.code,
                "status": meter.status,
                "unit": unit.symbol,
                "this_month": float(unit.of(this_month)),
                "last_year": float(unit.of(sum(int(r.quantity) for r in last_year))) if last_year else None,
                "daily": [{"period": r.day.isoformat(), "energy_wh": int(r.quantity)} for r in recent],
                "estimated_days": sum(1 for r in recent if r.estimated),
                "this_month_wh": this_month,
                "last_year_wh": sum(int(r.quantity) for r in last_year) if last_year else None,
                "month": month_start.strftime("%Y-%m"),
            }
        )
    return out


def _same_day_last_year(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)
