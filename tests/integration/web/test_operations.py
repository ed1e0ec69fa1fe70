"""The doors of operator actions beyond sending a command: cancel a command that has not left, re-issue a
failed credit with the same transfer id — from the console (the permission table decides who) and the API,
each audited with before and after."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from store.schema.auth import audit_log
from store.schema.commands import commands
from store.schema.ledger import topups
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, login
from web import auth
from web.keys import CLOCK


async def api_key(uow: UnitOfWork, client: TestClient, role: str) -> dict[str, str]:
    async with uow.begin() as conn:
        _id, raw = await auth.create_api_key(conn, name=f"ops-{role}", role=role, now=client.app[CLOCK]())
    return {"Authorization": f"Bearer {raw}"}


def form_fields(html: str, action: str) -> dict[str, str]:
    form = html[html.index(f'action="{action}"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))


async def _bank_payment(client: TestClient, uow: UnitOfWork, seeded: Seeded, ref: str = "BANK-1") -> dict[str, int]:
    headers = await api_key(uow, client, "cashier")
    payment = {"provider_ref": ref, "amount_minor": 1500, "subscriber_code": seeded.subscriber_codes[0]}
    response = await client.post("/api/v1/payments", json=payment, headers=headers)
    assert response.status == 201, await response.text()
    body = await response.json()
    return {"topup_id": body["topup_id"], "command_id": body["command_id"]}


async def _audit(uow: UnitOfWork, action: str) -> list[dict[str, object]]:
    async with uow.connect() as conn:
        rows = await conn.execute(select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id))
        return [dict(r._mapping) for r in rows]


async def test_an_operator_cancels_a_credit_in_the_console_and_re_issues_it(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    made = await _bank_payment(client, uow, seeded)
    await login(client, "operator")
    page = await (await client.get(f"/console/commands/{made['command_id']}")).text()
    assert 'data-testid="cancel-command"' in page
    assert 'data-testid="reissue-credit"' not in page  # the credit has not failed
    fields = form_fields(page, f"/console/commands/{made['command_id']}/cancel")
    response = await client.post(
        f"/console/commands/{made['command_id']}/cancel",
        data={**fields, "reason": "wrong meter number given at the bank"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    page = await (await client.get(response.headers["Location"])).text()
    assert "Command cancelled" in page
    assert 'data-testid="cancel-command"' not in page
    reissue = f"/console/topups/{made['topup_id']}/reissue"
    response = await client.post(reissue, data=form_fields(page, reissue), allow_redirects=False)
    assert response.status == 303, await response.text()
    new_id = int(response.headers["Location"].split("/")[-1].split("?")[0])
    page = await (await client.get(response.headers["Location"])).text()
    assert "same transfer id" in page
    async with uow.connect() as conn:
        rows = (await conn.execute(select(commands).where(commands.c.kind == "top_up").order_by(commands.c.id))).all()
        topup = (await conn.execute(select(topups).where(topups.c.id == made["topup_id"]))).one()
    assert [(r.id, r.state) for r in rows] == [(made["command_id"], "cancelled"), (new_id, "0:0")]
    assert rows[0].payload["transfer_id"] == rows[1].payload["transfer_id"] == topup.transfer_id
    assert rows[0].counter < rows[1].counter  # a new frame, a new counter
    assert (topup.state, topup.command_id) == ("queued", new_id)
    [cancel] = await _audit(uow, "command.cancel")
    assert cancel["actor"] == "operator"
    assert cancel["before"]["state"] == "0:0"  # type: ignore[index]
    assert cancel["after"] == {  # type: ignore[comparison-overlap]
        "state": "cancelled",
        "reason": "wrong meter number given at the bank",
        "topup_id": made["topup_id"],
        "topup_state": "failed",
    }
    [again] = await _audit(uow, "topup.reissue")
    assert again["before"] == {"state": "failed", "command_id": made["command_id"]}
    assert again["after"] == {"state": "queued", "command_id": new_id, "transfer_id": topup.transfer_id}


async def test_cancel_and_re_issue_through_the_api(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    made = await _bank_payment(client, uow, seeded)
    headers = await api_key(uow, client, "operator")
    viewer = await api_key(uow, client, "viewer")
    path = f"/api/v1/commands/{made['command_id']}/cancel"
    assert (await client.post(path, json={"reason": "x"}, headers=viewer)).status == 403
    missing = await client.post(path, json={}, headers=headers)
    assert missing.status == 422
    assert "reason" in (await missing.json())["detail"]
    early = await client.post(f"/api/v1/topups/{made['topup_id']}/reissue", headers=headers)
    assert early.status == 422  # not failed yet
    response = await client.post(path, json={"reason": "duplicate bank report"}, headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["state"], body["topup"]["state"]) == ("cancelled", "failed")
    assert body["history"][-1]["source"] == "operator"
    twice = await client.post(path, json={"reason": "again"}, headers=headers)
    assert twice.status == 409
    response = await client.post(f"/api/v1/topups/{made['topup_id']}/reissue", headers=headers)
    assert response.status == 201, await response.text()
    new = await response.json()
    assert response.headers["Location"] == f"/api/v1/commands/{new['id']}"
    assert (new["kind"], new["state"], new["topup"]["id"]) == ("top_up", "0:0", made["topup_id"])
    assert new["payload"]["transfer_id"] == body["payload"]["transfer_id"]
    assert (await client.post("/api/v1/topups/999999/reissue", headers=headers)).status == 404
    assert [e["actor"] for e in await _audit(uow, "command.cancel")] == ["ops-operator"]
    assert len(await _audit(uow, "topup.reissue")) == 1


async def test_a_command_that_has_left_is_not_cancelled(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    made = await _bank_payment(client, uow, seeded)
    async with uow.begin() as conn:
        await conn.execute(update(commands).where(commands.c.id == made["command_id"]).values(state="0:1"))
    headers = await api_key(uow, client, "admin")
    response = await client.post(
        f"/api/v1/commands/{made['command_id']}/cancel", json={"reason": "too late"}, headers=headers
    )
    assert response.status == 409
    assert await _audit(uow, "command.cancel") == []
    await login(client, "admin")
    page = await (await client.get(f"/console/commands/{made['command_id']}")).text()
    assert 'data-testid="cancel-command"' not in page
