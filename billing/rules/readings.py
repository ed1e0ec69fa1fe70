"""Readings as records: where a reading came from, whether it fits the meter's history, and the CSV form
staff use for meters read by hand or by an optical probe. Pure: no I/O, no clock.

Validation looks at one register of one meter: the readings before the new one (its history, oldest
first) and the new reading. A cumulative register (energy, volume) that goes down is `backwards`; one read
after a long silence is a `gap`; one whose rate since the previous reading is many times the register's
usual rate is a `spike`. Instantaneous values (power, voltage) and load-profile intervals are not
cumulative and are always `ok` here. `estimated` is never given by validation: it marks a value the head
end made up (consumption where readings are missing).
"""

from __future__ import annotations

import csv
import enum
import io
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from itertools import pairwise

from billing.errors import InvalidField


class Source(enum.StrEnum):
    METER_REPORT = "meter_report"  # the meter reported on its own (periodic report, load profile)
    READ_REQUEST = "read_request"  # the meter answered a read request
    MANUAL = "manual"  # a person typed it in (console, API)
    IMPORT = "import"  # a CSV file of readings taken by hand or with an optical probe


class Status(enum.StrEnum):
    OK = "ok"
    GAP = "gap"
    BACKWARDS = "backwards"
    SPIKE = "spike"
    ESTIMATED = "estimated"


# Registers that are not cumulative: instantaneous values and per-interval energies.
INSTANT_REGISTERS = frozenset({"power_w", "voltage_dv", "current_ma", "frequency_mhz", "profile_wh"})
# Registers a person may enter: the cumulative ones a meter face or an optical probe shows.
ENTERABLE_REGISTERS = ("import_wh", "export_wh", "t1_wh", "t2_wh", "t3_wh", "t4_wh", "volume_l", "heat_wh")


def is_cumulative(register: str) -> bool:
    return register not in INSTANT_REGISTERS


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    max_gap: timedelta = timedelta(days=2)  # a reading further than this from the previous one is a gap
    spike_factor: int = 10  # a rate this many times the register's median rate is a spike...
    spike_min_delta: int = 1000  # ...when the step is at least this much (Wh, litres): noise is no spike
    history: int = 30  # readings of history a validation looks at


def validate(
    history: Sequence[tuple[datetime, int]], at: datetime, value: int, register: str, policy: ValidationPolicy
) -> Status:
    """The status of the reading (`at`, `value`) against the register's earlier readings (oldest first)."""
    if not is_cumulative(register):
        return Status.OK
    earlier = [(t, v) for t, v in history if t < at][-policy.history :]
    if not earlier:
        return Status.OK
    last_at, last_value = earlier[-1]
    if value < last_value:
        return Status.BACKWARDS
    if at - last_at > policy.max_gap:
        return Status.GAP
    rates = [(b - a) / (tb - ta).total_seconds() for (ta, a), (tb, b) in pairwise(earlier) if tb > ta and b >= a]
    if rates:
        usual = statistics.median(rates)
        delta = value - last_value
        rate = delta / max((at - last_at).total_seconds(), 1.0)
        if usual > 0 and delta >= policy.spike_min_delta and rate > policy.spike_factor * usual:
            return Status.SPIKE
    return Status.OK


def validate_series(
    history: Sequence[tuple[datetime, int]],
    new: Sequence[tuple[datetime, int]],
    register: str,
    policy: ValidationPolicy,
) -> list[Status]:
    """`validate` for several new readings of one register (any order): each is checked against the history
    and the new readings before it. The statuses come back in the order of `new`."""
    known = sorted(history)
    statuses: dict[int, Status] = {}
    for i in sorted(range(len(new)), key=lambda k: new[k][0]):
        at, value = new[i]
        statuses[i] = validate(known, at, value, register, policy)
        known = sorted([*known, (at, value)])
    return [statuses[i] for i in range(len(new))]


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """One reading to enter: a meter (by code), a register, the time it was read (UTC) and the value in the
    register's integer unit (Wh, litres)."""

    meter_code: str
    register: str
    read_at: datetime
    value: int
    line: int = 0  # the CSV line it came from, for reports


def parse_value(text: str, unit: str) -> int:
    """A register value as typed: `value` is already the integer unit; `kwh` and `m3` are decimals
    converted to Wh and litres."""
    try:
        number = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        raise InvalidField(unit, f"{text!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise InvalidField(unit, "must be a number of zero or more")
    scaled = number * (1000 if unit in ("kwh", "m3") else 1)
    if scaled != scaled.to_integral_value():
        raise InvalidField(unit, "has more decimals than the register keeps")
    if scaled > 10**15:
        raise InvalidField(unit, "is too large")
    return int(scaled)


def parse_time(text: str, tz: tzinfo) -> datetime:
    """An ISO time; one without an offset is local time in the utility's zone."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidField("read_at", f"{text!r} is not an ISO date and time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def check_register(register: str) -> str:
    register = register.strip() or "import_wh"
    if register not in ENTERABLE_REGISTERS:
        raise InvalidField("register", f"must be one of {', '.join(ENTERABLE_REGISTERS)}")
    return register


CSV_COLUMNS = ("meter_code", "read_at", "register", "value | kwh | m3")


def parse_readings_csv(text: str, tz: tzinfo) -> tuple[list[ReadingRow], list[tuple[int, str]]]:
    """Rows of `meter_code,read_at[,register],value` (or `kwh`, or `m3` instead of `value`); the first line
    names the columns. Returns the good rows and (line, reason) for each bad one."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    unit = next((u for u in ("value", "kwh", "m3") if u in columns), None)
    if "meter_code" not in columns or "read_at" not in columns or unit is None:
        return [], [(1, "the first line must name the columns meter_code, read_at, [register,] value (or kwh, m3)")]
    rows: list[ReadingRow] = []
    rejects: list[tuple[int, str]] = []
    for n, raw in enumerate(reader, start=2):
        record = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if isinstance(v, str)}
        if not any(record.values()):
            continue
        try:
            code = record.get("meter_code", "").replace(" ", "")
            if not code:
                raise InvalidField("meter_code", "is empty")
            rows.append(
                ReadingRow(
                    meter_code=code,
                    register=check_register(record.get("register", "")),
                    read_at=parse_time(record.get("read_at", ""), tz),
                    value=parse_value(record.get(unit, ""), unit),
                    line=n,
                )
            )
        except InvalidField as exc:
            rejects.append((n, exc.reason))
    return rows, rejects


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    out = {s.value: 0 for s in Status}
    for s in statuses:
        out[s] = out.get(s, 0) + 1
    return out
