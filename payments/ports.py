"""The ports payments needs from the rest of smsmeter, as small Protocols.

`PaymentApplier` is how a verified payment reaches the ledger: the composition root hands in billing's
top-up use cases (through the web glue); tests hand in a small fake. Both calls run on the connection of
the transaction that also records the webhook event and the payment row, so they commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class CreditRequest:
    """Credit a subscriber (and their meter) with a payment, or reinstate an amount after a won dispute."""

    payment_id: int
    subscriber_id: int
    meter_id: int | None
    amount_minor: int  # positive
    currency: str
    provider: str
    provider_ref: str
    idempotency_key: str  # unique per ledger effect: "pay:<payment id>", "reinstate:<payment id>:<n>"
    reason: str  # payment | reinstated


@dataclass(frozen=True, slots=True)
class ReversalRequest:
    """Take back (part of) a credited payment: refund or dispute. Delivered credit becomes debt."""

    payment_id: int
    subscriber_id: int
    meter_id: int | None
    amount_minor: int  # positive: the amount taken back now
    currency: str
    provider: str
    provider_ref: str
    idempotency_key: str  # "reverse:<payment id>:<n>"
    reason: str  # refund | dispute


@dataclass(frozen=True, slots=True)
class CreditApplied:
    command_id: int | None  # the credit command sent to the meter, when one was sent


class PaymentApplier(Protocol):
    async def credit(self, conn: AsyncConnection, request: CreditRequest, now: datetime) -> CreditApplied: ...

    async def reverse(self, conn: AsyncConnection, request: ReversalRequest, now: datetime) -> None: ...
