"""The MDM export's formats: a CSV of readings, and the IEC 61968-9 MeterReadings XML (one MeterReading
per meter: register Readings and the load profile as an IntervalBlock, each with its CIM ReadingType and
ReadingQualities), valid against the schema shipped beside this module (`mdm_meter_readings.xsd`).

Pure formatting: values in, rows and XML elements out; the writers take an open binary file.

ReadingType codes are the 18 dot-separated fields of IEC 61968-9 Annex C (macroPeriod . aggregate .
measuringPeriod . accumulation . flowDirection . commodity . measurementKind . … . multiplier . unit . …).
Quality codes are `system.category.index` (IEC 61968-9 Annex D): 1.0.0 valid; 1.5.x failed a validation
(257 gap, 258 register backwards, 259 spike); 1.8.0 estimated.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from lxml import etree

NAMESPACE = "http://iec.ch/TC57/2011/MeterReadings#"
XSD = Path(__file__).with_name("mdm_meter_readings.xsd")

# register → (CIM ReadingType, unit as the CSV says it)
READING_TYPES: dict[str, tuple[str, str]] = {
    "import_wh": ("0.0.0.1.1.1.12.0.0.0.0.0.0.0.0.0.72.0", "Wh"),  # bulk, forward, energy, Wh
    "export_wh": ("0.0.0.1.19.1.12.0.0.0.0.0.0.0.0.0.72.0", "Wh"),  # bulk, reverse
    "t1_wh": ("0.0.0.1.1.1.12.0.0.0.0.1.0.0.0.0.72.0", "Wh"),  # tou 1
    "t2_wh": ("0.0.0.1.1.1.12.0.0.0.0.2.0.0.0.0.72.0", "Wh"),
    "t3_wh": ("0.0.0.1.1.1.12.0.0.0.0.3.0.0.0.0.72.0", "Wh"),
    "t4_wh": ("0.0.0.1.1.1.12.0.0.0.0.4.0.0.0.0.72.0", "Wh"),
    "power_w": ("0.0.0.6.1.1.37.0.0.0.0.0.0.0.0.0.38.0", "W"),  # indicating, forward, power, W
    "voltage_dv": ("0.0.0.6.0.1.54.0.0.0.0.0.0.0.0.-1.29.0", "dV"),  # indicating, voltage, deci-volts
    "profile_wh": ("0.0.7.4.1.1.12.0.0.0.0.0.0.0.0.0.72.0", "Wh"),  # 60-minute, delta data, forward energy
    "volume_l": ("0.0.0.1.1.9.58.0.0.0.0.0.0.0.0.-3.42.0", "l"),  # bulk, water, volume, litres
    "heat_wh": ("0.0.0.1.1.12.12.0.0.0.0.0.0.0.0.0.72.0", "Wh"),  # bulk, forward, heating fluid, energy, Wh
}
OTHER_READING_TYPE = "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"
QUALITY = {"ok": "1.0.0", "gap": "1.5.257", "backwards": "1.5.258", "spike": "1.5.259", "estimated": "1.8.0"}

CSV_HEADER = (
    "meter_code",
    "subscriber_code",
    "register",
    "reading_type",
    "read_at",
    "value",
    "unit",
    "source",
    "status",
)


@dataclass(frozen=True, slots=True)
class ExportReading:
    register: str
    read_at: datetime
    value: int
    source: str
    status: str


@dataclass(frozen=True, slots=True)
class MeterDay:
    """One meter's readings of the exported day (its load profile among them, register `profile_wh`)."""

    meter_code: str
    subscriber_code: str | None
    readings: Sequence[ExportReading]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _reading_type(register: str) -> str:
    return READING_TYPES.get(register, (OTHER_READING_TYPE, ""))[0]


def _csv_rows(meter: MeterDay) -> list[list[Any]]:
    return [
        [
            meter.meter_code,
            meter.subscriber_code or "",
            r.register,
            _reading_type(r.register),
            _iso(r.read_at),
            r.value,
            READING_TYPES.get(r.register, ("", ""))[1],
            r.source,
            r.status,
        ]
        for r in meter.readings
    ]


def write_csv(out: IO[bytes], meters: Sequence[MeterDay], *, header: bool) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if header:
        writer.writerow(CSV_HEADER)
    for meter in meters:
        writer.writerows(_csv_rows(meter))
    out.write(text.getvalue().encode("utf-8"))


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NAMESPACE}}}{tag}", attrib)
    if text is not None:
        element.text = text
    return element


def _quality(parent: etree._Element, status: str) -> None:
    if status != "ok":
        q = _sub(parent, "ReadingQualities")
        _sub(q, "ReadingQualityType", ref=QUALITY.get(status, "1.5.0"))


def meter_reading(meter: MeterDay, start: datetime, end: datetime) -> etree._Element:
    """One MeterReading element: the meter, its usage point (the subscriber), its register readings and its
    load profile as an interval block."""
    element = etree.Element(f"{{{NAMESPACE}}}MeterReading", nsmap={None: NAMESPACE})  # type: ignore[dict-item]
    interval = _sub(element, "valuesInterval")
    _sub(interval, "end", _iso(end))
    _sub(interval, "start", _iso(start))
    device = _sub(element, "Meter")
    _sub(device, "mRID", meter.meter_code)
    if meter.subscriber_code:
        point = _sub(element, "UsagePoint")
        _sub(point, "mRID", meter.subscriber_code)
    profile = [r for r in meter.readings if r.register == "profile_wh"]
    for r in meter.readings:
        if r.register == "profile_wh":
            continue
        reading = _sub(element, "Readings")
        _sub(reading, "source", r.source)
        _sub(reading, "timeStamp", _iso(r.read_at))
        _sub(reading, "value", str(r.value))
        _quality(reading, r.status)
        _sub(reading, "ReadingType", ref=_reading_type(r.register))
    if profile:
        block = _sub(element, "IntervalBlocks")
        for r in profile:
            point = _sub(block, "IntervalReadings")
            _sub(point, "timeStamp", _iso(r.read_at))
            _sub(point, "value", str(r.value))
            _quality(point, r.status)
        _sub(block, "ReadingType", ref=_reading_type("profile_wh"))
    return element


@contextmanager
def xml_document(out: IO[bytes]) -> Iterator[Any]:
    """An incremental MeterReadings document on `out`: write one MeterReading element at a time
    (`doc.write(element)`), so a day of a large fleet never sits in memory whole."""
    with etree.xmlfile(out, encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element(f"{{{NAMESPACE}}}MeterReadings", nsmap={None: NAMESPACE}):
            yield xf


def validate(path: Path) -> list[str]:
    """The schema's complaints about the XML file at `path` (none: it is valid)."""
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    document = etree.parse(str(path))
    if schema.validate(document):
        return []
    return [f"line {e.line}: {e.message}" for e in list(schema.error_log)]  # type: ignore[call-overload]
