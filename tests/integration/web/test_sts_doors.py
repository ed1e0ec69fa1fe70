"""The STS doors: /api/v1 (keypad, the token of a stuck credit, the key change pair; OpenAPI with x-roles),
the console (subscriber card button, the token's 20 digits, the receipt) and the portal (the subscriber's own
stuck top-up), each audited; the token is accepted by the reference STS meter."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from billing import topup
from billing.sts_vending import SoftwareTokenGenerator, add_vending_key, find_sts_meter
from billing.values import PaymentConfirmed
from gateway.keys import KeyRing
from meter_protocol import sts as codec
from store.audit import SYSTEM
from store.uow import UnitOfWork
from tests.integration.web.helpers import MASTER_KEY, Seeded, login, portal_login
from tests.integration.web.test_registry_doors import api_key, audit_rows
from web.keys import CLOCK

KEYS = KeyRing(MASTER_KEY)
TOKEN = re.compile(r"\b\d{4} \d{4} \d{4} \d{4} \d{4}\b")


async def _stuck_credit(client: TestClient, uow: UnitOfWork, seeded: Seeded, ref: str, amount: int) -> int:
    """A credit whose SMS has not left (0:0); returns its top-up id."""
    payment = PaymentConfirmed(
        "stripe", ref, amount, "USD", client.app[CLOCK](), subscriber_code=seeded.subscriber_codes[0]
    )
    return (await topup.apply_payment(uow, payment, client.app[CLOCK](), keys=KEYS)).topup_id


async def _keypad(client: TestClient, uow: UnitOfWork, seeded: Seeded) -> int:
    async with uow.begin() as conn:
        await add_vending_key(
            conn, SYSTEM, MASTER_KEY, "123456", 1, bytes.fromhex("abababababababab"), client.app[CLOCK]()
        )
    operator = await api_key(uow, client, "operator")
    meter_id = seeded.meter_ids[0]
    response = await client.put(
        f"/api/v1/meters/{meter_id}/sts-keypad", json={"supply_group_code": "123456"}, headers=operator
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert (body["key_revision"], body["base_date_year"], body["key_change_state"]) == (1, 2014, "none")
    assert (await client.get(f"/api/v1/meters/{meter_id}/sts-keypad", headers=operator)).status == 200
    return meter_id


async def _reference_meter(uow: UnitOfWork, meter_id: int) -> codec.StsMeterState:
    async with uow.connect() as conn:
        found = await find_sts_meter(conn, meter_id)
        assert found is not None
        key = await SoftwareTokenGenerator(MASTER_KEY).decoder_key(conn, found)
    return codec.StsMeterState(decoder_key=key, base_date=found.base_date)


async def test_the_api_issues_the_token_of_a_stuck_credit_once_and_documents_its_roles(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    meter_id = await _keypad(client, uow, seeded)
    topup_id = await _stuck_credit(client, uow, seeded, "pi_api", 1500)
    viewer = await api_key(uow, client, "viewer")
    cashier = await api_key(uow, client, "cashier")
    assert (await client.post(f"/api/v1/topups/{topup_id}/sts-token", headers=viewer)).status == 403
    first = await client.post(f"/api/v1/topups/{topup_id}/sts-token", headers=cashier)
    assert first.status == 201, await first.text()
    issued = await first.json()
    async with uow.connect() as conn:
        vended = (await topup.get_top_up(conn, topup_id)).vended.minor
    assert (issued["amount_minor"], issued["delivered_by"], issued["duplicate"]) == (vended, "token", False)
    assert issued["cancelled_command_id"] is not None
    again = await client.post(f"/api/v1/topups/{topup_id}/sts-token", headers=cashier)
    assert again.status == 200
    assert (await again.json())["token"] == issued["token"]
    meter, shown = codec.enter_token(await _reference_meter(uow, meter_id), issued["token"])
    assert shown.outcome is codec.Outcome.ACCEPTED
    assert meter.credit(codec.CreditKind.ELECTRICITY_CURRENCY) == vended
    [row] = await audit_rows(uow, "sts.token_issue")
    assert row["target"] == f"topup:{topup_id}"
    document = await (await client.get("/api/v1/openapi.json")).json()
    operation = document["paths"]["/api/v1/topups/{id}/sts-token"]["post"]
    assert operation["x-roles"] == ["admin", "cashier", "operator"]
    assert document["paths"]["/api/v1/meters/{id}/sts-key-change"]["post"]["x-roles"] == ["admin"]


async def test_the_console_card_issues_the_token_shows_its_digits_and_prints_it_on_the_receipt(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    await _keypad(client, uow, seeded)
    topup_id = await _stuck_credit(client, uow, seeded, "pi_console", 800)
    csrf = await login(client, "cashier")
    card = f"/console/subscribers/{seeded.subscriber_ids[0]}"
    page = await (await client.get(card)).text()
    assert f'action="/console/topups/{topup_id}/sts-token"' in page
    response = await client.post(
        f"/console/topups/{topup_id}/sts-token", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == f"{card}?ok=sts_token&receipt={topup_id}"
    page = await (await client.get(response.headers["Location"])).text()
    assert TOKEN.search(page)
    receipt = await client.get(f"/console/topups/{topup_id}/receipt.pdf")
    assert receipt.status == 200
    assert receipt.content_type == "application/pdf"


async def test_the_portal_gives_the_subscriber_the_token_of_their_own_stuck_top_up(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    await _keypad(client, uow, seeded)
    topup_id = await _stuck_credit(client, uow, seeded, "pi_portal", 600)
    csrf = await portal_login(client, seeded.subscriber_codes[0])
    page = await (await client.get("/portal")).text()
    assert f'action="/portal/topups/{topup_id}/sts-token"' in page
    response = await client.post(
        f"/portal/topups/{topup_id}/sts-token", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    page = await (await client.get("/portal")).text()
    assert TOKEN.search(page)
    [row] = await audit_rows(uow, "sts.token_issue")
    assert row["actor"] == seeded.subscriber_codes[0]


async def test_the_key_change_pair_is_issued_and_accepted_through_the_api(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    meter_id = await _keypad(client, uow, seeded)
    admin = await api_key(uow, client, "admin")
    async with uow.begin() as conn:
        await add_vending_key(
            conn, SYSTEM, MASTER_KEY, "123456", 2, bytes.fromhex("0123456789abcdef"), client.app[CLOCK]()
        )
    refused = await client.post(f"/api/v1/meters/{meter_id}/sts-key-change", headers=admin)
    assert refused.status == 409  # a meter registered in 2026 is on the 2014 base date already
    assert (await client.post(f"/api/v1/meters/{meter_id}/sts-key-change/accept", headers=admin)).status == 409
