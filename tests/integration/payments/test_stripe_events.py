"""Stripe events applied to the database: once, in any order, mismatches held for a person (both databases)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from payments.errors import PaymentNotYetKnown
from payments.processing import Outcome
from store.schema.payments import payment_conflicts, webhook_events
from store.uow import UnitOfWork
from tests.integration.payments.conftest import add_subscribers, credit_commands, net_received
from tests.integration.payments.helpers import payment_row, pending_topup, service, stripe_body
from tests.support import stripe_events as se
from web.webhooks import BillingApplier


async def test_a_paid_checkout_credits_once_and_links_its_payment_intent(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 1500)
    svc = service(uow, applier)
    session = se.checkout_session(cs, ref, 1500, payment_intent="pi_A", subscriber=alice.code, meter=alice.meter_code)
    raw, sig = stripe_body("checkout.session.completed", session, "evt_A")
    first = await svc.receive_stripe(raw, sig)
    assert first.outcome is Outcome.APPLIED
    assert (await svc.receive_stripe(raw, sig)).outcome is Outcome.DUPLICATE
    raw2, sig2 = stripe_body("payment_intent.succeeded", se.payment_intent("pi_A", ref, 1500, charge="ch_A"))
    second = await svc.receive_stripe(raw2, sig2)
    assert second.outcome is Outcome.RECORDED
    assert second.detail == "already credited"
    row = await payment_row(uow, ref)
    assert (row.status, row.payment_intent_id, row.charge_id) == ("paid", "pi_A", "ch_A")
    assert await net_received(uow, alice.account_id) == 1500
    assert await credit_commands(uow) == 1


async def test_the_payment_intent_first_then_the_session(uow: UnitOfWork, applier: BillingApplier) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 800)
    svc = service(uow, applier)
    raw, sig = stripe_body("payment_intent.succeeded", se.payment_intent("pi_B", ref, 800))
    assert (await svc.receive_stripe(raw, sig)).outcome is Outcome.APPLIED
    raw, sig = stripe_body("checkout.session.completed", se.checkout_session(cs, ref, 800, payment_intent="pi_B"))
    assert (await svc.receive_stripe(raw, sig)).outcome is Outcome.RECORDED
    assert await net_received(uow) == 800


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount_minor": 1501}, "amount differs"),
        ({"currency": "eur"}, "currency differs"),
        ({"subscriber": "999999999999999"}, "subscriber differs"),
        ({"meter": "9" * 20}, "meter differs"),
    ],
)
async def test_a_payment_that_does_not_match_what_was_asked_is_held(
    uow: UnitOfWork, applier: BillingApplier, change: dict[str, object], reason: str
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 1500)
    fields = {"subscriber": alice.code, "meter": alice.meter_code, "currency": "usd", "amount_minor": 1500, **change}
    amount = fields.pop("amount_minor")
    session = se.checkout_session(cs, ref, amount, payment_intent="pi_C", **fields)  # type: ignore[arg-type]
    raw, sig = stripe_body("checkout.session.completed", session)
    result = await service(uow, applier).receive_stripe(raw, sig)
    assert result.outcome is Outcome.CONFLICT
    assert reason in result.detail
    async with uow.connect() as conn:
        conflict = (await conn.execute(select(payment_conflicts))).one()
    assert conflict.reason == reason
    assert conflict.details["asked"]["amount_minor"] == 1500
    assert await net_received(uow) == 0
    assert (await payment_row(uow, ref)).paid_at is None


async def test_an_unknown_reference_is_a_conflict_not_a_credit(uow: UnitOfWork, applier: BillingApplier) -> None:
    await add_subscribers(uow, 1)
    raw, sig = stripe_body("payment_intent.succeeded", se.payment_intent("pi_X", "tp_" + "0" * 32, 500))
    assert (await service(uow, applier).receive_stripe(raw, sig)).outcome is Outcome.CONFLICT
    assert await net_received(uow) == 0


async def test_unpaid_checkout_waits_for_the_async_payment(uow: UnitOfWork, applier: BillingApplier) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 2000)
    svc = service(uow, applier)
    unpaid = se.checkout_session(cs, ref, 2000, payment_intent="pi_D", payment_status="unpaid")
    raw, sig = stripe_body("checkout.session.completed", unpaid)
    assert (await svc.receive_stripe(raw, sig)).outcome is Outcome.RECORDED
    assert (await payment_row(uow, ref)).status == "awaiting"
    assert await net_received(uow) == 0
    paid = se.checkout_session(cs, ref, 2000, payment_intent="pi_D", payment_status="paid")
    raw, sig = stripe_body("checkout.session.async_payment_succeeded", paid)
    assert (await svc.receive_stripe(raw, sig)).outcome is Outcome.APPLIED
    assert await net_received(uow) == 2000


async def test_an_async_failure_credits_nothing(uow: UnitOfWork, applier: BillingApplier) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 2000)
    raw, sig = stripe_body(
        "checkout.session.async_payment_failed", se.checkout_session(cs, ref, 2000, payment_status="unpaid")
    )
    assert (await service(uow, applier).receive_stripe(raw, sig)).outcome is Outcome.RECORDED
    row = await payment_row(uow, ref)
    assert row.status == "failed"
    assert await net_received(uow) == 0


async def test_a_late_failure_of_an_earlier_attempt_does_not_undo_a_payment(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, _ = await pending_topup(uow, alice, 900)
    svc = service(uow, applier)
    raw, sig = stripe_body("payment_intent.succeeded", se.payment_intent("pi_E", ref, 900))
    await svc.receive_stripe(raw, sig)
    raw, sig = stripe_body(
        "payment_intent.payment_failed", se.payment_intent("pi_E", ref, 900, status="requires_payment_method")
    )
    assert (await svc.receive_stripe(raw, sig)).outcome is Outcome.RECORDED
    assert (await payment_row(uow, ref)).status == "paid"
    assert await net_received(uow) == 900


async def test_five_concurrent_duplicates_give_one_effect(uow: UnitOfWork, applier: BillingApplier) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 1200)
    svc = service(uow, applier)
    raw, sig = stripe_body(
        "checkout.session.completed", se.checkout_session(cs, ref, 1200, payment_intent="pi_F"), "evt_F"
    )
    raw2, sig2 = stripe_body("payment_intent.succeeded", se.payment_intent("pi_F", ref, 1200), "evt_G")
    results = await asyncio.gather(*[svc.receive_stripe(raw, sig) for _ in range(5)], svc.receive_stripe(raw2, sig2))
    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes.count("applied") == 1
    assert outcomes.count("duplicate") == 4
    assert await net_received(uow) == 1200
    async with uow.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(webhook_events))).scalar_one() == 2


async def test_a_refund_for_an_unknown_payment_is_retried_later(uow: UnitOfWork, applier: BillingApplier) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, 1000)
    svc = service(uow, applier)
    refund = stripe_body("charge.refunded", se.charge("ch_H", "pi_H", 1000, refunded_minor=1000), "evt_refund")
    with pytest.raises(PaymentNotYetKnown):
        await svc.receive_stripe(*refund)
    async with uow.connect() as conn:  # nothing recorded: the retry is processed
        assert (await conn.execute(select(func.count()).select_from(webhook_events))).scalar_one() == 0
    raw, sig = stripe_body("checkout.session.completed", se.checkout_session(cs, ref, 1000, payment_intent="pi_H"))
    await svc.receive_stripe(raw, sig)
    assert (await svc.receive_stripe(*refund)).outcome is Outcome.APPLIED
    assert await net_received(uow) == 0
    assert (await payment_row(uow, ref)).status == "refunded"
