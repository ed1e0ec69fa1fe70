"""The built-in payment simulator end to end in the web shell (both databases): the top-up form → the
simulator's card page → Pay posts a signed `checkout.session.completed` to this service's /webhooks/stripe
over HTTP → the webhook path credits the meter once (one payment entry, one credit command), whatever is
submitted or delivered twice. Decline fails the top-up with Stripe's message; cancel changes nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from config import load_settings
from gateway.progress import CommandProgress
from payments.checkout import TopUpLimits, TopUpService
from payments.checkout_simulator import CheckoutSimulator
from payments.service import WebhookSecrets, WebhookService
from smsmeter.app import build_app
from store.schema.ledger import ledger_entries
from store.uow import UnitOfWork
from tests.integration.payments.conftest import (
    MASTER_KEY,
    NOW,
    Subscriber,
    add_subscribers,
    credit_commands,
    net_received,
)
from tests.integration.payments.helpers import payment_row
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.keys import Services
from web.webhooks import PAYMENT_SERVICES, BillingApplier, PaymentServices

SECRET = "whsec_simulator_test_0123456789abcdef"


async def _healthy() -> HealthReport:
    return HealthReport("test", ComponentHealth("ok"), ComponentHealth("ok"))


@pytest.fixture
async def simulator() -> AsyncIterator[CheckoutSimulator]:
    async with CheckoutSimulator(SECRET, clock=lambda: NOW, retry_delays_s=()) as sim:
        yield sim


@pytest.fixture
async def client(uow: UnitOfWork, applier: BillingApplier, simulator: CheckoutSimulator) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    webhooks = WebhookService(uow, applier, WebhookSecrets(stripe_secret=SECRET), clock=lambda: NOW)
    topups = TopUpService(
        uow,
        simulator,
        TopUpLimits(100, 100_000, "USD"),
        payers=applier,
        commands=CommandProgress(),
        return_url="http://127.0.0.1:1/topup",  # built from settings; the simulator sends the browser to its path
        amounts_minor=(500, 1000),
        clock=lambda: NOW,
    )
    app = create_app(
        health_check=_healthy,
        services=Services(uow=uow),
        payment_services=PaymentServices(webhooks=webhooks, topups=topups, simulator=simulator),
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def _token(client: TestClient, path: str) -> str:  # type: ignore[type-arg]
    html = await (await client.get(path)).text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


async def _start(client: TestClient, who: Subscriber, amount: str = "1000") -> tuple[str, str]:  # type: ignore[type-arg]
    html = await (await client.get("/topup")).text()
    fields = dict(re.findall(r'name="(csrf_token|request_key)" value="([^"]+)"', html))
    assert "disabled" not in html.split('type="submit"')[1][:20]  # online payment is offered
    resp = await client.post("/topup", data={**fields, "account": who.code, "amount": amount}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = resp.headers["Location"]
    assert re.fullmatch(r"/checkout/simulator/cs_sim_[0-9a-f]{32}", page)
    return page, fields["csrf_token"]


async def _payment_entries(uow: UnitOfWork) -> int:
    async with uow.connect() as conn:
        query = select(func.count()).select_from(ledger_entries).where(ledger_entries.c.entry_type == "payment")
        return int((await conn.execute(query)).scalar_one())


async def test_paying_on_the_simulator_credits_once_through_the_webhook_path(
    client: TestClient,  # type: ignore[type-arg]
    uow: UnitOfWork,
    simulator: CheckoutSimulator,
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    page, token = await _start(client, alice)
    card_page = await client.get(page)
    assert card_page.status == 200
    html = await card_page.text()
    assert "$10.00" in html
    assert "Payment simulator" in html
    reference = re.search(r'data-testid="checkout-reference">(tp_[0-9a-f]{32})<', html)
    assert reference
    ref = reference.group(1)
    assert (await payment_row(uow, ref)).status == "pending"

    paid = await client.post(
        page, data={"csrf_token": token, "action": "pay", "card": "4242 4242 4242 4242"}, allow_redirects=False
    )
    assert paid.status == 303
    assert paid.headers["Location"] == f"/topup/{ref}"
    [delivery] = simulator.deliveries
    assert (delivery.event_type, delivery.status) == ("checkout.session.completed", 200)
    row = await payment_row(uow, ref)
    assert (row.status, row.amount_minor) == ("paid", 1000)
    assert row.credit_command_id is not None
    status = await (await client.get(f"/api/topups/{ref}")).json()
    assert (status["payment_status"], status["command_state"]) == ("paid", "0:0")

    # a double submit pays once; Stripe's retry of the same event is a duplicate
    again = await client.post(
        page, data={"csrf_token": token, "action": "pay", "card": "4242424242424242"}, allow_redirects=False
    )
    assert again.headers["Location"] == f"/topup/{ref}"
    assert len(simulator.deliveries) == 1
    session = simulator.session(page.rsplit("/", 1)[1])
    assert session is not None
    event = simulator.event("checkout.session.completed", session.as_stripe_object())
    await simulator.deliver(event, str(client.make_url("/webhooks/stripe")))
    await simulator.deliver(event, str(client.make_url("/webhooks/stripe")))
    assert [d.status for d in simulator.deliveries] == [200, 200, 200]
    assert (await _payment_entries(uow), await credit_commands(uow), await net_received(uow)) == (1, 1, 1000)
    assert "Payment simulator" in await (await client.get(page)).text()  # closed now: no form
    assert 'data-testid="checkout-form"' not in await (await client.get(page)).text()


async def test_a_declined_card_fails_the_top_up_and_says_so(
    client: TestClient,  # type: ignore[type-arg]
    uow: UnitOfWork,
    simulator: CheckoutSimulator,
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    page, token = await _start(client, alice, "500")
    wrong = await client.post(page, data={"csrf_token": token, "action": "pay", "card": "1234"})
    assert wrong.status == 400
    assert "Your card number is incorrect." in await wrong.text()
    assert simulator.deliveries == []

    declined = await client.post(page, data={"csrf_token": token, "action": "decline"}, allow_redirects=False)
    assert declined.status == 303
    location = declined.headers["Location"]
    ref = re.fullmatch(r"/topup/(tp_[0-9a-f]{32})\?cancelled=1&declined=1", location)
    assert ref, location
    [delivery] = simulator.deliveries
    assert (delivery.event_type, delivery.status) == ("payment_intent.payment_failed", 200)
    row = await payment_row(uow, ref.group(1))
    assert (row.status, row.failure_reason) == ("failed", "Your card was declined.")
    back = await (await client.get(location)).text()
    assert 'data-testid="topup-declined"' in back
    assert "Your card was declined: nothing was charged." in back
    # paying afterwards on the same page is refused: the checkout is closed
    late = await client.post(
        page, data={"csrf_token": token, "action": "pay", "card": "4242424242424242"}, allow_redirects=False
    )
    assert late.headers["Location"] == location
    assert (await _payment_entries(uow), await credit_commands(uow)) == (0, 0)


async def test_cancelling_returns_to_the_portal_and_charges_nothing(
    client: TestClient,  # type: ignore[type-arg]
    uow: UnitOfWork,
    simulator: CheckoutSimulator,
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    page, token = await _start(client, alice)
    cancelled = await client.post(page, data={"csrf_token": token, "action": "cancel"}, allow_redirects=False)
    location = cancelled.headers["Location"]
    assert re.fullmatch(r"/topup/tp_[0-9a-f]{32}\?cancelled=1", location)
    assert 'data-testid="topup-cancelled"' in await (await client.get(location)).text()
    assert simulator.deliveries == []
    assert (await payment_row(uow, location[7:42])).status == "pending"


async def test_without_the_simulator_its_page_is_not_there(uow: UnitOfWork) -> None:
    app = create_app(health_check=_healthy, services=Services(uow=uow))
    async with TestClient(TestServer(app)) as test_client:
        assert (await test_client.get("/checkout/simulator/cs_sim_" + "0" * 32)).status == 404


async def test_the_embedded_default_takes_online_top_ups_through_the_simulator(
    migrated_db_url: str, uow: UnitOfWork, tmp_path: Path
) -> None:
    """The composition root with nothing configured about payments: Checkout is the simulator, and the
    service's Stripe webhook verifier takes the simulator's per-process secret."""
    (alice,) = await add_subscribers(uow, 1)
    settings = load_settings(
        None,
        {
            "SMSMETER_DATABASE_URL": migrated_db_url,
            "SMSMETER_DATA_DIR": str(tmp_path),
            "SMSMETER_MASTER_KEY": MASTER_KEY.hex(),
            "SMSMETER_WEB_SESSION_SECRET": "s" * 40,
            "SMSMETER_BILLING_TIME_SYNC_DAYS": "0",
        },
    )
    app = build_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        services = app[PAYMENT_SERVICES]
        simulator = services.simulator
        assert simulator is not None
        assert services.topups is not None
        assert services.topups.gateway is simulator
        assert simulator.webhook_secret.startswith("whsec_")
        page, token = await _start(client, alice, "500")
        paid = await client.post(
            page, data={"csrf_token": token, "action": "pay", "card": "4242424242424242"}, allow_redirects=False
        )
        assert paid.status == 303
        assert [(d.event_type, d.status) for d in simulator.deliveries] == [("checkout.session.completed", 200)]
        assert (await _payment_entries(uow), await credit_commands(uow), await net_received(uow)) == (1, 1, 500)
