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
from dataclasses import dataclass

from aiohttp import web

from payments.checkout import TopUpService
from payments.errors import PaymentNotYetKnown, WebhookRejected
from payments.processing import EventResult
from payments.provider_webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from payments.service import WebhookService

log = logging.getLogger("smsmeter.web.webhooks")


@dataclass
class PaymentServices:
    """The payment use cases the shell calls; filled in by the composition root when the service starts."""

    webhooks: WebhookService | None = None
    topups: TopUpService | None = None


PAYMENT_SERVICES = web.AppKey("payment_services", PaymentServices)


def webhook_service(request: web.Request) -> WebhookService:
    service = request.app[PAYMENT_SERVICES].webhooks
    if service is None:
        raise web.HTTPServiceUnavailable(text="payments are not ready", headers={"Retry-After": "30"})
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


async def stripe_webhook(request: web.Request) -> web.Response:
    raw = await _body(request)
    try:
        result = await webhook_service(request).receive_stripe(raw, request.headers.get("Stripe-Signature"))
    except WebhookRejected as exc:
        return _refused(request, exc)
    except PaymentNotYetKnown as exc:
        return _not_yet(exc)
    return _answer(result)


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


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/stripe", stripe_webhook)
    app.router.add_post("/webhooks/payments/{provider}", provider_webhook)
