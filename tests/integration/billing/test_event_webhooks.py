"""Outbound event webhooks against a real receiver (an aiohttp server on a free port): a payment's event is
written in the payment's own transaction; readings, alarms and command outcomes come from the rows the gateway
wrote, once settled; each POST is signed (HMAC-SHA256 over "<t>.<body>", checked here with hmac by hand), carries
its event id in a header and in the body, is retried with backoff by a receiver that fails then succeeds,
and ends dead after the last attempt, until a person sends it again (both databases)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import insert, select

from billing import event_hooks, topup
from billing.event_delivery import AiohttpPoster, DeliveryPolicy, deliver_events
from billing.event_feed import SETTLE, feed_events
from billing.values import PaymentConfirmed, PaymentReversed, ReversalKind
from gateway.keys import KeyRing
from store.schema import commands as C  # noqa: N812
from store.schema.events import event_attempts, event_deliveries, event_outbox
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")
KEYS = KeyRing(MASTER_KEY)
POLICY = topup.TopUpPolicy(recovery_bp=0, min_debt_minor=100)
QUICK = DeliveryPolicy(max_attempts=3, retry_base_s=10.0, retry_max_s=60.0, timeout_s=2.0)


@dataclass
class Receiver:
    """Answers `fail_first` requests with 503, then 200; keeps every request."""

    fail_first: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if len(self.requests) <= self.fail_first:
            return web.Response(status=503, text="busy")
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    r.url = f"http://127.0.0.1:{port}/hooks"
    try:
        yield r
    finally:
        await runner.cleanup()


@pytest.fixture
async def poster() -> AsyncIterator[AiohttpPoster]:
    p = AiohttpPoster()
    try:
        yield p
    finally:
        await p.close()


def verified(headers: dict[str, str], body: bytes, secret: str) -> dict[str, object]:
    """What a receiver does: check the signature over "<t>.<body>" and the timestamp, read the event."""
    parts = dict(item.split("=", 1) for item in headers["Smsmeter-Signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    assert abs(int(parts["t"]) - NOW.timestamp()) < 3600
    event: dict[str, object] = json.loads(body)
    assert headers["Smsmeter-Event-Id"] == event["id"]
    assert headers["Smsmeter-Event-Kind"] == event["kind"]
    assert headers["Content-Type"] == "application/json"
    return event


def paid(ref: str, amount: int) -> PaymentConfirmed:
    return PaymentConfirmed("stripe", ref, amount, "USD", NOW, subscriber_code="640100100010001", event_id=f"evt_{ref}")


async def _deliveries(uow: UnitOfWork) -> list[dict[str, object]]:
    async with uow.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(event_deliveries).order_by(event_deliveries.c.id))]


async def test_a_payment_is_told_signed_and_once(uow: UnitOfWork, receiver: Receiver, poster: AiohttpPoster) -> None:
    await new_subscriber(uow)
    sub = await event_hooks.create_subscription(
        uow,
        OPERATOR,
        event_hooks.SubscriptionFields(receiver.url, ["payment"], "CIS"),
        NOW - timedelta(minutes=1),
        KEYS,
    )
    result = await topup.apply_payment(uow, paid("pi_1", 1000), NOW, keys=KEYS, policy=POLICY)
    again = await topup.apply_payment(uow, paid("pi_1", 1000), NOW, keys=KEYS, policy=POLICY)
    assert again.duplicate
    async with uow.connect() as conn:
        [row] = (await conn.execute(select(event_outbox))).all()  # written with the top-up, once
    assert row.event_id == f"payment:{result.topup_id}"
    assert row.kind == "payment"

    report = await deliver_events(uow, poster, NOW, KEYS, QUICK)
    assert (report.fanned_out, report.delivered) == (1, 1)
    [(headers, body)] = receiver.requests
    event = verified(headers, body, sub["secret"])
    assert event["id"] == f"payment:{result.topup_id}"
    data = event["data"]
    assert isinstance(data, dict)
    assert data["amount_minor"] == 1000
    assert data["subscriber"] == "640100100010001"
    assert data["currency"] == "USD"
    # a second run sends nothing: delivered is final
    assert (await deliver_events(uow, poster, NOW + timedelta(hours=1), KEYS, QUICK)).delivered == 0
    assert len(receiver.requests) == 1
    [delivery] = await _deliveries(uow)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("delivered", 1, 204)


async def test_a_receiver_that_fails_then_succeeds_gets_the_same_event_again(
    uow: UnitOfWork, receiver: Receiver, poster: AiohttpPoster
) -> None:
    await new_subscriber(uow)
    receiver.fail_first = 2
    sub = await event_hooks.create_subscription(
        uow, OPERATOR, event_hooks.SubscriptionFields(receiver.url, "payment,alarm"), NOW - timedelta(minutes=1), KEYS
    )
    await topup.apply_payment(uow, paid("pi_2", 500), NOW, keys=KEYS, policy=POLICY)

    first = await deliver_events(uow, poster, NOW, KEYS, QUICK)
    assert (first.delivered, first.failed) == (0, 1)
    [delivery] = await _deliveries(uow)
    assert delivery["state"] == "pending"
    assert delivery["last_status"] == 503
    assert delivery["next_attempt_at"] == NOW + timedelta(seconds=10)
    # not due yet: nothing is posted
    assert (await deliver_events(uow, poster, NOW + timedelta(seconds=5), KEYS, QUICK)).failed == 0
    second = await deliver_events(uow, poster, NOW + timedelta(seconds=10), KEYS, QUICK)
    assert second.failed == 1
    [delivery] = await _deliveries(uow)
    assert delivery["next_attempt_at"] == NOW + timedelta(seconds=30)  # 10 s, then 20 s: doubling
    third = await deliver_events(uow, poster, NOW + timedelta(seconds=30), KEYS, QUICK)
    assert third.delivered == 1

    ids = [verified(h, b, sub["secret"])["id"] for h, b in receiver.requests]
    assert len(ids) == 3
    assert len(set(ids)) == 1
    async with uow.connect() as conn:
        attempts = [
            (a.status, a.error) for a in await conn.execute(select(event_attempts).order_by(event_attempts.c.id))
        ]
        detail = await event_hooks.get_delivery(conn, int(str(delivery["id"])))
    assert attempts == [(503, "HTTP 503"), (503, "HTTP 503"), (204, None)]
    assert [a["status"] for a in detail["attempt_log"]] == [503, 503, 204]
    assert detail["state"] == "delivered"


async def test_after_the_last_attempt_a_delivery_is_dead_until_sent_again(
    uow: UnitOfWork, receiver: Receiver, poster: AiohttpPoster
) -> None:
    await new_subscriber(uow)
    receiver.fail_first = 100
    await event_hooks.create_subscription(
        uow, OPERATOR, event_hooks.SubscriptionFields(receiver.url, ["payment"]), NOW - timedelta(minutes=1), KEYS
    )
    await topup.apply_payment(uow, paid("pi_3", 500), NOW, keys=KEYS, policy=POLICY)
    at = NOW
    for _ in range(3):
        await deliver_events(uow, poster, at, KEYS, QUICK)
        at += timedelta(minutes=5)
    [delivery] = await _deliveries(uow)
    assert (delivery["state"], delivery["attempts"]) == ("dead", 3)
    async with uow.connect() as conn:
        dead, total = await event_hooks.list_deliveries(conn, state="dead")
    assert total == 1
    assert dead[0]["last_error"] == "HTTP 503"
    assert (await deliver_events(uow, poster, at, KEYS, QUICK)).failed == 0  # dead: not tried again

    receiver.fail_first = 0
    resent = await event_hooks.resend_delivery(uow, OPERATOR, int(str(delivery["id"])), at)
    assert resent["state"] == "pending"
    assert (await deliver_events(uow, poster, at, KEYS, QUICK)).delivered == 1
    assert len(receiver.requests) == 4


async def test_no_answer_is_a_failed_attempt(uow: UnitOfWork, poster: AiohttpPoster) -> None:
    from tests.support.net import free_port

    await new_subscriber(uow)
    url = f"http://127.0.0.1:{free_port()}/nobody"
    await event_hooks.create_subscription(
        uow, OPERATOR, event_hooks.SubscriptionFields(url, ["payment"]), NOW - timedelta(minutes=1), KEYS
    )
    await topup.apply_payment(uow, paid("pi_4", 500), NOW, keys=KEYS, policy=POLICY)
    report = await deliver_events(uow, poster, NOW, KEYS, QUICK)
    assert report.failed == 1
    [delivery] = await _deliveries(uow)
    assert delivery["last_status"] is None
    assert "Connect" in str(delivery["last_error"])


async def test_readings_alarms_and_outcomes_follow_from_the_gateways_rows(
    uow: UnitOfWork, receiver: Receiver, poster: AiohttpPoster
) -> None:
    _, meter = await new_subscriber(uow)
    assert meter is not None
    sub = await event_hooks.create_subscription(
        uow,
        OPERATOR,
        event_hooks.SubscriptionFields(receiver.url, ["reading", "alarm", "command"]),
        NOW - timedelta(minutes=1),
        KEYS,
    )
    assert await feed_events(uow, NOW) == 0  # the feed starts from what is stored now
    credit = await topup.apply_payment(uow, paid("pi_5", 500), NOW, keys=KEYS, policy=POLICY)
    async with uow.begin() as conn:
        await conn.execute(
            insert(C.readings).values(
                meter_id=meter.id, read_at=NOW, register="import_wh", value=123456, received_at=NOW
            )
        )
        await conn.execute(
            insert(C.alarms).values(meter_id=meter.id, kind="tamper", severity="critical", raised_at=NOW)
        )
        await conn.execute(
            insert(C.command_history).values(
                command_id=credit.command_id, from_state="1:0", to_state="1:1", at=NOW, source="meter"
            )
        )
    assert await feed_events(uow, NOW + SETTLE / 2) == 0  # younger than SETTLE: a lower id may still commit
    assert await feed_events(uow, NOW + SETTLE) == 3  # 0:0 of the credit is not an outcome; 1:1 is
    assert await feed_events(uow, NOW + SETTLE * 2) == 0

    report = await deliver_events(uow, poster, NOW + SETTLE, KEYS, QUICK)
    assert report.delivered == 3  # the payment event: this subscription did not ask for payments
    events = {e["kind"]: e for e in (verified(h, b, sub["secret"]) for h, b in receiver.requests)}
    assert set(events) == {"reading", "alarm", "command"}
    reading, alarm, outcome = (events[k]["data"] for k in ("reading", "alarm", "command"))
    assert isinstance(reading, dict)
    assert isinstance(alarm, dict)
    assert isinstance(outcome, dict)
    assert (reading["meter"], reading["register"], reading["value"]) == (meter.code, "import_wh", 123456)
    assert (alarm["kind"], alarm["severity"]) == ("tamper", "critical")
    assert (outcome["command_id"], outcome["state"], outcome["command"]) == (credit.command_id, "1:1", "top_up")


async def test_a_disabled_subscription_is_told_nothing_new(
    uow: UnitOfWork, receiver: Receiver, poster: AiohttpPoster
) -> None:
    await new_subscriber(uow)
    sub = await event_hooks.create_subscription(
        uow, OPERATOR, event_hooks.SubscriptionFields(receiver.url, ["payment"]), NOW - timedelta(minutes=1), KEYS
    )
    changed = await event_hooks.change_subscription(uow, OPERATOR, sub["id"], NOW, active=False)
    assert changed["active"] is False
    await topup.apply_payment(uow, paid("pi_6", 500), NOW, keys=KEYS, policy=POLICY)
    report = await deliver_events(uow, poster, NOW, KEYS, QUICK)
    assert (report.fanned_out, report.delivered) == (1, 0)
    assert receiver.requests == []
    with pytest.raises(event_hooks.InvalidField):
        await event_hooks.create_subscription(
            uow, OPERATOR, event_hooks.SubscriptionFields("ftp://x", ["payment"]), NOW, KEYS
        )
    with pytest.raises(event_hooks.InvalidField):
        await event_hooks.create_subscription(
            uow, OPERATOR, event_hooks.SubscriptionFields(receiver.url, ["x"]), NOW, KEYS
        )


async def test_old_settled_events_are_removed_with_their_attempts(
    uow: UnitOfWork, receiver: Receiver, poster: AiohttpPoster
) -> None:
    await new_subscriber(uow)
    await event_hooks.create_subscription(
        uow, OPERATOR, event_hooks.SubscriptionFields(receiver.url, ["payment"]), NOW - timedelta(minutes=1), KEYS
    )
    await topup.apply_payment(uow, paid("pi_7", 500), NOW, keys=KEYS, policy=POLICY)
    receiver.fail_first = 1
    await deliver_events(uow, poster, NOW, KEYS, QUICK)  # failed once: pending
    later = NOW + timedelta(days=31)
    async with uow.connect() as conn:
        assert await event_hooks.list_deliveries(conn) != ([], 0)
    report = await deliver_events(uow, poster, later, KEYS, QUICK)  # delivered now, then (settled, old) removed
    assert (report.delivered, report.pruned) == (1, 1)
    async with uow.connect() as conn:
        assert (await conn.execute(select(event_outbox))).all() == []
        assert (await conn.execute(select(event_attempts))).all() == []
        assert await event_hooks.list_deliveries(conn) == ([], 0)


async def test_a_refund_is_a_payment_event_of_its_own(
    uow: UnitOfWork, receiver: Receiver, poster: AiohttpPoster
) -> None:
    await new_subscriber(uow)
    sub = await event_hooks.create_subscription(
        uow, OPERATOR, event_hooks.SubscriptionFields(receiver.url, ["payment"]), NOW - timedelta(minutes=1), KEYS
    )
    credit = await topup.apply_payment(uow, paid("pi_8", 1000), NOW, keys=KEYS, policy=POLICY)
    refund = PaymentReversed("stripe", "pi_8", "re_1", 400, "USD", ReversalKind.REFUND, NOW)
    await topup.reverse_payment(uow, refund, NOW)
    assert (await topup.reverse_payment(uow, refund, NOW)).duplicate  # no second event
    assert (await deliver_events(uow, poster, NOW, KEYS, QUICK)).delivered == 2
    first, second = (verified(h, b, sub["secret"]) for h, b in receiver.requests)
    assert first["id"] == f"payment:{credit.topup_id}"
    assert second["id"] == f"payment:{credit.topup_id}:refund:re_1"
    data = second["data"]
    assert isinstance(data, dict)
    assert (data["action"], data["amount_minor"], data["provider_ref"]) == ("refund", 400, "pi_8")
