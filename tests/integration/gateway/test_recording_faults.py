"""Recording sends under faults, on both databases: a re-send after the lease ran out is a new attempt, every
send shows its attempt before it goes out, a batch that cannot be recorded does not hold up the ones behind it,
and a receipt that overtakes its submit's record is matched however long that record takes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from gateway.claims import Claimed
from gateway.command_store import SendResult
from gateway.dispatcher import Dispatcher
from gateway.errors import Stopped
from gateway.inbound import Inbound
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_commands
from gateway.ports import InboundSms, Receipt, ReceiptState
from gateway.states import CommandState
from gateway.writegate import WriteGate
from store.schema.commands import alarms, command_parts, held_receipts
from tests.integration.gateway.gateway_harness import Clock, ScriptedNetwork, fleet_of, running_gateway
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, SeededMeter, add_meters

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
KEYS = KeyRing(MASTER_KEY)


async def enqueue(engine: AsyncEngine, requests: list[CommandRequest]) -> list[int]:
    async with engine.begin() as conn:
        return await enqueue_commands(conn, KEYS, requests, NOW)


async def seed(engine: AsyncEngine, count: int) -> list[SeededMeter]:
    async with engine.begin() as conn:
        return await add_meters(conn, count, NOW)


async def parts_of(engine: AsyncEngine, command_id: int) -> list[tuple[int, str | None, str]]:
    p = command_parts.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(p.attempt, p.message_id, p.state).where(p.command_id == command_id).order_by(p.attempt, p.seq)
        )
        return [(r.attempt, r.message_id, r.state) for r in rows]


async def test_a_resend_after_the_lease_ran_out_is_a_new_attempt_and_both_sends_are_recorded(
    engine: AsyncEngine,
) -> None:
    meters = await seed(engine, 3)
    fleet = fleet_of(meters)
    clock = Clock()
    network = ScriptedNetwork(fleet, hold=asyncio.Event())
    ids = await enqueue(
        engine, [CommandRequest(m.id, mp.TopUp(1, 100 + i), "system:topup") for i, m in enumerate(meters)]
    )
    # a lease long enough that this dispatcher's renewal (every third of it) does not come round in the test
    async with running_gateway(engine, fleet, network=network, clock=clock, lease_s=30) as gw:
        await gw.wait_for(lambda: network.held == 3)
        clock.advance(31)  # the responses are late and the leases run out (renewal failed, the database away)
        await gw.wait_for(lambda: network.held == 6)
        network.hold.set()  # both sends of each command are answered together: one recording batch
        await gw.wait_final(ids)
        for command_id in ids:
            view = await gw.view(command_id)
            assert view.state is CommandState.PROCESSED
            assert view.attempts == 2
    by_command: dict[int, list[tuple[int, str | None, str]]] = {}
    for command_id in ids:
        by_command[command_id] = await parts_of(engine, command_id)
    recorded = {m for parts in by_command.values() for _a, m, _s in parts}
    assert recorded == {s.message_id for s in network.submitted}  # every SMS that went out, with its message id
    for parts in by_command.values():
        assert [a for a, _m, _s in parts] == [1, 2]
    for i, m in enumerate(meters):
        assert fleet.meter(m.msisdn).credit_minor == 100 + i  # credited once


async def test_every_command_shows_the_attempt_that_carried_it_even_if_its_send_was_never_recorded(
    engine: AsyncEngine,
) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    # the SMSC delivers the part and the meter answers, but its submit_sm_resp never reaches us: the process dies
    network = ScriptedNetwork(fleet, hold=asyncio.Event(), answer_while_held=True)
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.TopUp(1, 300), "system:topup")])
    async with running_gateway(engine, fleet, network=network) as gw:
        view = await gw.wait_view(command_id, lambda v: v.state is CommandState.PROCESSED)
        gw.dispatcher.stop()  # its send is cut off unrecorded, as by kill -9
    assert view.attempts == 1
    assert [(a, s) for a, _m, s in await parts_of(engine, command_id)] == [(1, "0:0")]
    assert fleet.meter(meter.msisdn).credit_minor == 300


async def test_a_batch_that_cannot_be_recorded_is_split_and_what_fails_alone_raises_an_alarm(
    engine: AsyncEngine,
) -> None:
    meters = await seed(engine, 4)
    fleet = fleet_of(meters)
    network = ScriptedNetwork(fleet, hold=asyncio.Event())
    ids = await enqueue(engine, [CommandRequest(m.id, mp.TopUp(1, 200), "system:topup") for m in meters])
    async with running_gateway(engine, fleet, network=network) as gw:
        await gw.wait_for(lambda: network.held == 4)
        # a send result the database refuses (its command is not there): it travels with the good ones
        ghost = Claimed(
            10**9, meters[0].id, "top_up", CommandState.SENDING, 1, b"x", 1, meters[0].msisdn, None, None, None
        )
        network.hold.set()
        gw.dispatcher._recorder.add_result(SendResult(ghost, 1, [(b"x", False)], ["ghost-1"], [0], None, gw.clock()))
        await gw.wait_final(ids)
        async with engine.connect() as conn:
            raised = (await conn.execute(select(alarms.c.kind, alarms.c.meter_id, alarms.c.detail))).all()
    assert [(k, m) for k, m, _d in raised] == [("recording_failed", meters[0].id)]
    assert str(10**9) in raised[0][2]
    for m in meters:
        assert fleet.meter(m.msisdn).credit_minor == 200


async def test_a_receipt_that_overtakes_a_slow_record_of_its_submit_is_matched(engine: AsyncEngine) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    # the receipt comes before the submit_sm_resp, and that response is late by more than the parking time
    network = ScriptedNetwork(fleet, receipt_before_resp=True, auto_replies=False, hold=asyncio.Event())
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.Ping(), "operator:x")])
    async with running_gateway(engine, fleet, network=network, receipt_park_s=0.2) as gw:
        await gw.wait_for(lambda: network.held == 1)
        await asyncio.sleep(1.0)  # five times the parking time
        network.hold.set()
        view = await gw.wait_view(command_id, lambda v: v.state is CommandState.DELIVERED)
    assert [(p.attempt, p.state) for p in view.parts] == [(1, "1:0")]
    assert gw.dispatcher.stats.receipts_unknown == 0


async def test_a_live_dispatcher_renews_the_leases_of_its_slow_sends(engine: AsyncEngine) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    clock = Clock()
    network = ScriptedNetwork(fleet, hold=asyncio.Event())
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.TopUp(1, 400), "system:topup")])
    async with running_gateway(engine, fleet, network=network, clock=clock, lease_s=0.6) as gw:
        await gw.wait_for(lambda: network.held == 1)
        for _ in range(12):  # 2.4 s of the clock, four leases, while the SMSC sits on the response
            clock.advance(0.2)
            await asyncio.sleep(0.3)
        assert network.held == 1  # never claimed again: the lease was renewed
        network.hold.set()
        view = await gw.wait_view(command_id, lambda v: v.state is CommandState.PROCESSED)
    assert view.attempts == 1
    assert len(network.submitted) == 1


async def test_a_stop_asked_before_the_tasks_first_run_is_kept(engine: AsyncEngine) -> None:
    """A shutdown right after the start stops the dispatcher and the inbound path before their tasks first ran;
    each run returns instead of running on (the shutdown would wait for it for ever)."""
    dispatcher = Dispatcher(engine, None)
    inbound = Inbound(engine, KeyRing(MASTER_KEY), "7220")
    tasks = [asyncio.create_task(dispatcher.run()), asyncio.create_task(inbound.run())]
    dispatcher.stop()
    inbound.stop()
    async with asyncio.timeout(10):
        await asyncio.gather(*tasks)


async def test_a_receipt_or_sms_handed_in_after_the_gateway_stopped_is_refused_at_once_not_held(
    engine: AsyncEngine,
) -> None:
    """Receipts still arrive between the dispatcher's stop and the transport's unbind. Held, they would never be
    recorded, and the transport's close would wait out its handler timeout (30 s) for them: refused at once, the
    SMSC delivers them again, to the next start or to another gateway."""
    (meter,) = await seed(engine, 1)
    async with running_gateway(engine, fleet_of([meter])) as gw:
        await asyncio.sleep(0.2)  # running; leaving stops the dispatcher and the inbound path, as a shutdown does
    now = datetime.now(UTC)
    receipt = gw.dispatcher.on_receipt(Receipt("m-1", ReceiptState.DELIVERED, None, now))
    sms = gw.inbound.on_sms(InboundSms(meter.msisdn, "7220", b"\x00", False, 4, now))
    for fut, part in ((receipt, "recorder"), (sms, "inbound path")):
        assert isinstance(fut, asyncio.Future)
        assert fut.done()
        error = fut.exception()
        assert isinstance(error, Stopped)
        assert error.part == part


async def test_receipts_waiting_when_the_gateway_is_cancelled_are_refused_not_left_waiting(
    engine: AsyncEngine,
) -> None:
    """A stop that outlasts its wait cancels the dispatcher, here while the recorder waits to write a batch of
    receipts. Each gets a temporary error at once (the SMSC delivers it again): left waiting, the transport's close
    would wait out its handler timeout (30 s) for them, and the process would be killed instead of stopping."""
    lock = asyncio.Lock()
    dispatcher = Dispatcher(engine, None, gate=WriteGate(True, lock))
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0.3)  # running, waiting for work
    await lock.acquire()  # the database's write lock is taken: the next batch waits for it
    now = datetime.now(UTC)
    receipts = [dispatcher.on_receipt(Receipt(f"m-{i}", ReceiptState.DELIVERED, None, now)) for i in range(3)]
    await asyncio.sleep(0.3)  # the recorder took them and waits to write them
    task.cancel()  # the stop: the dispatcher waits for its recorder ...
    await asyncio.sleep(0.3)
    task.cancel()  # ... and is cancelled again when the stop's wait runs out
    await asyncio.gather(task, return_exceptions=True)
    lock.release()
    for fut in receipts:
        assert isinstance(fut, asyncio.Future)
        assert fut.done()
        error = fut.exception()
        assert isinstance(error, Stopped)
        assert error.part == "recorder"


async def test_sms_of_a_batch_cut_off_while_it_is_written_are_refused_not_left_waiting(engine: AsyncEngine) -> None:
    """The inbound path cancelled (a stop that outlasts its wait) while it writes a batch: each SMS of that batch
    gets a temporary error (the SMSC delivers it again) instead of its deliver_sm waiting for ever, which held the
    transport's close for its handler timeout (30 s) and got the process killed."""
    lock = asyncio.Lock()
    inbound = Inbound(engine, KeyRing(MASTER_KEY), "7220", gate=WriteGate(True, lock))
    task = asyncio.create_task(inbound.run())
    await asyncio.sleep(0.1)
    await lock.acquire()  # the database's write lock is taken: the batch waits for it, under way
    now = datetime.now(UTC)
    waiting = [inbound.on_sms(InboundSms(f"+3736900000{i}", "7220", b"hello", False, 0, now)) for i in range(3)]
    await asyncio.sleep(0.3)  # taken from the queue into a batch that waits to be written
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lock.release()
    for fut in waiting:
        assert isinstance(fut, asyncio.Future)
        assert fut.done()
        assert isinstance(fut.exception(), Stopped)


