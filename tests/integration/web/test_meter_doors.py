"""The doors of the meter operations: key change (one meter, a group), the meter's settings, emergency credit,
the engineering commands, group commands and their job's progress — console (the permission table decides
who) and API, each through billing's use case and audited."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from store.schema.auth import audit_log
from store.schema.commands import commands
from store.schema.registry import meter_keys
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, login
from tests.integration.web.test_operations import api_key, form_fields


@pytest.fixture
def billing_settings() -> dict[str, str]:
    return {
        "SMSMETER_BILLING_EMERGENCY_CREDIT_MINOR": "500",
        "SMSMETER_BILLING_LOW_CREDIT_MINOR": "300",
        "SMSMETER_UTILITY_TIMEZONE": "Europe/Chisinau",
    }


async def _actions(uow: UnitOfWork, prefix: str) -> list[tuple[str, object, object]]:
    async with uow.connect() as conn:
        rows = await conn.execute(
            select(audit_log.c.action, audit_log.c.before, audit_log.c.after)
            .where(audit_log.c.action.like(f"{prefix}%"))
            .order_by(audit_log.c.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_an_admin_changes_a_meter_key_from_its_card(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    mid = seeded.meter_ids[0]
    await login(client, "operator")
    card = await (await client.get(f"/console/meters/{mid}")).text()
    assert 'data-testid="key-change"' not in card  # operators do not change keys
    assert 'data-testid="ping"' in card
    client.session.cookie_jar.clear()
    await login(client, "admin")
    card = await (await client.get(f"/console/meters/{mid}")).text()
    action = f"/console/meters/{mid}/key-change"
    fields = form_fields(card, action)
    response = await client.post(action, data=fields, allow_redirects=False)
    assert response.status == 303, await response.text()
    again = await client.post(action, data=fields, allow_redirects=False)  # a double submit: the same change
    assert again.status == 303
    card = await (await client.get(response.headers["Location"])).text()
    assert 'data-testid="key-pending"' in card
    assert "Key 1 pending" in card
    assert 'data-testid="key-change"' not in card  # one change at a time
    async with uow.connect() as conn:
        keys = (
            await conn.execute(select(meter_keys.c.key_id, meter_keys.c.status).where(meter_keys.c.meter_id == mid))
        ).all()
        sent = (await conn.execute(select(commands.c.kind).where(commands.c.meter_id == mid))).scalars().all()
    assert sorted(keys) == [(0, "active"), (1, "pending")]
    assert sent == ["key_change"]
    [(action_name, before, after)] = await _actions(uow, "meter.key")
    assert (action_name, before) == ("meter.key_change", {"key_id": 0})
    assert after["pending_key_id"] == 1  # type: ignore[index]


async def test_key_change_through_the_api(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    mid = seeded.meter_ids[1]
    admin = await api_key(uow, client, "admin")
    operator = await api_key(uow, client, "operator")
    assert (await client.post(f"/api/v1/meters/{mid}/key-change", headers=operator)).status == 403
    response = await client.post(f"/api/v1/meters/{mid}/key-change", headers={**admin, "Idempotency-Key": "k-1"})
    assert response.status == 202, await response.text()
    body = await response.json()
    assert (body["key_id"], body["pending"]["key_id"], body["pending"]["state"]) == (0, 1, "0:0")
    assert response.headers["Location"] == f"/api/v1/commands/{body['command_id']}"
    retry = await client.post(f"/api/v1/meters/{mid}/key-change", headers={**admin, "Idempotency-Key": "k-1"})
    assert (await retry.json())["command_id"] == body["command_id"]
    busy = await client.post(f"/api/v1/meters/{mid}/key-change", headers=admin)
    assert busy.status == 409
    state = await (await client.get(f"/api/v1/meters/{mid}/keys", headers=operator)).json()
    assert [(k["key_id"], k["status"]) for k in state["keys"]] == [(0, "active"), (1, "pending")]
    assert "wrapped_key" not in str(state)


async def test_group_key_change_and_group_commands_are_jobs_with_progress(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    admin = await api_key(uow, client, "admin")
    response = await client.post("/api/v1/key-changes", json={"street": "6401001", "per_minute": 1}, headers=admin)
    assert response.status == 201, await response.text()
    job = await response.json()
    assert (job["kind"], job["total"], job["done"], job["commands"]) == ("key_change", 2, 2, {"0:0": 2})
    assert job["percent"] == 100
    bad = await client.post("/api/v1/group-commands", json={"action": "read"}, headers=admin)
    assert bad.status == 422
    response = await client.post(
        "/api/v1/group-commands", json={"action": "read", "building": "64010010001"}, headers=admin
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["total"] == 2
    await login(client, "operator")
    page = await (await client.get("/console/groups")).text()
    assert 'data-testid="keys-send"' not in page  # group key change is for admins
    response = await client.post(
        "/console/groups/command",
        data={**form_fields(page, "/console/groups/command"), "action": "time_sync", "street": "6401001"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    page = await (await client.get(response.headers["Location"])).text()
    assert 'data-testid="job-done">2<' in page
    async with uow.connect() as conn:
        kinds = (await conn.execute(select(commands.c.kind).order_by(commands.c.id))).scalars().all()
    assert kinds == ["key_change"] * 2 + ["read_request"] * 2 + ["time_sync"] * 2
    assert [a for a, _, _ in await _actions(uow, "bulk.")] == ["bulk.key_change", "bulk.read", "bulk.time_sync"]


async def test_meter_settings_are_sent_from_the_utility_policy(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    mid = seeded.meter_ids[0]
    operator = await api_key(uow, client, "operator")
    response = await client.post(f"/api/v1/meters/{mid}/configure", headers=operator)
    assert response.status == 201, await response.text()
    sent = (await response.json())["payload"]
    assert (sent["low_credit_minor"], sent["emergency_credit_minor"]) == (300, 500)
    assert (sent["friendly_start_min"], sent["friendly_end_min"], sent["friendly_days"]) == (1080, 480, 0b1100000)
    assert sent["utc_offset_min"] == 120  # Chisinau in January
    response = await client.post(
        f"/api/v1/meters/{mid}/configure", json={"low_credit_minor": 150, "friendly_start": "20:00"}, headers=operator
    )
    assert response.status == 201
    assert ((await response.json())["payload"]["low_credit_minor"]) == 150
    bad = await client.post(f"/api/v1/meters/{mid}/configure", json={"friendly_end": "25:00"}, headers=operator)
    assert bad.status == 422
    configured = await _actions(uow, "meter.configure")
    assert configured[0][1] is None  # nothing was sent before
    assert configured[1][1]["low_credit_minor"] == 300  # type: ignore[index]
    assert configured[1][2]["low_credit_minor"] == 150  # type: ignore[index]
    await login(client, "operator")
    card = await (await client.get(f"/console/meters/{mid}")).text()
    action = f"/console/meters/{mid}/configure"
    response = await client.post(
        action, data={**form_fields(card, action), "emergency_credit": "2.50"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    assert "Settings queued" in await (await client.get(response.headers["Location"])).text()
    assert (await _actions(uow, "meter.configure"))[-1][2]["emergency_credit_minor"] == 250  # type: ignore[index]


async def test_engineering_commands_from_the_card(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    mid = seeded.meter_ids[0]
    await login(client, "operator")
    action = f"/console/meters/{mid}/command"
    for kind, extra in (
        ("set_power_limit", {"limit_w": "3000"}),
        ("time_sync", {}),
        ("ping", {}),
        ("clear_tamper", {}),
    ):
        card = await (await client.get(f"/console/meters/{mid}")).text()
        form = card[card.index(f'name="kind" value="{kind}"') - 600 :]
        fields = form_fields(form, action)
        response = await client.post(action, data={**fields, "kind": kind, **extra}, allow_redirects=False)
        assert response.status == 303, (kind, await response.text())
    async with uow.connect() as conn:
        rows = (await conn.execute(select(commands.c.kind, commands.c.payload).order_by(commands.c.id))).all()
    assert [r.kind for r in rows] == ["set_power_limit", "time_sync", "ping", "clear_tamper"]
    assert rows[0].payload == {"limit_w": 3000}
    assert [a for a, _, _ in await _actions(uow, "command.")] == [
        "command.set_power_limit",
        "command.time_sync",
        "command.ping",
        "command.clear_tamper",
    ]


async def test_emergency_credit_from_the_card_and_the_api(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    sid = seeded.subscriber_ids[0]
    await login(client, "operator")
    card = await (await client.get(f"/console/subscribers/{sid}")).text()
    action = f"/console/subscribers/{sid}/emergency-credit"
    response = await client.post(action, data=form_fields(card, action), allow_redirects=False)
    assert response.status == 303, await response.text()
    assert "Emergency credit, on loan, queued" in await (await client.get(response.headers["Location"])).text()
    operator = await api_key(uow, client, "operator")
    again = await client.post(f"/api/v1/subscribers/{sid}/emergency-credit", headers=operator)
    assert again.status == 422  # once per arrears episode
    other = await client.post(f"/api/v1/subscribers/{seeded.subscriber_ids[1]}/emergency-credit", headers=operator)
    assert other.status == 201, await other.text()
    assert (await other.json())["payload"]["amount_minor"] == 500
    cashier = await api_key(uow, client, "cashier")
    assert (await client.post(f"/api/v1/subscribers/{sid}/emergency-credit", headers=cashier)).status == 403
    granted = await _actions(uow, "credit.emergency")
    assert [b for _, b, _ in granted] == [{"emergency_until": None}] * 2
