"""Property: whatever the order of a payment's events — the payment, a dispute opened and then won or lost
(or still open), a refund, any of them delivered twice — the wallet, the debt and the credit sent to the
meter add up to what was finally paid, the meter is sent the payment's credit once and only once (a won
dispute cancels the debt its opening made; it never credits the meter again), and the payment has one
`payment` ledger entry (both databases)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from payments.errors import PaymentNotYetKnown
from store.schema.ledger import ledger_entries
from store.uow import UnitOfWork
from tests.integration.payments.conftest import add_subscribers, balances
from tests.integration.payments.helpers import pending_topup, service, stripe_body
from tests.support import databases
from tests.support import stripe_events as se
from web.webhooks import BillingApplier

PAID = 1000


@dataclass(frozen=True)
class Story:
    dispute_minor: int
    dispute_end: str  # won | lost | open
    refunded_minor: int  # 0: no refund
    order: tuple[int, ...]  # a permutation of the events
    twice: frozenset[int]  # the events delivered a second time (same event id)

    @property
    def finally_paid(self) -> int:
        taken = self.refunded_minor + (self.dispute_minor if self.dispute_end != "won" else 0)
        return PAID - min(PAID, taken)


@st.composite
def stories(draw: st.DrawFn) -> Story:
    dispute = draw(st.sampled_from([200, 600, PAID]))
    end = draw(st.sampled_from(["won", "lost", "open"]))
    refunded = draw(st.sampled_from([0, 300, 400]))
    count = 2 + (end != "open") + (refunded > 0)
    order = tuple(draw(st.permutations(range(count))))
    twice = frozenset(draw(st.sets(st.integers(0, count - 1), max_size=2)))
    return Story(dispute, end, refunded, order, twice)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(story=stories())
async def test_any_order_of_a_payments_events_leaves_the_ledger_and_meter_at_what_was_finally_paid(
    uow: UnitOfWork, applier: BillingApplier, story: Story
) -> None:
    await databases.empty_all_tables(uow.engine)
    (who,) = await add_subscribers(uow, 1)
    ref, cs = await pending_topup(uow, who, PAID)
    pi, ch, dp = "pi_p", "ch_p", "dp_p"
    events = [
        stripe_body("checkout.session.completed", se.checkout_session(cs, ref, PAID, payment_intent=pi), "evt_paid"),
        stripe_body(
            "charge.dispute.created", se.dispute(dp, ch, pi, story.dispute_minor, "needs_response"), "evt_opened"
        ),
    ]
    if story.dispute_end != "open":
        closed = se.dispute(dp, ch, pi, story.dispute_minor, story.dispute_end)
        events.append(stripe_body("charge.dispute.closed", closed, "evt_closed"))
    if story.refunded_minor:
        refund = se.charge(ch, pi, PAID, refunded_minor=story.refunded_minor)
        events.append(stripe_body("charge.refunded", refund, "evt_refund"))
    svc = service(uow, applier)
    pending = [events[i] for i in story.order] + [events[i] for i in sorted(story.twice)]
    while pending:  # like Stripe: what is answered "retry later" comes again after the others
        retry = []
        for raw, sig in pending:
            try:
                await svc.receive_stripe(raw, sig)
            except PaymentNotYetKnown:
                retry.append((raw, sig))
        assert len(retry) < len(pending)
        pending = retry

    after = await balances(uow, who.account_id)
    e = ledger_entries.c
    async with uow.connect() as conn:
        sent = -int(
            await conn.scalar(
                select(func.coalesce(func.sum(e.amount_minor), 0)).where(
                    e.account_id == who.account_id, e.entry_type == "credit_sent"
                )
            )
            or 0
        )
        payment_entries = await conn.scalar(
            select(func.count()).where(e.account_id == who.account_id, e.entry_type == "payment")
        )
    assert after.wallet.minor + after.debt.minor + sent == story.finally_paid, story
    assert sent == PAID, story  # the meter got the payment's credit once, and nothing more
    assert after.debt.minor == story.finally_paid - PAID, story  # owed: what the meter has beyond what was paid
    assert payment_entries == 1, story
