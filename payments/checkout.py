"""Online top-up with Stripe Checkout: start a Checkout Session for a subscriber's meter, and report the
live state of a top-up (payment, then the credit command's handshake up to 1:1).

A top-up has our own `reference` (random, or derived from the form's one-time key so a double submit
gives the same session). The payment row is written as `pending` before Stripe is called — never holding a
transaction across the network — and the session is created with an idempotency key derived from the
reference: a retried call returns the same session. The session carries the reference as
client_reference_id and, with the subscriber and meter codes, as metadata on the session and on its
PaymentIntent, so every later event names the top-up it belongs to.

Whom a top-up is for is billing's to say (`PayerBook`), how far its credit command has come the gateway's
(`CommandBook`): this module reads only payments' own rows.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import CheckoutRefused, ProviderUnavailable
from payments.ports import CommandBook, Payer, PayerBook, PayerMeter
from payments.stripe_api import CheckoutSession
from store.schema.payments import payments
from store.uow import UnitOfWork

log = logging.getLogger("smsmeter.payments")


class CheckoutGateway(Protocol):
    async def create_checkout_session(self, params: Mapping[str, Any], idempotency_key: str) -> CheckoutSession: ...


@dataclass(frozen=True, slots=True)
class TopUpRequest:
    subscriber_code: str
    meter_code: str | None
    amount_minor: int
    request_key: str | None = None  # the form's one-time key: a double submit gives the same top-up


@dataclass(frozen=True, slots=True)
class TopUpLimits:
    min_minor: int
    max_minor: int
    default_currency: str  # when the subscriber has no account yet


@dataclass(frozen=True, slots=True)
class CheckoutStarted:
    reference: str
    checkout_url: str
    amount_minor: int
    currency: str


def _reference(request_key: str | None) -> str:
    if request_key:
        return "tp_" + hashlib.sha256(request_key.encode()).hexdigest()[:32]
    return "tp_" + secrets.token_hex(16)


async def _resolve(
    conn: AsyncConnection, payers: PayerBook, request: TopUpRequest, limits: TopUpLimits
) -> tuple[Payer, PayerMeter, str]:
    subscriber = (await payers.payers(conn, [request.subscriber_code])).get(request.subscriber_code)
    if subscriber is None or subscriber.status == "closed":
        raise CheckoutRefused("subscriber", "no such subscriber account")
    found = [m for m in subscriber.meters if m.active and (not request.meter_code or m.code == request.meter_code)]
    if not found:
        raise CheckoutRefused(
            "meter", "no active meter of this subscriber" + (" with that code" if request.meter_code else "")
        )
    if len(found) > 1:
        raise CheckoutRefused("meter", "the subscriber has several meters: choose one")
    if not limits.min_minor <= request.amount_minor <= limits.max_minor:
        raise CheckoutRefused("amount", f"must be between {limits.min_minor} and {limits.max_minor} minor units")
    return subscriber, found[0], subscriber.currency or limits.default_currency


async def start_checkout(
    uow: UnitOfWork,
    gateway: CheckoutGateway,
    payers: PayerBook,
    request: TopUpRequest,
    limits: TopUpLimits,
    now: datetime,
    *,
    return_url: str,
    product_name: str = "Prepaid top-up",
) -> CheckoutStarted:
    """Record a pending top-up and create its Checkout Session. `return_url` gets `/<reference>` appended.

    Raises CheckoutRefused (bad request) or ProviderUnavailable (Stripe failed; the top-up is marked failed).
    """
    reference = _reference(request.request_key)
    async with uow.begin() as conn:
        existing = (await conn.execute(select(payments).where(payments.c.reference == reference))).first()
        if existing is not None and existing.checkout_url:
            return CheckoutStarted(reference, existing.checkout_url, existing.amount_minor, existing.currency)
        subscriber, meter, currency = await _resolve(conn, payers, request, limits)
        if existing is None:
            await conn.execute(
                insert(payments).values(
                    provider="stripe",
                    provider_ref=reference,  # until the session exists
                    reference=reference,
                    subscriber_id=subscriber.subscriber_id,
                    meter_id=meter.id,
                    amount_minor=request.amount_minor,
                    currency=currency,
                    status="pending",
                    created_at=now,
                    updated_at=now,
                )
            )
    metadata = {"reference": reference, "subscriber": subscriber.code, "meter": meter.code}
    params = {
        "mode": "payment",
        "client_reference_id": reference,
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": currency.lower(),
                    "unit_amount": request.amount_minor,
                    "product_data": {"name": f"{product_name}, meter {meter.code}"},
                },
            }
        ],
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "success_url": f"{return_url}/{reference}",
        "cancel_url": f"{return_url}/{reference}?cancelled=1",
    }
    try:
        session = await gateway.create_checkout_session(params, idempotency_key=f"checkout-{reference}")
    except ProviderUnavailable as exc:
        async with uow.begin() as conn:
            await conn.execute(
                update(payments)
                .where(payments.c.reference == reference, payments.c.paid_at.is_(None))
                .values(status="failed", failure_reason=f"checkout not created: {exc.reason}"[:200], updated_at=now)
            )
        log.warning("top-up %s: Checkout Session not created: %s", reference, exc.reason)
        raise
    async with uow.begin() as conn:
        await conn.execute(
            update(payments)
            .where(payments.c.reference == reference)
            .values(
                provider_ref=session.id,
                checkout_session_id=session.id,
                checkout_url=session.url,
                payment_intent_id=session.payment_intent_id,
                updated_at=now,
            )
        )
    log.info("top-up %s: Checkout Session %s for %s %s", reference, session.id, request.amount_minor, currency)
    return CheckoutStarted(reference, session.url, request.amount_minor, currency)


@dataclass(frozen=True, slots=True)
class CommandStep:
    state: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TopUpStatus:
    reference: str
    payment_status: str  # pending | awaiting | failed | paid | partially_refunded | refunded | disputed
    amount_minor: int
    currency: str
    meter_code: str | None
    paid_at: datetime | None
    command_state: str | None  # 0:0 | 0:1 | 1:0 | 1:1 | a failure state; None before the credit command
    command_steps: tuple[CommandStep, ...]
    failure_reason: str | None

    @property
    def finished(self) -> bool:
        if self.payment_status in ("failed", "refunded"):
            return True
        return self.command_state is not None and self.command_state not in ("0:0", "0:1", "1:0")

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "payment_status": self.payment_status,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "meter": self.meter_code,
            "paid_at": self.paid_at.isoformat() if self.paid_at else None,
            "command_state": self.command_state,
            "command_steps": [{"state": s.state, "at": s.at.isoformat()} for s in self.command_steps],
            "failure_reason": self.failure_reason,
            "finished": self.finished,
        }


async def topup_status(
    conn: AsyncConnection, payers: PayerBook, commands: CommandBook, reference: str
) -> TopUpStatus | None:
    row = (await conn.execute(select(payments).where(payments.c.reference == reference))).first()
    if row is None:
        return None
    meter_code = None
    if row.meter_id is not None:
        _, meter_codes = await payers.codes(conn, (), [row.meter_id])
        meter_code = meter_codes.get(row.meter_id)
    state: str | None = None
    steps: tuple[CommandStep, ...] = ()
    if row.credit_command_id is not None:
        state, history = await commands.progress(conn, row.credit_command_id)
        steps = tuple(CommandStep(to_state, at) for to_state, at in history)
    return TopUpStatus(
        reference=reference,
        payment_status=row.status,
        amount_minor=row.amount_minor,
        currency=row.currency,
        meter_code=meter_code,
        paid_at=row.paid_at,
        command_state=state,
        command_steps=steps,
        failure_reason=row.failure_reason,
    )


class TopUpService:
    """What the top-up pages call: start a Checkout, read a top-up's live state."""

    def __init__(
        self,
        uow: UnitOfWork,
        gateway: CheckoutGateway | None,
        limits: TopUpLimits,
        *,
        payers: PayerBook,
        commands: CommandBook,
        return_url: str,
        amounts_minor: tuple[int, ...] = (),
        clock: Any = None,
    ) -> None:
        from payments.service import utc_now

        self.uow = uow
        self.gateway = gateway
        self.limits = limits
        self.payers = payers
        self.commands = commands
        self.return_url = return_url
        self.amounts_minor = amounts_minor
        self.clock = clock or utc_now

    async def start(self, request: TopUpRequest) -> CheckoutStarted:
        if self.gateway is None:
            raise ProviderUnavailable("create Checkout Session", "online payment is not configured")
        return await start_checkout(
            self.uow, self.gateway, self.payers, request, self.limits, self.clock(), return_url=self.return_url
        )

    async def status(self, reference: str) -> TopUpStatus | None:
        async with self.uow.connect() as conn:
            return await topup_status(conn, self.payers, self.commands, reference)
