"""The API for integrations: a CIS creates and edits subscribers and reports bank payments; lists page
and filter; errors are problem documents."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from meter_protocol.meter_code import meter_code_with_check_digit
from store.schema.auth import audit_log
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded
from web import auth
from web.keys import CLOCK


async def _key(uow: UnitOfWork, client: TestClient, role: str) -> dict[str, str]:
    async with uow.begin() as conn:
        _id, raw = await auth.create_api_key(conn, name=f"CIS-{role}", role=role, now=client.app[CLOCK]())
    return {"Authorization": f"Bearer {raw}"}


async def test_a_cis_keeps_subscribers_in_step(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    headers = await _key(uow, client, "operator")
    body = {"code": "640100100010009", "name": "Dan Lungu", "phone": "+37360000009", "registered_on": "2026-01-02"}
    response = await client.post("/api/v1/subscribers", json=body, headers=headers)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert (created["code"], created["name"], created["balance_minor"]) == ("640100100010009", "Dan Lungu", 0)
    assert response.headers["Location"] == f"/api/v1/subscribers/{created['id']}"
    again = await client.post("/api/v1/subscribers", json=body, headers=headers)
    assert again.status == 409
    assert again.content_type == "application/problem+json"
    bad = await client.post(
        "/api/v1/subscribers", json={**body, "code": "640100100010010", "email": "nope"}, headers=headers
    )
    assert bad.status == 422
    assert "email" in (await bad.json())["detail"]
    response = await client.patch(
        f"/api/v1/subscribers/{created['id']}", json={"phone": "37360000010"}, headers=headers
    )
    assert response.status == 200
    assert (await response.json())["phone"] == "37360000010"
    listing = await (await client.get("/api/v1/subscribers?q=Lungu&limit=5", headers=headers)).json()
    assert [s["code"] for s in listing["items"]] == ["640100100010009"]
    async with uow.connect() as conn:
        actions = [r.action for r in await conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))]
    assert actions == ["subscriber.create", "subscriber.update"]


async def test_bank_payments_reported_by_the_cis_are_applied_once(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    headers = await _key(uow, client, "cashier")
    payment = {"provider_ref": "BANK-778", "amount_minor": 1500, "subscriber_code": seeded.subscriber_codes[0]}
    response = await client.post("/api/v1/payments", json=payment, headers=headers)
    assert response.status == 201, await response.text()
    first = await response.json()
    assert (first["state"], first["amount_minor"], first["duplicate"]) == ("queued", 1500, False)
    response = await client.post("/api/v1/payments", json=payment, headers=headers)
    assert response.status == 200
    assert (await response.json())["topup_id"] == first["topup_id"]
    payments = await (await client.get("/api/v1/payments?provider=api_key:CIS-cashier", headers=headers)).json()
    assert payments["total"] == 1
    command = await (await client.get(f"/api/v1/commands/{first['command_id']}", headers=headers)).json()
    assert (command["kind"], command["state"]) == ("top_up", "0:0")
    response = await client.post("/api/v1/payments", json={**payment, "amount_minor": -1}, headers=headers)
    assert response.status == 422
    assert (await response.json())["errors"] == [
        {"field": "amount_minor", "reason": "a positive whole number of minor units"}
    ]
    response = await client.post(
        "/api/v1/payments", json={**payment, "provider_ref": "x", "subscriber_code": "999999999999999"}, headers=headers
    )
    assert response.status == 404
    viewer = await _key(uow, client, "viewer")
    assert (await client.post("/api/v1/payments", json=payment, headers=viewer)).status == 403


async def test_lists_page_and_filter(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    headers = await _key(uow, client, "viewer")
    page = await (await client.get("/api/v1/subscribers?limit=1&offset=1", headers=headers)).json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (2, 1, 1, 1)
    assert (await client.get("/api/v1/subscribers?limit=500", headers=headers)).status == 422
    assert (await client.get("/api/v1/commands?since=yesterday", headers=headers)).status == 422
    assert (await client.get("/api/v1/commands?since=2026-01-01T00:00:00", headers=headers)).status == 422
    assert (await client.get("/api/v1/commands?since=2026-01-01T00:00:00Z", headers=headers)).status == 200
    meters = await (await client.get("/api/v1/meters", headers=headers)).json()
    assert meters["total"] == 2
    assert "next_counter" not in meters["items"][0]
    for path in ("/api/v1/tariffs", "/api/v1/notices", "/api/v1/wrong-sms", "/api/v1/alarms?open=true", "/api/v1/me"):
        assert (await client.get(path, headers=headers)).status == 200, path
    missing = await client.get("/api/v1/nothing-here", headers=headers)
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"


async def test_admin_and_operator_create_subscribers_and_meters_as_documented(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    """A code is region, settlement, street, building, apartment: a code on a street that is not registered is a
    field that is not valid (422, naming the street), not a missing page; the street can be registered first."""
    keys = {role: await _key(uow, client, role) for role in ("admin", "operator")}
    for n, (role, headers) in enumerate(keys.items(), start=1):
        body = {"code": f"64010010001009{n}", "name": f"Created by {role}"}
        response = await client.post("/api/v1/subscribers", json=body, headers=headers)
        assert response.status == 201, await response.text()
        created = await response.json()
        meter_code = meter_code_with_check_digit(f"880000000000000099{n}")
        meter = await client.post(
            "/api/v1/meters",
            json={"code": meter_code, "msisdn": f"3736900099{n}", "subscriber_id": created["id"]},
            headers=headers,
        )
        assert meter.status == 201, await meter.text()
        assert (await meter.json())["subscriber"]["code"] == body["code"]
    headers = keys["operator"]
    as_number = await client.post("/api/v1/subscribers", json={"code": 640100100010093, "name": "N"}, headers=headers)
    assert as_number.status == 201, await as_number.text()
    assert (await as_number.json())["code"] == "640100100010093"
    unknown = await client.post("/api/v1/subscribers", json={"code": "640100900010001", "name": "X"}, headers=headers)
    assert unknown.status == 422
    problem = await unknown.json()
    assert problem["field"] == "code"
    assert "street 6401009" in problem["detail"]
    regions = await (await client.get("/api/v1/regions", headers=headers)).json()
    assert {"code": "64", "name": "Nord"} in regions["items"]
    settlements = await (await client.get("/api/v1/settlements?region=64", headers=headers)).json()
    assert "6401" in {s["prefix"] for s in settlements["items"]}
    assert {s["region_code"] for s in settlements["items"]} == {"64"}
    assert (await client.get("/api/v1/settlements?region=6", headers=headers)).status == 422
    streets = await (await client.get("/api/v1/streets", headers=headers)).json()
    assert "6401001" in {s["prefix"] for s in streets["items"]}
    added = await client.post(
        "/api/v1/streets",
        json={"region_code": "64", "settlement_code": "01", "code": "009", "name": "Florilor"},
        headers=headers,
    )
    assert added.status == 201, await added.text()
    assert (await added.json())["prefix"] == "6401009"
    again = await client.post(
        "/api/v1/streets",
        json={"region_code": "64", "settlement_code": "01", "code": "009", "name": "Florilor"},
        headers=headers,
    )
    assert again.status == 409
    now_known = await client.post("/api/v1/subscribers", json={"code": "640100900010001", "name": "X"}, headers=headers)
    assert now_known.status == 201, await now_known.text()
