"""The demo's last day of online payments (both databases): three top-ups through Checkout, two webhooks
applied and one that never came; last night's reconciliation credited the missed one, matched the two with the
provider's fees, and left a payment for a top-up never started here for a person to look at."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from config import load_settings
from payments.reconcile_runs import recent_runs, run_with_findings
from smsmeter.demo import load_demo
from smsmeter.demo.online import STRANGER
from store.schema.payments import payments


async def test_the_demo_shows_last_nights_reconciliation(
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
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        (run,), total = await recent_runs(conn, now)
        detail = await run_with_findings(conn, run["id"], now)
        online = (await conn.execute(select(payments).where(payments.c.provider == "stripe"))).all()
    assert total == 1
    assert run["status"] == "finished"
    assert run["triggered_by"] == "system:daily"
    assert detail is not None
    assert {k: n for k, n in detail["found"].items()} == {"matched": 2, "applied": 1, "missing_here": 1}
    assert [f["provider_ref"] for f in detail["findings"] if f["kind"] == "missing_here"] == [STRANGER[0]]
    assert sorted(p.status for p in online) == ["paid", "paid", "paid"]
    assert all(p.fee_minor and p.fee_minor > 0 for p in online)
