"""Event webhooks through their doors: /api/v1/event-subscriptions and /api/v1/event-deliveries (admins manage
subscriptions, operators send a dead delivery again, watchers read; the signing secret is answered once) and
the console's Webhooks page (add, disable, see a failure and its attempts, send it again), each change audited
(both databases). The receiver is a real aiohttp server on a free port."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from billing.event_delivery import AiohttpPoster, DeliveryPolicy, deliver_events
from gateway.keys import KeyRing
from store.events import Event, EventKind, emit
from store.schema.events import event_subscriptions
from store.uow import UnitOfWork
from tests.integration.web.helpers import MASTER_KEY, START, Seeded, login
from tests.integration.web.test_registry_doors import api_key, audit_rows

ONE_TRY = DeliveryPolicy(max_attempts=1, timeout_s=2.0)
KEYS = KeyRing(MASTER_KEY)


class Receiver:
    def __init__(self) -> None:
        self.status = 500
        self.ids: list[str] = []
        self.signed: list[tuple[str, bytes]] = []  # (Smsmeter-Signature, body)
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.ids.append(request.headers["Smsmeter-Event-Id"])
        self.signed.append((request.headers["Smsmeter-Signature"], await request.read()))
        return web.Response(status=self.status)


def _signed_by(header: str, raw: bytes) -> list[str]:
    """The hex MACs of a signature header, in order (each compared with `_mac`, HMAC-SHA256 over "<t>.<body>"
    computed here by hand)."""
    assert raw
    parts = header.split(",")
    assert parts[0].startswith("t=")
    return [p.removeprefix("v1=") for p in parts[1:]]


def _mac(secret: str, header: str, raw: bytes) -> str:
    t = header.split(",")[0].removeprefix("t=")
    return hmac.new(secret.encode(), t.encode() + b"." + raw, hashlib.sha256).hexdigest()


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
        await deliver_events(uow, poster, START + timedelta(seconds=1), KEYS, ONE_TRY)
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
        report = await deliver_events(uow, poster, START + timedelta(seconds=2), KEYS, ONE_TRY)
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


async def _deliver(uow: UnitOfWork, event_id: str, at_s: int) -> None:
    async with uow.begin() as conn:
        await emit(conn, [Event(event_id, EventKind.ALARM, START, {"kind": "tamper"})], START)
    poster = AiohttpPoster()
    try:
        await deliver_events(uow, poster, START + timedelta(seconds=at_s), KEYS, ONE_TRY)
    finally:
        await poster.close()


async def test_a_secret_is_kept_sealed_and_rotated_with_the_old_one_signing_beside_it_a_while(
    client: TestClient, uow: UnitOfWork, seeded: Seeded, receiver: Receiver
) -> None:
    receiver.status = 200
    admin, operator = await api_key(uow, client, "admin"), await api_key(uow, client, "operator")
    body = {"url": receiver.url, "kinds": ["alarm"]}
    sub = await (await client.post("/api/v1/event-subscriptions", json=body, headers=admin)).json()
    first = sub["secret"]
    async with uow.connect() as conn:
        row = (await conn.execute(select(event_subscriptions).where(event_subscriptions.c.id == sub["id"]))).one()
    assert row.secret is None  # never at rest in plain
    assert first.encode() not in row.secret_sealed
    assert KEYS.unseal(row.secret_sealed).decode() == first

    rotate = f"/api/v1/event-subscriptions/{sub['id']}/rotate-secret"
    assert (await client.post(rotate, json={}, headers=operator)).status == 403
    assert (await client.post(rotate, json={"keep_previous_hours": 200}, headers=admin)).status == 422
    assert (await client.post(rotate, json={"keep_previous_hours": "1"}, headers=admin)).status == 422
    assert (await client.post("/api/v1/event-subscriptions/999/rotate-secret", headers=admin)).status == 404
    response = await client.post(rotate, json={"keep_previous_hours": 24}, headers=admin)
    assert response.status == 200, await response.text()
    rotated = await response.json()
    second = rotated["secret"]
    assert second != first
    assert rotated["secret_hint"] == "…" + second[-4:]
    assert rotated["previous_until"].startswith((START + timedelta(hours=24)).date().isoformat())
    listed = await (await client.get(f"/api/v1/event-subscriptions/{sub['id']}", headers=admin)).json()
    assert "secret" not in listed

    await _deliver(uow, "alarm:20", 5)  # both sign while the old one is kept: new first
    header, raw = receiver.signed[-1]
    assert _signed_by(header, raw) == [_mac(second, header, raw), _mac(first, header, raw)]

    third = (await (await client.post(rotate, json={"keep_previous_hours": 0}, headers=admin)).json())["secret"]
    await _deliver(uow, "alarm:21", 6)  # the old one stopped at once
    header, raw = receiver.signed[-1]
    assert _signed_by(header, raw) == [_mac(third, header, raw)]
    [one, two] = await audit_rows(uow, "event_subscription.rotate_secret")
    assert (one["before"]["secret_hint"], one["after"]["secret_hint"]) == ("…" + first[-4:], "…" + second[-4:])
    assert two["after"]["previous_until"] is None
    assert all(s not in str(r) for r in (one, two) for s in (first, second, third))

    # a subscription from before secrets were sealed: the delivery job seals it, and it signs as before
    async with uow.begin() as conn:
        await conn.execute(
            update(event_subscriptions)
            .where(event_subscriptions.c.id == sub["id"])
            .values(secret="whsec_plain_from_before", secret_sealed=None, previous_secret_sealed=None)
        )
    await _deliver(uow, "alarm:22", 7)
    header, raw = receiver.signed[-1]
    assert _signed_by(header, raw) == [_mac("whsec_plain_from_before", header, raw)]
    async with uow.connect() as conn:
        row = (await conn.execute(select(event_subscriptions).where(event_subscriptions.c.id == sub["id"]))).one()
    assert row.secret is None
    assert KEYS.unseal(row.secret_sealed) == b"whsec_plain_from_before"

    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["paths"]["/api/v1/event-subscriptions/{id}/rotate-secret"]["post"]["x-roles"] == ["admin"]


async def test_an_admin_gives_a_subscription_a_new_secret_in_the_console(
    client: TestClient, uow: UnitOfWork, seeded: Seeded, receiver: Receiver
) -> None:
    token = await login(client, "admin")
    form = {"csrf_token": token, "url": receiver.url, "kind_alarm": "1"}
    page = await (await client.post("/console/webhooks", data=form)).text()
    assert 'data-testid="rotate-secret"' in page
    async with uow.connect() as conn:
        sub_id = int(await conn.scalar(select(event_subscriptions.c.id)))
    rotate = f"/console/webhooks/{sub_id}/rotate-secret"
    assert (await client.post(rotate, data={"csrf_token": token, "keep_previous_hours": "5"})).status == 422
    response = await client.post(rotate, data={"csrf_token": token, "keep_previous_hours": "24"})
    assert response.status == 200, await response.text()
    page = await response.text()
    assert 'data-testid="webhook-new-secret"' in page
    assert "signs beside it until" in page
    assert "and the one before, until" in page
    client.session.cookie_jar.clear()
    await login(client, "viewer")
    page = await (await client.get("/console/webhooks")).text()
    assert 'data-testid="rotate-secret"' not in page
    assert (await client.post(rotate, data={"csrf_token": token, "keep_previous_hours": "0"})).status == 403
