"""A hand-driven SMS network and a running gateway for the dispatcher and inbound tests.

`ScriptedNetwork` is a `gateway.ports.Transport` whose every behaviour the test decides: it accepts or
rejects submits (status, throttle, timeout, drop), sends receipts when and how it is told (before the
submit_sm_resp, twice, with a failure state, for ids it never issued), and hands delivered parts to a
fleet of reference meters whose replies come back as MO SMS. `Gateway` runs a dispatcher and the inbound
path over it with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.dispatcher import DispatchConfig, Dispatcher
from gateway.errors import NotConnected, SmscRejected, SubmitTimeout, Throttled, TransportError
from gateway.events import GatewayEvent
from gateway.fleet import Fleet
from gateway.inbound import Inbound
from gateway.keys import KeyRing
from gateway.outbox import CommandView, get_command
from gateway.ports import InboundSms, OutboundSms, Receipt, ReceiptState, TransportState
from gateway.states import OPEN_STATES, RetryPolicy
from gateway.writegate import WriteGate
from store.schema.commands import command_parts, commands
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, SeededMeter

SHORT_NUMBER = "7220"


class Clock:
    def __init__(self, start: datetime = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Submitted:
    message_id: str
    sms: OutboundSms
    delivered: bool = False


@dataclass
class ScriptedNetwork:
    fleet: Fleet
    auto_receipts: bool = True  # send DELIVRD for every accepted part right away
    auto_replies: bool = True  # hand delivered parts to the fleet, its replies to the inbound handler
    receipt_before_resp: bool = False
    receipt_state: ReceiptState = ReceiptState.DELIVERED
    drop_replies: int = 0  # lose the next n replies of the fleet
    submitted: list[Submitted] = field(default_factory=list)
    script: list[TransportError | int] = field(default_factory=list)  # next submits: an error, or a status
    on_receipt: Callable[[Receipt], object] | None = None
    on_inbound: Callable[[InboundSms], object] | None = None
    state: TransportState = TransportState.BOUND
    engine: AsyncEngine | None = None  # when set, answers wait until the part's submit is recorded
    # when set, every submit_sm_resp waits for it (a slow SMSC); `answer_while_held` lets the meter get the
    # part and answer meanwhile, as when the SMSC delivered it and only its response to us is late
    hold: asyncio.Event | None = None
    answer_while_held: bool = False
    held: int = 0  # submits waiting for `hold` now
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> ScriptedNetwork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.settle()

    async def submit(self, sms: OutboundSms) -> str:
        await asyncio.sleep(0)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, TransportError):
                raise step
            if step in (0x58, 0x14):
                raise Throttled(step, "throttled")
            raise SmscRejected(step, "rejected")
        message_id = f"{next(self._ids):x}"
        record = Submitted(message_id, sms)
        self.submitted.append(record)
        if self.receipt_before_resp:
            await self._receipt(record)  # the SMSC's receipt overtakes its own submit_sm_resp
        elif self.hold is not None and self.answer_while_held:
            self._spawn(self._deliver(record, recorded_first=False))
        elif self.auto_receipts or self.auto_replies:
            self._spawn(self._deliver(record))
        if self.hold is not None:
            self.held += 1
            try:
                await self.hold.wait()
            finally:
                self.held -= 1
        return message_id

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, record: Submitted, *, recorded_first: bool = True) -> None:
        if self.engine is not None and recorded_first:  # as on a real network: the answer comes after the record
            await self._recorded(record.message_id)
        if self.auto_receipts:
            await self._receipt(record)
        if self.auto_replies:
            await self.reply(record)

    async def _recorded(self, message_id: str) -> None:
        assert self.engine is not None
        async with asyncio.timeout(10):
            while True:
                async with self.engine.connect() as conn:
                    found = await conn.scalar(
                        select(command_parts.c.id).where(command_parts.c.message_id == message_id)
                    )
                if found is not None:
                    return
                await asyncio.sleep(0.01)

    async def _receipt(self, record: Submitted, state: ReceiptState | None = None) -> None:
        assert self.on_receipt is not None
        await self.on_receipt(Receipt(record.message_id, state or self.receipt_state, 0, None))  # type: ignore[misc]

    async def receipt(self, message_id: str, state: ReceiptState = ReceiptState.DELIVERED) -> None:
        assert self.on_receipt is not None
        await self.on_receipt(Receipt(message_id, state, 0, None))  # type: ignore[misc]

    async def reply(self, record: Submitted) -> None:
        if record.delivered:
            return
        record.delivered = True
        for reply in self.fleet.answer(record.sms.destination, record.sms.body, record.sms.has_udh):
            if self.drop_replies:
                self.drop_replies -= 1
                continue
            await self.mo(InboundSms(reply.source, SHORT_NUMBER, reply.body, reply.has_udh, 4, datetime.now(UTC)))

    async def mo(self, sms: InboundSms) -> None:
        assert self.on_inbound is not None
        await self.on_inbound(sms)  # type: ignore[misc]

    async def settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def fleet_of(meters: list[SeededMeter]) -> Fleet:
    fleet = Fleet()
    for m in meters:
        fleet.add(m.msisdn, m.code, m.key)
    return fleet


@dataclass
class Gateway:
    engine: AsyncEngine
    network: ScriptedNetwork
    dispatcher: Dispatcher
    inbound: Inbound
    clock: Clock
    events: list[GatewayEvent]

    async def wait_final(self, ids: list[int] | None = None, timeout_s: float = 20.0) -> None:
        """Wait until the commands (all, by default) are final."""
        async with asyncio.timeout(timeout_s):
            while await self.open_count(ids):  # noqa: ASYNC110 - the database is polled, no event to wait on
                await asyncio.sleep(0.02)

    async def open_count(self, ids: list[int] | None = None) -> int:
        stmt = select(func.count()).select_from(commands).where(commands.c.state.in_([s.value for s in OPEN_STATES]))
        if ids is not None:
            stmt = stmt.where(commands.c.id.in_(ids))
        async with self.engine.connect() as conn:
            return int(await conn.scalar(stmt) or 0)

    async def view(self, command_id: int) -> CommandView:
        async with self.engine.connect() as conn:
            return await get_command(conn, command_id)

    async def wait_view(
        self, command_id: int, predicate: Callable[[CommandView], object], timeout_s: float = 10.0
    ) -> CommandView:
        """Poll the command until `predicate(view)` holds (what is committed, not what is under way)."""
        async with asyncio.timeout(timeout_s):
            while not predicate(view := await self.view(command_id)):  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.02)
        return view

    async def run_clock_until_final(self, ids: list[int], step_s: float, timeout_s: float = 20.0) -> None:
        """Move the clock `step_s` at a time until the commands are final (retries and timeouts come due)."""
        async with asyncio.timeout(timeout_s):
            while await self.open_count(ids):
                self.clock.advance(step_s)
                await asyncio.sleep(0.05)

    async def wait_for(self, predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - polls a condition the test names
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_gateway(
    engine: AsyncEngine,
    fleet: Fleet,
    *,
    policy: RetryPolicy | None = None,
    clock: Clock | None = None,
    lease_s: float = 120.0,
    worker_id: str = "test",
    network: ScriptedNetwork | None = None,
    start: bool = True,
    receipt_park_s: float = 5.0,
) -> AsyncIterator[Gateway]:
    clock = clock or Clock()
    network = network or ScriptedNetwork(fleet)
    network.engine = engine
    gate = WriteGate.for_engine(engine)
    events: list[GatewayEvent] = []

    async def collect(event: GatewayEvent) -> None:
        events.append(event)

    config = DispatchConfig(
        policy=policy or RetryPolicy(max_attempts=3, retry_base_s=30, ack_timeout_s=600),
        worker_id=worker_id,
        poll_s=0.02,
        lease_s=lease_s,
        receipt_park_s=receipt_park_s,
    )
    dispatcher = Dispatcher(engine, network, config=config, clock=clock, on_event=collect, gate=gate)
    inbound = Inbound(engine, KeyRing(MASTER_KEY), SHORT_NUMBER, clock=clock, on_event=collect, gate=gate)
    network.on_receipt = dispatcher.on_receipt
    network.on_inbound = inbound.on_sms
    tasks = []
    if start:
        tasks = [asyncio.create_task(dispatcher.run()), asyncio.create_task(inbound.run())]
    try:
        yield Gateway(engine, network, dispatcher, inbound, clock, events)
    finally:
        await network.settle()
        dispatcher.stop()
        inbound.stop()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)


__all__ = [
    "SHORT_NUMBER",
    "Clock",
    "Gateway",
    "NotConnected",
    "ScriptedNetwork",
    "SubmitTimeout",
    "fleet_of",
    "running_gateway",
]
