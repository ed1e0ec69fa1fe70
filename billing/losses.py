"""Transformer balance: per period, the transformer's balance meter against the sum of its subscribers'
meters -> loss percentage, stored per period, with an alarm above the transformer's threshold."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import InvalidField, NotFound
from billing.readings import meter_total_wh, scope_meters
from billing.rules.losses import LossResult, transformer_loss
from store.schema import commands as C  # noqa: N812
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
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
