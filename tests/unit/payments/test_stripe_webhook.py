"""Stripe webhook verification and what each event type means, with bodies signed by the stripe library."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import stripe

from payments.errors import MalformedEvent, SignatureInvalid, TimestampOutsideWindow
from payments.events import (
    DisputeClosed,
    DisputeOpened,
    Ignored,
    PaymentAwaiting,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)
from payments.stripe_webhook import stripe_event_meaning, verify_stripe_event
from tests.support import stripe_events as se

NOW = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
T = int(NOW.timestamp())


def _verify(raw: bytes, header: str | None, *, secret: str = se.WEBHOOK_SECRET, now: datetime = NOW):
    return verify_stripe_event(raw, header, secret, 300, now, future_skew_s=60)


def _session_event(**kw: object) -> dict[str, object]:
    session = se.checkout_session("cs_1", "tp_" + "a" * 32, 1500, payment_intent="pi_1", **kw)  # type: ignore[arg-type]
    return se.event("checkout.session.completed", session, created=T, evt_id="evt_1")


def test_a_signed_event_is_read() -> None:
    raw, header = se.signed(_session_event(), T)
    event = _verify(raw, header)
    assert (event.id, event.type, event.created, event.object["id"]) == (
        "evt_1",
        "checkout.session.completed",
        NOW,
        "cs_1",
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda raw, h: (raw.replace(b"1500", b"9500"), h), "No signatures found matching"),
        (lambda raw, h: (raw, h.replace("v1=", "v0=")), "No signatures found with expected scheme"),
        (lambda raw, h: (raw, None), "no Stripe-Signature header"),
        (lambda raw, h: (raw, "garbage"), "without a valid t= timestamp"),
        (lambda raw, h: (raw, h.split(",")[0] + ",v1=" + "0" * 64), "No signatures found matching"),
    ],
)
def test_forged_requests_are_refused_with_a_reason(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    raw, header = mutate(*se.signed(_session_event(), T))
    with pytest.raises(SignatureInvalid) as err:
        _verify(raw, header)
    assert reason in err.value.reason


def test_another_secret_is_a_forgery() -> None:
    raw, header = se.signed(_session_event(), T, secret="whsec_someone_else")
    with pytest.raises(SignatureInvalid):
        _verify(raw, header)


def test_stale_timestamps_are_refused_after_five_minutes() -> None:
    raw, header = se.signed(_session_event(), T - 301)
    with pytest.raises(TimestampOutsideWindow) as err:
        _verify(raw, header)
    assert err.value.skew_s == -301
    assert "stale" in err.value.reason
    raw, header = se.signed(_session_event(), T - 299)
    assert _verify(raw, header).id == "evt_1"


def test_future_timestamps_the_library_accepts_are_refused() -> None:
    wall = int(time.time())
    raw, header = se.signed(_session_event(), wall + 3600)
    assert stripe.WebhookSignature.verify_header(raw.decode(), header, se.WEBHOOK_SECRET, 300)  # the library: fine
    with pytest.raises(TimestampOutsideWindow) as err:
        _verify(raw, header, now=datetime.fromtimestamp(wall, UTC))
    assert "future" in err.value.reason
    raw, header = se.signed(_session_event(), T + 30)  # a little clock skew is normal
    assert _verify(raw, header).id == "evt_1"


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"id": "evt_1"}', b'{"id":"e","type":"t","created":1,"data":{"object":[]}}']
)
def test_signed_garbage_is_malformed(body: bytes) -> None:
    raw, header = se.signed(body, T)
    with pytest.raises(MalformedEvent):
        _verify(raw, header)


def test_non_utf8_body_is_refused() -> None:
    raw = b"\xff\xfe{}"
    import hashlib
    import hmac

    sig = hmac.new(se.WEBHOOK_SECRET.encode(), f"{T}.".encode() + raw, hashlib.sha256).hexdigest()
    with pytest.raises(MalformedEvent):
        _verify(raw, f"t={T},v1={sig}")


def _meaning(kind: str, obj: dict[str, object]):  # type: ignore[no-untyped-def]
    raw, header = se.signed(se.event(kind, obj, created=T, evt_id="evt_9"), T)
    return stripe_event_meaning(_verify(raw, header))


def test_checkout_completed_and_paid_is_a_payment() -> None:
    ref = "tp_" + "b" * 32
    meaning = _meaning(
        "checkout.session.completed",
        se.checkout_session("cs_9", ref, 2500, payment_intent="pi_9", subscriber="010203004000500", meter="1" * 20),
    )
    assert isinstance(meaning, PaymentSucceeded)
    assert (meaning.amount_minor, meaning.currency, meaning.subscriber_code) == (2500, "USD", "010203004000500")
    assert (meaning.payment.reference, meaning.payment.checkout_session_id, meaning.payment.payment_intent_id) == (
        ref,
        "cs_9",
        "pi_9",
    )


def test_checkout_completed_unpaid_credits_nothing() -> None:
    obj = se.checkout_session("cs_9", "tp_x", 2500, payment_status="unpaid")
    assert isinstance(_meaning("checkout.session.completed", obj), PaymentAwaiting)
    obj = se.checkout_session("cs_9", "tp_x", 2500, payment_status="paid")
    assert isinstance(_meaning("checkout.session.async_payment_succeeded", obj), PaymentSucceeded)
    assert isinstance(_meaning("checkout.session.async_payment_failed", obj), PaymentFailed)


def test_payment_intents_refunds_and_disputes() -> None:
    ok = _meaning("payment_intent.succeeded", se.payment_intent("pi_1", "tp_r", 700, charge="ch_1"))
    assert isinstance(ok, PaymentSucceeded)
    assert ok.payment.charge_id == "ch_1"
    assert ok.payment.reference == "tp_r"
    failed = _meaning(
        "payment_intent.payment_failed", se.payment_intent("pi_1", "tp_r", 700, status="requires_payment_method")
    )
    assert isinstance(failed, PaymentFailed)
    assert "declined" in failed.reason
    refunded = _meaning("charge.refunded", se.charge("ch_1", "pi_1", 700, refunded_minor=300))
    assert isinstance(refunded, PaymentRefunded)
    assert refunded.refunded_total_minor == 300
    assert refunded.payment.payment_intent_id == "pi_1"
    opened = _meaning("charge.dispute.created", se.dispute("dp_1", "ch_1", "pi_1", 700, "needs_response"))
    assert isinstance(opened, DisputeOpened)
    assert opened.funds_withdrawn
    inquiry = _meaning("charge.dispute.created", se.dispute("dp_2", "ch_1", "pi_1", 700, "warning_needs_response"))
    assert isinstance(inquiry, DisputeOpened)
    assert not inquiry.funds_withdrawn
    won = _meaning("charge.dispute.closed", se.dispute("dp_1", "ch_1", "pi_1", 700, "won"))
    lost = _meaning("charge.dispute.closed", se.dispute("dp_1", "ch_1", "pi_1", 700, "lost"))
    assert isinstance(won, DisputeClosed)
    assert won.won
    assert isinstance(lost, DisputeClosed)
    assert not lost.won


def test_other_types_are_ignored() -> None:
    assert isinstance(_meaning("customer.created", {"id": "cus_1"}), Ignored)


def test_a_handled_type_without_its_fields_is_malformed() -> None:
    with pytest.raises(MalformedEvent):
        _meaning("payment_intent.succeeded", {"id": "pi_1", "currency": "usd"})
    body = json.loads(json.dumps(se.charge("ch_1", "pi_1", 700)))
    body["amount_refunded"] = "300"
    with pytest.raises(MalformedEvent):
        _meaning("charge.refunded", body)
