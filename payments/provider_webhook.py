"""Signed webhooks from payment providers other than Stripe (mobile money, banks, kiosks).

The scheme (docs/payments-integration.md is the integrators' description):
- headers `Smsmeter-Timestamp: <Unix seconds>` and `Smsmeter-Signature: v1=<hex>` (several v1= values,
  comma-separated, are accepted while a secret is rotated);
- the signature is HMAC-SHA256, keyed with the provider's secret, over `"<timestamp>." + raw body`;
- the timestamp must be within the replay window behind our clock and at most `future_skew_s` ahead;
  an event id is applied once, so a replay inside the window changes nothing either.
The body is a JSON event: {"id", "type", "created", "payment": {...}} — see `provider_event_meaning`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from payments.errors import MalformedEvent, SignatureInvalid, TimestampOutsideWindow
from payments.events import Ignored, PaymentFailed, PaymentLocator, PaymentRefunded, PaymentSucceeded, ProviderEvent

TIMESTAMP_HEADER = "Smsmeter-Timestamp"
SIGNATURE_HEADER = "Smsmeter-Signature"
SCHEME = "v1"
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,200}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_SUBSCRIBER = re.compile(r"\d{15}")
_METER = re.compile(r"\d{20}")


def sign_provider_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """The `Smsmeter-Signature` value for a body signed at `timestamp` (what a provider computes)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SCHEME}={mac}"


@dataclass(frozen=True, slots=True)
class ProviderWebhook:
    """A provider event whose signature and timestamp were checked."""

    provider: str
    id: str
    type: str
    created: datetime
    signed_at: datetime
    body: Mapping[str, Any]


def verify_provider_webhook(
    provider: str,
    raw_body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    secret: str,
    replay_window_s: int,
    now: datetime,
    *,
    future_skew_s: int = 60,
) -> ProviderWebhook:
    """Raises SignatureInvalid, TimestampOutsideWindow or MalformedEvent."""
    if not timestamp_header or not signature_header:
        raise SignatureInvalid(provider, f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    if not timestamp_header.strip().isdigit():
        raise SignatureInvalid(provider, f"{TIMESTAMP_HEADER} is not Unix seconds")
    timestamp = int(timestamp_header.strip())
    expected = sign_provider_webhook(secret, timestamp, raw_body).split("=", 1)[1]
    offered = [v.strip().split("=", 1)[1] for v in signature_header.split(",") if v.strip().startswith(SCHEME + "=")]
    if not offered:
        raise SignatureInvalid(provider, f"no {SCHEME}= signature")
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise SignatureInvalid(provider, "signature does not match the body")
    skew_s = timestamp - int(now.timestamp())
    if skew_s < -replay_window_s:
        raise TimestampOutsideWindow(provider, f"stale: signed {-skew_s} s ago (window {replay_window_s} s)", skew_s)
    if skew_s > future_skew_s:
        raise TimestampOutsideWindow(provider, f"from the future: signed {skew_s} s ahead", skew_s)
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvent(provider, "body is not JSON") from None
    if not isinstance(body, Mapping):
        raise MalformedEvent(provider, "body is not a JSON object")
    created = body.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise MalformedEvent(provider, "created missing or not Unix seconds")
    return ProviderWebhook(
        provider=provider,
        id=_field(provider, body, "id", _ID),
        type=_field(provider, body, "type", re.compile(r"[a-z_.]{1,100}")),
        created=datetime.fromtimestamp(created, UTC),
        signed_at=datetime.fromtimestamp(timestamp, UTC),
        body=body,
    )


def _field(provider: str, obj: Mapping[str, Any], key: str, pattern: re.Pattern[str], *, required: bool = True) -> Any:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise MalformedEvent(provider, f"{key} missing or malformed")
    return value


def _amount(provider: str, obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedEvent(provider, f"payment.{key} must be a non-negative integer of minor units")
    return value


def provider_event_meaning(webhook: ProviderWebhook) -> ProviderEvent:
    """payment.succeeded, payment.failed and payment.refunded; any other type is Ignored."""
    provider, kind = webhook.provider, webhook.type
    if kind not in ("payment.succeeded", "payment.failed", "payment.refunded"):
        return Ignored(webhook.id, kind, webhook.created, provider)
    payment = webhook.body.get("payment")
    if not isinstance(payment, Mapping):
        raise MalformedEvent(provider, "payment missing or not an object")
    transaction_id = _field(provider, payment, "id", _ID)
    locator = PaymentLocator(provider=provider, provider_ref=transaction_id)
    if kind == "payment.failed":
        reason = payment.get("reason")
        return PaymentFailed(webhook.id, kind, webhook.created, locator, reason=str(reason or "failed")[:200])
    currency = _field(provider, payment, "currency", _CURRENCY)
    if kind == "payment.refunded":
        refunded = _amount(provider, payment, "refunded_minor")
        return PaymentRefunded(webhook.id, kind, webhook.created, locator, refunded, currency)
    return PaymentSucceeded(
        webhook.id,
        kind,
        webhook.created,
        locator,
        amount_minor=_amount(provider, payment, "amount_minor"),
        currency=currency,
        subscriber_code=_field(provider, payment, "account", _SUBSCRIBER),
        meter_code=_field(provider, payment, "meter", _METER, required=False),
    )
