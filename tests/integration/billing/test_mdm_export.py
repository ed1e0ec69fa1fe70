"""The daily MDM export on both databases: one local day's readings as CSV and as IEC 61968-9 MeterReadings
XML that validates against the shipped XSD (lxml), and the scheduled job that exports each finished day
once and catches up after a pause."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import etree
from sqlalchemy import insert

from billing.mdm import NAMESPACE, QUALITY, READING_TYPES, validate
from billing.mdm_export import export_day, export_finished_days
from store.schema.commands import readings
from store.uow import UnitOfWork
from tests.integration.billing.conftest import NOW, meter_code, new_subscriber

TZ = ZoneInfo("Europe/Chisinau")  # UTC+2 in March
NS = {"m": NAMESPACE}


async def _seed(uow: UnitOfWork) -> tuple[int, int]:
    _, m1 = await new_subscriber(uow, "640100100010001", meter=1)
    _, m2 = await new_subscriber(uow, "640100200010001", meter=2)
    assert m1 is not None
    assert m2 is not None
    day = datetime(2026, 3, 2, tzinfo=TZ)
    rows = [
        (m1.id, "import_wh", day - timedelta(minutes=1), 900, "meter_report", "ok"),  # the evening before
        (m1.id, "import_wh", day, 1_000, "meter_report", "ok"),
        (m1.id, "import_wh", day + timedelta(hours=12), 800, "manual", "backwards"),
        (m1.id, "voltage_dv", day + timedelta(hours=12), 2_301, "read_request", "ok"),
        (m1.id, "profile_wh", day + timedelta(hours=1), 120, "read_request", "ok"),
        (m1.id, "profile_wh", day + timedelta(hours=2), 130, "read_request", "ok"),
        (m2.id, "import_wh", day + timedelta(hours=23, minutes=59), 5_000, "import", "ok"),
        (m2.id, "import_wh", day + timedelta(days=1), 5_100, "meter_report", "ok"),  # the next day
    ]
    async with uow.begin() as conn:
        await conn.execute(
            insert(readings),
            [
                {
                    "meter_id": m,
                    "register": g,
                    "read_at": at.astimezone(UTC),
                    "value": v,
                    "source": src,
                    "status": st,
                    "received_at": NOW,
                }
                for m, g, at, v, src, st in rows
            ],
        )
    return m1.id, m2.id


async def test_a_day_exports_as_csv_and_as_valid_meter_readings_xml(
    uow: UnitOfWork, streets: None, tmp_path: Path
) -> None:
    await _seed(uow)
    files = await export_day(uow, date(2026, 3, 2), TZ, tmp_path)
    assert (files.meters, files.readings) == (2, 6)
    rows = list(csv.DictReader(files.csv.read_text(encoding="utf-8").splitlines()))
    assert [(r["meter_code"], r["register"], r["value"], r["status"]) for r in rows] == [
        (meter_code(1), "import_wh", "1000", "ok"),
        (meter_code(1), "import_wh", "800", "backwards"),
        (meter_code(1), "profile_wh", "120", "ok"),
        (meter_code(1), "profile_wh", "130", "ok"),
        (meter_code(1), "voltage_dv", "2301", "ok"),
        (meter_code(2), "import_wh", "5000", "ok"),
    ]
    assert rows[0]["read_at"] == "2026-03-01T22:00:00Z"
    assert rows[0]["reading_type"] == READING_TYPES["import_wh"][0]
    assert rows[-1]["subscriber_code"] == "640100200010001"

    assert validate(files.xml) == []
    doc = etree.parse(str(files.xml))
    first, second = doc.findall("m:MeterReading", NS)
    assert first.findtext("m:Meter/m:mRID", namespaces=NS) == meter_code(1)
    assert first.findtext("m:UsagePoint/m:mRID", namespaces=NS) == "640100100010001"
    assert len(first.findall("m:Readings", NS)) == 3
    assert [v.text for v in first.findall("m:IntervalBlocks/m:IntervalReadings/m:value", NS)] == ["120", "130"]
    qualities = [q.get("ref") for q in first.findall("m:Readings/m:ReadingQualities/m:ReadingQualityType", NS)]
    assert qualities == [QUALITY["backwards"]]
    assert second.findtext("m:Readings/m:timeStamp", namespaces=NS) == "2026-03-02T21:59:00Z"


async def test_the_schema_refuses_a_document_that_does_not_follow_the_shape(
    uow: UnitOfWork, streets: None, tmp_path: Path
) -> None:
    await _seed(uow)
    files = await export_day(uow, date(2026, 3, 2), TZ, tmp_path)
    doc = etree.parse(str(files.xml))
    reading = doc.find("m:MeterReading/m:Readings", NS)
    assert reading is not None
    reading.remove(reading.find("m:ReadingType", NS))  # a reading that does not say what it measures
    broken = tmp_path / "broken.xml"
    doc.write(str(broken))
    assert validate(broken) != []


async def test_the_job_exports_each_finished_day_once_and_catches_up(
    uow: UnitOfWork, streets: None, tmp_path: Path
) -> None:
    await _seed(uow)
    first_run = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)  # 08:00 local: 2 March is finished
    (files,) = await export_finished_days(uow, TZ, tmp_path, first_run)
    assert files.day == date(2026, 3, 2)
    assert files.readings == 6
    assert await export_finished_days(uow, TZ, tmp_path, first_run + timedelta(hours=1)) == []
    later = await export_finished_days(uow, TZ, tmp_path, first_run + timedelta(days=3))
    assert [f.day for f in later] == [date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)]
    assert [f.readings for f in later] == [1, 0, 0]
    assert all(validate(f.xml) == [] for f in later)
    names = sorted(p.name for p in await asyncio.to_thread(lambda: list(tmp_path.iterdir())))
    assert names[0] == "readings-2026-03-02.csv"
    assert not [n for n in names if n.endswith(".part")]
