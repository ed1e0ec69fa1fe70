"""Credit held in the wallet (carried over from a replaced meter) sent to the new meter through its doors:
`POST /api/v1/subscribers/{id}/vend-held-credit` and the subscriber card's button; audited `credit.vend_held`,
once per request id (both databases)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, form_token, login
from tests.integration.web.test_registry_doors import api_key, audit_rows, code


async def _replace_carrying(client: TestClient, seeded: Seeded, headers: dict[str, str], amount: int) -> None:
    response = await client.post(
        f"/api/v1/meters/{seeded.meter_ids[0]}/replace",
        json={"code": code(7), "msisdn": "37369777777", "carried_credit_minor": amount},
        headers=headers,
    )
    assert response.status == 201, await response.text()


async def test_held_credit_goes_to_the_new_meter_through_the_api(
    client: TestClient, uow: UnitOfWork, seeded: Seeded
) -> None:
    operator = await api_key(uow, client, "operator")
    viewer = await api_key(uow, client, "viewer")
    await _replace_carrying(client, seeded, operator, 350)
    sid = seeded.subscriber_ids[0]
    path = f"/api/v1/subscribers/{sid}/vend-held-credit"
    assert (await client.post(path, headers=viewer)).status == 403

    response = await client.post(path, headers={**operator, "Idempotency-Key": "vend-1"})
    assert response.status == 201, await response.text()
    sent = await response.json()
    assert sent["amount_minor"] >= 350  # the carried credit, with whatever the wallet held before
    assert sent["command_id"] is not None
    again = await client.post(path, headers={**operator, "Idempotency-Key": "vend-1"})
    assert again.status == 200
    assert (await again.json())["topup_id"] == sent["topup_id"]
    nothing = await client.post(path, headers={**operator, "Idempotency-Key": "vend-2"})
    assert nothing.status == 422
    [audited] = await audit_rows(uow, "credit.vend_held")
    assert audited["after"] == {"amount_minor": sent["amount_minor"], "command_id": sent["command_id"]}
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["paths"]["/api/v1/subscribers/{id}/vend-held-credit"]["post"]["x-roles"] == ["admin", "operator"]


async def test_an_operator_sends_held_credit_from_the_subscriber_card(
    client: TestClient, uow: UnitOfWork, seeded: Seeded
) -> None:
    await _replace_carrying(client, seeded, await api_key(uow, client, "operator"), 120)
    sid = seeded.subscriber_ids[0]
    await login(client, "operator")
    page = await (await client.get(f"/console/subscribers/{sid}")).text()
    assert 'data-testid="vend-held-credit"' in page
    token = await form_token(client, f"/console/subscribers/{sid}")
    response = await client.post(
        f"/console/subscribers/{sid}/vend-held-credit",
        data={"csrf_token": token, "request_id": "r" * 20},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    assert "ok=held_credit_sent" in response.headers["Location"]
    page = await (await client.get(response.headers["Location"])).text()
    assert "The credit the wallet held is on its way to the meter." in page
    [audited] = await audit_rows(uow, "credit.vend_held")
    assert audited["after"]["amount_minor"] >= 120
    assert audited["actor"] == "operator"
