"""The webhook use cases: verify a provider's request, then apply what it means (`process_event`).

The web handlers call `receive_stripe` / `receive_provider` with the raw body and the signature headers
and render the result; a refused request raises a `WebhookRejected` (answer 400 and log the reason), a
refund for a payment not known yet raises `PaymentNotYetKnown` (answer 503: the provider retries).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from payments.errors import UnknownProvider
from payments.ports import PaymentApplier
from payments.processing import EventResult, process_event
from payments.provider_webhook import provider_event_meaning, verify_provider_webhook
from payments.stripe_webhook import stripe_event_meaning, verify_stripe_event
from store.uow import UnitOfWork


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WebhookSecrets:
    stripe_secret: str | None = None
    stripe_tolerance_s: int = 300
    provider_secrets: Mapping[str, str] = field(default_factory=dict)
    replay_window_s: int = 300
    future_skew_s: int = 60


class WebhookService:
    def __init__(
        self,
        uow: UnitOfWork,
        applier: PaymentApplier,
        secrets: WebhookSecrets,
        clock: Callable[[], datetime] = utc_now,
        on_credit: Callable[[int], None] | None = None,
    ) -> None:
        self.uow = uow
        self.applier = applier
        self.secrets = secrets
        self.clock = clock
        self.on_credit = on_credit  # called with the credit command's id after its transaction committed

    def _committed(self, result: EventResult) -> EventResult:
        if result.command_id is not None and self.on_credit is not None:
            self.on_credit(result.command_id)
        return result

    async def receive_stripe(self, raw_body: bytes, signature_header: str | None) -> EventResult:
        secret = self.secrets.stripe_secret
        if not secret:
            raise UnknownProvider("stripe", "no Stripe webhook secret is configured")
        now = self.clock()
        verified = verify_stripe_event(
            raw_body,
            signature_header,
            secret,
            self.secrets.stripe_tolerance_s,
            now,
            future_skew_s=self.secrets.future_skew_s,
        )
        return self._committed(await process_event(self.uow, stripe_event_meaning(verified), self.applier, now))

    async def receive_provider(
        self, provider: str, raw_body: bytes, timestamp_header: str | None, signature_header: str | None
    ) -> EventResult:
        secret = self.secrets.provider_secrets.get(provider)
        if not secret:
            raise UnknownProvider(provider[:30], "no such payment provider is configured")
        now = self.clock()
        verified = verify_provider_webhook(
            provider,
            raw_body,
            timestamp_header,
            signature_header,
            secret,
            self.secrets.replay_window_s,
            now,
            future_skew_s=self.secrets.future_skew_s,
        )
        return self._committed(await process_event(self.uow, provider_event_meaning(verified), self.applier, now))
