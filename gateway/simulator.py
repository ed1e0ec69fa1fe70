"""The simulated SMS network: the embedded default transport, and the core of the simulated SMPP server.

`SimulatedSmsc` plays the operator's SMSC and the radio path. Each accepted part gets a message id; after
`receipt_delay_s` it is delivered to the handset — unless lost (`loss_rate`: then its receipt says
EXPIRED) — and a delivery receipt follows, unless that receipt is lost (`receipt_loss_rate`). A delivered
part is handed to the `responder` (a fleet of reference meters, say), whose replies come back, after
their own delay, as mobile-originated SMS from the number the part was sent to. Every random draw is
made from the `random.Random` given, at submit time and in submit order, so a seed replays a run
exactly. Work is done by tasks the simulator owns: `idle()` waits until all of it is done, `close()`
cancels what is left.

`SimulatorTransport` is the `gateway.ports.Transport` over it, for `smsmeter serve` with no SMSC
configured; `gateway.smpp_server` puts the same simulator behind a real SMPP port.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.errors import NotConnected, SmscRejected, Throttled
from gateway.pdu_smpp import THROTTLE_STATUSES
from gateway.ports import (
    InboundHandler,
    InboundSms,
    OutboundSms,
    Receipt,
    ReceiptHandler,
    ReceiptState,
    TransportState,
    check_part,
)

log = logging.getLogger("smsmeter.gateway.simulator")

EIGHT_BIT = 0x04  # the data coding of the meters' frames
SUBMITTED_KEPT = 20_000  # parts remembered (for tests and the SMS outbox), the oldest forgotten first
TEXTS_KEPT = 2_000


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMS a simulated handset sends back. `source` None: the number the part was sent to."""

    body: bytes
    has_udh: bool = False
    data_coding: int = 0x04
    delay_s: float = 0.0
    source: str | None = None


Responder = Callable[[OutboundSms], Awaitable[Sequence[Reply]]]


async def no_reply(sms: OutboundSms) -> Sequence[Reply]:
    return ()


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    short_number: str = "7444"  # where replies are addressed
    receipt_delay_s: float = 0.0
    loss_rate: float = 0.0  # probability a part never reaches the handset (its receipt: EXPIRED)
    receipt_loss_rate: float = 0.0  # probability a delivered part's receipt never comes
    receipts: bool = True


@dataclass(frozen=True, slots=True)
class Submitted:
    """A part the simulated SMSC accepted, and what became of it."""

    message_id: str
    sms: OutboundSms
    lost: bool
    receipt_lost: bool
    accepted_at: datetime


@dataclass(slots=True)
class _Outlets:
    on_receipt: ReceiptHandler
    on_inbound: InboundHandler


class SimulatedSmsc:
    def __init__(
        self,
        config: SimulatorConfig,
        rng: random.Random,
        responder: Responder = no_reply,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self._rng = rng
        self._responder = responder
        self._clock = clock
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._rejects: list[int] = []
        # what it took, newest last, bounded so that memory stays flat however long it runs: every part, and
        # apart from them the parts that are not 8-bit data (text for people, few among the meters' frames)
        self.submitted: deque[Submitted] = deque(maxlen=SUBMITTED_KEPT)
        self.texts: deque[Submitted] = deque(maxlen=TEXTS_KEPT)

    def reject_next(self, count: int, status: int) -> None:
        """Answer the next `count` submits with `status` (0x58: throttled)."""
        self._rejects.extend([status] * count)

    def accept(self, sms: OutboundSms, on_receipt: ReceiptHandler, on_inbound: InboundHandler) -> str:
        """Take one part; return its message id, or raise SmscRejected / Throttled. Receipts and replies
        go to the two handlers later, from tasks the simulator owns."""
        if self._rejects:
            status = self._rejects.pop(0)
            if status in THROTTLE_STATUSES:
                raise Throttled(status, "simulated")
            raise SmscRejected(status, "simulated")
        cfg = self.config
        lost = self._rng.random() < cfg.loss_rate
        receipt_lost = self._rng.random() < cfg.receipt_loss_rate
        message_id = str(next(self._ids))
        record = Submitted(message_id, sms, lost, receipt_lost, self._clock())
        self.submitted.append(record)
        if sms.data_coding != EIGHT_BIT:
            self.texts.append(record)
        self._spawn(self._deliver(record, _Outlets(on_receipt, on_inbound)))
        return message_id

    def inject(self, sms: InboundSms, on_inbound: InboundHandler) -> None:
        """Deliver an SMS from a handset (not in answer to anything)."""
        self._spawn(on_inbound(sms))

    async def idle(self) -> None:
        """Wait until every receipt and reply scheduled so far (and what they scheduled) is delivered."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulated delivery failed", exc_info=task.exception())

    async def _deliver(self, record: Submitted, outlets: _Outlets) -> None:
        cfg = self.config
        if cfg.receipt_delay_s > 0:
            await asyncio.sleep(cfg.receipt_delay_s)
        if not record.lost:
            self._spawn(self._reply(record, outlets))
        if cfg.receipts and not record.receipt_lost:
            state = ReceiptState.EXPIRED if record.lost else ReceiptState.DELIVERED
            await outlets.on_receipt(
                Receipt(
                    message_id=record.message_id,
                    state=state,
                    error_code=0 if not record.lost else 0x46,
                    done_at=self._clock(),
                )
            )

    async def _reply(self, record: Submitted, outlets: _Outlets) -> None:
        for reply in await self._responder(record.sms):
            if reply.delay_s > 0:
                await asyncio.sleep(reply.delay_s)
            await outlets.on_inbound(
                InboundSms(
                    source=reply.source or record.sms.destination,
                    destination=self.config.short_number,
                    body=reply.body,
                    has_udh=reply.has_udh,
                    data_coding=reply.data_coding,
                    received_at=self._clock(),
                )
            )


class SimulatorTransport:
    """The in-process simulated network as a Transport. Use `async with`."""

    def __init__(
        self,
        config: SimulatorConfig,
        on_receipt: ReceiptHandler,
        on_inbound: InboundHandler,
        *,
        rng: random.Random,
        responder: Responder = no_reply,
    ) -> None:
        self.simulator = SimulatedSmsc(config, rng, responder)
        self._on_receipt = on_receipt
        self._on_inbound = on_inbound
        self._state = TransportState.STOPPED

    @property
    def state(self) -> TransportState:
        return self._state

    async def __aenter__(self) -> SimulatorTransport:
        self._state = TransportState.BOUND
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._state = TransportState.STOPPED
        await self.simulator.close()

    def receive_from(self, source: str, body: bytes, has_udh: bool = False, data_coding: int = 0x04) -> None:
        """An SMS a handset sends on its own (a meter's periodic report), not in answer to a submit."""
        sms = InboundSms(
            source=source,
            destination=self.simulator.config.short_number,
            body=body,
            has_udh=has_udh,
            data_coding=data_coding,
            received_at=datetime.now(UTC),
        )
        self.simulator.inject(sms, self._on_inbound)

    async def submit(self, sms: OutboundSms) -> str:
        """Raises NotConnected outside `async with`, SmscRejected / Throttled when told to reject,
        InvalidPart when the part does not fit one SMS."""
        check_part(sms)
        if self._state is not TransportState.BOUND:
            raise NotConnected(self._state.value)
        await asyncio.sleep(0)  # a submit is a suspension point, as on a real channel
        return self.simulator.accept(sms, self._on_receipt, self._on_inbound)
