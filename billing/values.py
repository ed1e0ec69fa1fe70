"""Values billing accepts from the edges (built by the web glue from what payments verified)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PaymentConfirmed:
    """A payment the provider confirmed. (provider, provider_ref) identifies it: applying it twice has one
    effect. The subscriber is named by id or by code; `meter_code` picks one of several meters."""

    provider: str  # stripe | cash | <provider name>
    provider_ref: str  # PaymentIntent id, provider transaction id, cash receipt number
    amount_minor: int
    currency: str
    paid_at: datetime
    subscriber_id: int | None = None
    subscriber_code: str | None = None
    meter_code: str | None = None
    payment_id: int | None = None  # the payments row, when payments created it already (Checkout)
    event_id: str | None = None  # the provider's event id, for the audit trail


class ReversalKind(enum.StrEnum):
    REFUND = "refund"
    DISPUTE = "dispute"  # a chargeback: lost, or funds withdrawn while it is open


@dataclass(frozen=True, slots=True)
class PaymentReversed:
    """Money taken back from a payment: a refund or a dispute. `reversal_ref` (refund or dispute id)
    identifies it: applying it twice has one effect."""

    provider: str
    provider_ref: str  # the original payment's reference
    reversal_ref: str
    amount_minor: int
    currency: str
    kind: ReversalKind
    at: datetime
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentReinstated:
    """Money given back to a payment after a dispute over it was won. `reinstatement_ref` identifies it:
    applying it twice has one effect."""

    provider: str
    provider_ref: str  # the original payment's reference
    reinstatement_ref: str
    amount_minor: int
    currency: str
    at: datetime
    event_id: str | None = None
