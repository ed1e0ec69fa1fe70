"""Online top-up: the form → a Checkout Session (through the stripe library's async client, against a stub
of Stripe's Checkout API) → the return page and its live status (both databases)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from gateway.progress import CommandProgress
from payments.checkout import TopUpLimits, TopUpService
from payments.stripe_api import StripeApi
from store.schema.commands import commands
from store.schema.payments import payments
from store.uow import UnitOfWork
from tests.integration.payments.conftest import add_subscribers
from tests.integration.payments.helpers import payment_row, service, stripe_body
from tests.support import stripe_events as se
from tests.support.stripe_checkout_stub import CheckoutStub
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.keys import Services
from web.webhooks import BillingApplier, PaymentServices


async def _healthy() -> HealthReport:
    return HealthReport("test", ComponentHealth("ok"), ComponentHealth("ok"))


@pytest.fixture
async def stub() -> AsyncIterator[tuple[CheckoutStub, str]]:
    checkout = CheckoutStub()
    async with TestServer(checkout.app(), host="127.0.0.1") as server:
        yield checkout, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def client(uow: UnitOfWork, applier: BillingApplier, stub: tuple[CheckoutStub, str]) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    api = StripeApi("sk_test_smsmeter", api_base=stub[1], timeout_s=5, retries=0)
    topups = TopUpService(
        uow,
        api,
        TopUpLimits(100, 100_000, "USD"),
        payers=applier,
        commands=CommandProgress(),
        return_url="https://pay.example.org/topup",
        amounts_minor=(500, 1000),
        clock=lambda: datetime.now(UTC),
    )
    app = create_app(
        health_check=_healthy,
        services=Services(uow=uow),
        payment_services=PaymentServices(webhooks=service(uow, applier), topups=topups),
    )
    try:
        async with TestClient(TestServer(app)) as test_client:
            yield test_client
    finally:
        await api.close()


async def _form(client: TestClient) -> dict[str, str]:  # type: ignore[type-arg]
    page = await client.get("/topup")
    assert page.status == 200
    html = await page.text()
    fields = dict(re.findall(r'name="(csrf_token|request_key)" value="([^"]+)"', html))
    assert set(fields) == {"csrf_token", "request_key"}
    return fields


async def test_a_top_up_goes_to_checkout_and_its_state_is_live(
    client: TestClient,  # type: ignore[type-arg]
    uow: UnitOfWork,
    stub: tuple[CheckoutStub, str],
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    form = {**await _form(client), "account": alice.code, "amount": "1000"}
    resp = await client.post("/topup", data=form, allow_redirects=False)
    assert resp.status == 303
    checkout, _ = stub
    session = next(iter(checkout.sessions.values()))
    assert resp.headers["Location"] == session["url"]
    sent = checkout.requests[0]
    reference = sent["client_reference_id"]
    assert re.fullmatch(r"tp_[0-9a-f]{32}", reference)
    assert sent["idempotency_key"] == f"checkout-{reference}"
    assert sent["authorization"] == "Bearer sk_test_smsmeter"
    assert (sent["metadata[subscriber]"], sent["metadata[meter]"]) == (alice.code, alice.meter_code)
    assert sent["payment_intent_data[metadata][reference]"] == reference
    assert (sent["line_items[0][price_data][unit_amount]"], sent["line_items[0][price_data][currency]"]) == (
        "1000",
        "usd",
    )
    assert sent["success_url"] == f"https://pay.example.org/topup/{reference}"
    # a double submit of the same form is the same top-up and the same session
    again = await client.post("/topup", data=form, allow_redirects=False)
    assert again.headers["Location"] == session["url"]
    async with uow.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(payments))).scalar_one() == 1
    # before payment: pending; the return page shows the steps
    status = await (await client.get(f"/api/topups/{reference}")).json()
    assert (status["payment_status"], status["command_state"], status["finished"]) == ("pending", None, False)
    page = await client.get(f"/topup/{reference}")
    assert page.status == 200
    assert 'data-step="1:1"' in await page.text()
    # Stripe says it is paid: credited, and the credit command is on its way (0:0)
    paid = se.checkout_session(session["id"], reference, 1000, payment_intent="pi_T", subscriber=alice.code)
    raw, sig = stripe_body("checkout.session.completed", paid)
    webhook = await client.post("/webhooks/stripe", data=raw, headers={"Stripe-Signature": sig})
    assert (await webhook.json())["status"] == "applied"
    status = await (await client.get(f"/api/topups/{reference}")).json()
    assert status["payment_status"] == "paid"
    assert status["command_state"] == "0:0"
    assert [s["state"] for s in status["command_steps"]] == ["0:0"]
    # the gateway moves the command on: the status follows it
    row = await payment_row(uow, reference)
    async with uow.begin() as conn:
        await conn.execute(commands.update().where(commands.c.id == row.credit_command_id).values(state="1:1"))
    status = await (await client.get(f"/api/topups/{reference}")).json()
    assert (status["command_state"], status["finished"]) == ("1:1", True)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"account": "12345", "amount": "1000"}, "15 digits"),
        ({"account": "999999999999999", "amount": "1000"}, "no such subscriber"),
        ({"amount_custom": "0.50"}, "must be between"),
        ({"amount_custom": "ten"}, "enter an amount"),
        ({"meter": "1" * 20, "amount": "500"}, "no active meter"),
    ],
)
async def test_bad_forms_are_refused_with_a_reason(
    client: TestClient,  # type: ignore[type-arg]
    uow: UnitOfWork,
    stub: tuple[CheckoutStub, str],
    fields: dict[str, str],
    reason: str,
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    form = {**await _form(client), "account": alice.code, **fields}
    resp = await client.post("/topup", data=form, allow_redirects=False)
    assert resp.status == 400
    assert reason in await resp.text()
    assert stub[0].requests == []


async def test_stripe_down_marks_the_top_up_failed(
    client: TestClient,  # type: ignore[type-arg]
    uow: UnitOfWork,
    stub: tuple[CheckoutStub, str],
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    stub[0].fail_next = 1
    resp = await client.post("/topup", data={**await _form(client), "account": alice.code, "amount": "500"})
    assert resp.status == 502
    async with uow.connect() as conn:
        row = (await conn.execute(select(payments))).one()
    assert row.status == "failed"
    assert "checkout not created" in row.failure_reason


async def test_unknown_references_are_not_found(client: TestClient) -> None:  # type: ignore[type-arg]
    assert (await client.get("/api/topups/tp_" + "0" * 32)).status == 404
    assert (await client.get("/api/topups/../../etc")).status == 404
    assert (await client.get("/topup/tp_nothing")).status == 404
