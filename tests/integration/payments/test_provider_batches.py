"""Provider webhooks (`POST /webhooks/payments/{provider}`) take the grouped, set-based path of Stripe's events:
a batch of a provider's confirmations costs the statements of a batch, whatever its size, and about as many as a
batch of Stripe confirmations of the same size (the provider's payment rows are registered in one insert); the
effects are those of the webhooks one by one — duplicates, payments repeated under new event ids, mismatches and
unknown accounts held as conflicts, order-independent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import event, select

from payments.events import PaymentLocator, PaymentSucceeded, ProviderEvent
from payments.processing import EventResult, process_events
from payments.stripe_webhook import stripe_event_meaning, verify_stripe_event
from store.schema.commands import commands
from store.schema.payments import payment_conflicts, payments, webhook_events
from store.uow import UnitOfWork
from tests.integration.payments.conftest import NOW, Subscriber, add_subscribers, credit_commands, net_received
from tests.integration.payments.helpers import pending_topup, service, signed_provider_body, stripe_body
from tests.support import stripe_events as se
from web.webhooks import BillingApplier


def _paid_at_kiosk(who: Subscriber, tx: str, amount_minor: int = 1000, *, evt: str | None = None) -> PaymentSucceeded:
    """What a kiosk's verified `payment.succeeded` means (see payments.provider_webhook)."""
    return PaymentSucceeded(
        evt or f"evt_{tx}",
        "payment.succeeded",
        NOW,
        PaymentLocator(provider="kiosk", provider_ref=tx),
        amount_minor=amount_minor,
        currency="USD",
        subscriber_code=who.code,
        meter_code=who.meter_code,
    )


