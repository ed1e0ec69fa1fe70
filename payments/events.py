"""What a verified provider event means, as plain values: a payment succeeded or failed, was refunded,
disputed, or the event is of no interest. Built by the Stripe and provider webhook readers and by
reconciliation; applied by `payments.processing`.

Amounts are integer minor units; currencies upper-case ISO 4217; times aware UTC. A payment is found by
the first of: our top-up reference, the Checkout Session id, the PaymentIntent id, the provider's own id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PaymentLocator:
    provider: str  # "stripe" or the configured provider name
    provider_ref: str  # the provider's id of the payment: Session, PaymentIntent, transaction id
    reference: str | None = None  # our top-up reference (client_reference_id / metadata.reference)
    checkout_session_id: str | None = None
    payment_intent_id: str | None = None
    charge_id: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentSucceeded:
    """Money was taken: credit the subscriber once, if it matches what was asked."""

    event_id: str
    event_type: str
    occurred_at: datetime
    payment: PaymentLocator
    amount_minor: int
    currency: str
    subscriber_code: str | None = None  # what the provider says the payment is for
    meter_code: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentAwaiting:
    """A Checkout completed without the money yet (e.g. a bank debit): link the ids, credit nothing."""

    event_id: str
    event_type: str
    occurred_at: datetime
    payment: PaymentLocator


@dataclass(frozen=True, slots=True)
class PaymentFailed:
    event_id: str
    event_type: str
    occurred_at: datetime
    payment: PaymentLocator
    reason: str


@dataclass(frozen=True, slots=True)
class PaymentRefunded:
    """The provider's running total refunded on the payment (not the delta: totals are order-independent)."""

    event_id: str
    event_type: str
    occurred_at: datetime
    payment: PaymentLocator
    refunded_total_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class DisputeOpened:
    event_id: str
    event_type: str
    occurred_at: datetime
    payment: PaymentLocator
    dispute_id: str
    amount_minor: int
    currency: str
    funds_withdrawn: bool = True  # False for an inquiry (warning_*): nothing was taken back yet


@dataclass(frozen=True, slots=True)
class DisputeClosed:
    event_id: str
    event_type: str
    occurred_at: datetime
    payment: PaymentLocator
    dispute_id: str
    amount_minor: int
    currency: str
    won: bool  # won (or an inquiry closed): the money stays with the utility; lost: it went back to the payer
    status: str


@dataclass(frozen=True, slots=True)
class Ignored:
    event_id: str
    event_type: str
    occurred_at: datetime
    provider: str


PaymentEvent = PaymentSucceeded | PaymentAwaiting | PaymentFailed | PaymentRefunded | DisputeOpened | DisputeClosed
ProviderEvent = PaymentEvent | Ignored


def provider_of(event: ProviderEvent) -> str:
    return event.provider if isinstance(event, Ignored) else event.payment.provider
