"""The self-service worker: answers the text SMS the gateway kept (gateway.inbound_texts), oldest first.

The gateway writes each text SMS in the transaction that received it and tells the worker (`on_texts`, never
blocking); the worker also looks every `poll_s` seconds, so what an earlier run or another process left
unanswered is answered too. Each text is claimed under a lease, answered (billing.self_service), and marked
handled in the answer's transaction; a failure is tried again when its lease ends, up to the gateway's limit
of attempts, then logged as given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from billing.notices import TextSender, send_due_notices
from billing.self_service import Answered
from gateway import inbound_texts
from gateway.ports import InboundSms
from store.uow import UnitOfWork

log = logging.getLogger("smsmeter.billing.text_requests")

# answers one kept SMS: (the SMS, now, its id in inbound_texts)
Answerer = Callable[[InboundSms, datetime, int], Awaitable[Answered]]


class TextRequests:
    """Answers kept text SMS in `run()` until `stop()`; each answer is sent at once when a text sender is
    given (else the notices job sends it)."""

    def __init__(
        self,
        uow: UnitOfWork,
        answer: Answerer,
        *,
        sender: TextSender | None = None,
        clock: Callable[[], datetime],
        poll_s: float = 5.0,
        lease_s: float = 60.0,
        max_attempts: int = inbound_texts.MAX_ATTEMPTS,
    ) -> None:
        self._uow = uow
        self._answer = answer
        self._sender = sender
        self._clock = clock
        self._poll_s = poll_s
        self._lease_s = lease_s
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self.answered = 0

    def on_texts(self, batch: Sequence[InboundSms]) -> None:
        """The gateway kept these (committed): look now rather than at the next poll."""
        if batch:
            self._idle.clear()
            self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def idle(self) -> None:
        """Wait until nothing claimable is left (for tests and an orderly stop)."""
        await self._idle.wait()

    async def run(self) -> None:
        self._stopping = False
        while not self._stopping:
            self._wake.clear()
            try:
                done = await self.answer_pending()
            except Exception:  # the database failed: try again at the next turn
                log.exception("self-service: claiming kept SMS failed")
                done = 0
            if done:
                continue
            if not self._wake.is_set():
                self._idle.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()
        self._idle.set()

    async def answer_pending(self) -> int:
        """Claim one batch of kept SMS and answer each; the number claimed."""
        now = self._clock()
        async with self._uow.begin() as conn:
            claimed = await inbound_texts.claim_texts(conn, now, lease_s=self._lease_s, max_attempts=self._max_attempts)
        for pending in claimed:
            if self._stopping:
                break  # the rest stay claimed until their lease ends, then any worker takes them
            await self._answer_one(pending)
        return len(claimed)

    async def _answer_one(self, pending: inbound_texts.PendingText) -> None:
        now = self._clock()
        try:
            done = await self._answer(pending.sms, now, pending.id)
        except Exception as exc:  # one SMS that fails to be answered never stops the others
            log.exception("self-service: answering SMS %s from %s failed", pending.id, pending.sms.source)
            if pending.attempts >= self._max_attempts:
                log.error("self-service: SMS %s given up after %s attempts", pending.id, pending.attempts)
            with contextlib.suppress(Exception):
                async with self._uow.begin() as conn:
                    await inbound_texts.record_failure(conn, pending.id, f"{type(exc).__name__}: {exc}")
            return
        self.answered += 1
        if done.notice_id is not None and self._sender is not None:
            with contextlib.suppress(Exception):  # a failed send stays queued for the notices job
                await send_due_notices(self._uow, now, sms=self._sender, email=None, ids=[done.notice_id])


__all__ = ["Answerer", "TextRequests"]