@asynccontextmanager
async def _counting(uow: UnitOfWork) -> AsyncIterator[list[str]]:
    sent: list[str] = []

    def seen(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        sent.append(sql)

    event.listen(uow.engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(uow.engine.sync_engine, "before_cursor_execute", seen)


async def _statements_of_batch(
    uow: UnitOfWork, applier: BillingApplier, events: Sequence[ProviderEvent]
) -> tuple[int, list[EventResult]]:
    # a connection checked out first: the count is the batch's alone
    async with uow.connect() as conn, _counting(uow) as sent:
        results = await process_events(uow, [(e, NOW) for e in events], applier, conn=conn)
    assert all(isinstance(r, EventResult) for r in results)
    return len(sent), [r for r in results if isinstance(r, EventResult)]


async def test_a_batch_of_provider_webhooks_costs_the_statements_of_one_batch(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    people = await add_subscribers(uow, 22)
    small, small_results = await _statements_of_batch(
        uow, applier, [_paid_at_kiosk(p, f"tx-s{i}") for i, p in enumerate(people[:2])]
    )
    large, large_results = await _statements_of_batch(
        uow, applier, [_paid_at_kiosk(p, f"tx-l{i}") for i, p in enumerate(people[2:12])]
    )
    assert [r.outcome.value for r in small_results + large_results] == ["applied"] * 12
    assert all(r.command_id is not None for r in large_results)
    # set-based: one by one, each webhook costs some twenty statements; in a batch, on PostgreSQL ten cost what two
    # do, and on SQLite two more a webhook (billing's inserts of commands and top-ups that return their ids)
    per_webhook = (large - small) / 8
    assert per_webhook == (0 if uow.dialect == "postgresql" else 2), (small, large)
    # and as many as Stripe's, but for registering the provider's payment rows (one read, one insert)
    stripe_refs = [await pending_topup(uow, p, 1000) for p in people[12:]]  # their meters' keys not read yet either
    stripe_events = [_stripe_paid(ref, cs, i) for i, (ref, cs) in enumerate(stripe_refs)]
    stripe, stripe_results = await _statements_of_batch(uow, applier, stripe_events)
    assert [r.outcome.value for r in stripe_results] == ["applied"] * 10
    assert large == stripe + 2, (stripe, large)
    assert await credit_commands(uow) == 22
    async with uow.connect() as conn:
        rows = (await conn.execute(select(payments).where(payments.c.provider == "kiosk"))).all()
        assert {(r.status, r.amount_minor) for r in rows} == {("paid", 1000)}
        assert len({r.credit_command_id for r in rows}) == 12
        sent = await conn.execute(select(commands.c.id).where(commands.c.id.in_([r.credit_command_id for r in rows])))
        assert len(sent.all()) == 12


def _stripe_paid(reference: str, session_id: str, i: int) -> ProviderEvent:
    raw, sig = stripe_body("checkout.session.completed", se.checkout_session(session_id, reference, 1000), f"evt_{i}")
    return stripe_event_meaning(verify_stripe_event(raw, sig, se.WEBHOOK_SECRET, 300, NOW))


async def test_provider_webhooks_together_have_the_effects_of_each_alone(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    alice, bob, carol = await add_subscribers(uow, 3)
    stranger = Subscriber(0, "640100199990001", 0, bob.meter_code, 0)
    calls = [
        signed_provider_body(_paid_at_kiosk(alice, "tx-a")),
        signed_provider_body(_paid_at_kiosk(alice, "tx-a")),  # the same event twice
        signed_provider_body(_paid_at_kiosk(alice, "tx-a", evt="evt_tx-a-again")),  # the same payment, a new event
        signed_provider_body(_paid_at_kiosk(bob, "tx-b", 500)),
        signed_provider_body(_paid_at_kiosk(stranger, "tx-x")),  # an account we do not know
        signed_provider_body(_paid_at_kiosk(Subscriber(carol.id, carol.code, 0, alice.meter_code, 0), "tx-c")),
        signed_provider_body(_paid_at_kiosk(carol, "tx-d", 0)),  # nothing paid
    ]
    svc = service(uow, applier)
    results = await asyncio.gather(*(svc.receive_provider("kiosk", *call) for call in calls))
    assert [r.outcome.value for r in results] == [
        "applied",
        "duplicate",
        "recorded",  # already credited
        "applied",
        "conflict",
        "conflict",  # the meter is not carol's
        "conflict",
    ]
    assert [r.detail for r in results][4:] == [
        "unknown subscriber account",
        "meter is not the subscriber's",
        "amount must be positive",
    ]
    assert await net_received(uow, alice.account_id) == 1000
    assert await net_received(uow, bob.account_id) == 500
    assert await net_received(uow, carol.account_id) == 0
    assert await credit_commands(uow) == 2
    async with uow.connect() as conn:
        assert len((await conn.execute(select(payment_conflicts.c.id))).all()) == 3
        outcomes = dict((await conn.execute(select(webhook_events.c.event_id, webhook_events.c.outcome))).all())
    assert outcomes["evt_tx-a"] == "applied"
    assert outcomes["evt_tx-a-again"] == "recorded"
    # all of them again, in the other order: nothing more happens
    again = await asyncio.gather(*(svc.receive_provider("kiosk", *call) for call in reversed(calls)))
    assert {r.outcome.value for r in again} == {"duplicate"}
    assert await net_received(uow) == 1500


async def test_a_lone_provider_webhook_is_a_batch_of_one(uow: UnitOfWork, applier: BillingApplier) -> None:
    alice, bob = await add_subscribers(uow, 2)
    one, results = await _statements_of_batch(uow, applier, [_paid_at_kiosk(alice, "tx-1")])
    assert [r.outcome.value for r in results] == ["applied"]
    ref, cs = await pending_topup(uow, bob, 1000)
    stripe_one, stripe_results = await _statements_of_batch(uow, applier, [_stripe_paid(ref, cs, 1)])
    assert [r.outcome.value for r in stripe_results] == ["applied"]
    assert one == stripe_one + 2, (stripe_one, one)  # one by one, it cost some ten statements more
