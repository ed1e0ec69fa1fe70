"""The reference tables of the registry: regions, settlements and streets (the parts of a subscriber's code),
transformers, and the holidays of the friendly-hours calendar.

Use cases take the caller's connection (the change and its audit row commit together), the acting `Actor` and
`now`.
"""

import re
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import Conflict, InvalidField, NotFound
from store import audit
from store.audit import Actor
from store.schema import registry as R  # noqa: N812


async def add_region(conn: AsyncConnection, actor: Actor, code: str, name: str, now: datetime) -> None:
    if not re.fullmatch(r"\d{2}", code) or code == "00":
        raise InvalidField("region code", "two digits, not 00")
    if await conn.scalar(select(R.regions.c.code).where(R.regions.c.code == code)) is not None:
        raise Conflict("region", f"{code} exists")
    await conn.execute(insert(R.regions).values(code=code, name=name))
    await audit.record(conn, actor, "region.add", now, target=f"region:{code}", after={"name": name})


async def add_settlement(
    conn: AsyncConnection, actor: Actor, region_code: str, code: str, name: str, now: datetime
) -> None:
    if not re.fullmatch(r"\d{2}", code):
        raise InvalidField("settlement code", "two digits")
    if await conn.scalar(select(R.regions.c.code).where(R.regions.c.code == region_code)) is None:
        raise NotFound("region", region_code)
    await conn.execute(insert(R.settlements).values(region_code=region_code, code=code, name=name))
    await audit.record(
        conn, actor, "settlement.add", now, target=f"settlement:{region_code}{code}", after={"name": name}
    )


async def add_street(
    conn: AsyncConnection, actor: Actor, region_code: str, settlement_code: str, code: str, name: str, now: datetime
) -> None:
    if not re.fullmatch(r"\d{3}", code):
        raise InvalidField("street code", "three digits")
    s = R.settlements.c
    found = await conn.scalar(select(s.code).where(s.region_code == region_code, s.code == settlement_code))
    if found is None:
        raise NotFound("settlement", f"{region_code}{settlement_code}")
    st = R.streets.c
    taken = await conn.scalar(
        select(st.name).where(st.region_code == region_code, st.settlement_code == settlement_code, st.code == code)
    )
    if taken is not None:
        raise Conflict("street", f"{region_code}{settlement_code}{code} is registered ({taken})")
    await conn.execute(
        insert(R.streets).values(region_code=region_code, settlement_code=settlement_code, code=code, name=name)
    )
    await audit.record(
        conn, actor, "street.add", now, target=f"street:{region_code}{settlement_code}{code}", after={"name": name}
    )


async def list_streets(conn: AsyncConnection) -> list[dict[str, str]]:
    st, se, re_ = R.streets, R.settlements, R.regions
    rows = await conn.execute(
        select(
            st.c.region_code,
            re_.c.name.label("region"),
            st.c.settlement_code,
            se.c.name.label("settlement"),
            st.c.code,
            st.c.name,
        )
        .join(se, and_(se.c.region_code == st.c.region_code, se.c.code == st.c.settlement_code))
        .join(re_, re_.c.code == st.c.region_code)
        .order_by(st.c.region_code, st.c.settlement_code, st.c.code)
    )
    return [dict(r._mapping) for r in rows]


async def add_transformer(
    conn: AsyncConnection,
    actor: Actor,
    code: str,
    name: str,
    now: datetime,
    *,
    feeder: str | None = None,
    loss_alarm_percent: int = 10,
) -> int:
    t = R.transformers
    code, name = code.strip(), name.strip()
    if not code or len(code) > 30:
        raise InvalidField("code", "1 to 30 characters")
    if not name or len(name) > 200:
        raise InvalidField("name", "1 to 200 characters")
    if type(loss_alarm_percent) is not int or not 0 < loss_alarm_percent <= 100:
        raise InvalidField("loss_alarm_percent", "a whole percentage, 1-100")
    if await conn.scalar(select(t.c.id).where(t.c.code == code)) is not None:
        raise Conflict("transformer", f"{code} exists")
    feeder = (feeder or "").strip() or None
    tid = await conn.scalar(
        insert(t).values(code=code, name=name, feeder=feeder, loss_alarm_percent=loss_alarm_percent).returning(t.c.id)
    )
    assert tid is not None
    await audit.record(
        conn,
        actor,
        "transformer.add",
        now,
        target=f"transformer:{code}",
        after={"name": name, "feeder": feeder, "loss_alarm_percent": loss_alarm_percent},
    )
    return int(tid)


async def get_transformer(conn: AsyncConnection, transformer_id: int) -> dict[str, Any]:
    row = (await conn.execute(select(R.transformers).where(R.transformers.c.id == transformer_id))).first()
    if row is None:
        raise NotFound("transformer", transformer_id)
    return dict(row._mapping)


async def set_holiday(conn: AsyncConnection, actor: Actor, day: date, name: str, now: datetime) -> None:
    """A day of the friendly-hours calendar (no automatic disconnect); setting it again renames it."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidField("name", "1 to 200 characters")
    h = R.holidays
    existing = await conn.scalar(select(h.c.name).where(h.c.day == day))
    if existing is None:
        await conn.execute(insert(h).values(day=day, name=name))
    else:
        await conn.execute(update(h).where(h.c.day == day).values(name=name))
    await audit.record(
        conn,
        actor,
        "holiday.set",
        now,
        target=f"holiday:{day.isoformat()}",
        before=None if existing is None else {"name": existing},
        after={"name": name},
    )


async def remove_holiday(conn: AsyncConnection, actor: Actor, day: date, now: datetime) -> None:
    h = R.holidays
    existing = await conn.scalar(select(h.c.name).where(h.c.day == day))
    if existing is None:
        raise NotFound("holiday", day.isoformat())
    await conn.execute(delete(h).where(h.c.day == day))
    await audit.record(
        conn, actor, "holiday.remove", now, target=f"holiday:{day.isoformat()}", before={"name": existing}
    )


async def holidays(conn: AsyncConnection) -> frozenset[date]:
    return frozenset((await conn.scalars(select(R.holidays.c.day))).all())


async def list_regions(conn: AsyncConnection) -> list[dict[str, str]]:
    rows = await conn.execute(select(R.regions).order_by(R.regions.c.code))
    return [dict(r._mapping) for r in rows]


async def list_settlements(conn: AsyncConnection, region_code: str | None = None) -> list[dict[str, str]]:
    stmt = select(R.settlements).order_by(R.settlements.c.region_code, R.settlements.c.code)
    if region_code is not None:
        stmt = stmt.where(R.settlements.c.region_code == region_code)
    return [dict(r._mapping) for r in await conn.execute(stmt)]


async def list_transformers(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(select(R.transformers).order_by(R.transformers.c.code))
    return [dict(r._mapping) for r in rows]


async def list_holidays(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(select(R.holidays).order_by(R.holidays.c.day))
    return [dict(r._mapping) for r in rows]
