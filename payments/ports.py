"""The ports payments needs from the rest of smsmeter, as small Protocols.

`PaymentApplier` is how a verified payment reaches the ledger, and (as a `PayerBook`) how payments learns whom a
payment is for (the accounts and meters are billing's tables): the composition root hands in billing's top-up
use cases and its read model of payers (through the web glue); tests hand in a small fake. `CommandBook` is how
payments learns how far a credit command has come (the commands are the gateway's tables): the gateway's
`gateway.progress.CommandProgress`. Both calls run on the connection of
the transaction that also records the webhook event and the payment row, so they commit together.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import PaymentRefused


@dataclass(frozen=True, slots=True)
class CreditRequest:
    """Credit a subscriber (and their meter) with a payment, or (`reason` "reinstated") give back an amount a
    reversal took after the dispute was won: the ledger cancels the debt that reversal created first."""

    payment_id: int
    subscriber_id: int
    subscriber_code: str
    meter_id: int | None
    meter_code: str | None
    amount_minor: int  # positive
    currency: str
    provider: str
    provider_ref: str
    ledger_ref: str  # names the payment's credit in the ledger: its provider_ref (a reinstatement's too)
    idempotency_key: str  # unique per ledger effect: "pay:<payment id>", "reinstate:<payment id>:<n>"
    reason: str  # payment | reinstated
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReversalRequest:
    """Take back (part of) a credited payment: refund or dispute. Delivered credit becomes debt."""

    payment_id: int
    subscriber_id: int
    subscriber_code: str
    meter_id: int | None
    meter_code: str | None
    amount_minor: int  # positive: the amount taken back now
    currency: str
    provider: str
    provider_ref: str
    ledger_ref: str  # the credit it takes back from (as given in CreditRequest.ledger_ref)
    idempotency_key: str  # "reverse:<payment id>:<n>"
    reason: str  # refund | dispute
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class CreditApplied:
    command_id: int | None  # the credit command sent to the meter, when one was sent


class PayerMeter(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def active(self) -> bool: ...


class Payer(Protocol):
    """A subscriber account as billing describes it to payments."""

    @property
    def subscriber_id(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def currency(self) -> str | None: ...
    @property
    def meters(self) -> Sequence[PayerMeter]: ...


class PayerBook(Protocol):
    """Whom payments are for, as billing tells it (payments reads no table of billing's)."""

    async def payers(self, conn: AsyncConnection, codes: Collection[str]) -> Mapping[str, Payer]:
        """The accounts of subscriber `codes` that exist, by code."""
        ...

    async def codes(
        self, conn: AsyncConnection, subscriber_ids: Collection[int], meter_ids: Collection[int]
    ) -> tuple[Mapping[int, str], Mapping[int, str]]:
        """The codes of subscribers and of meters by id."""
        ...


class CommandBook(Protocol):
    """How far a payment's credit command has come, as the gateway tells it (payments reads no table of the
    gateway's)."""

    async def progress(
        self, conn: AsyncConnection, command_id: int
    ) -> tuple[str | None, Sequence[tuple[str, datetime]]]:
        """The command's state (None when there is no such command) and each state it entered, with when, in
        order."""
        ...

    async def states(self, conn: AsyncConnection, command_ids: Collection[int]) -> Mapping[int, str]:
        """The states of the commands of those ids that exist, by id."""
        ...


class PaymentApplier(PayerBook, Protocol):
    """`credit` raises payments.errors.PaymentRefused when the ledger side will not take the payment
    (`reverse` when it will not take back what is asked, e.g. more than it holds of the payment);
    `credit_many` is `credit` for many payments at once, with one answer (or refusal) per request, in order;
    it leaves the payment rows to the caller, which marks those credited paid itself in the same transaction.
    A database error in either propagates: the caller's transaction rolls back."""

    async def credit(self, conn: AsyncConnection, request: CreditRequest, now: datetime) -> CreditApplied: ...

    async def credit_many(
        self, conn: AsyncConnection, requests: Sequence[CreditRequest], now: datetime
    ) -> list[CreditApplied | PaymentRefused]: ...

    async def reverse(self, conn: AsyncConnection, request: ReversalRequest, now: datetime) -> None: ...
