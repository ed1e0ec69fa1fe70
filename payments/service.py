"""The webhook use cases: verify a provider's request, then apply what it means (`process_event`).

The web handlers call `receive_stripe` / `receive_provider` with the raw body and the signature headers
and render the result; a refused request raises a `WebhookRejected` (answer 400 and log the reason), a
refund for a payment not known yet raises `PaymentNotYetKnown` (answer 503: the provider retries).

Every request's outcome is reported to the `telemetry.Observer` once, as `webhook_handled(provider, outcome)`:
the result's outcome (applied, recorded, duplicate, ignored, conflict), or why it was not processed —
forged (signature), stale / future (signed timestamp), malformed, unknown_provider, deferred (the provider
must retry), error (our side failed; the exception goes on to the caller).

Verified events are applied in groups (one transaction for all that arrived while the previous one was
being written); each call returns when its event's transaction has committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import (
    MalformedEvent,
    PaymentNotYetKnown,
    SignatureInvalid,
    TimestampOutsideWindow,
    UnknownProvider,
    WebhookRejected,
)
from payments.events import ProviderEvent
from payments.ports import PaymentApplier
from payments.processing import EventResult, process_event, process_events
from payments.provider_webhook import provider_event_meaning, verify_provider_webhook
from payments.stripe_webhook import stripe_event_meaning, verify_stripe_event
from store.uow import UnitOfWork
from telemetry import NO_METRICS, Observer

log = logging.getLogger("smsmeter.payments")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WebhookSecrets:
    stripe_secret: str | None = None
    stripe_tolerance_s: int = 300
    provider_secrets: Mapping[str, str] = field(default_factory=dict)
    replay_window_s: int = 300
    future_skew_s: int = 60


class _Batcher:
    """Group commit: verified events queue here; a task applies everything queued in one transaction
    (`process_events`) and answers each caller when that transaction has committed. While a batch is
    being written the next one gathers, so under load a transaction carries many events and when idle a
    lone event goes at once. On PostgreSQL `parallel` batches may be written at once (rows are locked in one
    order, so two batches only ever wait on each other; measured here it costs CPU for smaller batches and
    is off by default); SQLite has one writer. The tasks live only while there is work, and are owned here."""

    def __init__(self, uow: UnitOfWork, applier: PaymentApplier, max_batch: int, parallel: int) -> None:
        self.uow = uow
        self.applier = applier
        self.max_batch = max_batch
        self.parallel = parallel
        self._queued: list[tuple[ProviderEvent, datetime, asyncio.Future[EventResult]]] = []
        self._runners: set[asyncio.Task[None]] = set()

    async def apply(self, event: ProviderEvent, now: datetime) -> EventResult:
        future: asyncio.Future[EventResult] = asyncio.get_running_loop().create_future()
        self._queued.append((event, now, future))
        if len(self._runners) < self.parallel:
            runner = asyncio.create_task(self._drain(), name="payments-webhook-batches")
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queued:
                # one connection for as long as there is work: no pool checkout (and its ping) per batch;
                # after a failed batch, a fresh one
                try:
                    async with self.uow.connect() as conn:
                        while self._queued:
                            if not await self._apply_batch(self._take(), conn):
                                break
                except Exception as exc:  # connecting (or handing the connection back) failed
                    log.warning("webhook batches: the database connection failed (%s)", type(exc).__name__)
                    if self._queued:  # answered all the same, one way or the other: no busy loop
                        await self._apply_batch(self._take(), None)
        except asyncio.CancelledError:  # shutting down: nobody will answer what is still queued
            for _, _, future in self._queued:
                future.cancel()
            self._queued = []
            raise
        finally:
            # at once, not in the done callback (which runs later): an event queued in between would find
            # every runner still counted and wait for ever
            task = asyncio.current_task()
            if task is not None:
                self._runners.discard(task)

    def _take(self) -> list[tuple[ProviderEvent, datetime, asyncio.Future[EventResult]]]:
        batch, self._queued = self._queued[: self.max_batch], self._queued[self.max_batch :]
        return batch

    async def _apply_batch(
        self, batch: list[tuple[ProviderEvent, datetime, asyncio.Future[EventResult]]], conn: AsyncConnection | None
    ) -> bool:
        """Apply and answer one batch; False when it failed as a whole (and was applied one by one)."""
        try:
            results = await process_events(self.uow, [(event, now) for event, now, _ in batch], self.applier, conn=conn)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # one bad event must not fail the others: one by one
            if len(batch) > 1:
                log.info("a batch of %d webhook events failed (%s); applying them one by one", len(batch), exc)
            for event, now, future in batch:
                try:
                    result = await process_event(self.uow, event, self.applier, now)
                except asyncio.CancelledError:
                    future.cancel()
                    raise
                except Exception as one:  # handed to that request's handler
                    if not future.done():
                        future.set_exception(one)
                else:
                    if not future.done():
                        future.set_result(result)
            return False
        for (_, _, future), outcome in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(outcome, EventResult):
                future.set_result(outcome)
            else:
                future.set_exception(outcome)
        return True


def refusal_outcome(exc: WebhookRejected) -> str:
    """The metrics outcome of a refused webhook request."""
    if isinstance(exc, UnknownProvider):
        return "unknown_provider"
    if isinstance(exc, SignatureInvalid):
        return "forged"
    if isinstance(exc, TimestampOutsideWindow):
        return "future" if exc.skew_s > 0 else "stale"
    if isinstance(exc, MalformedEvent):
        return "malformed"
    return "rejected"


class WebhookService:
    def __init__(
        self,
        uow: UnitOfWork,
        applier: PaymentApplier,
        secrets: WebhookSecrets,
        clock: Callable[[], datetime] = utc_now,
        on_credit: Callable[[int], None] | None = None,
        observer: Observer = NO_METRICS,
        max_batch: int = 200,
        parallel: int | None = None,
    ) -> None:
        self.uow = uow
        self.applier = applier
        self.secrets = secrets
        self.clock = clock
        self.on_credit = on_credit  # called with the credit command's id after its transaction committed
        self.observer = observer
        if parallel is None or uow.one_writer:
            parallel = 1  # more at once pays only where the database, not the process, is what is waited on
        self._batcher = _Batcher(uow, applier, max_batch, parallel)

    async def _observed(self, provider: str, handle: Awaitable[EventResult]) -> EventResult:
        """Await `handle` and report its outcome under `provider` (a configured name, or "unknown")."""
        try:
            result = await handle
        except WebhookRejected as exc:
            self.observer.webhook_handled(provider, refusal_outcome(exc))
            raise
        except PaymentNotYetKnown:
            self.observer.webhook_handled(provider, "deferred")
            raise
        except Exception:
            self.observer.webhook_handled(provider, "error")
            raise
        self.observer.webhook_handled(provider, result.outcome.value)
        return result

    def _committed(self, result: EventResult) -> EventResult:
        if result.command_id is not None and self.on_credit is not None:
            self.on_credit(result.command_id)
        return result

    async def receive_stripe(self, raw_body: bytes, signature_header: str | None) -> EventResult:
        return await self._observed("stripe", self._receive_stripe(raw_body, signature_header))

    async def receive_provider(
        self, provider: str, raw_body: bytes, timestamp_header: str | None, signature_header: str | None
    ) -> EventResult:
        # A provider not configured here is counted as "unknown": a label per name posted would let anyone
        # create series at will.
        label = provider if provider in self.secrets.provider_secrets else "unknown"
        return await self._observed(
            label, self._receive_provider(provider, raw_body, timestamp_header, signature_header)
        )

    async def _receive_stripe(self, raw_body: bytes, signature_header: str | None) -> EventResult:
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
        return self._committed(await self._batcher.apply(stripe_event_meaning(verified), now))

    async def _receive_provider(
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
        return self._committed(await self._batcher.apply(provider_event_meaning(verified), now))
