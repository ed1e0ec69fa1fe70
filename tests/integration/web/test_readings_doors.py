"""Readings' doors: a reading entered on the meter card and through the API (validated against the meter's
history, with its source, status and who entered it, audited), a CSV file of readings uploaded in the
console and posted to the API, and the meter card showing the register history and its charts."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select, update

from store.schema.commands import readings
from store.schema.registry import meters
from store.uow import UnitOfWork
from tests.integration.web.helpers import START, Seeded, login
from tests.integration.web.test_registry_doors import api_key, audit_rows


async def _history(uow: UnitOfWork, meter_id: int, days: int = 5, per_day_wh: int = 4_000) -> None:
    """A meter that reported its import register once a day up to START."""
    async with uow.begin() as conn:
        await conn.execute(
            insert(readings),
            [
                {
                    "meter_id": meter_id,
                    "register": "import_wh",
                    "read_at": START - timedelta(days=days - d),
                    "value": 100_000 + d * per_day_wh,
                    "received_at": START,
                }
                for d in range(days)
            ],
        )


async def _code(uow: UnitOfWork, meter_id: int) -> str:
    async with uow.connect() as conn:
        return str(await conn.scalar(select(meters.c.code).where(meters.c.id == meter_id)))


async def test_a_reading_entered_through_the_api_is_validated_stored_and_audited(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    meter_id = seeded.meter_ids[0]
    await _history(uow, meter_id)
    headers = await api_key(uow, client, "operator")
    url = f"/api/v1/meters/{meter_id}/readings"
    ok = {"register": "import_wh", "read_at": (START - timedelta(hours=1)).isoformat(), "value": 120_500}
    response = await client.post(url, json=ok, headers=headers)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert (body["source"], body["status"], body["value"]) == ("manual", "ok", 120_500)
    assert body["entered_by"] == "api_key:key-operator"
    assert (await client.post(url, json=ok, headers=headers)).status == 409

    backwards = {"read_at": (START - timedelta(minutes=30)).isoformat(), "value": 90_000}
    assert (await (await client.post(url, json=backwards, headers=headers)).json())["status"] == "backwards"
    future = {"read_at": (START + timedelta(days=1)).isoformat(), "value": 130_000}
    assert (await client.post(url, json=future, headers=headers)).status == 422
    assert (await client.post(url, json={**ok, "register": "power_w"}, headers=headers)).status == 422
    viewer = await api_key(uow, client, "viewer")
    assert (await client.post(url, json=ok, headers=viewer)).status == 403

    listed = await (await client.get(url, headers=viewer)).json()
    assert listed["total"] == 7
    assert [(r["source"], r["status"]) for r in listed["items"][-2:]] == [("manual", "ok"), ("manual", "backwards")]
    since = (START - timedelta(hours=2)).isoformat()
    page = await (await client.get(url, params={"from": since, "limit": 1}, headers=viewer)).json()
    assert (page["total"], len(page["items"]), page["items"][0]["value"]) == (2, 1, 120_500)
    assert (await client.get("/api/v1/meters/999999/readings", headers=viewer)).status == 404

    audited = await audit_rows(uow, "reading.enter")
    assert [a["after"]["status"] for a in audited] == ["ok", "backwards"]  # type: ignore[index]


async def test_a_csv_file_of_readings_through_the_api_reports_each_bad_line(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    meter_id = seeded.meter_ids[0]
    await _history(uow, meter_id)
    code = await _code(uow, meter_id)
    day = (START - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S")
    text = (
        "meter_code,read_at,register,kwh\n"
        f"{code},{day},import_wh,120.1\n"
        f"{code},{day},import_wh,120.1\n"
        f"{code},{(START - timedelta(hours=2)).strftime('%Y-%m-%dT%H:%M:%S')},import_wh,50\n"
        "99999999999999999999,2026-01-10T08:00:00,import_wh,1\n"
        f"{code},not a time,import_wh,1\n"
    )
    headers = await api_key(uow, client, "operator")
    response = await client.post(
        "/api/v1/readings/import?file_name=round-7.csv", data=text, headers={**headers, "Content-Type": "text/csv"}
    )
    assert response.status == 200, await response.text()
    report = await response.json()
    assert (report["rows"], report["imported"]) == (5, 2)
    assert [r["line"] for r in report["rejected"]] == [3, 5, 6]
    assert (report["statuses"]["ok"], report["statuses"]["backwards"]) == (1, 1)
    listed = await (await client.get(f"/api/v1/meters/{meter_id}/readings", headers=headers)).json()
    assert {r["source"] for r in listed["items"][-2:]} == {"import"}
    assert "round-7.csv" in listed["items"][-1]["entered_by"]
    (audited,) = await audit_rows(uow, "readings.import")
    assert audited["target"] == "file:round-7.csv"
    wrong_type = await client.post("/api/v1/readings/import", json={}, headers=headers)
    assert wrong_type.status == 415


async def test_the_meter_card_shows_readings_and_takes_one_typed_in(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    meter_id = seeded.meter_ids[0]
    await _history(uow, meter_id)
    token = await login(client, "operator")
    page = await (await client.get(f"/console/meters/{meter_id}")).text()
    assert 'data-testid="daily-chart"' in page
    assert 'data-testid="reading-form"' in page
    assert page.count('data-status="ok"') == 5
    local = (START - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")  # the utility's zone is UTC here
    response = await client.post(
        f"/console/meters/{meter_id}/readings",
        data={"register": "import_wh", "read_at": local, "reading": "200,5", "csrf_token": token},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    assert "ok=reading_entered" in response.headers["Location"]
    page = await (await client.get(f"/console/meters/{meter_id}")).text()
    assert 'data-status="spike" data-source="manual"' in page
    assert "operator:operator" in page

    form = FormData()
    form.add_field("csrf_token", token)
    code = await _code(uow, meter_id)
    form.add_field("file", f"meter_code,read_at,value\n{code},{local[:10]}T06:00,1\n", filename="probe.csv")
    response = await client.post("/console/readings/import", data=form)
    text = await response.text()
    assert response.status == 200, text
    assert 'data-testid="import-report"' in text
    assert 'data-testid="status-backwards"' in text


async def test_a_viewer_sees_the_readings_but_cannot_enter_one(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    meter_id = seeded.meter_ids[0]
    token = await login(client, "viewer")
    page = await (await client.get(f"/console/meters/{meter_id}")).text()
    assert 'data-testid="readings"' in page
    assert 'data-testid="reading-form"' not in page
    response = await client.post(
        f"/console/meters/{meter_id}/readings",
        data={"register": "import_wh", "read_at": "2026-01-15T10:00", "reading": "1", "csrf_token": token},
        allow_redirects=False,
    )
    assert response.status == 403


async def test_readings_load_profiles_and_consumption_by_group_through_the_api_and_the_dashboard(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    from billing.consumption_daily import aggregate_consumption

    first, second = seeded.meter_ids
    await _history(uow, first, per_day_wh=4_000)
    await _history(uow, second, per_day_wh=1_000)
    async with uow.begin() as conn:
        await conn.execute(
            insert(readings),
            [
                {
                    "meter_id": first,
                    "register": "profile_wh",
                    "read_at": START - timedelta(hours=3 - h),
                    "value": 100 + h,
                    "received_at": START,
                }
                for h in range(3)
            ],
        )
    await aggregate_consumption(uow, UTC, START + timedelta(minutes=1))
    headers = await api_key(uow, client, "viewer")

    group = await (await client.get("/api/v1/readings", params={"street": "1", "limit": 3}, headers=headers)).json()
    assert (group["total"], len(group["items"])) == (10, 3)  # both meters' registers, not their load profile
    since = (START - timedelta(days=2, hours=1)).isoformat()
    one = await (
        await client.get("/api/v1/readings", params={"meter_id": first, "from": since}, headers=headers)
    ).json()
    assert [r["value"] for r in one["items"]] == [112_000, 116_000]
    assert (await client.get("/api/v1/readings", params={"street": "abc"}, headers=headers)).status == 422

    profile = await (await client.get(f"/api/v1/meters/{first}/load-profile", headers=headers)).json()
    assert [p["energy_wh"] for p in profile["items"]] == [100, 101, 102]

    by_meter = await (
        await client.get(
            "/api/v1/consumption",
            params={"by": "meter", "from": "2026-01-01", "to": "2026-01-31", "building": "1"},
            headers=headers,
        )
    ).json()
    assert {m["key"]: m["quantity"] for m in by_meter["items"]} == {str(first): 16_000, str(second): 4_000}
    monthly = await (
        await client.get(
            "/api/v1/consumption",
            params={"by": "settlement", "granularity": "month", "from": "2026-01-01", "to": "2026-01-31"},
            headers=headers,
        )
    ).json()
    (settlement,) = monthly["items"]
    assert settlement["key"] == "64-01"
    assert settlement["periods"] == [{"period": "2026-01", "quantity": 20_000, "estimated": 0}]
    bad = await client.get("/api/v1/consumption", params={"by": "planet"}, headers=headers)
    assert bad.status == 422

    await login(client, "viewer")
    page = await (await client.get("/console/consumption", params={"by": "street", "days": "30"})).text()
    assert 'data-testid="consumption-chart"' in page
    assert "Independentei" in page
    assert "by=building" in page
    buildings = await (await client.get("/console/consumption?by=meter&region=64&building=1")).text()
    assert f"/console/meters/{first}" in buildings


async def test_the_mdm_export_of_a_day_through_the_api_and_the_console(
    client: TestClient, seeded: Seeded, uow: UnitOfWork, tmp_path: Path
) -> None:
    from billing.mdm import validate

    await _history(uow, seeded.meter_ids[0])
    headers = await api_key(uow, client, "auditor")
    day = (START - timedelta(days=1)).date().isoformat()
    response = await client.get("/api/v1/exports/readings", params={"day": day}, headers=headers)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/xml"
    path = tmp_path / "export.xml"
    path.write_bytes(await response.read())
    assert validate(path) == []
    assert b"<mRID>" in path.read_bytes()
    text = await (
        await client.get("/api/v1/exports/readings", params={"day": day, "format": "csv"}, headers=headers)
    ).text()
    assert text.splitlines()[0].startswith("meter_code,subscriber_code,register")
    assert len(text.splitlines()) == 2
    assert (await client.get("/api/v1/exports/readings", params={"day": "x"}, headers=headers)).status == 422
    cashier = await api_key(uow, client, "cashier")
    assert (await client.get("/api/v1/exports/readings", headers=cashier)).status == 403
    (audited,) = [a for a in await audit_rows(uow, "readings.export") if a["after"]["format"] == "csv"]  # type: ignore[index]
    assert audited["target"] == f"day:{day}"

    await login(client, "viewer")
    page = await (await client.get("/console/consumption")).text()
    assert 'data-testid="mdm-export"' in page
    download = await client.get("/console/exports/readings", params={"day": day, "format": "csv"})
    assert download.status == 200
    assert "attachment" in download.headers["Content-Disposition"]


async def test_the_portal_charts_each_meter_beside_the_same_month_a_year_ago(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    from billing.consumption_daily import aggregate_consumption
    from tests.integration.web.helpers import portal_login

    meter_id = seeded.meter_ids[0]
    await _history(uow, meter_id, days=10, per_day_wh=4_000)  # 5–15 January 2026
    async with uow.begin() as conn:
        await conn.execute(
            insert(readings),
            [
                {
                    "meter_id": meter_id,
                    "register": "import_wh",
                    "read_at": START.replace(year=2025, day=1 + d),
                    "value": 94_000 + d * 3_000,  # up to where the 2026 history starts
                    "received_at": START,
                }
                for d in range(3)  # 1–3 January 2025: 6 kWh
            ],
        )
    await aggregate_consumption(uow, UTC, START + timedelta(minutes=1))
    await portal_login(client, seeded.subscriber_codes[0])
    page = await (await client.get("/portal")).text()
    assert page.count('data-testid="meter-chart"') == 1
    assert 'data-testid="meter-daily"' in page
    assert "This month so far: 36 kWh." in page
    assert "The same days a year ago: 6 kWh." in page


async def test_a_water_meter_reads_in_cubic_metres_on_the_card_the_portal_and_the_invoice(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    from billing.consumption_daily import aggregate_consumption
    from billing.invoices import invoices_of, issue_invoices
    from tests.integration.web.helpers import portal_login

    meter_id = seeded.meter_ids[0]
    async with uow.begin() as conn:
        await conn.execute(update(meters).where(meters.c.id == meter_id).values(kind="water"))
        await conn.execute(
            insert(readings),
            [
                {
                    "meter_id": meter_id,
                    "register": "volume_l",
                    "read_at": START - timedelta(days=10 - d),
                    "value": 50_000 + d * 150,  # 150 litres a day
                    "received_at": START,
                }
                for d in range(11)
            ],
        )
    await aggregate_consumption(uow, UTC, START + timedelta(minutes=1))

    await login(client, "viewer")
    card = await (await client.get(f"/console/meters/{meter_id}")).text()
    assert "Consumption per day, last 30 days (m³)" in card
    assert "kWh" not in card.split('id="readings"')[1].split("Register history")[0]
    client.session.cookie_jar.clear()

    await portal_login(client, seeded.subscriber_codes[0])
    page = await (await client.get("/portal")).text()
    assert 'data-unit="m³"' in page
    assert "This month so far: 1.5 m³." in page  # 10 days of 150 l in January

    from billing.rules.invoice import Party

    await issue_invoices(
        uow,
        START.date().replace(day=1),
        START.date().replace(day=31),
        START.replace(month=2, day=1),
        utility=Party("Apa Nord", "", "", ""),
        subscriber_ids=[seeded.subscriber_ids[0]],
    )
    async with uow.connect() as conn:
        (invoice,) = await invoices_of(conn, seeded.subscriber_ids[0])
    assert "1.500 m³" in str(invoice)


async def test_the_consumption_dashboard_totals_each_unit_on_its_own(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    from billing.consumption_daily import aggregate_consumption

    water, power = seeded.meter_ids
    await _history(uow, power)  # 4 kWh a day
    await _history(uow, water, per_day_wh=1)  # an energy register on a water meter never counts in kWh
    async with uow.begin() as conn:
        await conn.execute(update(meters).where(meters.c.id == water).values(kind="water"))
        await conn.execute(
            insert(readings),
            [
                {
                    "meter_id": water,
                    "register": "volume_l",
                    "read_at": START - timedelta(days=5 - d),
                    "value": 50_000 + d * 150,  # 150 litres a day
                    "received_at": START,
                }
                for d in range(5)
            ],
        )
    await aggregate_consumption(uow, UTC, START + timedelta(minutes=1))

    await login(client, "viewer")
    page = await (await client.get("/console/consumption", params={"by": "meter", "days": "30"})).text()
    assert 'data-testid="total-kwh">16<' in page  # 4 days of 4 kWh
    assert 'data-testid="total-m3">0.6<' in page  # 4 days of 150 l
    assert 'data-testid="consumption-chart"' in page
    assert 'data-testid="consumption-chart-m3"' in page
    assert '<th class="text-end">kWh</th><th class="text-end">m³</th>' in page
    assert page.count('data-testid="member-m3">0.6<') == 1
    assert page.count('data-testid="member-kwh">16<') == 1
    only_water = await (await client.get("/console/consumption", params={"by": "meter", "meter_id": str(water)})).text()
    assert 'data-testid="total-m3">0.6<' in only_water
    assert 'data-testid="total-kwh"' not in only_water
    nothing = await (await client.get("/console/consumption", params={"by": "meter", "days": "1"})).text()
    assert 'data-testid="total-kwh">0<' in nothing
