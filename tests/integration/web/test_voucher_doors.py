"""Scratch-card vouchers through their doors: `POST/GET /api/v1/voucher-batches` (admin and cashier make them;
x-roles in the OpenAPI document) and the console's Vouchers page, where the codes are shown once to print;
audited `voucher.generate` (both databases)."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from billing.rules.self_service import read_voucher_code
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, form_token, login
from tests.integration.web.test_registry_doors import api_key, audit_rows


async def test_a_cashier_makes_a_batch_through_the_api(client: TestClient, uow: UnitOfWork, seeded: Seeded) -> None:
    cashier = await api_key(uow, client, "cashier")
    viewer = await api_key(uow, client, "viewer")
    body = {"count": 3, "amount_minor": 2000, "note": "kiosk 7"}
    assert (await client.post("/api/v1/voucher-batches", json=body, headers=viewer)).status == 403
    response = await client.post("/api/v1/voucher-batches", json=body, headers=cashier)
    assert response.status == 201, await response.text()
    made = await response.json()
    assert (made["count"], made["amount_minor"]) == (3, 2000)
    assert all(read_voucher_code(c) for c in made["codes"])
    bad = await client.post("/api/v1/voucher-batches", json={"count": 0, "amount_minor": 5}, headers=cashier)
    assert bad.status == 422
    listed = await (await client.get("/api/v1/voucher-batches", headers=viewer)).json()
    assert [(b["count"], b["used"], b["note"]) for b in listed["items"]] == [(3, 0, "kiosk 7")]
    [audited] = await audit_rows(uow, "voucher.generate")
    assert audited["after"]["count"] == 3
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["paths"]["/api/v1/voucher-batches"]["post"]["x-roles"] == ["admin", "cashier"]


async def test_the_console_shows_the_codes_once_to_print(client: TestClient, uow: UnitOfWork, seeded: Seeded) -> None:
    await login(client, "admin")
    token = await form_token(client, "/console/vouchers")
    page = await (
        await client.post("/console/vouchers", data={"csrf_token": token, "count": "2", "amount": "12.50"})
    ).text()
    codes = re.findall(r'data-testid="voucher-code">([0-9 ]+)<', page)
    assert len(codes) == 2
    assert all(read_voucher_code(c) for c in codes)
    again = await (await client.get("/console/vouchers")).text()
    assert codes[0] not in again  # shown once
    assert 'data-testid="voucher-batches"' in again


async def test_the_keyword_sms_log_through_its_doors(client: TestClient, uow: UnitOfWork, seeded: Seeded) -> None:
    viewer = await api_key(uow, client, "viewer")
    listed = await client.get("/api/v1/sms-requests", headers=viewer)
    assert listed.status == 200
    assert (await listed.json())["items"] == []
    await login(client, "admin")
    page = await (await client.get("/console/sms-requests")).text()
    assert 'data-testid="sms-requests"' in page
    assert 'href="/console/sms-requests"' in page


async def test_a_cashier_withdraws_a_batch_or_one_code(client: TestClient, uow: UnitOfWork, seeded: Seeded) -> None:
    cashier = await api_key(uow, client, "cashier")
    viewer = await api_key(uow, client, "viewer")
    made = await (
        await client.post("/api/v1/voucher-batches", json={"count": 3, "amount_minor": 500}, headers=cashier)
    ).json()
    one = {"code": made["codes"][0], "reason": "misprinted"}
    assert (await client.post("/api/v1/vouchers/void", json=one, headers=viewer)).status == 403
    response = await client.post("/api/v1/vouchers/void", json=one, headers=cashier)
    assert response.status == 200, await response.text()
    assert await response.json() == {"batch_id": made["id"], "voided": 1, "used": 0, "already_void": 0}
    neither = await client.post("/api/v1/vouchers/void", json={"reason": "why"}, headers=cashier)
    assert neither.status == 422
    missing = await client.post("/api/v1/vouchers/void", json={"batch_id": 999999, "reason": "x"}, headers=cashier)
    assert missing.status == 404
    [audited] = await audit_rows(uow, "voucher.void")
    assert audited["after"] == {
        "voided": 1,
        "used": 0,
        "reason": "misprinted",
        "last4": made["codes"][0].replace(" ", "")[-4:],
    }
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["paths"]["/api/v1/vouchers/void"]["post"]["x-roles"] == ["admin", "cashier"]
    # the console: the batch's row has its button; the rest of the batch is withdrawn there
    await login(client, "admin")
    page = await (await client.get("/console/vouchers")).text()
    assert 'data-testid="voucher-void-batch"' in page
    assert 'data-testid="voucher-void-code"' in page
    token = await form_token(client, "/console/vouchers")
    done = await (
        await client.post(
            "/console/vouchers/void", data={"csrf_token": token, "batch_id": str(made["id"]), "reason": "stolen"}
        )
    ).text()
    assert 'data-testid="vouchers-voided"' in done
    assert "2 vouchers withdrawn" in done
    assert 'data-testid="voucher-void-batch"' not in done  # nothing left to withdraw
    listed = await (await client.get("/api/v1/voucher-batches", headers=viewer)).json()
    assert [(b["count"], b["used"], b["void"]) for b in listed["items"]] == [(3, 0, 3)]
