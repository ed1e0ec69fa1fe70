"""Group commit: webhooks that arrive together are applied in one transaction, with the effects each would
have alone — duplicates, repeated payments, refunds before their payment, conflicts, several payments of
one account (debt recovery in turn) and of one meter (transfer ids and counters in turn), and a refund for
a payment not known yet (only that request is answered "retry"). A batch that fails is applied one by one.
On SQLite, webhooks and the gateway share one write gate."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import ledger
from billing.rules.ledger import EntryType, plan_charge
from billing.rules.money import Money
from gateway.writegate import WriteGate
from payments.errors import PaymentNotYetKnown, PaymentRefused
from payments.ports import CreditApplied, CreditRequest, Payer
from payments.processing import EventResult
from store.schema.commands import commands
from store.schema.ledger import topups
from store.schema.payments import webhook_events
from store.uow import UnitOfWork
from tests.integration.payments.conftest import NOW, add_subscribers, balances, credit_commands, net_received
from tests.integration.payments.helpers import payment_row, pending_topup, service, stripe_body
from tests.support import stripe_events as se
from web.webhooks import BillingApplier


async def _all_at_once(
    svc_calls: Sequence[tuple[bytes, str]], uow: UnitOfWork, applier: BillingApplier
) -> list[object]:
    svc = service(uow, applier)
    return await asyncio.gather(*(svc.receive_stripe(raw, sig) for raw, sig in svc_calls), return_exceptions=True)


def _outcome(result: object) -> str:
    if isinstance(result, EventResult):
        return result.outcome.value
    return type(result).__name__


async def test_a_batch_has_the_effects_of_its_events_one_by_one(uow: UnitOfWork, applier: BillingApplier) -> None:
    alice, bob = await add_subscribers(uow, 2)
    ref_a, cs_a = await pending_topup(uow, alice, 1000)
    ref_e, cs_e = await pending_topup(uow, alice, 400)  # alice's second payment: the same account and meter
    ref_b, cs_b = await pending_topup(uow, bob, 500)
    ref_c, cs_c = await pending_topup(uow, bob, 700)  # paid with a different amount: a conflict
    ref_d, cs_d = await pending_topup(uow, bob, 300)  # refunded in full; the refund arrives first
    body_b = stripe_body("checkout.session.completed", se.checkout_session(cs_b, ref_b, 500), "evt_b")
    calls = [
        stripe_body("charge.refunded", se.charge("ch_d", "pi_d", 300, refunded_minor=300), "evt_d_refund"),
        stripe_body(
            "checkout.session.completed", se.checkout_session(cs_a, ref_a, 1000, payment_intent="pi_a"), "evt_a"
        ),
        stripe_body("payment_intent.succeeded", se.payment_intent("pi_a", ref_a, 1000), "evt_a_pi"),
        stripe_body("checkout.session.completed", se.checkout_session(cs_e, ref_e, 400), "evt_e"),
        body_b,
        body_b,  # the same event twice in one batch
        stripe_body("checkout.session.completed", se.checkout_session(cs_c, ref_c, 800), "evt_c"),
        stripe_body(
            "checkout.session.completed", se.checkout_session(cs_d, ref_d, 300, payment_intent="pi_d"), "evt_d"
        ),
        stripe_body("charge.refunded", se.charge("ch_x", "pi_unknown", 900, refunded_minor=900), "evt_x"),
    ]
    results = await _all_at_once(calls, uow, applier)
    assert [_outcome(r) for r in results] == [
        "applied",  # the refund before its payment: confirmations go first in a batch, so it takes back at once
        "applied",
        "recorded",  # already credited by evt_a
        "applied",
        "applied",
        "duplicate",
        "conflict",
        "applied",  # credited; the refund above took it back
        "PaymentNotYetKnown",
    ]
    assert await net_received(uow, alice.account_id) == 1400
    assert await net_received(uow, bob.account_id) == 500
    assert await credit_commands(uow) == 4
    assert (await payment_row(uow, ref_a)).payment_intent_id == "pi_a"
    assert (await payment_row(uow, ref_c)).status == "pending"
    assert (await payment_row(uow, ref_d)).status == "refunded"
    async with uow.connect() as conn:
        query = select(topups.c.transfer_id).where(topups.c.meter_id == alice.meter_id)
        transfer_ids = (await conn.execute(query)).scalars().all()
        assert len(set(transfer_ids)) == len(transfer_ids) == 2
        counters = (await conn.execute(select(commands.c.counter).where(commands.c.meter_id == alice.meter_id))).all()
        assert len({c for (c,) in counters}) == len(counters) == 2
        w = webhook_events.c
        recorded = {r.event_id: r for r in await conn.execute(select(w.event_id, w.outcome, w.payment_id, w.detail))}
    events = [(e, r.outcome) for e, r in recorded.items()]
    assert "evt_x" not in {e for e, _ in events}  # the unknown payment's refund recorded nothing: it is retried
    assert dict(events)["evt_c"] == "conflict"
    paid_a, paid_b = await payment_row(uow, ref_a), await payment_row(uow, ref_b)
    assert (recorded["evt_a"].outcome, recorded["evt_a"].payment_id) == ("applied", paid_a.id)
    assert (recorded["evt_b"].detail, recorded["evt_b"].payment_id) == ("credited 500", paid_b.id)
    assert paid_b.status == "paid"
    assert paid_b.paid_at is not None
    assert paid_b.credit_command_id is not None
    assert paid_b.checkout_session_id == cs_b
    # the same webhooks again, together: every one a duplicate, nothing more on the ledger
    again = await _all_at_once(calls[1:-1], uow, applier)
    assert {_outcome(r) for r in again} == {"duplicate"}
    assert await net_received(uow) == 1900


async def test_payments_of_one_account_in_one_batch_recover_debt_in_turn(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    async with uow.begin() as conn:
        penalty = plan_charge(EntryType.PENALTY, Money(300, "USD"), key="penalty:test")
        await ledger.post(conn, alice.account_id, penalty, created_by="test", now=NOW)
    refs = [await pending_topup(uow, alice, 1000) for _ in range(3)]
    calls = [
        stripe_body("checkout.session.completed", se.checkout_session(cs, ref, 1000), f"evt_{i}")
        for i, (ref, cs) in enumerate(refs)
    ]
    results = await _all_at_once(calls, uow, applier)
    assert [_outcome(r) for r in results] == ["applied"] * 3
    after = await balances(uow, alice.account_id)
    assert (after.wallet.minor, after.debt.minor) == (0, 0)  # 250 + 50 + 0 recovered, the rest sent
    async with uow.connect() as conn:
        rows = (await conn.execute(select(topups.c.recovered_minor, topups.c.vend_minor, topups.c.transfer_id))).all()
    assert sorted(r.recovered_minor for r in rows) == [0, 50, 250]
    assert sum(r.vend_minor for r in rows) == 2700
    assert len({r.transfer_id for r in rows}) == 3


class _FailingOnce:
    """Billing's applier whose first set-based credit fails as a database error would."""

    def __init__(self, inner: BillingApplier) -> None:
        self.inner = inner
        self.failed = False

    async def credit(self, conn: AsyncConnection, request: CreditRequest, now: datetime) -> CreditApplied:
        return await self.inner.credit(conn, request, now)

    async def credit_many(
        self, conn: AsyncConnection, requests: Sequence[CreditRequest], now: datetime
    ) -> list[CreditApplied | PaymentRefused]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("the database went away")
        return await self.inner.credit_many(conn, requests, now)

    async def reverse(self, conn: AsyncConnection, request: object, now: datetime) -> None:
        raise AssertionError("not used here")

    async def payers(self, conn: AsyncConnection, codes: Collection[str]) -> Mapping[str, Payer]:
        return await self.inner.payers(conn, codes)

    async def codes(
        self, conn: AsyncConnection, subscriber_ids: Collection[int], meter_ids: Collection[int]
    ) -> tuple[Mapping[int, str], Mapping[int, str]]:
        return await self.inner.codes(conn, subscriber_ids, meter_ids)


