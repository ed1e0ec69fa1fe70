"""The demo's prosumer (both databases): Elena Rusu's meter reports an export register beside the import one,
her tariff bills import less export with the surplus carried over, and her invoice shows all three."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.invoices import invoices_of, issue_invoices, previous_month
from billing.rules.invoice import Party
from config import load_settings
from smsmeter.demo import data, load_demo
from store.schema.commands import readings
from store.schema.ledger import tariffs
from store.schema.registry import meters, subscribers
from store.uow import UnitOfWork


async def test_the_demo_prosumer_exports_and_is_billed_net(
    migrated_db_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = load_settings(
        None,
        {
            "SMSMETER_DATABASE_URL": migrated_db_url,
            "SMSMETER_DATA_DIR": str(tmp_path),
            "SMSMETER_WEB_SESSION_SECRET": "s" * 40,
        },
    )
    await load_demo(settings)
    async with engine.connect() as conn:
        s, m, t = subscribers.c, meters.c, tariffs.c
        subscriber_id, net_billing = (
            await conn.execute(
                select(s.id, t.net_billing)
                .join(tariffs, t.id == s.tariff_id)
                .where(s.code == data.PROSUMER_SUBSCRIBER_CODE, s.name == data.PROSUMER_SUBSCRIBER_NAME)
            )
        ).one()
        meter_id = await conn.scalar(select(m.id).where(m.code == data.PROSUMER_METER_CODE))
        exports = await conn.scalar(
            select(func.count()).where(readings.c.meter_id == meter_id, readings.c.register == "export_wh")
        )
    assert net_billing == "carry"
    assert exports == data.DAYS_OF_READINGS + 1
    now = datetime.now(UTC)
    start, end = previous_month(now.date())
    await issue_invoices(
        UnitOfWork(engine), start, end, now, utility=Party("Demo Utility", "", "", ""), subscriber_ids=[subscriber_id]
    )
    async with engine.connect() as conn:
        (invoice,) = await invoices_of(conn, subscriber_id)
    net = invoice["content"]["net"]
    assert net["imported"] > 0
    assert net["exported"] > 0
    assert net["billed"] == max(0, net["imported"] - net["exported"] - net["carried_in"])
    assert "Energy exported" in {line["description"] for line in invoice["content"]["lines"]}
