"""Alarm rules through their doors: /api/v1/alarm-rules (admins manage, watchers read) and the console page
(add, edit, remove), each change audited with before and after; operators' alarm contacts set in the console;
the alarms page shows what the automatic action did (both databases)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select

from billing import alarm_rules
from billing.rules.arrears import FriendlyCalendar
from gateway.keys import KeyRing
from store.schema.auth import operators
from store.schema.commands import alarms
from store.schema.notices import notices
from store.uow import UnitOfWork
from tests.integration.web.helpers import MASTER_KEY, START, Seeded, login
from tests.integration.web.test_registry_doors import api_key, audit_rows
from web.queries.operators import OPERATORS

RULE = {
    "name": "Tamper to security",
    "kind": "tamper",
    "min_severity": "critical",
    "email": True,
    "sms": True,
    "recipients": ["security@utility.example", "+37369000111"],
    "action": "relay_off",
}


async def test_alarm_rules_are_managed_through_the_api(client: TestClient, uow: UnitOfWork, seeded: Seeded) -> None:
    admin = await api_key(uow, client, "admin")
    operator = await api_key(uow, client, "operator")
    viewer = await api_key(uow, client, "viewer")

    assert (await client.post("/api/v1/alarm-rules", json=RULE, headers=operator)).status == 403
    response = await client.post("/api/v1/alarm-rules", json=RULE, headers=admin)
    assert response.status == 201, await response.text()
    rule = await response.json()
    assert rule["recipients"] == RULE["recipients"]
    assert rule["action"] == "relay_off"

    listed = await (await client.get("/api/v1/alarm-rules", headers=viewer)).json()
    assert [r["id"] for r in listed["items"]] == [rule["id"]]
    assert (await client.get(f"/api/v1/alarm-rules/{rule['id']}", headers=viewer)).status == 200

    changed = {**RULE, "min_severity": "warning", "sms": False, "role": "operator", "recipients": []}
    response = await client.put(f"/api/v1/alarm-rules/{rule['id']}", json=changed, headers=admin)
    assert response.status == 200, await response.text()
    assert (await response.json())["role"] == "operator"

    bad = await client.post("/api/v1/alarm-rules", json={**RULE, "recipients": ["nobody"]}, headers=admin)
    assert bad.status == 422
    assert (await client.put("/api/v1/alarm-rules/999", json=RULE, headers=admin)).status == 404
    assert (await client.delete(f"/api/v1/alarm-rules/{rule['id']}", headers=viewer)).status == 403
    assert (await client.delete(f"/api/v1/alarm-rules/{rule['id']}", headers=admin)).status == 204
    assert (await client.get(f"/api/v1/alarm-rules/{rule['id']}", headers=viewer)).status == 404

    [created] = await audit_rows(uow, "alarm_rule.create")
    [updated] = await audit_rows(uow, "alarm_rule.update")
    [deleted] = await audit_rows(uow, "alarm_rule.delete")
    assert created["actor"] == "key-admin"
    assert updated["before"]["min_severity"] == "critical"
    assert updated["after"]["min_severity"] == "warning"
    assert deleted["before"]["role"] == "operator"

    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["paths"]["/api/v1/alarm-rules"]["post"]["x-roles"] == ["admin"]
    assert "viewer" in document["paths"]["/api/v1/alarm-rules"]["get"]["x-roles"]


async def test_an_admin_adds_edits_and_removes_a_rule_in_the_console(
    client: TestClient, uow: UnitOfWork, seeded: Seeded
) -> None:
    await login(client, "operator")
    page = await (await client.get("/console/alarm-rules")).text()
    assert "No alarm rule yet" in page
    assert 'data-testid="alarm-rule-form"' not in page  # operators see the rules, admins change them
    client.session.cookie_jar.clear()

    token = await login(client, "admin")
    form = {
        "csrf_token": token,
        "name": "Stuck commands",
        "kind": "commands_stuck",
        "min_severity": "warning",
        "email": "1",
        "role": "admin",
        "recipients": "noc@utility.example; +37369000222",
        "action": "none",
        "enabled": "1",
    }
    response = await client.post("/console/alarm-rules", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    page = await (await client.get(response.headers["Location"])).text()
    assert "Alarm rule saved." in page
    assert "noc@utility.example, +37369000222" in page
    async with uow.connect() as conn:
        [rule] = await alarm_rules.list_rules(conn)
    edit = await (await client.get(f"/console/alarm-rules/{rule['id']}/edit")).text()
    assert 'value="Stuck commands"' in edit

    response = await client.post(
        f"/console/alarm-rules/{rule['id']}", data={**form, "sms": "1", "enabled": ""}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    async with uow.connect() as conn:
        [rule] = await alarm_rules.list_rules(conn)
    assert rule["sms"] is True
    assert rule["enabled"] is False
    [updated] = await audit_rows(uow, "alarm_rule.update")
    assert updated["before"]["enabled"] is True
    assert updated["after"]["enabled"] is False
    assert updated["actor"] == "admin"

    bad = await client.post("/console/alarm-rules", data={**form, "recipients": "", "role": ""})
    assert bad.status == 422
    response = await client.post(
        f"/console/alarm-rules/{rule['id']}/delete", data={"csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303
    assert len(await audit_rows(uow, "alarm_rule.delete")) == 1


async def test_operator_contacts_reach_the_rules_and_the_alarms_page_shows_the_action(
    client: TestClient, uow: UnitOfWork, seeded: Seeded
) -> None:
    token = await login(client, "admin")
    response = await client.post(
        f"/console/operators/{seeded.operator_ids['operator']}/contact",
        data={"csrf_token": token, "email": "duty@utility.example", "phone": "37369000333"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    bad = await client.post(
        f"/console/operators/{seeded.operator_ids['operator']}/contact",
        data={"csrf_token": token, "email": "not-an-address"},
    )
    assert bad.status == 422
    [contact] = await audit_rows(uow, "operator.contact")
    assert contact["before"] == {"email": None, "phone": None}
    assert contact["after"] == {"email": "duty@utility.example", "phone": "37369000333"}
    async with uow.connect() as conn:
        assert (await conn.execute(select(operators.c.email).where(operators.c.username == "operator"))).scalar() == (
            "duty@utility.example"
        )

    await client.post(
        "/console/alarm-rules",
        data={
            **{"csrf_token": token},
            **{**RULE, "recipients": "", "role": "operator", "email": "1", "sms": "1", "enabled": "1"},
        },
    )
    async with uow.begin() as conn:
        alarm_id = await conn.scalar(
            insert(alarms)
            .values(meter_id=seeded.meter_ids[0], kind="tamper", severity="critical", raised_at=START, detail="seal")
            .returning(alarms.c.id)
        )
    await alarm_rules.notify_alarms(
        uow,
        START,
        keys=KeyRing(MASTER_KEY),
        calendar=FriendlyCalendar(),
        actions_enabled=True,
        utility="Demo",
        operators=OPERATORS,
    )
    async with uow.connect() as conn:
        sent_to = sorted((await conn.scalars(select(notices.c.recipient).where(notices.c.alarm_id == alarm_id))).all())
    assert sent_to == ["37369000333", "duty@utility.example"]
    page = await (await client.get("/console/alarms")).text()
    assert f'data-testid="alarm-action-{alarm_id}"' in page
    assert "relay_off command" in page
