"""The payment simulator's webhooks are signed exactly as Stripe signs them: the stripe library's own verifier
and the service's (payments.stripe_webhook) accept them, and they mean what Stripe's events mean. Also which
installations get the simulator instead of Stripe Checkout."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stripe

from config import load_settings
from payments.checkout_simulator import CheckoutSimulator, card_problem, new_webhook_secret
from payments.errors import SignatureInvalid
from payments.events import PaymentFailed, PaymentSucceeded
from payments.stripe_webhook import stripe_event_meaning, verify_stripe_event
from smsmeter.payments_wiring import payment_simulator_on

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
PARAMS = {
    "mode": "payment",
    "client_reference_id": "tp_" + "a" * 32,
    "line_items": [
        {"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 1500, "product_data": {"name": "Top-up"}}}
    ],
    "metadata": {"reference": "tp_" + "a" * 32, "subscriber": "640100100010001", "meter": "1" * 20},
    "payment_intent_data": {"metadata": {"reference": "tp_" + "a" * 32}},
    "success_url": "http://127.0.0.1:8080/topup/tp_" + "a" * 32,
    "cancel_url": "http://127.0.0.1:8080/topup/tp_" + "a" * 32 + "?cancelled=1",
}


async def test_a_completed_checkout_verifies_with_the_stripe_library_and_the_service() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    simulator = CheckoutSimulator(secret, clock=lambda: NOW)
    session = await simulator.create_checkout_session(PARAMS, idempotency_key="checkout-1")
    assert session.url == f"/checkout/simulator/{session.id}"
    # the same idempotency key is the same session, as on Stripe
    assert (await simulator.create_checkout_session(PARAMS, idempotency_key="checkout-1")).id == session.id
    state = simulator.session(session.id)
    assert state is not None
    obj = {**state.as_stripe_object(), "payment_status": "paid", "payment_intent": "pi_sim_1"}
    raw, header = simulator.signed(simulator.event("checkout.session.completed", obj))
    assert header.startswith(f"t={int(NOW.timestamp())},v1=")

    stripe.WebhookSignature.verify_header(raw.decode(), header, secret, tolerance=None)
    library_event = stripe.Webhook.construct_event(raw.decode(), header, secret, tolerance=None)
    assert library_event["type"] == "checkout.session.completed"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(raw.decode(), header, "whsec_other", tolerance=None)

    verified = verify_stripe_event(raw, header, secret, 300, NOW)
    meaning = stripe_event_meaning(verified)
    assert isinstance(meaning, PaymentSucceeded)
    assert (meaning.amount_minor, meaning.currency) == (1500, "USD")
    assert meaning.payment.reference == PARAMS["client_reference_id"]
    assert (meaning.subscriber_code, meaning.meter_code) == ("640100100010001", "1" * 20)
    assert json.loads(raw)["data"]["object"]["id"] == session.id
    with pytest.raises(SignatureInvalid):
        verify_stripe_event(raw.replace(b"1500", b"9500"), header, secret, 300, NOW)


async def test_a_declined_card_is_a_failed_payment_intent_with_stripes_message() -> None:
    simulator = CheckoutSimulator(new_webhook_secret(), clock=lambda: NOW)
    session = await simulator.create_checkout_session(PARAMS, idempotency_key="checkout-2")
    state = simulator.session(session.id)
    assert state is not None
    state.payment_intent_id = "pi_sim_2"
    failed = simulator.failed_intent(state, "card_declined", "generic_decline", "Your card was declined.")
    raw, header = simulator.signed(simulator.event("payment_intent.payment_failed", failed))
    meaning = stripe_event_meaning(verify_stripe_event(raw, header, simulator.webhook_secret, 300, NOW))
    assert isinstance(meaning, PaymentFailed)
    assert meaning.reason == "Your card was declined."
    assert meaning.payment.reference == PARAMS["client_reference_id"]


def test_card_numbers_are_checked_before_anything_is_charged() -> None:
    assert card_problem("4242 4242 4242 4242") is None
    assert card_problem("4000 0000 0000 0002") is None  # a real number that the bank declines
    assert card_problem("4242 4242 4242 4241") == "Your card number is incorrect."
    assert card_problem("") == "Your card number is incorrect."


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, True),  # the embedded default: the simulated network, no Stripe key
        ({"SMSMETER_STRIPE_API_KEY": "sk_test_x"}, False),  # real Checkout when keys are set
        ({"SMSMETER_TRANSPORT": "smpp", "SMSMETER_SMPP_SYSTEM_ID": "smsmeter"}, False),  # never in production
        (
            {"SMSMETER_TRANSPORT": "smpp", "SMSMETER_SMPP_SYSTEM_ID": "smsmeter", "SMSMETER_PAYMENTS_SIMULATOR": "on"},
            True,
        ),
        ({"SMSMETER_PAYMENTS_SIMULATOR": "off"}, False),
    ],
)
def test_the_simulator_stands_in_for_checkout_only_on_the_embedded_default_or_when_asked(
    env: dict[str, str], on: bool
) -> None:
    assert payment_simulator_on(load_settings(None, env)) is on


async def test_what_the_simulator_was_paid_is_listed_with_its_fee_and_kept_across_a_restart(tmp_path: Path) -> None:
    book = tmp_path / "payment-simulator.jsonl"
    async with CheckoutSimulator(new_webhook_secret(), clock=lambda: NOW, book=book) as simulator:
        session = await simulator.create_checkout_session(PARAMS, idempotency_key="checkout-1")
        await simulator.pay(session.id, "4242 4242 4242 4242", "http://127.0.0.1:9/none", lose_webhook=True)
        assert simulator.deliveries == []  # the webhook was lost, as asked: the payment is taken all the same
    book.write_text(book.read_text() + "not json\n")  # a line that does not read is skipped, not fatal

    again = CheckoutSimulator(new_webhook_secret(), clock=lambda: NOW, book=book)
    window = (NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    (paid,) = await again.list_payment_intents(*window)
    assert (paid.amount_minor, paid.currency, paid.metadata["reference"]) == (1500, "USD", "tp_" + "a" * 32)
    (txn,) = await again.list_balance_transactions(*window)
    assert (txn.source, txn.fee_minor, txn.net_minor) == (paid.charge_id, 1500 * 290 // 10_000 + 30, 1500 - 73)
    assert await again.list_payment_intents(NOW + timedelta(hours=1), NOW + timedelta(hours=2)) == []
