"""Issuing commands from the console (relay off/on with a reason, read) and the API (JSON, or the
protocol's XML document validated against its XSD); cashier top-ups through billing; all audited."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from store.schema.auth import audit_log
from store.schema.commands import commands
from store.schema.registry import meters
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, login
from web import auth
from web.keys import CLOCK


def _form_fields(html: str, action: str) -> dict[str, str]:
    form = html[html.index(f'action="{action}"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))


async def test_relay_off_from_the_card_is_queued_and_audited(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    await login(client, "operator")
    sid, mid = seeded.subscriber_ids[0], seeded.meter_ids[0]
    card = await (await client.get(f"/console/subscribers/{sid}")).text()
    fields = _form_fields(card, f"/console/meters/{mid}/relay")
    response = await client.post(
        f"/console/meters/{mid}/relay",
        data={**fields, "action": "off", "reason": "unpaid since March"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert location.startswith(f"/console/subscribers/{sid}?ok=relay_off&command=")
    command_id = int(location.rsplit("=", 1)[1])
    again = await client.post(  # a double submit of the same form is the same command
        f"/console/meters/{mid}/relay",
        data={**fields, "action": "off", "reason": "unpaid since March"},
        allow_redirects=False,
    )
    assert again.status == 303
    card = await (await client.get(location)).text()
    assert "Relay off queued for the meter" in card  # not "sent": nothing has reached the meter yet
    assert f'data-live-command="/console/commands/{command_id}/outcome.json"' in card
    states = await (await client.get(f"/console/subscribers/{sid}/commands.json")).json()
    assert [(c["id"], c["kind"], c["state"]) for c in states["items"]] == [(command_id, "relay_off", "0:0")]
    outcome = await (await client.get(f"/console/commands/{command_id}/outcome.json")).json()
    assert (outcome["state"], outcome["final"], outcome["failed"]) == ("0:0", False, False)
    assert outcome["words"].startswith("Sending")
    detail = await (await client.get(f"/console/commands/{command_id}")).text()
    assert "unpaid since March" in detail
    async with uow.connect() as conn:
        payload = await conn.scalar(select(commands.c.payload).where(commands.c.id == command_id))
        rows = (await conn.execute(select(commands.c.kind, commands.c.created_by))).all()
        audit = (await conn.execute(select(audit_log).where(audit_log.c.action == "meter.relay_off"))).mappings().all()
        meter_code = await conn.scalar(select(meters.c.code).where(meters.c.id == mid))
    assert rows == [("relay_off", "operator:operator")]
    assert len(audit) == 1  # billing's control_meter wrote it, once
    assert audit[0]["after"]["note"] == "unpaid since March"
    assert audit[0]["after"]["command_id"] == states["items"][0]["id"]
    assert audit[0]["target"] == f"meter:{meter_code}"
    assert payload == {"reason": "OPERATOR", "note": "unpaid since March"}  # the operator's words, on the command


async def test_relay_on_and_read_from_the_card_go_through_billing(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    await login(client, "admin")
    sid, mid = seeded.subscriber_ids[1], seeded.meter_ids[1]
    card = await (await client.get(f"/console/subscribers/{sid}")).text()
    response = await client.post(
        f"/console/meters/{mid}/relay",
        data={**_form_fields(card, f"/console/meters/{mid}/relay"), "action": "on", "reason": "paid at the desk"},
        allow_redirects=False,
    )
    assert response.headers["Location"] == f"/console/subscribers/{sid}?ok=relay_on&command=1"
    card = await (await client.get(response.headers["Location"])).text()
    response = await client.post(
        f"/console/meters/{mid}/read", data=_form_fields(card, f"/console/meters/{mid}/read"), allow_redirects=False
    )
    assert response.headers["Location"] == f"/console/subscribers/{sid}?ok=read&command=2"
    async with uow.connect() as conn:
        sent = (await conn.execute(select(commands.c.kind, commands.c.state).order_by(commands.c.id))).all()
        actions = (await conn.scalars(select(audit_log.c.action).order_by(audit_log.c.id))).all()
    assert sent == [("relay_on", "0:0"), ("read_request", "0:0")]
    assert [a for a in actions if a.startswith("meter.")] == ["meter.relay_on", "meter.read"]


async def test_relay_needs_a_reason(client: TestClient, seeded: Seeded) -> None:
    await login(client, "operator")
    sid, mid = seeded.subscriber_ids[0], seeded.meter_ids[0]
    fields = _form_fields(
        await (await client.get(f"/console/subscribers/{sid}")).text(), f"/console/meters/{mid}/relay"
    )
    response = await client.post(f"/console/meters/{mid}/relay", data={**fields, "action": "off", "reason": " "})
    assert response.status == 422
    assert "reason: is required" in await response.text()


async def test_the_api_takes_json_and_xml_commands(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    async with uow.begin() as conn:
        _id, key = await auth.create_api_key(conn, name="SCADA", role="operator", now=client.app[CLOCK]())
    headers = {"Authorization": f"Bearer {key}"}
    mid = seeded.meter_ids[1]
    response = await client.post(
        "/api/v1/commands",
        json={"meter_id": mid, "kind": "read_request", "items": ["registers"]},
        headers={**headers, "Idempotency-Key": "r-1"},
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert (body["kind"], body["state"], body["meter_id"]) == ("read_request", "0:0", mid)
    assert body["history"][0]["to_state"] == "0:0"
    assert response.headers["Location"] == f"/api/v1/commands/{body['id']}"
    retry = await client.post(
        "/api/v1/commands",
        json={"meter_id": mid, "kind": "read_request", "items": ["registers"]},
        headers={**headers, "Idempotency-Key": "r-1"},
    )
    assert (await retry.json())["id"] == body["id"]
    noted = await client.post(
        "/api/v1/commands",
        json={"meter_id": mid, "kind": "relay_off", "reason": "maintenance", "note": "transformer works on Tuesday"},
        headers=headers,
    )
    assert noted.status == 201, await noted.text()
    assert (await noted.json())["payload"] == {"reason": "MAINTENANCE", "note": "transformer works on Tuesday"}

    xml = b'<relayOn xmlns="urn:smsmeter:protocol:1" reason="customer_request"/>'
    response = await client.post(
        f"/api/v1/commands?meter_id={mid}", data=xml, headers={**headers, "Content-Type": "application/xml"}
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["kind"] == "relay_on"

    bad = b'<relayOn xmlns="urn:smsmeter:protocol:1" reason="because"/>'
    response = await client.post(
        f"/api/v1/commands?meter_id={mid}", data=bad, headers={**headers, "Content-Type": "application/xml"}
    )
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    assert "not valid" in (await response.json())["detail"]

    credit = b'<topUp xmlns="urn:smsmeter:protocol:1" transferId="1" amountMinor="100000"/>'
    response = await client.post(
        f"/api/v1/commands?meter_id={mid}", data=credit, headers={**headers, "Content-Type": "application/xml"}
    )
    assert response.status == 422  # credit only through billing's ledger
    response = await client.post("/api/v1/commands", json={"meter_id": 999999, "kind": "ping"}, headers=headers)
    assert response.status == 404
    response = await client.post("/api/v1/commands", data="x", headers={**headers, "Content-Type": "text/plain"})
    assert response.status == 415
    listing = await (await client.get(f"/api/v1/commands?meter_id={mid}&limit=1", headers=headers)).json()
    assert (listing["total"], len(listing["items"])) == (3, 1)


async def test_a_cashier_tops_up_and_prints_the_receipt(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    await login(client, "cashier")
    sid = seeded.subscriber_ids[0]
    card = await (await client.get(f"/console/subscribers/{sid}")).text()
    fields = _form_fields(card, f"/console/subscribers/{sid}/topup")
    response = await client.post(
        f"/console/subscribers/{sid}/topup", data={**fields, "amount": "12,50"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    topup_id = int(location.rsplit("receipt=", 1)[1])
    page = await (await client.get(location)).text()
    assert "$22.50" in page  # 10.00 before + 12.50
    pdf = await client.get(f"/console/topups/{topup_id}/receipt.pdf")
    assert pdf.status == 200
    assert (await pdf.read()).startswith(b"%PDF")
    async with uow.connect() as conn:
        kinds = [r.kind for r in await conn.execute(select(commands.c.kind))]
    assert kinds == ["top_up"]
