"""Payment webhooks: `POST /webhooks/stripe` and `POST /webhooks/payments/{provider}`.

The handler reads the raw body (signatures are over the exact bytes), hands it with the signature headers
to the payments webhook service, and answers: 200 with what was done (applied, recorded, ignored,
conflict, duplicate); 400 with the reason for a forged, stale, future or malformed request (and a log line);
503 with Retry-After when a refund or dispute names a payment not known yet (the provider retries).

`BillingApplier` is the glue between the two sides: payments verifies and decides once, billing applies
(ledger, debt recovery, the credit command) on the same connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import BillingError
from billing.payers import codes_by_id, payers_by_code
from billing.topup import TopUpPolicy, apply_payment, apply_payments, reinstate_payment, reverse_payment
from billing.values import PaymentConfirmed, PaymentReinstated, PaymentReversed, ReversalKind
from gateway.keys import KeyRing
from payments.checkout import TopUpService
from payments.checkout_simulator import CheckoutSimulator
from payments.errors import PaymentNotYetKnown, PaymentRefused, WebhookRejected
from payments.ports import CommandBook, CreditApplied, CreditRequest, Payer, ReversalRequest
from payments.processing import EventResult
from payments.provider_webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from payments.reconcile import ReconciliationReport
from payments.service import WebhookService
from store.audit import Actor
from store.uow import UnitOfWork
from web.permissions import public
from web.security import csrf_exempt

log = logging.getLogger("smsmeter.web.webhooks")


class Reconciler(Protocol):
    """The reconciliation as the console and the API start it: `open` a run of a window, then `carry_on` works
    on it (a new run, or one stopped halfway) until its end; raises payments' RunBusy when another process
    works on it. Filled in by the composition root (`smsmeter.payments_wiring.ReconcileDoor`)."""

    provider: str
    commands: CommandBook  # how far a finding's credit command has come, for its page

    async def open(self, start: datetime, end: datetime, *, actor: Actor) -> int: ...

    async def carry_on(self, run_id: int, *, actor: Actor | None = None) -> ReconciliationReport: ...


@dataclass
class PaymentServices:
    """The payment use cases the shell calls; filled in by the composition root when the service starts."""

    webhooks: WebhookService | None = None
    topups: TopUpService | None = None
    simulator: CheckoutSimulator | None = None  # the built-in payment simulator's card page, when it is on
    reconciler: Reconciler | None = None  # with Stripe's API or the payment simulator's listing


PAYMENT_SERVICES = web.AppKey("payment_services", PaymentServices)


def webhook_service(request: web.Request) -> WebhookService:
    service = request.app[PAYMENT_SERVICES].webhooks
    if service is None:  # this installation takes no payments
        raise web.HTTPNotFound(text="payment webhooks are not enabled here")
    return service


MAX_BODY_BYTES = 256 * 1024
RETRY_AFTER_S = 60


def _answer(result: EventResult) -> web.Response:
    body: dict[str, object] = {"status": result.outcome.value}
    if result.detail:
        body["detail"] = result.detail
    return web.json_response(body)


def _refused(request: web.Request, exc: WebhookRejected) -> web.Response:
    log.warning(
        "webhook refused: provider=%s reason=%s remote=%s (%s)",
        exc.provider,
        exc.reason,
        request.remote,
        type(exc).__name__,
    )
    return web.json_response({"error": exc.reason}, status=400)


def _not_yet(exc: PaymentNotYetKnown) -> web.Response:
    log.info("webhook deferred: %s: payment %s not known yet; the provider will retry", exc.provider, exc.reference)
    return web.json_response(
        {"status": "retry", "detail": "payment not known yet"}, status=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length)
    return await request.read()


@public
@csrf_exempt  # a provider's server calls it; the signature is the authentication
async def stripe_webhook(request: web.Request) -> web.Response:
    raw = await _body(request)
    try:
        result = await webhook_service(request).receive_stripe(raw, request.headers.get("Stripe-Signature"))
    except WebhookRejected as exc:
        return _refused(request, exc)
    except PaymentNotYetKnown as exc:
        return _not_yet(exc)
    return _answer(result)


@public
@csrf_exempt
async def provider_webhook(request: web.Request) -> web.Response:
    provider = request.match_info["provider"]
    raw = await _body(request)
    try:
        result = await webhook_service(request).receive_provider(
            provider, raw, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER)
        )
    except WebhookRejected as exc:
        return _refused(request, exc)
    except PaymentNotYetKnown as exc:
        return _not_yet(exc)
    return _answer(result)


class _InOpenTransaction(UnitOfWork):
    """A unit of work that runs inside the caller's open transaction, as a savepoint: billing's use case
    commits with the webhook event and the payment row, or not at all."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn.engine)
        self._conn = conn

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self._conn.begin_nested():
            yield self._conn


