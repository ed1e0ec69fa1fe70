"""Event webhooks through their doors: /api/v1/event-subscriptions and /api/v1/event-deliveries (admins manage
subscriptions, operators send a dead delivery again, watchers read; the signing secret is answered once) and
the console's Webhooks page (add, disable, see a failure and its attempts, send it again), each change audited
(both databases). The receiver is a real aiohttp server on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from billing.event_delivery import AiohttpPoster, DeliveryPolicy, deliver_events
from store.events import Event, EventKind, emit
from store.uow import UnitOfWork
from tests.integration.web.helpers import START, Seeded, login
from tests.integration.web.test_registry_doors import api_key, audit_rows

ONE_TRY = DeliveryPolicy(max_attempts=1, timeout_s=2.0)


class Receiver:
    def __init__(self) -> None:
        self.status = 500
        self.ids: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.ids.append(request.headers["Smsmeter-Event-Id"])
        return web.Response(status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/in", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    r.url = f"http://127.0.0.1:{runner.addresses[0][1]}/in"
    try:
        yield r
    finally:
        await runner.cleanup()


async def _a_dead_delivery(uow: UnitOfWork, event_id: str) -> None:
    async with uow.begin() as conn:
        await emit(conn, [Event(event_id, EventKind.ALARM, START, {"kind": "tamper"})], START + timedelta(seconds=1))
    poster = AiohttpPoster()
    try:
        await deliver_events(uow, poster, START + timedelta(seconds=1), ONE_TRY)
    finally:
        await poster.close()


async def test_subscriptions_and_deliveries_through_the_api(
    client: TestClient, uow: UnitOfWork, seeded: Seeded, receiver: Receiver
) -> None:
    admin = await api_key(uow, client, "admin")
    operator = await api_key(uow, client, "operator")
    viewer = await api_key(uow, client, "viewer")
    body = {"url": receiver.url, "kinds": ["alarm", "command"], "description": "SCADA"}

    assert (await client.post("/api/v1/event-subscriptions", json=body, headers=operator)).status == 403
    response = await client.post("/api/v1/event-subscriptions", json=body, headers=admin)
    assert response.status == 201, await response.text()
    sub = await response.json()
    assert sub["secret"].startswith("whsec_")
    assert sub["kinds"] == ["alarm", "command"]
    bad = await client.post("/api/v1/event-subscriptions", json={**body, "kinds": ["gossip"]}, headers=admin)
    assert bad.status == 422
    bad = await client.post("/api/v1/event-subscriptions", json={**body, "url": "mailto:x@y"}, headers=admin)
    assert bad.status == 422

    listed = await (await client.get("/api/v1/event-subscriptions", headers=viewer)).json()
    assert [s["id"] for s in listed["items"]] == [sub["id"]]
    assert "secret" not in listed["items"][0]  # answered once only
    one = await (await client.get(f"/api/v1/event-subscriptions/{sub['id']}", headers=viewer)).json()
    assert one["secret_hint"] == "…" + sub["secret"][-4:]
    assert (await client.get("/api/v1/event-subscriptions/999", headers=viewer)).status == 404

    await _a_dead_delivery(uow, "alarm:1")
    dead = await (await client.get("/api/v1/event-deliveries?state=dead", headers=viewer)).json()
    assert dead["total"] == 1
    [delivery] = dead["items"]
    assert (delivery["event_id"], delivery["last_status"], delivery["attempts"]) == ("alarm:1", 500, 1)
    assert (await client.get("/api/v1/event-deliveries?state=lost", headers=viewer)).status == 422
    detail = await (await client.get(f"/api/v1/event-deliveries/{delivery['id']}", headers=viewer)).json()
    assert [a["status"] for a in detail["attempt_log"]] == [500]
    assert detail["data"] == {"kind": "tamper"}

    assert (await client.post(f"/api/v1/event-deliveries/{delivery['id']}/resend", headers=viewer)).status == 403
    response = await client.post(f"/api/v1/event-deliveries/{delivery['id']}/resend", headers=operator)
    assert response.status == 200, await response.text()
    assert (await response.json())["state"] == "pending"
    again = await client.post(f"/api/v1/event-deliveries/{delivery['id']}/resend", headers=operator)
    assert again.status == 409  # still pending
    receiver.status = 200
    poster = AiohttpPoster()
    try:
        report = await deliver_events(uow, poster, START + timedelta(seconds=2), ONE_TRY)
    finally:
        await poster.close()
    assert report.delivered == 1
    assert receiver.ids == ["alarm:1", "alarm:1"]

    response = await client.patch(f"/api/v1/event-subscriptions/{sub['id']}", json={"active": False}, headers=admin)
    assert response.status == 200, await response.text()
    assert (await response.json())["active"] is False
    bad = await client.patch(f"/api/v1/event-subscriptions/{sub['id']}", json={"active": "no"}, headers=admin)
    assert bad.status == 422
    [created] = await audit_rows(uow, "event_subscription.create")
    [disabled] = await audit_rows(uow, "event_subscription.update")
    [resent] = await audit_rows(uow, "event_delivery.resend")
    assert created["actor"] == "key-admin"
    assert "secret" not in created["after"]
    assert (disabled["before"]["active"], disabled["after"]["active"]) == (True, False)
    assert resent["before"]["state"] == "dead"

    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["paths"]["/api/v1/event-subscriptions"]["post"]["x-roles"] == ["admin"]
    assert "operator" in document["paths"]["/api/v1/event-deliveries/{id}/resend"]["post"]["x-roles"]
    assert "Smsmeter-Signature" in document["paths"]["/api/v1/event-subscriptions"]["get"]["description"]


async def test_an_admin_adds_a_subscription_sees_a_failure_and_sends_it_again_in_the_console(
    client: TestClient, uow: UnitOfWork, seeded: Seeded, receiver: Receiver
) -> None:
    await login(client, "viewer")
    page = await (await client.get("/console/webhooks")).text()
    assert "No subscription yet" in page
    assert 'data-testid="webhook-form"' not in page
    client.session.cookie_jar.clear()

    token = await login(client, "admin")
    form = {"csrf_token": token, "url": receiver.url, "description": "CIS", "kind_alarm": "1", "kind_payment": "1"}
    response = await client.post("/console/webhooks", data=form)
    assert response.status == 201, await response.text()
    page = await response.text()
    assert 'data-testid="webhook-secret"' in page
    assert "whsec_" in page
    assert (await client.post("/console/webhooks", data={**form, "url": "nope"})).status == 422

    await _a_dead_delivery(uow, "alarm:7")
    page = await (await client.get("/console/webhooks?state=dead")).text()
    assert "alarm:7" in page
    assert "HTTP 500" in page
    async with uow.connect() as conn:
        from billing.event_hooks import list_deliveries, list_subscriptions

        [delivery], _ = await list_deliveries(conn)
        [sub] = await list_subscriptions(conn)
    detail = await (await client.get(f"/console/webhooks/deliveries/{delivery['id']}")).text()
    assert 'data-testid="resend"' in detail
    assert "tamper" in detail
    response = await client.post(
        f"/console/webhooks/deliveries/{delivery['id']}/resend", data={"csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303
    page = await (await client.get(response.headers["Location"])).text()
    assert "queued again" in page

    await _a_dead_delivery(uow, "alarm:8")  # dead again (the resent one too: the receiver still answers 500)
    page = await (await client.get("/console/webhooks?state=dead")).text()
    assert 'data-testid="resend-dead"' in page
    response = await client.post("/console/webhooks/resend-dead", data={"csrf_token": token}, allow_redirects=False)
    assert response.status == 303
    assert "Every dead delivery is queued again" in await (await client.get(response.headers["Location"])).text()
    async with uow.connect() as conn:
        assert (await list_deliveries(conn, state="dead"))[1] == 0
    response = await client.post(
        f"/console/webhooks/{sub['id']}/active", data={"csrf_token": token, "active": "0"}, allow_redirects=False
    )
    assert response.status == 303
    page = await (await client.get(response.headers["Location"])).text()
    assert "Subscription disabled" in page
    assert len(await audit_rows(uow, "event_subscription.update")) == 1
