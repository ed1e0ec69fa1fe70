"""The payments package's errors. One root, `PaymentsError`; every subclass names its reason in attributes."""

from __future__ import annotations


class PaymentsError(Exception):
    """Root of every error the payments adapter raises."""


class WebhookRejected(PaymentsError):
    """A webhook request we refuse (HTTP 400): the reason is safe to log and to answer with."""

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"{provider} webhook rejected: {reason}")
        self.provider = provider
        self.reason = reason


class SignatureInvalid(WebhookRejected):
    """No signature, a malformed signature header, or a signature that does not match the body."""


class TimestampOutsideWindow(WebhookRejected):
    """The signed timestamp is too old (stale or a replay) or too far in the future."""

    def __init__(self, provider: str, reason: str, skew_s: int) -> None:
        super().__init__(provider, reason)
        self.skew_s = skew_s  # signed timestamp minus our clock: negative = in the past


class MalformedEvent(WebhookRejected):
    """Signed, but not an event we can read (bad JSON, a missing or mistyped field)."""


class UnknownProvider(WebhookRejected):
    """A webhook for a provider that has no secret configured."""


class CheckoutRefused(PaymentsError):
    """A top-up that cannot be started: unknown subscriber or meter, an amount out of bounds."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ProviderUnavailable(PaymentsError):
    """The provider's API failed or did not answer in time."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"{operation}: {reason}")
        self.operation = operation
        self.reason = reason


class PaymentNotYetKnown(PaymentsError):
    """A refund or dispute for a payment we have not heard of yet: the provider should retry later."""

    def __init__(self, provider: str, reference: str) -> None:
        super().__init__(f"{provider}: no payment {reference} yet")
        self.provider = provider
        self.reference = reference


class PaymentRefused(PaymentsError):
    """The ledger side refused to apply a verified payment (unknown subscriber, currency, amount): the
    payment is held as a conflict for a person, nothing is credited."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunNotFound(PaymentsError):
    """No reconciliation run has this id."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"no reconciliation run {run_id}")
        self.run_id = run_id


class RunBusy(PaymentsError):
    """Another process is working on this reconciliation run (it holds its lease until `lease_until`)."""

    def __init__(self, run_id: int, lease_until: object) -> None:
        super().__init__(f"reconciliation run {run_id} is being worked on (until {lease_until})")
        self.run_id = run_id
        self.lease_until = lease_until


class WindowInvalid(PaymentsError):
    """A reconciliation window that cannot be read, or whose end is not after its start."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
