"""Helpers shared by the payments integration tests."""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from sqlalchemy import insert, select

from payments.events import PaymentSucceeded
from payments.provider_webhook import sign_provider_webhook
from payments.service import WebhookSecrets, WebhookService
from store.schema.payments import payments
from store.uow import UnitOfWork
from tests.integration.payments.conftest import NOW, Subscriber
from tests.support import stripe_events as se
from web.webhooks import BillingApplier

PROVIDER_SECRET = "kiosk-secret-0123456789abcdef"


def service(uow: UnitOfWork, applier: BillingApplier, now: datetime = NOW) -> WebhookService:
    secrets_ = WebhookSecrets(
        stripe_secret=se.WEBHOOK_SECRET, provider_secrets={"kiosk": PROVIDER_SECRET}, replay_window_s=300
    )
    return WebhookService(uow, applier, secrets_, clock=lambda: now)


async def pending_topup(
    uow: UnitOfWork, who: Subscriber, amount_minor: int, *, currency: str = "USD"
) -> tuple[str, str]:
    """A top-up as Checkout leaves it: a pending payment with our reference and its session id."""
    reference = "tp_" + secrets.token_hex(16)
    session_id = "cs_test_" + secrets.token_hex(12)
    async with uow.begin() as conn:
        await conn.execute(
            insert(payments).values(
                provider="stripe",
                provider_ref=session_id,
                reference=reference,
                checkout_session_id=session_id,
                subscriber_id=who.id,
                meter_id=who.meter_id,
                amount_minor=amount_minor,
                currency=currency,
                status="pending",
                created_at=NOW,
                updated_at=NOW,
            )
        )
    return reference, session_id


async def payment_row(uow: UnitOfWork, reference: str):  # type: ignore[no-untyped-def]
    async with uow.connect() as conn:
        return (await conn.execute(select(payments).where(payments.c.reference == reference))).one()


def stripe_body(kind: str, obj: dict[str, object], evt_id: str | None = None) -> tuple[bytes, str]:
    t = int(NOW.timestamp())
    return se.signed(se.event(kind, obj, created=t, evt_id=evt_id), t)


def signed_provider_body(paid: PaymentSucceeded) -> tuple[bytes, str, str]:
    """The raw body of a provider's `payment.succeeded` saying `paid`, with its timestamp and signature headers."""
    t = int(NOW.timestamp())
    payment = {"id": paid.payment.provider_ref, "amount_minor": paid.amount_minor, "currency": paid.currency}
    payment.update(account=paid.subscriber_code, meter=paid.meter_code)
    body = {"id": paid.event_id, "type": paid.event_type, "created": t, "payment": payment}
    raw = json.dumps(body).encode()
    return raw, str(t), sign_provider_webhook(PROVIDER_SECRET, t, raw)
