"""Transformer balance: per period, the transformer's balance meter against the sum of its subscribers'
meters -> loss percentage, stored per period, with an alarm above the transformer's threshold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import InvalidField, NotFound
from billing.readings import meter_total_wh, scope_meters
from billing.rules.losses import LossResult, transformer_loss
from store.schema import commands as C  # noqa: N812
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.schema.consumption import consumption_daily
from store.uow import UnitOfWork


async def transformer_balance(conn: AsyncConnection, transformer_id: int, start: datetime, end: datetime) -> LossResult:
    t = (await conn.execute(select(R.transformers).where(R.transformers.c.id == transformer_id))).first()
    if t is None:
        raise NotFound("transformer", transformer_id)
    m = R.meters.c
    balance_meters = (
        await conn.scalars(select(m.id).where(m.transformer_id == transformer_id, m.is_balance_meter == 1))
    ).all()
    if not balance_meters:
        raise InvalidField("transformer", f"{t.code} has no balance meter")
    supplied = sum([await meter_total_wh(conn, b, start, end) for b in balance_meters])
    billed = sum(
        [await meter_total_wh(conn, mid, start, end) for mid in await scope_meters(conn, transformer_id=transformer_id)]
    )
    return transformer_loss(supplied, billed, int(t.loss_alarm_percent))


async def record_transformer_balances(
    uow: UnitOfWork, start: datetime, end: datetime, now: datetime
) -> dict[int, LossResult]:
    """Compute and store the period's balance for every transformer with a balance meter; raise an alarm
    for each above its threshold. Re-running a period replaces its figures (one alarm per period)."""
    results: dict[int, LossResult] = {}
    async with uow.connect() as conn:
        m = R.meters.c
        ids = sorted(
            set(
                (
                    await conn.scalars(
                        select(m.transformer_id).where(m.is_balance_meter == 1, m.transformer_id.is_not(None))
                    )
                ).all()
            )
        )
    for tid in ids:
        async with uow.begin() as conn:
            result = await transformer_balance(conn, tid, start, end)
            tb = L.transformer_balances.c
            existed = await conn.scalar(
                select(tb.alarm).where(tb.transformer_id == tid, tb.period_start == start, tb.period_end == end)
            )
            await conn.execute(
                delete(L.transformer_balances).where(
                    tb.transformer_id == tid, tb.period_start == start, tb.period_end == end
                )
            )
            await conn.execute(
                insert(L.transformer_balances).values(
                    transformer_id=tid,
                    period_start=start,
                    period_end=end,
                    supplied_wh=result.supplied_wh,
                    billed_wh=result.billed_wh,
                    loss_bp=result.loss_bp,
                    alarm=1 if result.alarm else 0,
                    computed_at=now,
                )
            )
            if result.alarm and not existed:
                code = await conn.scalar(select(R.transformers.c.code).where(R.transformers.c.id == tid))
                await conn.execute(
                    insert(C.alarms).values(
                        meter_id=None,
                        kind="transformer_loss",
                        severity="warning",
                        raised_at=now,
                        detail=(
                            f"transformer {code}: losses {result.loss_percent_text} "
                            f"({result.supplied_wh} Wh supplied, {result.billed_wh} Wh metered) "
                            f"{start.isoformat()} - {end.isoformat()}"
                        )[:500],
                    )
                )
        results[tid] = result
    return results


async def transformer_balances_of(
    conn: AsyncConnection, transformer_id: int, *, limit: int = 24
) -> list[dict[str, object]]:
    """The stored periods of a transformer, newest first (for the losses report)."""
    tb = L.transformer_balances.c
    rows = await conn.execute(
        select(L.transformer_balances)
        .where(tb.transformer_id == transformer_id)
        .order_by(tb.period_start.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


@dataclass(frozen=True, slots=True)
class DayLoss:
    """One transformer's energy balance over one local day, from the daily consumption."""

    transformer_id: int
    code: str
    day: date
    loss: LossResult


async def daily_losses(conn: AsyncConnection, first: date, last: date) -> list[DayLoss]:
    """Per transformer with a balance meter and per local day from `first` to `last`: its balance meters'
    energy against its subscribers' meters' (the daily consumption's import register, estimated days
    included), as a loss against the transformer's alarm threshold; ordered by transformer code and day. The
    monthly balance (`record_transformer_balances`) stays the figure of record; this is its course over time."""
    d, m, t = consumption_daily.c, R.meters.c, R.transformers.c
    supplied = func.sum(case((m.is_balance_meter == 1, d.quantity), else_=0))
    billed = func.sum(case((m.is_balance_meter == 1, 0), else_=d.quantity))
    rows = await conn.execute(
        select(t.id, t.code, t.loss_alarm_percent, d.day, supplied.label("supplied"), billed.label("billed"))
        .select_from(
            consumption_daily.join(R.meters, m.id == d.meter_id).join(R.transformers, t.id == m.transformer_id)
        )
        .where(d.register == "import_wh", d.day >= first, d.day <= last)
        .group_by(t.id, t.code, t.loss_alarm_percent, d.day)
        .having(supplied > 0)
        .order_by(t.code, d.day)
    )
    return [
        DayLoss(
            int(r.id),
            str(r.code),
            r.day,
            transformer_loss(int(r.supplied), int(r.billed), int(r.loss_alarm_percent)),
        )
        for r in rows
    ]
