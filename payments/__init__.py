"""Payment providers at the edge: Stripe Checkout and webhooks, other providers' signed webhooks,
refunds and disputes, and reconciliation. Turns a provider's request into a verified value and applies it
exactly once through the `PaymentApplier` port; never imports billing or the web shell."""

from payments.checkout import CheckoutStarted, TopUpLimits, TopUpRequest, TopUpStatus, start_checkout, topup_status
from payments.errors import (
    CheckoutRefused,
    MalformedEvent,
    PaymentNotYetKnown,
    PaymentsError,
    ProviderUnavailable,
    SignatureInvalid,
    TimestampOutsideWindow,
    UnknownProvider,
    WebhookRejected,
)
from payments.events import (
    DisputeClosed,
    DisputeOpened,
    Ignored,
    PaymentAwaiting,
    PaymentFailed,
    PaymentLocator,
    PaymentRefunded,
    PaymentSucceeded,
    ProviderEvent,
)
from payments.ports import CreditApplied, CreditRequest, PaymentApplier, ReversalRequest
from payments.processing import EventResult, Outcome, process_event
from payments.provider_webhook import sign_provider_webhook, verify_provider_webhook
from payments.service import WebhookSecrets, WebhookService
from payments.stripe_webhook import StripeEvent, stripe_event_meaning, verify_stripe_event

__all__ = [
    "CheckoutRefused",
    "CheckoutStarted",
    "CreditApplied",
    "CreditRequest",
    "DisputeClosed",
    "DisputeOpened",
    "EventResult",
    "Ignored",
    "MalformedEvent",
    "Outcome",
    "PaymentApplier",
    "PaymentAwaiting",
    "PaymentFailed",
    "PaymentLocator",
    "PaymentNotYetKnown",
    "PaymentRefunded",
    "PaymentSucceeded",
    "PaymentsError",
    "ProviderEvent",
    "ProviderUnavailable",
    "ReversalRequest",
    "SignatureInvalid",
    "StripeEvent",
    "TimestampOutsideWindow",
    "TopUpLimits",
    "TopUpRequest",
    "TopUpStatus",
    "UnknownProvider",
    "WebhookRejected",
    "WebhookSecrets",
    "WebhookService",
    "process_event",
    "sign_provider_webhook",
    "start_checkout",
    "stripe_event_meaning",
    "topup_status",
    "verify_provider_webhook",
    "verify_stripe_event",
]
