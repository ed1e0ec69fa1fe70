"""Other providers' webhooks: HMAC-SHA256 over "timestamp." + body, a replay window, a strict body schema."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from payments.errors import MalformedEvent, SignatureInvalid, TimestampOutsideWindow
from payments.events import Ignored, PaymentFailed, PaymentRefunded, PaymentSucceeded
from payments.provider_webhook import provider_event_meaning, sign_provider_webhook, verify_provider_webhook

SECRET = "kiosk-secret-0123456789"
NOW = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
T = int(NOW.timestamp())


def _body(kind: str = "payment.succeeded", **payment: object) -> bytes:
    base = {"id": "TX-1", "account": "010203004000500", "amount_minor": 1500, "currency": "USD"}
    return json.dumps({"id": "evt-1", "type": kind, "created": T, "payment": {**base, **payment}}).encode()


def _verify(raw: bytes, ts: int = T, signature: str | None = None, *, now: datetime = NOW):  # type: ignore[no-untyped-def]
    sig = signature if signature is not None else sign_provider_webhook(SECRET, ts, raw)
    return verify_provider_webhook("kiosk", raw, str(ts), sig, SECRET, 300, now, future_skew_s=60)


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    raw = _body()
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + raw, hashlib.sha256).hexdigest()
    assert sign_provider_webhook(SECRET, T, raw) == f"v1={expected}"
    event = provider_event_meaning(_verify(raw))
    assert isinstance(event, PaymentSucceeded)
    assert (event.payment.provider, event.payment.provider_ref, event.amount_minor) == ("kiosk", "TX-1", 1500)


def test_rotation_accepts_any_of_several_signatures() -> None:
    raw = _body()
    both = "v1=" + "0" * 64 + "," + sign_provider_webhook(SECRET, T, raw)
    assert _verify(raw, signature=both).id == "evt-1"


@pytest.mark.parametrize(
    "signature", ["", "v1=" + "0" * 64, "v0=abc", sign_provider_webhook("another-secret-xyz", T, _body())]
)
def test_forgeries_are_refused(signature: str) -> None:
    with pytest.raises(SignatureInvalid):
        _verify(_body(), signature=signature)


def test_a_body_changed_after_signing_is_refused() -> None:
    sig = sign_provider_webhook(SECRET, T, _body())
    with pytest.raises(SignatureInvalid):
        _verify(_body(amount_minor=150000), signature=sig)


def test_timestamp_outside_the_window_is_refused() -> None:
    with pytest.raises(TimestampOutsideWindow, match="stale"):
        _verify(_body(), ts=T - 301)
    with pytest.raises(TimestampOutsideWindow, match="future"):
        _verify(_body(), ts=T + 61)
    with pytest.raises(SignatureInvalid):
        verify_provider_webhook("kiosk", _body(), "yesterday", "v1=00", SECRET, 300, NOW)


@pytest.mark.parametrize(
    "raw",
    [
        b"nope",
        b"[1]",
        json.dumps({"id": "evt-1", "type": "payment.succeeded", "created": "now"}).encode(),
        _body(account="12345"),
        _body(amount_minor=-5),
        _body(amount_minor=1.5),
        _body(currency="usd"),
        _body(meter="123"),
    ],
)
def test_malformed_bodies(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        provider_event_meaning(_verify(raw))


def test_failed_refunded_and_other_types() -> None:
    assert isinstance(
        provider_event_meaning(_verify(_body("payment.failed", reason="insufficient funds"))), PaymentFailed
    )
    refunded = provider_event_meaning(_verify(_body("payment.refunded", refunded_minor=500)))
    assert isinstance(refunded, PaymentRefunded)
    assert refunded.refunded_total_minor == 500
    assert isinstance(provider_event_meaning(_verify(_body("payment.pending"))), Ignored)
