"""Heat in Gcal where the utility says so (`utility.heat_unit = "Gcal"`): the heat register stays in Wh, the
meter card, the consumption dashboard and the tariff page read it in Gcal, a block typed in Gcal is stored
in Wh, the meters are sent the price per kWh of their register, and the invoice prices the Gcal exactly."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select, update

from store.schema.commands import readings
from store.schema.ledger import tariff_versions, tariffs
from store.schema.registry import meters
from store.uow import UnitOfWork
from tests.integration.web.helpers import START, Seeded, login
from tests.integration.web.test_tariff_doors import _hidden


@pytest.fixture
def billing_settings() -> dict[str, str]:
    return {"SMSMETER_UTILITY_HEAT_UNIT": "Gcal"}


async def test_a_heat_meter_reads_in_gcal_on_the_card_the_dashboard_the_tariff_and_the_invoice(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    from billing.consumption_daily import aggregate_consumption
    from billing.invoices import invoices_of, issue_invoices
    from billing.rules.invoice import Party

    heat = seeded.meter_ids[0]
    async with uow.begin() as conn:
        await conn.execute(update(meters).where(meters.c.id.in_(seeded.meter_ids)).values(kind="heat"))
        await conn.execute(
            insert(readings),
            [
                {
                    "meter_id": heat,
                    "register": "heat_wh",
                    "read_at": START - timedelta(days=10 - d),
                    "value": 5_000_000 + d * 581_500,  # half a Gcal a day
                    "received_at": START,
                }
                for d in range(11)
            ],
        )
        tariff_id = await conn.scalar(select(tariffs.c.id).where(tariffs.c.code == "RES"))
    await aggregate_consumption(uow, UTC, START + timedelta(minutes=1))

    await login(client, "admin")
    card = await (await client.get(f"/console/meters/{heat}")).text()
    assert "Consumption per day, last 30 days (Gcal)" in card
    dashboard = await (await client.get("/console/consumption", params={"by": "meter", "days": "30"})).text()
    assert 'data-testid="total-heat">5</span> Gcal' in dashboard  # 10 days of half a Gcal
    assert 'data-testid="total-kwh"' not in dashboard  # heat is never added to electricity

    page = await (await client.get(f"/console/tariffs/{tariff_id}")).text()
    assert 'data-testid="tariff-unit">prices per Gcal<' in page
    assert "Price per Gcal" in page
    action = f"/console/tariffs/{tariff_id}/versions"
    response = await client.post(
        action,
        data={**_hidden(page, action), "steps": "1500", "standing_charge": "0", "effective_from": "2024-01-01T00:00"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    async with uow.connect() as conn:
        body = await conn.scalar(select(tariff_versions.c.body).where(tariff_versions.c.tariff_id == tariff_id))
    assert (body["steps"] if isinstance(body, dict) else None) == [[0, 150_000_000]]  # per Gcal, as typed
    page = await (await client.get(f"/console/tariffs/{tariff_id}")).text()
    fields = re.search(r'data-testid="preview-fields">([^<]*)<', page)
    assert fields is not None
    assert "128977" in fields.group(1)  # the meter is sent the price per kWh of its Wh register

    await issue_invoices(
        uow,
        START.date().replace(day=1),
        START.date().replace(day=31),
        START.replace(month=2, day=1),
        utility=Party("Termo Nord", "", "", ""),
        subscriber_ids=[seeded.subscriber_ids[0]],
        heat_in_gcal=True,
    )
    async with uow.connect() as conn:
        (invoice,) = await invoices_of(conn, seeded.subscriber_ids[0])
    assert "5.000 Gcal" in str(invoice)
    assert "750000" in str(invoice)  # 5 Gcal at 1,500.00, exactly
