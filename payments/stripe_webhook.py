"""Reading Stripe webhooks: verify the `Stripe-Signature` header over the raw body, refuse stale and
future timestamps, and turn the events smsmeter acts on into `payments.events` values.

The signature (HMAC-SHA256 of "{t}.{body}" with the endpoint's whsec_ secret, scheme v1) is checked by the
stripe library. The time window is checked here against the clock we are handed (the library would read
the wall clock itself, and it accepts timestamps from the future): older than the tolerance (5 minutes)
is stale, more than `future_skew_s` ahead is refused too. Event types handled:
checkout.session.completed / async_payment_succeeded / async_payment_failed, payment_intent.succeeded /
payment_failed, charge.refunded, charge.dispute.created / closed; any other type is `Ignored`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from payments.errors import MalformedEvent, SignatureInvalid, TimestampOutsideWindow
from payments.events import (
    DisputeClosed,
    DisputeOpened,
    Ignored,
    PaymentAwaiting,
    PaymentFailed,
    PaymentLocator,
    PaymentRefunded,
    PaymentSucceeded,
    ProviderEvent,
)

PROVIDER = "stripe"
DEFAULT_FUTURE_SKEW_S = 60


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """A Stripe event whose signature and timestamp were checked."""

    id: str
    type: str
    created: datetime
    signed_at: datetime
    livemode: bool
    object: Mapping[str, Any]  # data.object


def _signed_timestamp(sig_header: str) -> int:
    for item in sig_header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            return int(value)
    raise ValueError("no t=")


def verify_stripe_event(
    raw_body: bytes,
    sig_header: str | None,
    secret: str,
    tolerance_s: int,
    now: datetime,
    *,
    future_skew_s: int = DEFAULT_FUTURE_SKEW_S,
) -> StripeEvent:
    """Check a webhook request; raises SignatureInvalid, TimestampOutsideWindow or MalformedEvent."""
    if not sig_header:
        raise SignatureInvalid(PROVIDER, "no Stripe-Signature header")
    try:
        signed_at_s = _signed_timestamp(sig_header)
    except ValueError:
        raise SignatureInvalid(PROVIDER, "Stripe-Signature header without a valid t= timestamp") from None
    skew_s = signed_at_s - int(now.timestamp())
    try:  # the signature: the library's check; the time window: ours, against the clock we are handed
        stripe.WebhookSignature.verify_header(raw_body, sig_header, secret, tolerance=None)
    except UnicodeDecodeError:
        raise MalformedEvent(PROVIDER, "body is not UTF-8") from None
    except stripe.SignatureVerificationError as exc:
        raise SignatureInvalid(PROVIDER, _short(str(exc))) from None
    if skew_s < -tolerance_s:
        raise TimestampOutsideWindow(PROVIDER, f"stale: signed {-skew_s} s ago (tolerance {tolerance_s} s)", skew_s)
    if skew_s > future_skew_s:
        raise TimestampOutsideWindow(PROVIDER, f"from the future: signed {skew_s} s ahead", skew_s)
    try:
        body = json.loads(raw_body)
        data_object = body["data"]["object"]
        event = StripeEvent(
            id=_str(body, "id"),
            type=_str(body, "type"),
            created=datetime.fromtimestamp(int(body["created"]), UTC),
            signed_at=datetime.fromtimestamp(signed_at_s, UTC),
            livemode=bool(body.get("livemode", False)),
            object=data_object,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedEvent(PROVIDER, f"not a Stripe event: {_short(str(exc))}") from None
    if not isinstance(data_object, Mapping):
        raise MalformedEvent(PROVIDER, "data.object is not an object")
    return event


def _short(text: str) -> str:
    return text.split(".")[0][:160]


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(PROVIDER, f"{key} missing or not a string")
    return value


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if isinstance(value, Mapping):  # an expanded object
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedEvent(PROVIDER, f"{key} missing or not a non-negative integer")
    return value


def _currency(obj: Mapping[str, Any]) -> str:
    return _str(obj, "currency").upper()


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _session_locator(obj: Mapping[str, Any]) -> PaymentLocator:
    session_id = _str(obj, "id")
    return PaymentLocator(
        provider=PROVIDER,
        provider_ref=session_id,
        reference=_opt_str(obj, "client_reference_id") or _opt_str(_metadata(obj), "reference"),
        checkout_session_id=session_id,
        payment_intent_id=_opt_str(obj, "payment_intent"),
    )


def _intent_locator(obj: Mapping[str, Any]) -> PaymentLocator:
    intent_id = _str(obj, "id")
    return PaymentLocator(
        provider=PROVIDER,
        provider_ref=intent_id,
        reference=_opt_str(_metadata(obj), "reference"),
        payment_intent_id=intent_id,
        charge_id=_opt_str(obj, "latest_charge"),
    )


def _charge_locator(obj: Mapping[str, Any], charge_id: str | None) -> PaymentLocator:
    intent_id = _opt_str(obj, "payment_intent")
    ref = intent_id or charge_id
    if ref is None:
        raise MalformedEvent(PROVIDER, "neither payment_intent nor charge")
    return PaymentLocator(
        provider=PROVIDER,
        provider_ref=ref,
        reference=_opt_str(_metadata(obj), "reference"),
        payment_intent_id=intent_id,
        charge_id=charge_id,
    )


def stripe_event_meaning(event: StripeEvent) -> ProviderEvent:
    """What a verified Stripe event means for smsmeter. Raises MalformedEvent when a handled type lacks a field."""
    obj, kind, at = event.object, event.type, event.created
    meta = _metadata(obj)
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        locator = _session_locator(obj)
        if obj.get("payment_status") != "paid":
            return PaymentAwaiting(event.id, kind, at, locator)
        return PaymentSucceeded(
            event.id,
            kind,
            at,
            locator,
            amount_minor=_int(obj, "amount_total"),
            currency=_currency(obj),
            subscriber_code=_opt_str(meta, "subscriber"),
            meter_code=_opt_str(meta, "meter"),
        )
    if kind == "checkout.session.async_payment_failed":
        return PaymentFailed(event.id, kind, at, _session_locator(obj), reason="asynchronous payment failed")
    if kind == "payment_intent.succeeded":
        received = obj.get("amount_received")
        amount = received if isinstance(received, int) and received > 0 else _int(obj, "amount")
        return PaymentSucceeded(
            event.id,
            kind,
            at,
            _intent_locator(obj),
            amount_minor=amount,
            currency=_currency(obj),
            subscriber_code=_opt_str(meta, "subscriber"),
            meter_code=_opt_str(meta, "meter"),
        )
    if kind == "payment_intent.payment_failed":
        error = obj.get("last_payment_error")
        reason = error.get("message") if isinstance(error, Mapping) else None
        return PaymentFailed(event.id, kind, at, _intent_locator(obj), reason=str(reason or "payment failed")[:200])
    if kind == "charge.refunded":
        charge_id = _str(obj, "id")
        return PaymentRefunded(
            event.id,
            kind,
            at,
            _charge_locator(obj, charge_id),
            refunded_total_minor=_int(obj, "amount_refunded"),
            currency=_currency(obj),
        )
    if kind in ("charge.dispute.created", "charge.dispute.closed"):
        locator = _charge_locator(obj, _opt_str(obj, "charge"))
        dispute_id, amount, currency = _str(obj, "id"), _int(obj, "amount"), _currency(obj)
        status = _str(obj, "status")
        if kind == "charge.dispute.created":
            withdrawn = not status.startswith("warning_")
            return DisputeOpened(event.id, kind, at, locator, dispute_id, amount, currency, funds_withdrawn=withdrawn)
        won = status in ("won", "warning_closed")
        return DisputeClosed(event.id, kind, at, locator, dispute_id, amount, currency, won=won, status=status)
    return Ignored(event.id, kind, at, PROVIDER)
