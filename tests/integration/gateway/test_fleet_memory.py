"""The simulated fleet holds at most its capacity of meters, whatever the size of the registry: the rest are
loaded when an SMS reaches them, in the state they last reported."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.fleet import Fleet, fleet_responder, load_fleet, load_meter
from gateway.keys import KeyRing
from gateway.ports import OutboundSms
from store.schema.commands import balance_reports
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, add_meters

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_the_fleet_loads_no_more_than_its_capacity_and_the_rest_when_reached(engine: AsyncEngine) -> None:
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        seeded = await add_meters(conn, 30, NOW)
        last = seeded[-1]
        await conn.execute(
            insert(balance_reports).values(
                meter_id=last.id, reported_at=NOW, credit_minor=4_200, relay_closed=0, received_at=NOW
            )
        )
    fleet = Fleet(capacity=10)
    async with engine.connect() as conn:
        assert await load_fleet(conn, keys, fleet) == 10
    assert len(fleet) == 10
    assert last.msisdn not in fleet

    async def refresh(number: str) -> None:
        async with engine.connect() as conn:
            await load_meter(conn, keys, fleet, number)

    respond = fleet_responder(fleet, refresh=refresh)
    await respond(OutboundSms(destination=last.msisdn, body=b"\x00"))  # not a frame: no reply, but loaded
    assert last.msisdn in fleet
    assert len(fleet) == 10
    assert fleet.released == 1
    state = fleet.meter(last.msisdn)
    assert state.credit_minor == 4_200
    assert not state.relay_closed


async def test_a_number_the_registry_does_not_have_is_not_asked_for_at_every_part(engine: AsyncEngine) -> None:
    asked: list[str] = []

    async def refresh(number: str) -> None:
        asked.append(number)

    respond = fleet_responder(Fleet(capacity=5), refresh=refresh, refresh_every_s=60)
    for _ in range(3):
        assert await respond(OutboundSms(destination="37300000000", body=b"\x00")) == []
    assert asked == ["37300000000"]


async def test_a_water_meter_is_simulated_from_its_volume_register_and_reports_in_as_volume(
    engine: AsyncEngine,
) -> None:
    """The demo's water meter: the fleet picks up its volume register, and what it reports on its own comes
    in through the inbound path as `volume_l`, never as an energy register."""
    from sqlalchemy import select, update

    from gateway.inbound import Inbound
    from gateway.ports import InboundSms
    from store.schema.commands import readings
    from store.schema.registry import meters
    from tests.integration.gateway.gateway_harness import SHORT_NUMBER, Clock

    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        (water,) = await add_meters(conn, 1, NOW)
        await conn.execute(update(meters).where(meters.c.id == water.id).values(kind="water"))
        await conn.execute(
            insert(readings).values(meter_id=water.id, register="volume_l", read_at=NOW, value=120_000, received_at=NOW)
        )
    later = NOW.replace(hour=13)
    fleet = Fleet(capacity=5, clock=lambda: later)
    async with engine.connect() as conn:
        assert await load_fleet(conn, keys, fleet, report_interval_s=600) == 1
    assert fleet.meter(water.msisdn).import_ws == 120_000 * 3600
    replies = fleet.tick(3600, lambda _n, _t: 100)
    assert replies
    inbound = Inbound(engine, keys, SHORT_NUMBER, clock=Clock(later))
    await inbound.process([InboundSms(r.source, SHORT_NUMBER, r.body, r.has_udh, 4, later) for r in replies])
    async with engine.connect() as conn:
        rows = (await conn.execute(select(readings.c.register, readings.c.value).order_by(readings.c.id))).all()
    assert {r.register for r in rows} == {"volume_l", "power_w"}
    assert max(int(r.value) for r in rows if r.register == "volume_l") > 120_000
