"""Losses by transformer over time: each transformer's loss per local day, from the daily consumption (its balance
meter against its subscribers' meters), in the losses report of the API and drawn as lines in the console."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import insert

from meter_protocol import meter_code_with_check_digit
from store.schema.consumption import consumption_daily
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, login
from tests.integration.web.test_registry_doors import api_key
from web.keys import CLOCK


async def test_the_losses_report_carries_each_transformers_loss_per_day(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    headers = await api_key(uow, client, "admin")
    tp = await (
        await client.post("/api/v1/transformers", json={"code": "TP-9", "name": "TP-9 Sud"}, headers=headers)
    ).json()
    code = meter_code_with_check_digit(f"8812{1:015d}")
    response = await client.post(
        "/api/v1/meters", json={"code": code, "msisdn": "37369777777", "is_balance_meter": True}, headers=headers
    )
    assert response.status == 201, await response.text()
    balance = await response.json()
    a, b = seeded.meter_ids[:2]
    response = await client.post(
        f"/api/v1/transformers/{tp['id']}/meters",
        json={"meter_ids": [a, b], "balance_meter_id": balance["id"]},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    today = client.app[CLOCK]().date()
    days = [today - timedelta(days=n) for n in (3, 2, 1)]
    # (balance meter, meter a, meter b) Wh per day: losses 15 %, 10 %, 0 %
    quantities = [(10_000, 4_000, 4_500), (10_000, 4_000, 5_000), (8_000, 3_000, 5_000)]
    now = datetime.now(UTC)
    async with uow.begin() as conn:
        await conn.execute(
            insert(consumption_daily),
            [
                {"meter_id": meter, "register": "import_wh", "day": day, "quantity": wh, "updated_at": now}
                for day, row in zip(days, quantities, strict=True)
                for meter, wh in zip((balance["id"], a, b), row, strict=True)
            ],
        )

    report = await (await client.get("/api/v1/reports/losses?days=7", headers=headers)).json()
    (line,) = report["series"]
    assert line["name"] == "TP-9"
    assert line["points"] == [
        {"label": days[0].isoformat(), "value": 15.0},
        {"label": days[1].isoformat(), "value": 10.0},
        {"label": days[2].isoformat(), "value": 0.0},
    ]
    other = await (await client.get("/api/v1/reports/revenue?days=7", headers=headers)).json()
    assert other["series"] == []

    await login(client, "admin")
    page = await (await client.get("/console/reports/losses?days=7")).text()
    assert 'data-testid="losses-over-time"' in page
    assert 'data-series="TP-9"' in page
