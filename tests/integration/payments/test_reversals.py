"""Refunds and disputes take back what was credited — once, whatever the order — and a won dispute
gives it back (both databases)."""

from __future__ import annotations

import itertools

from sqlalchemy import select, update

from payments.errors import PaymentNotYetKnown
from payments.processing import Outcome
from store.schema.ledger import ledger_entries, topups
from store.schema.payments import payment_conflicts
from store.uow import UnitOfWork
from tests.integration.payments.conftest import Subscriber, add_subscribers, balances, net_received
from tests.integration.payments.helpers import payment_row, pending_topup, service, stripe_body
from tests.support import stripe_events as se
from web.webhooks import BillingApplier


async def _paid(uow: UnitOfWork, applier: BillingApplier, amount: int = 1000) -> tuple[str, Subscriber]:
    (alice,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, alice, amount)
    raw, sig = stripe_body("checkout.session.completed", se.checkout_session(cs, ref, amount, payment_intent="pi_1"))
    await service(uow, applier).receive_stripe(raw, sig)
    return ref, alice


async def test_partial_then_full_refund_takes_back_the_running_total(uow: UnitOfWork, applier: BillingApplier) -> None:
    ref, alice = await _paid(uow, applier)
    svc = service(uow, applier)
    partial = stripe_body("charge.refunded", se.charge("ch_1", "pi_1", 1000, refunded_minor=300))
    full = stripe_body("charge.refunded", se.charge("ch_1", "pi_1", 1000, refunded_minor=1000))
    assert (await svc.receive_stripe(*partial)).outcome is Outcome.APPLIED
    assert (await payment_row(uow, ref)).status == "partially_refunded"
    assert await net_received(uow) == 700
    assert (await svc.receive_stripe(*full)).outcome is Outcome.APPLIED
    assert await net_received(uow) == 0
    # the partial refund's event redelivered under a new id, after the full one: changes nothing
    late = stripe_body("charge.refunded", se.charge("ch_1", "pi_1", 1000, refunded_minor=300))
    assert (await svc.receive_stripe(*late)).outcome is Outcome.RECORDED
    assert await net_received(uow) == 0
    row = await payment_row(uow, ref)
    assert (row.status, row.refunded_minor, row.reversed_minor) == ("refunded", 1000, 1000)
    async with uow.connect() as conn:
        kinds = [
            (r.entry_type, r.book, r.amount_minor)
            for r in await conn.execute(select(ledger_entries).order_by(ledger_entries.c.id))
        ]
    # the credit had reached the meter: taking it back makes a debt, never a negative meter balance
    assert kinds == [
        ("payment", "wallet", 1000),
        ("credit_sent", "wallet", -1000),
        ("refund", "debt", -300),
        ("refund", "debt", -700),
    ]
    after = await balances(uow, alice.account_id)
    assert (after.wallet.minor, after.debt.minor) == (0, -1000)


async def test_a_dispute_lost_takes_the_money_back_once(uow: UnitOfWork, applier: BillingApplier) -> None:
    ref, _ = await _paid(uow, applier)
    svc = service(uow, applier)
    opened = stripe_body("charge.dispute.created", se.dispute("dp_1", "ch_1", "pi_1", 1000, "needs_response"))
    lost = stripe_body("charge.dispute.closed", se.dispute("dp_1", "ch_1", "pi_1", 1000, "lost"))
    assert (await svc.receive_stripe(*opened)).outcome is Outcome.APPLIED
    assert (await payment_row(uow, ref)).status == "disputed"
    assert (await svc.receive_stripe(*lost)).outcome is Outcome.RECORDED
    assert await net_received(uow) == 0


async def test_a_dispute_won_gives_the_credit_back(uow: UnitOfWork, applier: BillingApplier) -> None:
    ref, _ = await _paid(uow, applier)
    svc = service(uow, applier)
    await svc.receive_stripe(
        *stripe_body("charge.dispute.created", se.dispute("dp_1", "ch_1", "pi_1", 1000, "needs_response"))
    )
    assert await net_received(uow) == 0
    result = await svc.receive_stripe(
        *stripe_body("charge.dispute.closed", se.dispute("dp_1", "ch_1", "pi_1", 1000, "won"))
    )
    assert result.outcome is Outcome.APPLIED
    assert "reinstated" in result.detail
    assert await net_received(uow) == 1000
    assert (await payment_row(uow, ref)).status == "paid"


