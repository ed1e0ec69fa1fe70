"""The daily consumption pre-aggregate on both databases: the watermarked job takes in new readings, spreads
use over the utility's local days, recomputes what a late reading changes, estimates silent meters from
the normative consumption (replaced when the reading comes), and sums across a meter replacement by street."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select

from billing import meter_registry
from billing.consumption_daily import aggregate_consumption, consumption_by, consumption_with_totals
from billing.meter_readings import Group
from store.schema.commands import readings
from store.schema.consumption import consumption_daily, job_watermarks
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, meter_code, new_subscriber

TZ = ZoneInfo("Europe/Chisinau")  # UTC+2 in March


def local_midnight(day: int) -> datetime:
    return datetime(2026, 3, day, tzinfo=TZ).astimezone(UTC)


async def _read(uow: UnitOfWork, meter_id: int, *points: tuple[datetime, int], received_at: datetime = NOW) -> None:
    async with uow.begin() as conn:
        await conn.execute(
            insert(readings),
            [
                {"meter_id": meter_id, "register": "import_wh", "read_at": at, "value": v, "received_at": received_at}
                for at, v in points
            ],
        )


async def _days(uow: UnitOfWork, meter_id: int) -> dict[str, tuple[int, int, int]]:
    d = consumption_daily.c
    async with uow.connect() as conn:
        rows = await conn.execute(
            select(d.day, d.quantity, d.readings, d.estimated).where(d.meter_id == meter_id).order_by(d.day)
        )
        return {r.day.isoformat(): (int(r.quantity), int(r.readings), int(r.estimated)) for r in rows}


async def test_the_job_aggregates_by_local_day_estimates_and_recomputes(uow: UnitOfWork, streets: None) -> None:
    _, m1 = await new_subscriber(uow, "640100100010001", meter=1, normative_wh_month=152_083)
    _, m2 = await new_subscriber(uow, "640100200010001", meter=2)
    assert m1 is not None
    assert m2 is not None
    await _read(uow, m1.id, (local_midnight(2), 1_000), (local_midnight(3), 6_000))
    await _read(uow, m2.id, (local_midnight(2), 50_000), (local_midnight(3), 52_000))
    async with uow.begin() as conn:
        m3 = await meter_registry.replace_meter(
            conn,
            OPERATOR,
            m2.id,
            meter_registry.NewMeter(code=meter_code(3), msisdn="37369000003"),
            master_key=MASTER_KEY,
            now=NOW,
        )
    await _read(uow, m3.id, (local_midnight(3), 0), (local_midnight(4), 300))

    now = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    report = await aggregate_consumption(uow, TZ, now)
    assert (report.readings, report.series) == (6, 3)
    assert await _days(uow, m1.id) == {
        "2026-03-02": (5_000, 1, 0),
        "2026-03-03": (0, 1, 0),
        "2026-03-04": (4_999, 0, 1),  # estimated: silent since, normative 152,083 Wh a month
    }
    assert (await aggregate_consumption(uow, TZ, now)).readings == 0  # the watermark moved

    later = now + timedelta(minutes=5)
    await _read(uow, m1.id, (local_midnight(5), 16_000), received_at=now)
    assert (await aggregate_consumption(uow, TZ, later)).readings == 1
    days = await _days(uow, m1.id)
    assert days["2026-03-03"] == (5_000, 1, 0)
    assert days["2026-03-04"] == (5_000, 0, 0)  # the estimate gave way to what was measured
    assert days["2026-03-05"] == (0, 1, 0)

    async with uow.connect() as conn:
        position = await conn.scalar(select(job_watermarks.c.position))
        assert position == await conn.scalar(select(readings.c.id).order_by(readings.c.id.desc()).limit(1))
        streets, total = await consumption_by(conn, "street", Group(), date(2026, 3, 1), date(2026, 3, 31))
        assert total == 2
        assert [(s["key"], s["quantity"], s["estimated"]) for s in streets] == [
            ("64-01-001", 15_000, 0),
            ("64-01-002", 2_300, 0),  # the replaced meter and its successor, each its own register
        ]
        _, monthly = await consumption_with_totals(
            conn, "street", Group(street="002"), date(2026, 3, 1), date(2026, 3, 31), monthly=True
        )
        assert monthly == [{"period": "2026-03", "quantity": 2_300, "estimated": 0}]
        by_meter, _ = await consumption_by(
            conn, "meter", Group(building="0001", street="002"), date(2026, 3, 1), date(2026, 3, 31)
        )
        assert {m["key"]: m["quantity"] for m in by_meter} == {str(m2.id): 2_000, str(m3.id): 300}


async def test_readings_younger_than_the_settling_time_wait_for_the_next_run(uow: UnitOfWork, streets: None) -> None:
    _, m1 = await new_subscriber(uow, meter=1)
    assert m1 is not None
    now = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    await _read(uow, m1.id, (local_midnight(2), 1_000), (local_midnight(3), 2_000), received_at=now)
    assert (await aggregate_consumption(uow, TZ, now)).readings == 0
    assert (await aggregate_consumption(uow, TZ, now + timedelta(minutes=1))).readings == 2


async def test_the_readings_meters_send_are_validated_as_they_are_taken_in(uow: UnitOfWork, streets: None) -> None:
    _, meter = await new_subscriber(uow, meter=1)
    assert meter is not None
    day = timedelta(days=1)
    start = local_midnight(1) - 10 * day
    steady = [(start + i * day, 100_000 + i * 4_000) for i in range(8)]  # 4 kWh a day
    await _read(uow, meter.id, *steady)
    await _read(
        uow,
        meter.id,
        (start + 8 * day, 200_000),  # 68 kWh in a day: a spike
        (start + 9 * day, 150_000),  # the register went down: backwards
        (start + 13 * day, 216_000),  # four days of silence: a gap
        received_at=NOW,
    )
    async with uow.begin() as conn:  # a reading typed in keeps the status it was stored with
        await conn.execute(
            insert(readings).values(
                meter_id=meter.id,
                register="import_wh",
                read_at=start + 14 * day,
                value=10,
                received_at=NOW,
                source="manual",
                status="ok",
            )
        )
    report = await aggregate_consumption(uow, TZ, NOW + timedelta(minutes=5))
    assert report.flagged == {"spike": 1, "backwards": 1, "gap": 1}
    r = readings.c
    async with uow.connect() as conn:
        rows = await conn.execute(
            select(r.read_at, r.status, r.source).where(r.meter_id == meter.id).order_by(r.read_at)
        )
        statuses = [(row.status, row.source) for row in rows]
    assert statuses[:8] == [("ok", "meter_report")] * 8
    assert [s for s, _ in statuses[8:11]] == ["spike", "backwards", "gap"]
    assert statuses[11] == ("ok", "manual")
