"""The whole loop over real SMPP on both databases: outbox → dispatcher → SmppTransport → the node-smpp
SMSC (tests/peers) → reference meters → MO replies → inbound → 1:1. And the faults a real SMSC brings:
throttling, rejections, receipts before their submit_sm_resp, duplicate and unknown receipts, a dropped
connection with a full window, and every kind of wrong SMS."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from gateway.dispatcher import DispatchConfig, Dispatcher
from gateway.events import GatewayEvent
from gateway.fleet import Fleet
from gateway.inbound import Inbound
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, CommandView, enqueue_commands, get_command
from gateway.ports import OutboundSms
from gateway.smpp import SmppConfig, SmppTransport
from gateway.states import OPEN_STATES, CommandState, RetryPolicy
from gateway.writegate import WriteGate
from store.schema.commands import command_parts, commands, wrong_sms
from tests.integration.gateway.gateway_harness import fleet_of
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, SeededMeter, add_meters
from tests.peers.bounds import until
from tests.peers.smsc import MobileOriginated, NodeSmsc, SmscError, Submit

SHORT_NUMBER = "7220"
NOW = datetime.now(UTC)
KEYS = KeyRing(MASTER_KEY)


@dataclass
class SmppGateway:
    engine: AsyncEngine
    smsc: NodeSmsc
    fleet: Fleet
    transport: SmppTransport
    dispatcher: Dispatcher
    inbound: Inbound
    events: list[GatewayEvent]

    async def open_count(self) -> int:
        async with self.engine.connect() as conn:
            stmt = (
                select(func.count()).select_from(commands).where(commands.c.state.in_([s.value for s in OPEN_STATES]))
            )
            return int(await conn.scalar(stmt) or 0)

    async def wait_final(self, timeout_s: float = 20.0) -> None:
        async def done() -> bool:
            return await self.open_count() == 0

        await until(done, timeout_s=timeout_s, poll_s=0.05)

    async def wait_recorded(self, parts: int) -> None:
        """Wait until `parts` accepted parts are recorded (an acknowledgement may settle a command first)."""

        async def recorded() -> bool:
            async with self.engine.connect() as conn:
                stmt = select(func.count()).select_from(command_parts).where(command_parts.c.message_id.is_not(None))
                return int(await conn.scalar(stmt) or 0) >= parts

        await until(recorded, timeout_s=10, poll_s=0.05)

    async def views(self, ids: list[int]) -> list[CommandView]:
        async with self.engine.connect() as conn:
            return [await get_command(conn, i) for i in ids]


def fleet_answers(fleet: Fleet, submit: Submit) -> list[MobileOriginated]:
    """What the meters answer to one submit the SMSC took (a refused submit never reaches a meter)."""
    if submit.status != 0:
        return []
    replies = fleet.answer(submit.destination, submit.body, bool(submit.esm_class & 0x40))
    return [MobileOriginated(r.source, SHORT_NUMBER, r.body, r.has_udh) for r in replies]


@contextlib.asynccontextmanager
async def meters_answering(smsc: NodeSmsc, fleet: Fleet) -> AsyncIterator[None]:
    """Hand every submit the SMSC took to the fleet and inject the meters' replies as MO. An injection
    that fails (the connection was just dropped) is tried again until the client is back."""

    async def pump() -> None:
        since = len(await smsc.submits())
        while True:
            batch = await smsc.submits(since, wait_s=1.0)
            if batch:  # the SMSC lists a submit before it decides its status: read them again
                await asyncio.sleep(0.03)
                batch = (await smsc.submits(since))[: len(batch)]
            for submit in batch:
                for mo in fleet_answers(fleet, submit):
                    while True:
                        try:
                            if await smsc.inject_mo(mo, wait_s=2.0) == 0:
                                break
                        except SmscError:
                            pass
                        await asyncio.sleep(0.05)
            since += len(batch)

    task = asyncio.create_task(pump())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def smpp_gateway(
    engine: AsyncEngine,
    smsc: NodeSmsc,
    fleet: Fleet,
    *,
    window: int = 64,
    max_attempts: int = 5,
    submit_timeout_s: float = 5.0,
    retry_base_s: float = 0.2,
    answering: bool = True,
    transport_class: type[SmppTransport] = SmppTransport,
) -> AsyncIterator[SmppGateway]:
    gate = WriteGate.for_engine(engine)
    events: list[GatewayEvent] = []

    async def collect(event: GatewayEvent) -> None:
        events.append(event)

    config = DispatchConfig(
        policy=RetryPolicy(
            max_attempts=max_attempts, retry_base_s=retry_base_s, retry_max_s=max(1.0, retry_base_s), ack_timeout_s=30
        ),
        worker_id="smpp-test",
        poll_s=0.02,
        throttle_pause_s=0.1,
        receipt_park_s=2.0,
    )
    dispatcher = Dispatcher(engine, None, config=config, on_event=collect, gate=gate)
    inbound = Inbound(engine, KEYS, SHORT_NUMBER, on_event=collect, gate=gate)
    smpp = SmppConfig(
        host=smsc.host,
        port=smsc.smpp_port,
        system_id=smsc.system_id,
        password=smsc.password,
        source_addr=SHORT_NUMBER,
        window=window,
        submit_timeout_s=submit_timeout_s,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        throttle_backoff_s=0.05,
        throttle_backoff_max_s=0.2,
    )
    answers = meters_answering(smsc, fleet) if answering else contextlib.nullcontext()
    async with answers, transport_class(smpp, dispatcher.on_receipt, inbound.on_sms) as t:
        dispatcher.transport = t
        tasks = [asyncio.create_task(dispatcher.run()), asyncio.create_task(inbound.run())]
        try:
            yield SmppGateway(engine, smsc, fleet, t, dispatcher, inbound, events)
        finally:
            dispatcher.stop()
            inbound.stop()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)


async def seed(engine: AsyncEngine, count: int) -> list[SeededMeter]:
    async with engine.begin() as conn:
        return await add_meters(conn, count, NOW)


async def enqueue(engine: AsyncEngine, requests: list[CommandRequest]) -> list[int]:
    async with engine.begin() as conn:
        return await enqueue_commands(conn, KEYS, requests, NOW)


def big_tariff() -> mp.SetTariff:
    steps = tuple(mp.TariffStep(start=i * 30, price_milli_minor_per_kwh=90_000 + i) for i in range(40))
    return mp.SetTariff(1, 0, mp.TariffKind.TIME_OF_USE, 500, steps)


def assert_walk(view: CommandView) -> None:
    walk = [h.to_state for h in view.history]
    assert view.state is CommandState.PROCESSED, view
    assert walk[0] == "0:0"
    assert walk[-1] == "1:1"
    assert walk == sorted(walk, key=["0:0", "0:1", "1:0", "1:1"].index)  # forward only


async def test_the_loop_runs_to_1_1_over_real_smpp_with_multipart(engine: AsyncEngine, smsc: NodeSmsc) -> None:
    meters = await seed(engine, 10)
    fleet = fleet_of(meters)
    requests = [CommandRequest(m.id, mp.TopUp(1, 2000 + i), "system:topup") for i, m in enumerate(meters)]
    requests += [CommandRequest(meters[0].id, big_tariff(), "operator:alice")]
    ids = await enqueue(engine, requests)
    async with smpp_gateway(engine, smsc, fleet) as gw:
        await gw.wait_final()
        await gw.wait_recorded(len(meters) + 1)
        views = await gw.views(ids)
    for view in views:
        assert_walk(view)
    assert sum(len([h for h in v.history if h.to_state == "1:0"]) for v in views) > 0
    tariff = views[-1]
    assert len(tariff.parts) > 1
    submits = await smsc.submits()
    multipart = [s for s in submits if s.esm_class & 0x40]
    assert len(multipart) == len(tariff.parts)
    assert all(s.source == SHORT_NUMBER and s.data_coding == 0x04 and s.registered_delivery == 1 for s in submits)
    for i, m in enumerate(meters):
        assert fleet.meter(m.msisdn).credit_minor == 2000 + i


async def test_throttled_and_rejected_submits(engine: AsyncEngine, smsc: NodeSmsc) -> None:
    first, second = await seed(engine, 2)
    fleet = fleet_of([first, second])
    async with smpp_gateway(engine, smsc, fleet) as gw:
        await smsc.reject_next(1, 0x0B)  # ESME_RINVDSTADR: permanent
        (rejected,) = await enqueue(engine, [CommandRequest(first.id, mp.TopUp(1, 100), "x")])
        await gw.wait_final()
        await smsc.reject_next(3, 0x58)  # ESME_RTHROTTLED three times, then accepted
        (throttled,) = await enqueue(engine, [CommandRequest(second.id, mp.TopUp(1, 300), "x")])
        gw.dispatcher.wake()
        await gw.wait_final()
        await gw.wait_recorded(1)
        rejected_view, throttled_view = await gw.views([rejected, throttled])
    assert rejected_view.state is CommandState.REJECTED_SMSC
    assert rejected_view.smsc_status == 0x0B
    assert_walk(throttled_view)
    assert throttled_view.attempts == 1  # throttling is not the message's fault: no attempt used up
    assert gw.transport.stats.throttled == 3
    assert fleet.meter(first.msisdn).credit_minor == 0
    assert fleet.meter(second.msisdn).credit_minor == 300


async def test_receipts_before_their_submit_response_and_duplicate_and_unknown_receipts(
    engine: AsyncEngine, smsc: NodeSmsc
) -> None:
    meters = await seed(engine, 6)
    fleet = fleet_of(meters)
    await smsc.configure(receipt_before_resp=True, duplicate_receipts=True)
    ids = await enqueue(engine, [CommandRequest(m.id, mp.TopUp(1, 100), "x") for m in meters])
    async with smpp_gateway(engine, smsc, fleet) as gw:
        await gw.wait_final()
        await gw.wait_recorded(len(meters))
        await smsc.send_receipt("77777777")  # an id this SMSC never issued
        await until(lambda: gw.dispatcher.stats.receipts_unknown == 1, timeout_s=10)
        views = await gw.views(ids)
    for view in views:
        assert_walk(view)
        assert all(p.state == "1:0" for p in view.parts)
    assert gw.dispatcher.stats.receipts_parked >= 1  # receipts that overtook their submit_sm_resp waited
    assert gw.dispatcher.stats.receipts_duplicate >= 1
    assert all(fleet.meter(m.msisdn).credit_minor == 100 for m in meters)


async def test_a_submit_sm_resp_after_the_submit_timeout_is_recorded_and_its_receipt_advances_the_command(
    engine: AsyncEngine, smsc: NodeSmsc
) -> None:
    # the SMSC (or a busy event loop) answers after the submit timeout: the SMSC took the part all the same
    meters = await seed(engine, 3)
    fleet = fleet_of(meters)
    await smsc.configure(resp_delay_ms=700, receipt_delay_ms=1000)
    ids = await enqueue(engine, [CommandRequest(m.id, mp.TopUp(1, 100), "x") for m in meters])
    async with smpp_gateway(engine, smsc, fleet, submit_timeout_s=0.3, retry_base_s=30, answering=False) as gw:

        async def delivered() -> bool:
            return all(v.state is CommandState.DELIVERED for v in await gw.views(ids))

        await until(delivered, timeout_s=10, poll_s=0.05)
        views = await gw.views(ids)
        await asyncio.sleep(2.5)  # past receipt_park_s: a receipt nothing matched would be dropped by now
        stats, transport = gw.dispatcher.stats, gw.transport.stats
    submits = await smsc.submits()
    assert len(submits) == len(meters)  # no second attempt went
    assert {p.message_id for v in views for p in v.parts} == {s.message_id for s in submits}
    for view in views:
        assert view.attempts == 1
        assert [(p.attempt, p.state) for p in view.parts] == [(1, "1:0")]
        walk = [h.to_state for h in view.history]
        assert walk == ["0:0", "0:0", "0:1", "1:0"], view.history  # timed out (retry planned), late id, receipt
    assert transport.late_responses == len(meters)
    assert transport.unknown_responses == 0
    assert stats.receipts_unknown == 0
    assert stats.receipts == len(meters)


async def test_late_submit_sm_resps_of_resent_commands_match_every_receipt_and_credit_once(
    engine: AsyncEngine, smsc: NodeSmsc
) -> None:
    # every attempt times out, its submit_sm_resp comes later and its receipt after: both attempts are recorded
    # with their ids, every receipt is matched, and the meter applies the frame once
    meters = await seed(engine, 4)
    fleet = fleet_of(meters)
    await smsc.configure(resp_delay_ms=500, receipt_delay_ms=600)
    ids = await enqueue(engine, [CommandRequest(m.id, mp.TopUp(1, 300 + i), "x") for i, m in enumerate(meters)])
    async with smpp_gateway(engine, smsc, fleet, submit_timeout_s=0.3, retry_base_s=0.2) as gw:
        await gw.wait_final()
        submits = [s for s in await smsc.submits() if s.status == 0]
        await gw.wait_recorded(len(submits))
        await asyncio.sleep(2.5)  # past receipt_park_s
        views = await gw.views(ids)
        stats = gw.dispatcher.stats
    for view in views:
        assert view.state is CommandState.PROCESSED
        moves = [h.to_state for h in view.history if h.from_state != h.to_state]
        assert moves == sorted(moves, key=["0:0", "0:1", "1:0", "1:1"].index)  # forward only
    recorded = {p.message_id for v in views for p in v.parts if p.message_id is not None}
    assert recorded >= {s.message_id for s in submits}
    assert stats.receipts_unknown == 0
    assert gw.transport.stats.unknown_responses == 0
    for i, m in enumerate(meters):
        assert fleet.meter(m.msisdn).credit_minor == 300 + i


class StallAfterFirstSubmit(SmppTransport):
    """Blocks the event loop for longer than the submit timeout right after its first submit_sm leaves, as a
    long synchronous step in the same process would: the response is in the socket before the timer fires."""

    stalled = False

    def submit(self, sms: OutboundSms) -> asyncio.Future[str]:
        fut = super().submit(sms)
        if not self.stalled:
            self.stalled = True
            asyncio.get_running_loop().call_soon(time.sleep, 0.6)  # after the write of this turn (call_soon)
        return fut


async def test_a_stalled_event_loop_makes_a_timely_submit_sm_resp_late_and_its_receipt_is_still_matched(
    engine: AsyncEngine, smsc: NodeSmsc
) -> None:
    # after a stall the submit timer fires before the read loop reads the response already waiting in the socket
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.TopUp(1, 700), "x")])
    async with smpp_gateway(engine, smsc, fleet, submit_timeout_s=0.3, transport_class=StallAfterFirstSubmit) as gw:
        await gw.wait_final()
        submits = await smsc.submits()
        await gw.wait_recorded(len(submits))
        await asyncio.sleep(2.5)  # past receipt_park_s
        (view,) = await gw.views([command_id])
        stats, transport = gw.dispatcher.stats, gw.transport.stats
    assert transport.late_responses == 1
    assert transport.unknown_responses == 0
    assert stats.receipts_unknown == 0
    assert view.state is CommandState.PROCESSED
    assert {p.message_id for p in view.parts} == {s.message_id for s in submits}
    assert fleet.meter(meter.msisdn).credit_minor == 700


async def test_a_dropped_connection_with_a_full_window_loses_nothing_and_credits_once(
    engine: AsyncEngine, smsc: NodeSmsc
) -> None:
    meters = await seed(engine, 12)
    fleet = fleet_of(meters)
    await smsc.configure(hold_responses=True)
    ids = await enqueue(engine, [CommandRequest(m.id, mp.TopUp(1, 400 + i), "x") for i, m in enumerate(meters)])
    async with smpp_gateway(engine, smsc, fleet, window=8) as gw:
        await smsc.wait_submits(8)  # the window is full: no submit_sm_resp comes
        await smsc.configure(hold_responses=False)
        assert await smsc.drop() == 1
        await gw.wait_final()
        views = await gw.views(ids)
    for view in views:
        assert_walk(view)
    assert gw.transport.stats.drops == 1
    assert len(await smsc.submits()) > len(meters)  # the held parts went again, with the same frames
    for i, m in enumerate(meters):
        assert fleet.meter(m.msisdn).credit_minor == 400 + i  # the meters saw some frames twice


async def test_every_kind_of_wrong_sms_over_smpp_is_recorded_and_answered_ok(
    engine: AsyncEngine, smsc: NodeSmsc
) -> None:
    meter, other = await seed(engine, 2)
    fleet = fleet_of([meter, other])
    t = int(NOW.timestamp())

    def frame(m: SeededMeter, message: mp.Message, counter: int, key: bytes | None = None, key_id: int = 0) -> bytes:
        return mp.encode_frame(message, meter_code=m.code, key=key or m.key, key_id=key_id, counter=counter)

    report = mp.BalanceReport(t, 10, True, False, 1, 0)
    good = frame(meter, report, 1)
    cases = [
        MobileOriginated(meter.msisdn, "7999", good),  # wrong_number
        MobileOriginated("37300000009", SHORT_NUMBER, good),  # unknown_sender
        MobileOriginated(meter.msisdn, SHORT_NUMBER, b"hello"),  # malformed
        MobileOriginated(meter.msisdn, SHORT_NUMBER, frame(other, report, 1)),  # wrong_meter
        MobileOriginated(meter.msisdn, SHORT_NUMBER, frame(meter, report, 2, key_id=3)),  # unknown_key
        MobileOriginated(meter.msisdn, SHORT_NUMBER, frame(meter, report, 3, key=other.key)),  # bad_tag
        MobileOriginated(meter.msisdn, SHORT_NUMBER, good),  # accepted
        MobileOriginated(meter.msisdn, SHORT_NUMBER, good),  # replay
    ]
    async with smpp_gateway(engine, smsc, fleet):
        statuses = [await smsc.inject_mo(mo) for mo in cases]
    assert statuses == [0] * len(cases)  # taken and recorded: the SMSC does not deliver them again
    async with engine.connect() as conn:
        reasons = (await conn.execute(select(wrong_sms.c.reason).order_by(wrong_sms.c.id))).scalars().all()
    assert reasons == ["wrong_number", "unknown_sender", "malformed", "wrong_meter", "unknown_key", "bad_tag", "replay"]
