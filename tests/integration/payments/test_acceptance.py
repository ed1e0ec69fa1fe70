"""Acceptance: 10,000 Stripe webhooks — 30 % duplicates, 5 % forged, all shuffled — leave the ledger exact,
on both databases.

The stream is what Stripe sends for 150 Checkout top-ups: for each, checkout.session.completed and
payment_intent.succeeded (both mean "paid"; one credit) among the events smsmeter does not use
(payment_intent.created, charge.succeeded, …); then refunds (partial and full), disputes won and lost,
failed attempts on other top-ups. Duplicates are redeliveries of the same event (same id, same body,
a new signature). Forgeries: another secret, a body changed after signing (a bigger amount, a refund
that never happened), a stale or a future timestamp. Delivery is concurrent (bounded) and whatever is
answered 503 ("payment not known yet") comes again later, as Stripe retries.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select

from payments.errors import PaymentNotYetKnown, WebhookRejected
from payments.processing import Outcome
from store.schema.payments import payment_conflicts, payments, webhook_events
from store.uow import UnitOfWork
from tests.integration.payments.conftest import NOW, Subscriber, add_subscribers, credit_commands, net_received
from tests.integration.payments.helpers import pending_topup, service
from tests.support import stripe_events as se
from web.webhooks import BillingApplier

TOTAL = 10_000
DUPLICATES = 3_000  # 30 %
FORGED = 500  # 5 %
PAYMENTS = 150
SUBSCRIBERS = 40
NOISE = ("payment_intent.created", "charge.succeeded", "charge.updated", "customer.created", "balance.available")
T = int(NOW.timestamp())


@dataclass
class Delivery:
    raw: bytes
    header: str
    genuine: bool


@dataclass
class Expected:
    received: Counter[int] = field(default_factory=Counter)  # account id -> net minor units
    credits: int = 0  # credit commands: payments, and reinstatements after a won dispute


def _deliver(body: dict[str, object], rng: random.Random) -> Delivery:
    raw, header = se.signed(body, T - rng.randint(0, 200))
    return Delivery(raw, header, True)


def _forge(body: dict[str, object], rng: random.Random) -> Delivery:
    how = rng.choice(("secret", "tamper", "stale", "future"))
    if how == "secret":
        raw, header = se.signed(body, T, secret="whsec_attacker")
    elif how == "tamper":
        raw, header = se.signed(body, T)
        changed = json.loads(raw)
        obj = changed["data"]["object"]
        for key in ("amount_total", "amount", "amount_refunded"):
            if key in obj:
                obj[key] = int(obj[key]) * 10 + 1
        changed["data"]["object"] = obj
        changed["id"] = str(changed["id"]) + "x"  # replayed under a new id, or any other change: not signed
        raw = json.dumps(changed, separators=(",", ":")).encode()
    elif how == "stale":
        raw, header = se.signed(body, T - 301 - rng.randint(0, 86400))
    else:
        raw, header = se.signed(body, T + 61 + rng.randint(0, 86400))
    return Delivery(raw, header, False)


async def _stream(
    uow: UnitOfWork, people: list[Subscriber], rng: random.Random
) -> tuple[list[Delivery], Expected, int]:
    """The shuffled 10,000 deliveries, the ledger they must leave, and how many events smsmeter records."""
    expected = Expected()
    unique: list[dict[str, object]] = []
    relevant = 0
    for n in range(PAYMENTS):
        who = people[n % len(people)]
        amount = rng.randrange(500, 20_000, 50)
        ref, cs = await pending_topup(uow, who, amount)
        pi, ch = f"pi_acc_{n}", f"ch_acc_{n}"
        unique.append(
            se.event(
                "checkout.session.completed",
                se.checkout_session(cs, ref, amount, payment_intent=pi, subscriber=who.code, meter=who.meter_code),
                created=T,
            )
        )
        unique.append(se.event("payment_intent.succeeded", se.payment_intent(pi, ref, amount, charge=ch), created=T))
        relevant += 2
        unique += [se.event(kind, {"id": f"obj_{n}_{kind}"}, created=T) for kind in NOISE]
        expected.received[who.account_id] += amount
        expected.credits += 1
        fate = n % 10
        if fate in (0, 1):  # refunded: partly (and maybe then fully), the events in any order
            part = amount // 2
            unique.append(se.event("charge.refunded", se.charge(ch, pi, amount, refunded_minor=part), created=T))
            relevant += 1
            total = part
            if fate == 1:
                unique.append(se.event("charge.refunded", se.charge(ch, pi, amount, refunded_minor=amount), created=T))
                relevant += 1
                total = amount
            expected.received[who.account_id] -= total
        elif fate == 2:  # a dispute, lost
            dp = f"dp_acc_{n}"
            unique.append(
                se.event("charge.dispute.created", se.dispute(dp, ch, pi, amount, "needs_response"), created=T)
            )
            unique.append(se.event("charge.dispute.closed", se.dispute(dp, ch, pi, amount, "lost"), created=T))
            relevant += 2
            expected.received[who.account_id] -= amount
        elif fate == 3:  # a dispute, won: taken back when opened, given back when won (if it came in that order)
            dp = f"dp_acc_{n}"
            unique.append(
                se.event("charge.dispute.created", se.dispute(dp, ch, pi, amount, "needs_response"), created=T)
            )
            unique.append(se.event("charge.dispute.closed", se.dispute(dp, ch, pi, amount, "won"), created=T))
            relevant += 2
        elif fate == 4:  # a failed attempt on another top-up of the same subscriber: nothing credited
            ref2, _ = await pending_topup(uow, who, amount)
            failed = se.payment_intent(f"pi_fail_{n}", ref2, amount, status="requires_payment_method")
            unique.append(se.event("payment_intent.payment_failed", failed, created=T))
            relevant += 1
    genuine_count = TOTAL - DUPLICATES - FORGED
    while len(unique) < genuine_count:
        unique.append(se.event(rng.choice(NOISE), {"id": f"obj_fill_{len(unique)}"}, created=T))
    assert len(unique) == genuine_count
    deliveries = [_deliver(body, rng) for body in unique]
    deliveries += [_deliver(rng.choice(unique), rng) for _ in range(DUPLICATES)]
    deliveries += [_forge(rng.choice(unique), rng) for _ in range(FORGED)]
    rng.shuffle(deliveries)
    return deliveries, expected, relevant


async def test_ten_thousand_webhooks_leave_the_ledger_exact(uow: UnitOfWork, applier: BillingApplier) -> None:
    rng = random.Random(6)
    people = await add_subscribers(uow, SUBSCRIBERS)
    deliveries, expected, relevant = await _stream(uow, people, rng)
    assert len(deliveries) == TOTAL
    svc = service(uow, applier)
    outcomes: Counter[str] = Counter()
    refused: list[Delivery] = []
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    for d in deliveries:
        queue.put_nowait(d)
    retries = 0

    async def worker() -> None:
        nonlocal retries
        while not queue.empty():
            d = queue.get_nowait()
            try:
                result = await svc.receive_stripe(d.raw, d.header)
                outcomes[result.outcome.value] += 1
            except WebhookRejected:
                refused.append(d)
            except PaymentNotYetKnown:
                retries += 1
                queue.put_nowait(d)  # Stripe tries again later
                await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(8)))
    assert len(refused) == FORGED
    assert not any(d.genuine for d in refused)
    assert outcomes[Outcome.CONFLICT.value] == 0
    for who in people:
        assert await net_received(uow, who.account_id) == expected.received[who.account_id], who.code
    assert await net_received(uow) == sum(expected.received.values())
    reinstated = sum(1 for _ in range(PAYMENTS) if _ % 10 == 3)  # at most one reinstatement per won dispute
    assert expected.credits <= await credit_commands(uow) <= expected.credits + reinstated
    async with uow.connect() as conn:
        recorded = (await conn.execute(select(func.count()).select_from(webhook_events))).scalar_one()
        paid = (
            await conn.execute(select(func.count()).select_from(payments).where(payments.c.paid_at.is_not(None)))
        ).scalar_one()
        conflicts = (await conn.execute(select(func.count()).select_from(payment_conflicts))).scalar_one()
    assert recorded == relevant  # each relevant event once; duplicates and other types leave no row
    assert paid == PAYMENTS
    assert conflicts == 0
