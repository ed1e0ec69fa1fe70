"""Meter replies on both databases: what is accepted, what becomes a wrong SMS and why, what is stored."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from gateway.events import AlarmRaised, BalanceReported, ReadingReceived
from gateway.inbound import Inbound
from gateway.keys import KeyRing
from gateway.ports import InboundSms
from meter_protocol import reference_meter as ref
from store.schema.commands import alarms, balance_reports, meter_counters, readings, wrong_sms
from store.schema.registry import meters
from tests.integration.gateway.gateway_harness import SHORT_NUMBER, Clock
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, SeededMeter, add_meters

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
T = int(NOW.timestamp())


def uplink(
    meter: SeededMeter, message: mp.Message, counter: int, *, key: bytes | None = None, key_id: int = 0
) -> bytes:
    return mp.encode_frame(message, meter_code=meter.code, key=key or meter.key, key_id=key_id, counter=counter)


def sms(source: str, body: bytes, *, destination: str = SHORT_NUMBER, has_udh: bool = False) -> InboundSms:
    return InboundSms(source, destination, body, has_udh, 4, NOW)


@pytest.fixture
async def meter_pair(engine: AsyncEngine) -> list[SeededMeter]:
    async with engine.begin() as conn:
        return await add_meters(conn, 2, NOW)


def inbound_for(engine: AsyncEngine, events: list[object]) -> Inbound:
    async def collect(event: object) -> None:
        events.append(event)

    return Inbound(engine, KeyRing(MASTER_KEY), SHORT_NUMBER, clock=Clock(NOW), on_event=collect)  # type: ignore[arg-type]


async def wrong_rows(engine: AsyncEngine) -> list[tuple[str, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(wrong_sms.c.reason, wrong_sms.c.meter_id).order_by(wrong_sms.c.id))
        return [(r.reason, r.meter_id) for r in rows]


async def test_every_kind_of_wrong_sms_is_a_row_with_its_reason_and_nothing_crashes(
    engine: AsyncEngine, meter_pair: list[SeededMeter], caplog: pytest.LogCaptureFixture
) -> None:
    meter, other = meter_pair
    events: list[object] = []
    inbound = inbound_for(engine, events)
    report = mp.BalanceReport(T, 100, True, False, 1, 0)
    good = uplink(meter, report, 1)
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    downlink = mp.encode_frame(mp.Ping(), meter_code=meter.code, key=meter.key, key_id=0, counter=5)
    batch = [
        sms(meter.msisdn, good, destination="7999"),  # wrong_number
        sms("37300000000", good),  # unknown_sender
        sms(meter.msisdn, b"\x01\x02garbage"),  # malformed: not a frame
        sms(meter.msisdn, b"\x09\x00\x03\x01", has_udh=True),  # malformed: the UDH overruns the body
        sms(meter.msisdn, uplink(other, report, 1)),  # wrong_meter: another meter's frame from this number
        sms(meter.msisdn, downlink),  # wrong_direction
        sms(meter.msisdn, uplink(meter, report, 2, key_id=7)),  # unknown_key
        sms(meter.msisdn, tampered),  # bad_tag
        sms(meter.msisdn, uplink(meter, report, 3, key=other.key)),  # bad_tag: the wrong key
        sms(meter.msisdn, good),  # accepted
        sms(meter.msisdn, good),  # replay
        sms(meter.msisdn, uplink(meter, mp.Ack(99, 1, mp.AckResult.OK), 4)),  # unmatched_ack
    ]
    await inbound.process(batch)
    assert await wrong_rows(engine) == [
        ("wrong_number", None),
        ("unknown_sender", None),
        ("malformed", meter.id),
        ("malformed", meter.id),
        ("wrong_meter", meter.id),
        ("wrong_direction", meter.id),
        ("unknown_key", meter.id),
        ("bad_tag", meter.id),
        ("bad_tag", meter.id),
        ("replay", meter.id),
        ("unmatched_ack", meter.id),
    ]
    assert "wrong SMS from 37300000000 to 7220: unknown_sender" in caplog.text
    async with engine.connect() as conn:
        stored = (await conn.execute(select(wrong_sms.c.body).where(wrong_sms.c.reason == "unknown_sender"))).scalar()
        window = (
            await conn.execute(
                select(meter_counters.c.in_highest, meter_counters.c.in_bitmap).where(
                    meter_counters.c.meter_id == meter.id
                )
            )
        ).one()
        balances = (await conn.execute(select(balance_reports.c.credit_minor))).scalars().all()
    assert stored == good  # the SMS is kept as it came, for the operator to look at
    assert tuple(window) == (4, 0b1001)  # counters 1 and 4 accepted, in the same transaction
    assert balances == [100]
    assert [type(e) for e in events] == [BalanceReported]
    await inbound.process([sms(meter.msisdn, good)])  # a replay in a later batch too
    assert (await wrong_rows(engine))[-1] == ("replay", meter.id)


async def test_reports_are_stored_and_handed_on_and_multipart_replies_are_reassembled(
    engine: AsyncEngine, meter_pair: list[SeededMeter]
) -> None:
    meter, _ = meter_pair
    events: list[object] = []
    inbound = inbound_for(engine, events)
    profile = mp.LoadProfile(T - 96 * 900, 900, tuple(range(100, 196)))
    frame = uplink(meter, profile, 3)
    parts = mp.split_frame(frame, reference=42)
    assert len(parts) > 1
    await inbound.process([sms(meter.msisdn, p, has_udh=True) for p in reversed(parts[1:])])
    await inbound.process(
        [
            sms(meter.msisdn, parts[0], has_udh=True),
            sms(meter.msisdn, uplink(meter, mp.Readings(T, 123_456, 7, 1500, 2301), 1)),
            sms(meter.msisdn, uplink(meter, mp.EventReport(T, mp.EventKind.MAGNETIC_FIELD, 1), 2)),
            sms(meter.msisdn, uplink(meter, mp.PeriodicReport(T + 60, 123_500, 900, -50, True, True, False, 3), 4)),
        ]
    )
    async with engine.connect() as conn:
        stored = {(r.register, r.value) for r in await conn.execute(select(readings.c.register, readings.c.value))}
        alarm = (await conn.execute(select(alarms.c.kind, alarms.c.severity, alarms.c.meter_id))).one()
        balance = (await conn.execute(select(balance_reports.c.credit_minor, balance_reports.c.relay_closed))).one()
    assert {("import_wh", 123_456), ("export_wh", 7), ("power_w", 1500), ("voltage_dv", 2301)} <= stored
    assert {("profile_wh", v) for v in range(100, 196)} <= stored
    assert ("import_wh", 123_500) in stored
    assert tuple(alarm) == ("magnetic", "critical", meter.id)
    assert tuple(balance) == (-50, 1)
    assert any(isinstance(e, AlarmRaised) and e.kind == "magnetic" for e in events)
    assert sum(isinstance(e, ReadingReceived) for e in events) == 4 + 96 + 2
    assert await wrong_rows(engine) == []


async def test_replies_of_the_reference_meter_are_accepted(engine: AsyncEngine, meter_pair: list[SeededMeter]) -> None:
    meter, _ = meter_pair
    events: list[object] = []
    inbound = inbound_for(engine, events)
    state = replace(ref.new_meter(meter.code, meter.key), credit_minor=900)
    state, frames = ref.raise_event(state, mp.EventKind.COVER_OPEN, T)
    await inbound.process([sms(meter.msisdn, f) for f in frames])
    assert await wrong_rows(engine) == []
    assert any(isinstance(e, AlarmRaised) and e.kind == "cover_open" for e in events)


async def _command_at(engine: AsyncEngine, meter: SeededMeter, message: mp.Command) -> tuple[int, int]:
    from gateway.outbox import CommandRequest, enqueue_command
    from store.schema.commands import commands

    async with engine.begin() as conn:
        command_id = await enqueue_command(conn, KeyRing(MASTER_KEY), CommandRequest(meter.id, message, "test"), NOW)
        counter = (await conn.execute(select(commands.c.counter).where(commands.c.id == command_id))).scalar_one()
    return command_id, counter


async def _state_of(engine: AsyncEngine, command_id: int) -> tuple[str, str | None]:
    from store.schema.commands import commands

    async with engine.connect() as conn:
        row = (
            await conn.execute(select(commands.c.state, commands.c.result_reason).where(commands.c.id == command_id))
        ).one()
    return row.state, row.result_reason


async def test_a_duplicate_of_a_first_refusal_settles_as_rejected_and_an_xml_ack_is_read(
    engine: AsyncEngine, meter_pair: list[SeededMeter]
) -> None:
    meter, _ = meter_pair
    inbound = inbound_for(engine, [])
    refused, refused_counter = await _command_at(engine, meter, mp.Ping())
    applied, applied_counter = await _command_at(engine, meter, mp.Ping())
    # protocol §7.4/§9: duplicate + a reason means the first processing refused it
    echo = mp.Ack(refused_counter, 0x0B, mp.AckResult.DUPLICATE, mp.ReasonCode.UNKNOWN_TYPE)
    xml_ack = mp.encode_frame(
        mp.Ack(applied_counter, 0x0B, mp.AckResult.DUPLICATE),
        meter_code=meter.code,
        key=meter.key,
        key_id=0,
        counter=2,
        profile=mp.Profile.XML,
    )
    await inbound.process([sms(meter.msisdn, uplink(meter, echo, 1)), sms(meter.msisdn, xml_ack)])
    assert await _state_of(engine, refused) == ("rejected_meter", "unknown_type")
    assert await _state_of(engine, applied) == ("1:1", "duplicate")
    # a later answer for a settled command (say counter_too_old for a late copy) changes nothing
    late = mp.Ack(applied_counter, 0x0B, mp.AckResult.REJECTED, mp.ReasonCode.COUNTER_TOO_OLD)
    await inbound.process([sms(meter.msisdn, uplink(meter, late, 3))])
    assert await _state_of(engine, applied) == ("1:1", "duplicate")
    assert await wrong_rows(engine) == []


async def test_each_meter_kind_stores_its_register_under_what_it_measures(
    engine: AsyncEngine, meter_pair: list[SeededMeter]
) -> None:
    """A water meter's register lands in `volume_l` (no export register), a heat meter's in `heat_wh`; the
    consumption job turns the water meter's reports into litres of its volume register, read in m³."""
    from billing.consumption_daily import aggregate_consumption
    from billing.rules.units import unit_of
    from store.schema.consumption import consumption_daily
    from store.uow import UnitOfWork

    water, heat = meter_pair
    async with engine.begin() as conn:
        await conn.execute(meters.update().where(meters.c.id == water.id).values(kind="water"))
        await conn.execute(meters.update().where(meters.c.id == heat.id).values(kind="heat"))
    events: list[object] = []
    inbound = inbound_for(engine, events)
    day = 86_400
    await inbound.process(
        [
            sms(water.msisdn, uplink(water, mp.Readings(T - 2 * day, 40_000, 0, 0, 0), 1)),
            sms(water.msisdn, uplink(water, mp.PeriodicReport(T - day, 41_250, 0, 100, True, False, False, 0), 2)),
            sms(heat.msisdn, uplink(heat, mp.PeriodicReport(T - day, 9_000_000, 0, 100, True, False, False, 0), 1)),
        ]
    )
    async with engine.connect() as conn:
        rows = await conn.execute(select(readings.c.meter_id, readings.c.register, readings.c.value))
        stored = {(r.meter_id, r.register, r.value) for r in rows}
    assert {(water.id, "volume_l", 40_000), (water.id, "volume_l", 41_250), (heat.id, "heat_wh", 9_000_000)} <= stored
    assert not {r for r in stored if r[1] in ("import_wh", "export_wh")}
    assert {e.register for e in events if isinstance(e, ReadingReceived) and e.meter_id == water.id} >= {"volume_l"}

    await aggregate_consumption(UnitOfWork(engine), UTC, NOW + timedelta(hours=1))
    async with engine.connect() as conn:
        d = consumption_daily.c
        days = (await conn.execute(select(d.register, d.quantity).where(d.meter_id == water.id))).all()
    assert {r.register for r in days} == {"volume_l"}
    assert unit_of("water").shown(sum(int(r.quantity) for r in days)) == "1.250 m³"
