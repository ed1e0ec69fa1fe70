"""Scheduled reading through its doors: /api/v1/reading-plans (operators add plans and start runs, viewers
read), a run's report at /api/v1/reading-runs/{id}, and the console page (add a plan, run it now, pause it,
the run's page with the meters that did not answer); the reading budget is the SMSC's licensed rate times
the share given to reading (both databases)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from store.schema.commands import commands
from store.uow import UnitOfWork
from tests.integration.web.helpers import FixedClock, Seeded, login
from tests.integration.web.test_registry_doors import api_key, audit_rows
from web.keys import Services

PLAN = {
    "name": "Nightly registers",
    "items": "registers",
    "every": "daily",
    "group_kind": "settlement",
    "group_code": "6401",
    "window_start": "01:00",
    "window_end": "05:00",
}


@pytest.fixture
def billing_settings() -> dict[str, str]:
    return {"SMSMETER_SMPP_RATE_PER_S": "20", "SMSMETER_BILLING_READING_SHARE_PERCENT": "25"}


async def test_plans_and_runs_through_the_api(
    client: TestClient, uow: UnitOfWork, seeded: Seeded, services: Services, clock: FixedClock
) -> None:
    operator = await api_key(uow, client, "operator")
    viewer = await api_key(uow, client, "viewer")

    assert (await client.post("/api/v1/reading-plans", json=PLAN, headers=viewer)).status == 403
    response = await client.post("/api/v1/reading-plans", json=PLAN, headers=operator)
    assert response.status == 201, await response.text()
    plan = await response.json()
    assert (plan["meters"], plan["window_start"], plan["window_end"]) == (2, "01:00", "05:00")
    bad = await client.post("/api/v1/reading-plans", json={**PLAN, "group_code": "64"}, headers=operator)
    assert bad.status == 422

    listed = await (await client.get("/api/v1/reading-plans", headers=viewer)).json()
    assert [p["id"] for p in listed["items"]] == [plan["id"]]
    assert (await client.get(f"/api/v1/reading-plans/{plan['id']}", headers=viewer)).status == 200
    assert (await client.get("/api/v1/reading-plans/999", headers=viewer)).status == 404

    response = await client.post(f"/api/v1/reading-plans/{plan['id']}/runs", headers=operator)
    assert response.status == 201, await response.text()
    run = await response.json()
    assert run["rate_per_s"] == 5.0  # 20 a second licensed, a quarter of it for reading
    assert (run["queued"], run["waiting"], run["answered"]) == (1, 1, 0)  # the first meter at once, at its pace
    assert services.billing is not None
    await services.billing.run_reading_plans(clock.now + timedelta(seconds=1))  # the scheduled pass: the rest
    async with uow.begin() as conn:
        first = await conn.scalar(select(commands.c.id).order_by(commands.c.id).limit(1))
        await conn.execute(update(commands).where(commands.c.id == first).values(state="1:1"))
    report = await (await client.get(f"/api/v1/reading-runs/{run['id']}", headers=viewer)).json()
    assert (report["answered"], report["waiting"]) == (1, 1)
    assert [u["meter_id"] for u in report["unanswered"]] == [seeded.meter_ids[1]]
    runs = await (await client.get(f"/api/v1/reading-plans/{plan['id']}/runs", headers=viewer)).json()
    assert [r["id"] for r in runs["items"]] == [run["id"]]
    assert (await client.get("/api/v1/reading-runs/999", headers=viewer)).status == 404

    [created] = await audit_rows(uow, "reading_plan.create")
    assert created["after"]["group_code"] == "6401"
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["paths"]["/api/v1/reading-plans/{id}/runs"]["post"]["x-roles"] == ["admin", "operator"]


async def test_an_operator_adds_runs_and_pauses_a_plan_in_the_console(
    client: TestClient, uow: UnitOfWork, seeded: Seeded
) -> None:
    token = await login(client, "operator")
    page = await (await client.get("/console/reading-plans")).text()
    assert "No reading plan yet" in page
    assert 'data-testid="reading-budget">5.00<' in page
    form = {"csrf_token": token, **{k: v for k, v in PLAN.items() if k != "group_code"}, "group_kind": "all"}
    response = await client.post("/console/reading-plans", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    page = await (await client.get(response.headers["Location"])).text()
    assert "Reading plan saved." in page
    assert "Nightly registers" in page
    plan_id = int(page.split('data-plan-id="')[1].split('"')[0])

    response = await client.post(
        f"/console/reading-plans/{plan_id}/run", data={"csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303
    run_page = await (await client.get(response.headers["Location"])).text()
    assert 'data-testid="run-queued">1<' in run_page
    assert 'data-waiting="yes"' in run_page

    response = await client.post(
        f"/console/reading-plans/{plan_id}/enabled", data={"csrf_token": token, "enabled": "0"}, allow_redirects=False
    )
    assert response.status == 303
    [paused] = await audit_rows(uow, "reading_plan.pause")
    assert paused["after"] == {"enabled": False}
    bad = await client.post("/console/reading-plans", data={**form, "every": "weekly"})
    assert bad.status == 422
