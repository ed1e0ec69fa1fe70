"""Stripe events as Stripe sends them, signed with the library's own scheme, for the tests and the bench."""

from __future__ import annotations

import json
import secrets
from typing import Any

import stripe

WEBHOOK_SECRET = "whsec_test_0123456789abcdef0123456789abcdef"


def event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def event(kind: str, obj: dict[str, Any], *, created: int, evt_id: str | None = None) -> dict[str, Any]:
    return {
        "id": evt_id or event_id(),
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "type": kind,
        "data": {"object": obj},
    }


def signed(body: dict[str, Any] | bytes, timestamp: int, secret: str = WEBHOOK_SECRET) -> tuple[bytes, str]:
    """The raw body and its Stripe-Signature header, as `stripe.WebhookSignature.generate_signature_header` makes."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    header = stripe.WebhookSignature.generate_signature_header(raw.decode(), secret, timestamp)
    return raw, header


def checkout_session(
    session_id: str,
    reference: str,
    amount_minor: int,
    *,
    currency: str = "usd",
    payment_intent: str | None = None,
    payment_status: str = "paid",
    subscriber: str | None = None,
    meter: str | None = None,
) -> dict[str, Any]:
    metadata = {"reference": reference}
    if subscriber:
        metadata["subscriber"] = subscriber
    if meter:
        metadata["meter"] = meter
    return {
        "id": session_id,
        "object": "checkout.session",
        "amount_total": amount_minor,
        "currency": currency,
        "client_reference_id": reference,
        "metadata": metadata,
        "mode": "payment",
        "payment_intent": payment_intent,
        "payment_status": payment_status,
        "status": "complete",
    }


def payment_intent(
    intent_id: str,
    reference: str | None,
    amount_minor: int,
    *,
    currency: str = "usd",
    charge: str | None = None,
    status: str = "succeeded",
) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount_minor,
        "amount_received": amount_minor if status == "succeeded" else 0,
        "currency": currency,
        "latest_charge": charge,
        "metadata": {"reference": reference} if reference else {},
        "status": status,
        "last_payment_error": None if status == "succeeded" else {"message": "Your card was declined."},
    }


def charge(
    charge_id: str, intent_id: str, amount_minor: int, *, refunded_minor: int = 0, currency: str = "usd"
) -> dict[str, Any]:
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount_minor,
        "amount_refunded": refunded_minor,
        "refunded": refunded_minor >= amount_minor,
        "currency": currency,
        "payment_intent": intent_id,
        "metadata": {},
    }


def dispute(
    dispute_id: str, charge_id: str, intent_id: str, amount_minor: int, status: str, *, currency: str = "usd"
) -> dict[str, Any]:
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount_minor,
        "charge": charge_id,
        "payment_intent": intent_id,
        "currency": currency,
        "status": status,
    }
