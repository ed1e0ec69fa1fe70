"""Consumption per local hour and per phase, through `/api/v1/consumption` and the console's consumption
dashboard (both databases), in the utility's time zone (Europe/Chisinau, UTC+2 in January): hours come from
the readings, days from the daily pre-aggregate; single- and three-phase meters are members of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, update

from store.schema.commands import readings
from store.schema.registry import meters
from store.uow import UnitOfWork
from tests.integration.web.helpers import START, Seeded, login
from tests.integration.web.test_registry_doors import api_key

TZ = ZoneInfo("Europe/Chisinau")
LOCAL_MIDNIGHT = datetime(2026, 1, 15, tzinfo=TZ).astimezone(UTC)  # 2026-01-14 22:00 UTC


@pytest.fixture
def billing_settings() -> dict[str, str]:
    return {"SMSMETER_UTILITY_TIMEZONE": "Europe/Chisinau"}


async def _hourly(uow: UnitOfWork, meter_id: int, wh_per_hour: int, hours: int = 6) -> None:
    async with uow.begin() as conn:
        await conn.execute(
            insert(readings),
            [
                {
                    "meter_id": meter_id,
                    "register": "import_wh",
                    "read_at": LOCAL_MIDNIGHT + timedelta(hours=h),
                    "value": 10_000 + h * wh_per_hour,
                    "received_at": LOCAL_MIDNIGHT,
                }
                for h in range(hours + 1)
            ],
        )


async def test_consumption_per_local_hour_and_per_phase_through_the_api_and_the_dashboard(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    from billing.consumption_daily import aggregate_consumption

    single, three = seeded.meter_ids
    async with uow.begin() as conn:
        await conn.execute(update(meters).where(meters.c.id == three).values(phases=3))
    await _hourly(uow, single, 100)
    await _hourly(uow, three, 300)
    await aggregate_consumption(uow, TZ, START + timedelta(minutes=1))
    headers = await api_key(uow, client, "viewer")

    async def consumption(**params: str) -> dict:  # type: ignore[type-arg]
        response = await client.get("/api/v1/consumption", params=params, headers=headers)
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]

    hourly = await consumption(by="phase", granularity="hour", **{"from": "2026-01-15", "to": "2026-01-15"})
    assert hourly["granularity"] == "hour"
    assert {m["key"]: m["quantity"] for m in hourly["items"]} == {"1": 600, "3": 1_800}
    one = hourly["items"][0]["periods"]
    assert [p["period"] for p in one][:2] == ["2026-01-15T01:00+02:00", "2026-01-15T02:00+02:00"]  # local hours
    assert {p["quantity"] for p in one} == {100}
    paged = await consumption(by="phase", granularity="hour", limit="1", offset="1", **{"from": "2026-01-15"})
    assert (paged["total"], [m["key"] for m in paged["items"]]) == (2, ["3"])
    filtered = await consumption(by="meter", granularity="hour", meter_id=str(three), **{"from": "2026-01-15"})
    assert [m["key"] for m in filtered["items"]] == [str(three)]
    daily = await consumption(by="phase", **{"from": "2026-01-15", "to": "2026-01-15"})
    assert {m["key"]: m["quantity"] for m in daily["items"]} == {"1": 600, "3": 1_800}
    too_long = await client.get(
        "/api/v1/consumption",
        params={"granularity": "hour", "from": "2025-12-01", "to": "2026-01-15"},
        headers=headers,
    )
    assert too_long.status == 422

    await login(client, "viewer")
    page = await (await client.get("/console/consumption", params={"by": "phase", "per": "hour", "days": "1"})).text()
    assert 'data-testid="total-kwh">2.4<' in page
    assert "01-15 01:00" in page  # the chart's bars are local hours
    assert page.count('data-testid="member-kwh">0.6<') == 1
    assert page.count('data-testid="member-kwh">1.8<') == 1
    assert 'value="hour" selected' in page
    by_day = await (await client.get("/console/consumption", params={"by": "phase", "days": "7"})).text()
    assert 'data-testid="total-kwh">2.4<' in by_day
