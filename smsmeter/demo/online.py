"""The demo's online payments of the last day and the reconciliation that followed, written through the
production path: three subscribers started a top-up online (the payment simulator's Checkout), two webhooks
came and were applied, one never did; a provider statement lists the three and a payment for a top-up never
started here. The daily reconciliation over that statement credited the payment the webhook missed, matched the
two with their fees, and left the stranger for a person to look at (the console's Reconciliation page)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gateway.progress import CommandProgress
from payments.checkout import TopUpLimits, TopUpRequest, start_checkout
from payments.checkout_simulator import CheckoutSimulator, ProviderBook, add_to_book, new_webhook_secret
from payments.events import PaymentLocator, PaymentSucceeded
from payments.processing import process_event
from payments.reconcile import reconcile
from payments.stripe_api import ProviderPayment
from smsmeter.demo.data import NAMED_SUBSCRIBERS, Case
from web.webhooks import BillingApplier

if TYPE_CHECKING:
    from smsmeter.demo.seed import Demo

ONLINE = ((1, 5_000, True), (2, 2_500, True), (3, 4_000, False))  # (person, amount, its webhook came)
STRANGER = ("pi_demo_stranger", 1_200, "tp_" + "0" * 32)  # paid at the provider; no top-up here


def _fixed(at: datetime) -> Callable[[], datetime]:
    return lambda: at


async def online_payments_and_last_nights_reconciliation(demo: Demo) -> None:
    applier = BillingApplier(demo.keys, demo.policy)
    limits = TopUpLimits(100, 10_000_000, demo.currency)
    statement = ProviderBook()
    people = [  # generated subscribers: the named ones each have their own story in the demo
        p for p in demo.placed.values() if p.person.case is Case.CREDIT and p.person.serial > NAMED_SUBSCRIBERS
    ]
    for n, (index, amount, webhook_came) in enumerate(ONLINE):
        placed = people[index]
        at = demo.now - timedelta(hours=5 - n)  # within the last hours: their credit commands are on their way
        simulator = CheckoutSimulator(new_webhook_secret(), clock=_fixed(at))
        started = await start_checkout(
            demo.uow,
            simulator,
            applier,
            TopUpRequest(placed.person.code, placed.person.meter_code, amount, request_key=f"demo-online-{n}"),
            limits,
            at,
            return_url="http://127.0.0.1/topup",
        )
        session_id = started.checkout_url.rsplit("/", 1)[-1]
        intent = f"pi_demo_{n:02d}_{session_id[-8:]}"
        statement.payments.append(
            ProviderPayment(
                intent,
                amount,
                started.currency,
                at,
                "succeeded",
                f"ch_demo_{n:02d}",
                {"reference": started.reference, "subscriber": placed.person.code},
            )
        )
        if webhook_came:
            event = PaymentSucceeded(
                event_id=f"evt_demo_online_{n}",
                event_type="checkout.session.completed",
                occurred_at=at,
                payment=PaymentLocator(
                    "stripe",
                    session_id,
                    reference=started.reference,
                    checkout_session_id=session_id,
                    payment_intent_id=intent,
                ),
                amount_minor=amount,
                currency=started.currency,
            )
            await process_event(demo.uow, event, applier, at)
    intent, amount, reference = STRANGER
    stranger_at = demo.now - timedelta(hours=2)
    statement.payments.append(
        ProviderPayment(
            intent, amount, demo.currency, stranger_at, "succeeded", "ch_demo_stranger", {"reference": reference}
        )
    )
    if demo.provider_book is not None:  # the running service's simulator lists them too
        add_to_book(demo.provider_book, statement.payments)
    await reconcile(
        demo.uow,
        statement,
        applier,
        demo.now - timedelta(days=1),
        demo.now,
        demo.now,
        commands=CommandProgress(),
        triggered_by="system:daily",
    )
