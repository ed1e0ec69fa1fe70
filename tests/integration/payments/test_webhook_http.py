"""The webhook endpoints over HTTP: status codes, reasons, log lines (both databases)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from payments.provider_webhook import sign_provider_webhook
from store.uow import UnitOfWork
from tests.integration.payments.conftest import NOW, add_subscribers, net_received
from tests.integration.payments.helpers import PROVIDER_SECRET, pending_topup, service
from tests.support import stripe_events as se
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.webhooks import BillingApplier, PaymentServices

T = int(NOW.timestamp())


async def _health() -> HealthReport:
    return HealthReport("test", ComponentHealth("ok"), ComponentHealth("ok"))


@pytest.fixture
async def client(uow: UnitOfWork, applier: BillingApplier) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = create_app(health_check=_health, payment_services=PaymentServices(webhooks=service(uow, applier)))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _post_stripe(
    client: TestClient, body: dict[str, object], timestamp: int = T, secret: str = se.WEBHOOK_SECRET
):  # type: ignore[no-untyped-def,type-arg]
    raw, header = se.signed(body, timestamp, secret)
    return await client.post(
        "/webhooks/stripe", data=raw, headers={"Stripe-Signature": header, "Content-Type": "application/json"}
    )


async def test_stripe_webhook_applies_and_answers(client: TestClient, uow: UnitOfWork) -> None:  # type: ignore[type-arg]
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 1500)
    body = se.event("checkout.session.completed", se.checkout_session(cs, ref, 1500, payment_intent="pi_1"), created=T)
    resp = await _post_stripe(client, body)
    assert resp.status == 200
    assert (await resp.json())["status"] == "applied"
    resp = await _post_stripe(client, body)
    assert (await resp.json())["status"] == "duplicate"
    ignored = await _post_stripe(client, se.event("customer.created", {"id": "cus_1"}, created=T))
    assert (ignored.status, (await ignored.json())["status"]) == (200, "ignored")
    assert await net_received(uow) == 1500


@pytest.mark.parametrize(
    ("timestamp", "secret", "reason"),
    [
        (T, "whsec_forged", "No signatures found matching"),
        (T - 301, se.WEBHOOK_SECRET, "stale"),
        (T + 3600, se.WEBHOOK_SECRET, "from the future"),
    ],
)
async def test_forged_stale_and_future_get_400_and_a_log_line(
    client: TestClient,  # type: ignore[type-arg]
    uow: UnitOfWork,
    caplog: pytest.LogCaptureFixture,
    timestamp: int,
    secret: str,
    reason: str,
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 1500)
    body = se.event("checkout.session.completed", se.checkout_session(cs, ref, 1500), created=T)
    with caplog.at_level(logging.WARNING, logger="smsmeter.web.webhooks"):
        resp = await _post_stripe(client, body, timestamp, secret)
    assert resp.status == 400
    assert reason in (await resp.json())["error"]
    assert any("webhook refused" in r.message and reason in r.message for r in caplog.records)
    assert await net_received(uow) == 0


async def test_missing_signature_and_garbage(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.post("/webhooks/stripe", data=b"{}")
    assert resp.status == 400
    assert "no Stripe-Signature" in (await resp.json())["error"]
    resp = await client.post("/webhooks/payments/kiosk", data=b"{}")
    assert resp.status == 400
    resp = await client.post(
        "/webhooks/payments/nobody", data=b"{}", headers={"Smsmeter-Timestamp": "1", "Smsmeter-Signature": "v1=0"}
    )
    assert resp.status == 400
    assert "no such payment provider" in (await resp.json())["error"]


async def test_refund_before_its_payment_asks_for_a_retry(client: TestClient, uow: UnitOfWork) -> None:  # type: ignore[type-arg]
    await add_subscribers(uow, 1)
    resp = await _post_stripe(
        client, se.event("charge.refunded", se.charge("ch_1", "pi_zz", 100, refunded_minor=100), created=T)
    )
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "60"


def _provider_post(body: dict[str, object], ts: int = T, secret: str = PROVIDER_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"Smsmeter-Timestamp": str(ts), "Smsmeter-Signature": sign_provider_webhook(secret, ts, raw)}


async def test_provider_webhook_credits_once_and_holds_mismatches(client: TestClient, uow: UnitOfWork) -> None:  # type: ignore[type-arg]
    alice, bob = await add_subscribers(uow, 2)
    pay = {"id": "TX-1", "account": alice.code, "amount_minor": 2500, "currency": "USD"}
    raw, headers = _provider_post({"id": "k-1", "type": "payment.succeeded", "created": T, "payment": pay})
    resp = await client.post("/webhooks/payments/kiosk", data=raw, headers=headers)
    assert (resp.status, (await resp.json())["status"]) == (200, "applied")
    resp = await client.post("/webhooks/payments/kiosk", data=raw, headers=headers)  # a replay inside the window
    assert (await resp.json())["status"] == "duplicate"
    # the same transaction under another event id, with another amount: held for a person
    raw, headers = _provider_post(
        {"id": "k-2", "type": "payment.succeeded", "created": T, "payment": {**pay, "amount_minor": 9999}}
    )
    assert (await (await client.post("/webhooks/payments/kiosk", data=raw, headers=headers)).json())[
        "status"
    ] == "conflict"
    # an unknown account and a wrong currency: held too
    for i, bad in enumerate([{"account": "999999999999999"}, {"currency": "EUR", "id": "TX-3"}]):
        raw, headers = _provider_post(
            {"id": f"k-bad-{i}", "type": "payment.succeeded", "created": T, "payment": {**pay, "id": f"TX-9{i}", **bad}}
        )
        assert (await (await client.post("/webhooks/payments/kiosk", data=raw, headers=headers)).json())[
            "status"
        ] == "conflict"
    raw, headers = _provider_post(
        {
            "id": "k-3",
            "type": "payment.refunded",
            "created": T,
            "payment": {"id": "TX-1", "currency": "USD", "refunded_minor": 500},
        }
    )
    assert (await (await client.post("/webhooks/payments/kiosk", data=raw, headers=headers)).json())[
        "status"
    ] == "applied"
    assert await net_received(uow, alice.account_id) == 2000
    assert await net_received(uow, bob.account_id) == 0


async def test_provider_webhook_refuses_forged_and_replayed_late(
    client: TestClient, uow: UnitOfWork, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[type-arg]
    (alice,) = await add_subscribers(uow, 1)
    body = {
        "id": "k-1",
        "type": "payment.succeeded",
        "created": T,
        "payment": {"id": "TX-1", "account": alice.code, "amount_minor": 100, "currency": "USD"},
    }
    for ts, secret, reason in [
        (T, "forged-secret-0123456789", "does not match"),
        (T - 3600, PROVIDER_SECRET, "stale"),
        (T + 3600, PROVIDER_SECRET, "future"),
    ]:
        raw, headers = _provider_post(body, ts, secret)
        with caplog.at_level(logging.WARNING, logger="smsmeter.web.webhooks"):
            resp = await client.post("/webhooks/payments/kiosk", data=raw, headers=headers)
        assert resp.status == 400
        assert reason in (await resp.json())["error"]
        assert reason in caplog.records[-1].message
    assert await net_received(uow) == 0