async def test_a_failed_batch_is_applied_one_by_one(uow: UnitOfWork, applier: BillingApplier) -> None:
    alice, bob = await add_subscribers(uow, 2)
    ref_a, cs_a = await pending_topup(uow, alice, 1000)
    ref_b, cs_b = await pending_topup(uow, bob, 500)
    flaky = _FailingOnce(applier)
    svc = service(uow, flaky)  # type: ignore[arg-type]
    calls = [
        stripe_body("checkout.session.completed", se.checkout_session(cs_a, ref_a, 1000), "evt_a"),
        stripe_body("checkout.session.completed", se.checkout_session(cs_b, ref_b, 500), "evt_b"),
        stripe_body("charge.refunded", se.charge("ch_x", "pi_unknown", 900, refunded_minor=900), "evt_x"),
    ]
    results = await asyncio.gather(*(svc.receive_stripe(raw, sig) for raw, sig in calls), return_exceptions=True)
    assert flaky.failed
    assert [_outcome(r) for r in results] == ["applied", "applied", "PaymentNotYetKnown"]
    assert await net_received(uow) == 1500
    async with uow.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(webhook_events))).scalar_one() == 2


async def test_a_lone_refund_for_an_unknown_payment_still_raises(uow: UnitOfWork, applier: BillingApplier) -> None:
    with pytest.raises(PaymentNotYetKnown):
        await service(uow, applier).receive_stripe(
            *stripe_body("charge.refunded", se.charge("ch_y", "pi_y", 100, refunded_minor=100), "evt_y")
        )


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)  # PostgreSQL locks rows: it has no gate
async def test_on_sqlite_webhooks_queue_on_the_one_write_gate_of_the_gateway(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    assert uow.dialect == "sqlite"
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 1000)
    svc = service(uow, applier)
    gate = WriteGate.for_engine(uow.engine)  # as the gateway's dispatcher and inbound take it
    async with gate:
        answer = asyncio.create_task(
            svc.receive_stripe(*stripe_body("checkout.session.completed", se.checkout_session(cs, ref, 1000)))
        )
        await asyncio.sleep(0.05)
        assert not answer.done()  # waits for the gateway's writer, instead of racing it for the file
    assert (await answer).outcome.value == "applied"