def _confirmed(request: CreditRequest, now: datetime) -> PaymentConfirmed:
    return PaymentConfirmed(
        provider=request.provider,
        provider_ref=request.ledger_ref,
        amount_minor=request.amount_minor,
        currency=request.currency,
        paid_at=now,
        subscriber_id=request.subscriber_id,
        meter_code=request.meter_code,
        payment_id=request.payment_id,
        event_id=request.event_id,
    )


def _reinstated(request: CreditRequest, now: datetime) -> PaymentReinstated:
    return PaymentReinstated(
        provider=request.provider,
        provider_ref=request.ledger_ref,
        reinstatement_ref=request.idempotency_key,
        amount_minor=request.amount_minor,
        currency=request.currency,
        at=now,
        event_id=request.event_id,
    )


class BillingApplier:
    """payments' `PaymentApplier` port, answered by billing's top-up use cases."""

    def __init__(self, keys: KeyRing, policy: TopUpPolicy) -> None:
        self.keys = keys
        self.policy = policy

    async def credit(self, conn: AsyncConnection, request: CreditRequest, now: datetime) -> CreditApplied:
        uow = _InOpenTransaction(conn)
        try:
            if request.reason == "reinstated":
                given = await reinstate_payment(uow, _reinstated(request, now), now, keys=self.keys)
                return CreditApplied(command_id=given.command_id)
            result = await apply_payment(uow, _confirmed(request, now), now, keys=self.keys, policy=self.policy)
        except BillingError as exc:
            raise PaymentRefused(exc.reason) from exc
        return CreditApplied(command_id=result.command_id)

    async def credit_many(
        self, conn: AsyncConnection, requests: Sequence[CreditRequest], now: datetime
    ) -> list[CreditApplied | PaymentRefused]:
        payments = [_confirmed(request, now) for request in requests]
        # payments credits a payment once (under its row lock): these were never applied
        results = await apply_payments(conn, payments, now, keys=self.keys, policy=self.policy, known_new=True)
        return [
            PaymentRefused(r.reason) if isinstance(r, BillingError) else CreditApplied(command_id=r.command_id)
            for r in results
        ]

    async def payers(self, conn: AsyncConnection, codes: Collection[str]) -> Mapping[str, Payer]:
        return await payers_by_code(conn, codes)

    async def codes(
        self, conn: AsyncConnection, subscriber_ids: Collection[int], meter_ids: Collection[int]
    ) -> tuple[Mapping[int, str], Mapping[int, str]]:
        return await codes_by_id(conn, subscriber_ids, meter_ids)

    async def reverse(self, conn: AsyncConnection, request: ReversalRequest, now: datetime) -> None:
        reversal = PaymentReversed(
            provider=request.provider,
            provider_ref=request.ledger_ref,
            reversal_ref=request.idempotency_key,
            amount_minor=request.amount_minor,
            currency=request.currency,
            kind=ReversalKind.REFUND if request.reason == "refund" else ReversalKind.DISPUTE,
            at=now,
            event_id=request.event_id,
        )
        try:
            await reverse_payment(_InOpenTransaction(conn), reversal, now)
        except BillingError as exc:
            raise PaymentRefused(exc.reason) from exc


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/stripe", stripe_webhook)
    app.router.add_post("/webhooks/payments/{provider}", provider_webhook)
