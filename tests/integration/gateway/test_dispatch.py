"""The dispatcher on both databases over a scripted network and reference meters: the four-state
handshake, multipart, failures, retries, ordering, crash recovery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from gateway.errors import InvalidPart, NotConnected, SubmitTimeout
from gateway.events import AlarmRaised, CommandSettled
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_commands, get_command
from gateway.ports import ReceiptState
from gateway.states import CommandState, RetryPolicy
from store.schema.commands import alarms, command_parts, commands
from tests.integration.gateway.gateway_harness import Clock, ScriptedNetwork, fleet_of, running_gateway
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, SeededMeter, add_meters

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
KEYS = KeyRing(MASTER_KEY)


def big_tariff(version: int = 1) -> mp.SetTariff:
    """A tariff with enough steps that its frame needs several SMS."""
    steps = tuple(mp.TariffStep(start=i * 30, price_milli_minor_per_kwh=100_000 + i) for i in range(40))
    return mp.SetTariff(version, 0, mp.TariffKind.TIME_OF_USE, 1000, steps)


async def enqueue(engine: AsyncEngine, requests: list[CommandRequest]) -> list[int]:
    async with engine.begin() as conn:
        return await enqueue_commands(conn, KEYS, requests, NOW)


async def seed(engine: AsyncEngine, count: int) -> list[SeededMeter]:
    async with engine.begin() as conn:
        return await add_meters(conn, count, NOW)


async def test_commands_walk_0_0_to_1_1_and_each_top_up_is_credited_once(engine: AsyncEngine) -> None:
    fleet_meters = await seed(engine, 20)
    fleet = fleet_of(fleet_meters)
    requests = [CommandRequest(m.id, mp.TopUp(1, 1000 + i), "system:topup") for i, m in enumerate(fleet_meters)]
    requests += [CommandRequest(m.id, big_tariff(), "operator:alice") for m in fleet_meters[:3]]
    ids = await enqueue(engine, requests)
    async with running_gateway(engine, fleet) as gw:
        await gw.wait_final(ids)
    async with engine.connect() as conn:
        views = [await get_command(conn, i) for i in ids]
    full_walks = 0
    for view in views:
        assert view.state is CommandState.PROCESSED, view
        walk = [(h.to_state, h.source) for h in view.history]
        # a meter's acknowledgement may overtake the receipts; the states still only move forward
        assert walk[:2] == [("0:0", "outbox"), ("0:1", "smsc")]
        assert walk[-1] == ("1:1", "meter")
        assert walk[2:-1] in ([], [("1:0", "receipt")])
        full_walks += len(walk) == 4
        assert view.attempts == 1
        assert view.final_at is not None
        assert all(p.message_id and p.state == "1:0" for p in view.parts)
    assert full_walks > 0
    multipart = views[-1]
    assert len(multipart.parts) > 1  # the tariff went as concatenated parts, all delivered
    assert all(p.message_id for p in multipart.parts)
    for i, m in enumerate(fleet_meters):
        assert fleet.meter(m.msisdn).credit_minor == 1000 + i
    settled = [e for e in gw.events if isinstance(e, CommandSettled)]
    assert sorted(e.command_id for e in settled) == sorted(ids)
    assert {e.state for e in settled} == {"1:1"}
    assert settled[0].credit_minor is not None
    tariff_meter = fleet.meter(fleet_meters[0].msisdn)
    assert tariff_meter.tariff is not None or tariff_meter.pending_tariff is not None


async def test_a_receipt_before_its_submit_response_still_counts(engine: AsyncEngine) -> None:
    fleet_meters = await seed(engine, 3)
    fleet = fleet_of(fleet_meters)
    network = ScriptedNetwork(fleet, receipt_before_resp=True, auto_replies=False)
    ids = await enqueue(engine, [CommandRequest(m.id, mp.Ping(), "operator:x") for m in fleet_meters])
    async with running_gateway(engine, fleet, network=network) as gw:
        await gw.wait_for(lambda: gw.dispatcher.stats.delivered == 3)
        for record in list(network.submitted):
            await network.reply(record)
        await gw.wait_final(ids)
    assert gw.dispatcher.stats.receipts_parked == 3
    async with engine.connect() as conn:
        for i in ids:
            view = await get_command(conn, i)
            assert [h.to_state for h in view.history] == ["0:0", "0:1", "1:0", "1:1"]


async def test_states_only_move_forward_late_and_duplicate_receipts_change_nothing(engine: AsyncEngine) -> None:
    fleet_meters = await seed(engine, 2)
    fleet = fleet_of(fleet_meters)
    network = ScriptedNetwork(fleet, auto_receipts=False)  # the meter's ack overtakes every receipt
    ids = await enqueue(engine, [CommandRequest(m.id, mp.TopUp(1, 500), "system:topup") for m in fleet_meters])
    async with running_gateway(engine, fleet, network=network) as gw:
        await gw.wait_final(ids)
        for record in list(network.submitted):
            await network.receipt(record.message_id)  # late
            await network.receipt(record.message_id)  # and again
        await network.receipt("ffff0001")  # never issued
        await gw.wait_for(lambda: gw.dispatcher.stats.receipts_unknown == 1 or gw.dispatcher.stats.receipts_parked)
    async with engine.connect() as conn:
        for i in ids:
            view = await get_command(conn, i)
            assert view.state is CommandState.PROCESSED
            assert [h.to_state for h in view.history] == ["0:0", "0:1", "1:1"]
            assert all(p.state == "1:0" for p in view.parts)  # the part's delivery is still recorded
    assert gw.dispatcher.stats.receipts_duplicate == 2
    assert gw.dispatcher.stats.receipts_parked == 1  # the unknown id waited for a submit that never came


async def test_an_smsc_rejection_is_final_with_its_status_and_an_alarm(engine: AsyncEngine) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    network = ScriptedNetwork(fleet, script=[0x0B])  # ESME_RINVDSTADR
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.TopUp(1, 100), "system:topup")])
    async with running_gateway(engine, fleet, network=network) as gw:
        await gw.wait_final([command_id])
    async with engine.connect() as conn:
        view = await get_command(conn, command_id)
        alarm_kinds = (await conn.execute(select(alarms.c.kind, alarms.c.command_id))).all()
    assert view.state is CommandState.REJECTED_SMSC
    assert view.smsc_status == 0x0B
    assert [(h.to_state, h.source) for h in view.history] == [("0:0", "outbox"), ("rejected_smsc", "smsc")]
    assert [(p.state, p.smsc_status) for p in view.parts] == [("rejected", 0x0B)]
    assert alarm_kinds == [("command_failed", command_id)]
    assert any(isinstance(e, AlarmRaised) for e in gw.events)
    assert fleet.meter(meter.msisdn).credit_minor == 0


async def test_throttling_and_a_lost_bind_pause_without_using_attempts(engine: AsyncEngine) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    clock = Clock()
    network = ScriptedNetwork(fleet, script=[0x58, NotConnected("dropped"), 0x14])
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.TopUp(1, 100), "system:topup")])
    async with running_gateway(engine, fleet, network=network, clock=clock) as gw:
        await gw.run_clock_until_final([command_id], step_s=2)
    async with engine.connect() as conn:
        view = await get_command(conn, command_id)
    assert view.state is CommandState.PROCESSED
    assert view.attempts == 1
    assert fleet.meter(meter.msisdn).credit_minor == 100


async def test_submit_failures_retry_with_backoff_then_fail_with_an_alarm(engine: AsyncEngine) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    clock = Clock()
    network = ScriptedNetwork(fleet, script=[SubmitTimeout(10), 0x08, SubmitTimeout(10)])
    policy = RetryPolicy(max_attempts=3, retry_base_s=30, ack_timeout_s=600)
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.TopUp(1, 100), "system:topup")])
    async with running_gateway(engine, fleet, network=network, clock=clock, policy=policy) as gw:
        # the claim counts an attempt as it begins; its failure shows as the retry planned in the history
        first = await gw.wait_view(command_id, lambda v: len(v.history) == 2)
        assert first.attempts == 1
        assert first.next_attempt_at is not None
        assert (first.next_attempt_at - clock.now).total_seconds() == 30
        clock.advance(30)
        second = await gw.wait_view(command_id, lambda v: len(v.history) == 3)
        assert second.attempts == 2
        assert second.next_attempt_at is not None
        assert (second.next_attempt_at - clock.now).total_seconds() == 60  # the backoff doubled
        clock.advance(59)
        await asyncio.sleep(0.2)
        assert len(network.script) == 1  # not yet due
        clock.advance(1)
        await gw.wait_final([command_id])
    async with engine.connect() as conn:
        view = await get_command(conn, command_id)
        alarm_count = await conn.scalar(select(func.count()).select_from(alarms))
    assert view.state is CommandState.FAILED
    assert view.attempts == 3
    assert [h.to_state for h in view.history] == ["0:0", "0:0", "0:0", "failed"]
    assert alarm_count == 1


async def test_an_undeliverable_receipt_resends_the_same_frame_and_the_meter_credits_once(engine: AsyncEngine) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    clock = Clock()
    network = ScriptedNetwork(fleet, receipt_state=ReceiptState.UNDELIVERABLE, auto_replies=False)
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.TopUp(9, 700), "system:topup")])
    async with running_gateway(engine, fleet, network=network, clock=clock) as gw:
        await gw.wait_view(command_id, lambda v: len(v.history) == 3)  # 0:0, 0:1, the retry planned
        network.receipt_state = ReceiptState.DELIVERED
        network.auto_replies = True
        clock.advance(30)
        await gw.wait_final([command_id])
    async with engine.connect() as conn:
        view = await get_command(conn, command_id)
    assert view.state is CommandState.PROCESSED
    assert [(p.attempt, p.state) for p in view.parts] == [(1, "undeliverable"), (2, "1:0")]
    assert network.submitted[0].sms.body == network.submitted[1].sms.body  # the same frame, same counter
    assert fleet.meter(meter.msisdn).credit_minor == 700


async def test_a_lost_acknowledgement_resends_and_the_duplicate_answer_settles_it(engine: AsyncEngine) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    clock = Clock()
    network = ScriptedNetwork(fleet, drop_replies=1)
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.TopUp(3, 250), "system:topup")])
    async with running_gateway(engine, fleet, network=network, clock=clock) as gw:
        await gw.wait_for(lambda: gw.dispatcher.stats.delivered == 1)
        clock.advance(600)  # the ack timeout
        await gw.wait_final([command_id])
    async with engine.connect() as conn:
        view = await get_command(conn, command_id)
    assert view.state is CommandState.PROCESSED
    assert view.result_reason == "duplicate"
    assert view.attempts == 2
    assert fleet.meter(meter.msisdn).credit_minor == 250  # credited once


async def test_a_silent_meter_times_out_after_the_last_attempt(engine: AsyncEngine) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    clock = Clock()
    network = ScriptedNetwork(fleet, auto_replies=False)
    policy = RetryPolicy(max_attempts=2, retry_base_s=30, ack_timeout_s=600)
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.Ping(), "operator:x")])
    async with running_gateway(engine, fleet, network=network, clock=clock, policy=policy) as gw:
        await gw.wait_for(lambda: gw.dispatcher.stats.delivered == 1)
        clock.advance(600)
        await gw.wait_for(lambda: len(network.submitted) == 2)
        await gw.wait_for(lambda: gw.dispatcher.stats.accepted == 2)
        clock.advance(600)
        await gw.wait_final([command_id])
    async with engine.connect() as conn:
        view = await get_command(conn, command_id)
    assert view.state is CommandState.TIMED_OUT
    assert [h.to_state for h in view.history][-1] == "timed_out"


async def test_a_dependent_command_waits_for_its_predecessor_and_is_cancelled_if_it_failed(
    engine: AsyncEngine,
) -> None:
    first, second = await seed(engine, 2)
    fleet = fleet_of([first, second])
    network = ScriptedNetwork(fleet, auto_replies=False, script=[0, 0x0B])  # 0: placeholder, replaced below
    network.script.clear()
    async with engine.begin() as conn:
        credit, failing = await enqueue_commands(
            conn,
            KEYS,
            [CommandRequest(first.id, mp.TopUp(1, 100), "x"), CommandRequest(second.id, mp.TopUp(1, 100), "x")],
            NOW,
        )
        relay_ok, relay_cancelled = await enqueue_commands(
            conn,
            KEYS,
            [
                CommandRequest(first.id, mp.RelayOn(mp.RelayReason.CREDIT), "x", depends_on_id=credit),
                CommandRequest(second.id, mp.RelayOn(mp.RelayReason.CREDIT), "x", depends_on_id=failing),
            ],
            NOW,
        )
    async with running_gateway(engine, fleet, network=network) as gw:
        await gw.wait_for(lambda: len(network.submitted) == 2)  # the two top-ups; the relays wait
        assert {s.sms.destination for s in network.submitted} == {first.msisdn, second.msisdn}
        await network.reply(next(s for s in network.submitted if s.sms.destination == first.msisdn))
        await gw.wait_final([credit])
        async with engine.begin() as conn:  # the second top-up is rejected by its meter, say
            await conn.execute(update(commands).where(commands.c.id == failing).values(state="rejected_meter"))
        await gw.wait_for(lambda: len(network.submitted) == 3)  # now the first relay goes
        await network.reply(network.submitted[2])
        await gw.wait_final([relay_ok, relay_cancelled])
    async with engine.connect() as conn:
        ok = await get_command(conn, relay_ok)
        cancelled = await get_command(conn, relay_cancelled)
    assert ok.state is CommandState.PROCESSED
    assert cancelled.state is CommandState.CANCELLED
    assert str(failing) in (cancelled.result_reason or "")
    assert cancelled.parts == ()


async def test_a_crashed_dispatchers_claims_expire_and_another_sends_them(engine: AsyncEngine) -> None:
    fleet_meters = await seed(engine, 5)
    fleet = fleet_of(fleet_meters)
    clock = Clock()
    ids = await enqueue(engine, [CommandRequest(m.id, mp.TopUp(1, 100), "x") for m in fleet_meters])
    async with running_gateway(engine, fleet, clock=clock, worker_id="dead", lease_s=60, start=False) as dead:
        claimed = await dead.dispatcher._claim(10)  # claims, then "dies" before sending anything
    assert len(claimed.commands) == 5
    async with running_gateway(engine, fleet, clock=clock, worker_id="alive", lease_s=60) as gw:
        assert (await gw.dispatcher._claim(10)).commands == []  # the leases still hold
        clock.advance(61)
        await gw.wait_final(ids)
    for m in fleet_meters:
        assert fleet.meter(m.msisdn).credit_minor == 100
    async with engine.connect() as conn:
        parts = (await conn.execute(select(command_parts.c.attempt, command_parts.c.message_id))).all()
    # the dead dispatcher's attempts show, with no message id (nothing came back); the second sent them
    assert sorted((a, m is not None) for a, m in parts) == [(1, False)] * 5 + [(2, True)] * 5


async def test_a_part_that_can_never_be_an_sms_fails_at_once(engine: AsyncEngine) -> None:
    (meter,) = await seed(engine, 1)
    fleet = fleet_of([meter])
    network = ScriptedNetwork(fleet, script=[InvalidPart("not a phone number")])
    (command_id,) = await enqueue(engine, [CommandRequest(meter.id, mp.Ping(), "operator:x")])
    async with running_gateway(engine, fleet, network=network) as gw:
        view = await gw.wait_view(command_id, lambda v: v.is_final)
    assert view.state is CommandState.FAILED
    assert "not a phone number" in (view.result_reason or "")
    assert view.attempts == 1