async def test_a_receipt_held_for_its_part_survives_a_restart_and_is_matched_when_the_part_is_recorded(
    engine: AsyncEngine,
) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    early = ScriptedNetwork(fleet, auto_receipts=False, auto_replies=False)
    async with running_gateway(engine, fleet, network=early) as gw:
        await early.receipt("3e8")  # the first id the next network issues: its part is not recorded anywhere yet
        async with engine.connect() as conn:  # kept in the database before the SMSC was answered
            held = (await conn.execute(select(held_receipts.c.message_id, held_receipts.c.state))).all()
        assert [tuple(h) for h in held] == [("3e8", "DELIVRD")]
    assert gw.dispatcher.stats.receipts_unknown == 0  # stopping keeps it, does not drop it
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.TopUp(1, 250), "system:topup")])
    later = ScriptedNetwork(fleet, auto_receipts=False, auto_replies=False)
    async with running_gateway(engine, fleet, network=later) as gw:  # a restart: nothing of it in memory
        view = await gw.wait_view(command_id, lambda v: v.state is CommandState.DELIVERED)
        stats = gw.dispatcher.stats
    assert [s.message_id for s in later.submitted] == ["3e8"]
    assert [(p.attempt, p.message_id, p.state) for p in view.parts] == [(1, "3e8", "1:0")]
    assert stats.receipts_unknown == 0
    async with engine.connect() as conn:
        assert (await conn.execute(select(held_receipts.c.message_id))).all() == []