async def test_an_inquiry_takes_nothing_back(uow: UnitOfWork, applier: BillingApplier) -> None:
    await _paid(uow, applier)
    svc = service(uow, applier)
    inquiry = se.dispute("dp_2", "ch_1", "pi_1", 1000, "warning_needs_response")
    assert (await svc.receive_stripe(*stripe_body("charge.dispute.created", inquiry))).outcome is Outcome.RECORDED
    assert await net_received(uow) == 1000


async def test_every_order_ends_in_the_same_ledger(uow: UnitOfWork, applier: BillingApplier) -> None:
    """Paid 1000, refunded 400, then a dispute over the rest that is lost — delivered in each of the 24 orders
    (one payment per order): every payment's ledger ends at 0."""
    orders = list(itertools.permutations(["paid", "opened", "closed", "refund"]))
    people = await add_subscribers(uow, len(orders))
    svc = service(uow, applier)
    for n, (who, order) in enumerate(zip(people, orders, strict=True)):
        ref, cs = await pending_topup(uow, who, 1000)
        pi, ch, dp = f"pi_{n}", f"ch_{n}", f"dp_{n}"
        events = {
            "paid": stripe_body("checkout.session.completed", se.checkout_session(cs, ref, 1000, payment_intent=pi)),
            "opened": stripe_body("charge.dispute.created", se.dispute(dp, ch, pi, 600, "needs_response")),
            "closed": stripe_body("charge.dispute.closed", se.dispute(dp, ch, pi, 600, "lost")),
            "refund": stripe_body("charge.refunded", se.charge(ch, pi, 1000, refunded_minor=400)),
        }
        pending = list(order)
        while pending:  # like Stripe: what is answered "retry later" comes again after the others
            retry = []
            for name in pending:
                try:
                    await svc.receive_stripe(*events[name])
                except PaymentNotYetKnown:
                    retry.append(name)
            assert len(retry) < len(pending)
            pending = retry
        assert await net_received(uow, who.account_id) == 0, order
        row = await payment_row(uow, ref)
        assert (row.reversed_minor, row.status) == (1000, "disputed"), order


async def test_a_refund_after_a_won_dispute_takes_back_the_reinstated_credit(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    ref, alice = await _paid(uow, applier)
    svc = service(uow, applier)
    await svc.receive_stripe(
        *stripe_body("charge.dispute.created", se.dispute("dp_1", "ch_1", "pi_1", 1000, "needs_response"))
    )
    await svc.receive_stripe(*stripe_body("charge.dispute.closed", se.dispute("dp_1", "ch_1", "pi_1", 1000, "won")))
    assert await net_received(uow) == 1000
    refund = stripe_body("charge.refunded", se.charge("ch_1", "pi_1", 1000, refunded_minor=1000), "evt_refund")
    result = await svc.receive_stripe(*refund)
    assert result.outcome is Outcome.APPLIED, result
    assert await net_received(uow) == 0
    row = await payment_row(uow, ref)
    assert (row.reversed_minor, row.status) == (1000, "refunded")
    assert (await svc.receive_stripe(*refund)).outcome is Outcome.DUPLICATE  # a retry changes nothing
    after = await balances(uow, alice.account_id)
    # the meter was sent 1000 once (the won dispute cancelled the debt its opening made, and sent nothing
    # more): the money is all back with the payer, so all the credit the meter has is owed
    assert (after.wallet.minor, after.debt.minor) == (0, -1000)


async def test_a_reversal_billing_cannot_make_is_a_conflict_not_an_error(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    """Billing holds less of the payment than payments asks to take back (here: the ledger side reversed
    it by hand already): a conflict for a person, answered 200 — never an error the provider retries."""
    await _paid(uow, applier)
    async with uow.begin() as conn:
        await conn.execute(update(topups).values(reversed_minor=topups.c.amount_minor))
    svc = service(uow, applier)
    refund = stripe_body("charge.refunded", se.charge("ch_1", "pi_1", 1000, refunded_minor=1000), "evt_refund")
    result = await svc.receive_stripe(*refund)
    assert result.outcome is Outcome.CONFLICT
    assert "reversal refused" in result.detail
    assert (await svc.receive_stripe(*refund)).outcome is Outcome.DUPLICATE
    assert await net_received(uow) == 1000  # nothing taken back; a person decides
    async with uow.connect() as conn:
        conflicts = (await conn.execute(select(payment_conflicts.c.reason))).scalars().all()
    assert len(conflicts) == 1
