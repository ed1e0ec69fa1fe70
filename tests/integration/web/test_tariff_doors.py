"""Tariffs as operators use them: a tariff is created (flat, block, time-of-use), a price version added with
its effective time and previewed (the message it sends, its payload bytes, its XML), and the newest version
pushed to every meter on the tariff as a bulk job; the meter card shows the version once it is at 1:1."""

from __future__ import annotations

import re
from datetime import timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

import meter_protocol as mp
from store.schema.auth import audit_log
from store.schema.commands import commands
from store.schema.ledger import tariffs
from store.schema.registry import meters
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, login
from tests.integration.web.test_registry_doors import api_key
from web.jobs import JOBS
from web.keys import CLOCK


async def _acknowledge_all(uow: UnitOfWork, kind: str) -> None:
    """The meters' acknowledgements, as the gateway records them (state 1:1)."""
    async with uow.begin() as conn:
        await conn.execute(update(commands).where(commands.c.kind == kind).values(state="1:1"))


async def test_a_tariff_is_defined_previewed_and_pushed_through_the_api(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    admin = await api_key(uow, client, "admin")
    response = await client.post(
        "/api/v1/tariffs", json={"code": "TOU-1", "name": "Day and night", "kind": "tou"}, headers=admin
    )
    assert response.status == 201, await response.text()
    tariff = await response.json()
    assert (tariff["kind"], tariff["versions"]) == ("tou", [])
    assert (
        await client.post("/api/v1/tariffs", json={"code": "TOU-1", "name": "x", "kind": "tou"}, headers=admin)
    ).status == 409
    assert (
        await client.post("/api/v1/tariffs", json={"code": "X", "name": "x", "kind": "weird"}, headers=admin)
    ).status == 422
    operator = await api_key(uow, client, "operator")
    assert (
        await client.post("/api/v1/tariffs", json={"code": "Y", "name": "y", "kind": "flat"}, headers=operator)
    ).status == 403

    later = client.app[CLOCK]() + timedelta(days=10)
    body = {
        "steps": [[0, 120_000], [420, 215_000], [1380, 120_000]],
        "standing_charge_minor_per_day": 5,
        "effective_from": later.isoformat(),
    }
    response = await client.post(f"/api/v1/tariffs/{tariff['id']}/versions", json=body, headers=admin)
    assert response.status == 201, await response.text()
    added = await response.json()
    preview = added["preview"]
    assert preview["version"] == 1
    assert preview["fields"]["kind"] == "TIME_OF_USE"
    assert preview["fields"]["effective_at"] == int(later.timestamp())
    assert "3 step(s)" in preview["summary"]
    assert preview["payload_bytes"] == len(bytes.fromhex(preview["payload_hex"]))
    assert mp.message_from_xml(preview["xml"].encode()) == mp.SetTariff(
        version=preview["wire_version"],
        effective_at=int(later.timestamp()),
        kind=mp.TariffKind.TIME_OF_USE,
        standing_charge_minor_per_day=5,
        steps=(mp.TariffStep(0, 120_000), mp.TariffStep(420, 215_000), mp.TariffStep(1380, 120_000)),
    )
    again = await client.get(response.headers["Location"], headers=operator)
    assert await again.json() == preview
    bad = await client.post(f"/api/v1/tariffs/{tariff['id']}/versions", json={"steps": [[10, 1]]}, headers=admin)
    assert bad.status == 422
    assert (await client.get(f"/api/v1/tariffs/{tariff['id']}/versions/9/preview", headers=admin)).status == 404
    (row,) = [r for r in await _audit(uow, "tariff.version")]
    assert row["after"]["version"] == 1


async def _audit(uow: UnitOfWork, action: str) -> list[dict[str, object]]:
    async with uow.connect() as conn:
        rows = await conn.execute(select(audit_log).where(audit_log.c.action == action))
        return [dict(r) for r in rows.mappings()]


async def test_a_new_version_reaches_every_meter_on_the_tariff_and_shows_on_its_card(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    admin = await api_key(uow, client, "admin")
    listing = await (await client.get("/api/v1/tariffs", headers=admin)).json()
    (res,) = [t for t in listing["items"] if t["code"] == "RES"]  # both seeded subscribers are on it
    assert (await client.post(f"/api/v1/tariffs/{res['id']}/push", headers=admin)).status == 422  # no prices yet
    await client.post(f"/api/v1/tariffs/{res['id']}/versions", json={"price_minor_per_kwh": 2}, headers=admin)
    response = await client.post(f"/api/v1/tariffs/{res['id']}/push", headers=admin)
    assert response.status == 202, await response.text()
    job = await response.json()
    assert job["total"] == 2
    await client.app[JOBS].wait_idle()
    job = await (await client.get(response.headers["Location"], headers=admin)).json()
    assert (job["status"], job["done"], job["states"], job["processed"]) == ("done", 2, {"0:0": 2}, 0)
    meter_id = seeded.meter_ids[0]
    await login(client, "operator")
    page = await (await client.get(f"/console/meters/{meter_id}")).text()
    assert 'data-testid="tariff-pending"' in page
    await _acknowledge_all(uow, "set_tariff")
    page = await (await client.get(f"/console/meters/{meter_id}")).text()
    running = re.search(r'data-testid="tariff-running-version">(\d+)<', page)
    assert running is not None
    assert running.group(1) == "1"
    job = await (await client.get(f"/api/v1/jobs/{job['id']}", headers=admin)).json()
    assert job["processed"] == 2
    page = await (await client.get(f"/console/jobs/{job['id']}")).text()
    assert re.search(r'data-testid="job-processed"[^>]*>2<', page)
    assert 'http-equiv="refresh"' not in page  # every meter answered: the page stops reloading
    again = await client.post(f"/api/v1/tariffs/{res['id']}/push", headers=admin)
    await client.app[JOBS].wait_idle()
    async with uow.connect() as conn:
        sent = (await conn.scalars(select(commands.c.id).where(commands.c.kind == "set_tariff"))).all()
    assert again.status == 202
    assert len(sent) == 2  # pushed again: nothing sent twice


def _hidden(html: str, action: str) -> dict[str, str]:
    form = html[html.index(f'action="{action}"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))


async def test_the_console_defines_a_block_tariff_and_pushes_it(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    await login(client, "admin")
    page = await (await client.get("/console/tariffs")).text()
    response = await client.post(
        "/console/tariffs",
        data={**_hidden(page, "/console/tariffs"), "code": "BLK", "name": "Blocks", "kind": "block"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    tariff_id = int(location.split("/")[3].split("?")[0])
    page = await (await client.get(location)).text()
    assert "Tariff created." in page
    action = f"/console/tariffs/{tariff_id}/versions"
    bad = await client.post(action, data={**_hidden(page, action), "steps": "0 1.8\n100 x"}, allow_redirects=False)
    assert bad.status == 422
    response = await client.post(
        action,
        data={**_hidden(page, action), "steps": "0 1.80\n100 2.40", "standing_charge": "0.05", "effective_from": ""},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    page = await (await client.get(response.headers["Location"])).text()
    assert "Price version added." in page
    assert 'data-testid="version-1"' in page
    assert "180000" in page
    assert "240000" in page
    assert "standing charge 5 minor/day" in page
    push = f"/console/tariffs/{tariff_id}/push"
    response = await client.post(push, data=_hidden(page, push), allow_redirects=False)
    assert response.status == 303
    assert re.fullmatch(r"/console/jobs/\d+\?ok=tariff_push", response.headers["Location"])
    await client.app[JOBS].wait_idle()
    page = await (await client.get(response.headers["Location"])).text()
    assert 'data-testid="job-status">done<' in page  # nobody is on the new tariff yet: nothing to send


async def test_a_tariffs_prices_are_per_the_unit_its_meters_read_in(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    async with uow.begin() as conn:
        tariff_id = await conn.scalar(select(tariffs.c.id).where(tariffs.c.code == "RES"))
    await login(client, "admin")

    async def page() -> str:
        return await (await client.get(f"/console/tariffs/{tariff_id}")).text()

    assert 'data-testid="tariff-unit">prices per kWh<' in (first := await page())
    assert "Price per kWh" in first
    async with uow.begin() as conn:
        await conn.execute(update(meters).where(meters.c.id.in_(seeded.meter_ids)).values(kind="water"))
    assert 'data-testid="tariff-unit">prices per m³<' in (water := await page())
    assert "Price per m³" in water
    assert "per kWh" not in water
    async with uow.begin() as conn:  # meters that read in different units: the prices stay per kWh
        await conn.execute(update(meters).where(meters.c.id == seeded.meter_ids[0]).values(kind="electricity"))
    assert "Price per kWh" in await page()


async def _register(uow: UnitOfWork, meter_id: int, register: str, points: list[tuple[int, int]]) -> None:
    """Daily readings of one register: (day counted from 1 January 2026 — 32 is 1 February —, value)."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from store.schema.commands import readings

    first = datetime(2026, 1, 1, tzinfo=UTC)
    async with uow.begin() as conn:
        await conn.execute(
            insert(readings),
            [
                {
                    "meter_id": meter_id,
                    "register": register,
                    "read_at": first + timedelta(days=day - 1),
                    "value": value,
                    "received_at": first,
                }
                for day, value in points
            ],
        )


async def test_a_net_billing_tariff_bills_import_less_export_and_carries_the_surplus(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    """Through the API a tariff is made net with the surplus carried over; January's surplus of export (4 kWh)
    is not billed and goes to February, whose net (7 kWh) less it is billed (3 kWh at 2.00); the invoice's
    lines show import, export, the surplus and the net. The console's form takes the option too."""
    from datetime import UTC, date, datetime

    from billing.invoices import invoices_of, issue_invoices
    from billing.rules.invoice import Party
    from store.schema.registry import subscribers

    admin = await api_key(uow, client, "admin")
    bad = {"code": "NET-X", "name": "x", "kind": "flat", "net_billing": "sometimes"}
    assert (await client.post("/api/v1/tariffs", json=bad, headers=admin)).status == 422
    body = {"code": "NET-1", "name": "Prosumers", "kind": "flat", "net_billing": "carry"}
    response = await client.post("/api/v1/tariffs", json=body, headers=admin)
    assert response.status == 201, await response.text()
    tariff = await response.json()
    assert tariff["net_billing"] == "carry"
    version = {"steps": [[0, 200_000]], "effective_from": "2025-12-01T00:00:00Z"}
    assert (await client.post(f"/api/v1/tariffs/{tariff['id']}/versions", json=version, headers=admin)).status == 201
    fetched = await (await client.get(f"/api/v1/tariffs/{tariff['id']}", headers=admin)).json()
    assert fetched["net_billing"] == "carry"

    prosumer, meter = seeded.subscriber_ids[0], seeded.meter_ids[0]
    async with uow.begin() as conn:
        await conn.execute(update(subscribers).where(subscribers.c.id == prosumer).values(tariff_id=tariff["id"]))
    await _register(uow, meter, "import_wh", [(1, 100_000), (31, 110_000), (59, 120_000)])  # 10 kWh a month
    await _register(uow, meter, "export_wh", [(1, 5_000), (31, 19_000), (59, 22_000)])  # 14, then 3 kWh

    utility = Party("Demo Utility", "", "", "")
    for start, end in ((date(2026, 1, 1), date(2026, 1, 31)), (date(2026, 2, 1), date(2026, 2, 28))):
        issued_at = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
        await issue_invoices(uow, start, end, issued_at, utility=utility, subscriber_ids=[prosumer])
    async with uow.connect() as conn:
        january, february = sorted((i["content"] for i in await invoices_of(conn, prosumer)), key=lambda c: c["number"])
    assert january["net"] == {
        "imported": 10_000,
        "exported": 14_000,
        "carried_in": 0,
        "billed": 0,
        "carried_out": 4_000,
    }
    assert (january["consumption_wh"], january["energy_value"]) == (0, 0)  # never billed below zero
    assert february["net"] == {
        "imported": 10_000,
        "exported": 3_000,
        "carried_in": 4_000,
        "billed": 3_000,
        "carried_out": 0,
    }
    assert (february["consumption_wh"], february["energy_value"]) == (3_000, 600)  # 3 kWh at 2.00
    lines = {ln["description"]: ln["quantity"] for ln in february["lines"]}
    assert lines["Energy imported"] == "10.000 kWh"
    assert lines["Energy exported"] == "3.000 kWh"
    assert lines["Surplus from the previous period"] == "4.000 kWh"
    assert lines["Net energy billed (value at tariff)"] == "3.000 kWh"
    assert "Surplus carried to the next period" in {ln["description"] for ln in january["lines"]}

    await login(client, "admin")
    page = await (await client.get("/console/tariffs")).text()
    assert 'data-testid="net-billing"' in page
    response = await client.post(
        "/console/tariffs",
        data={
            **_hidden(page, "/console/tariffs"),
            "code": "NET-2",
            "name": "Net",
            "kind": "flat",
            "net_billing": "net",
        },
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    page = await (await client.get(response.headers["Location"])).text()
    assert 'data-testid="tariff-net-billing">Import less export, a surplus is not billed<' in page
