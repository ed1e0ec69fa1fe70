"""Consumption from cumulative register readings: hourly, daily and monthly buckets in the utility's time
zone. Pure.

The energy between two consecutive readings is counted in the bucket of the later reading (meters read on
the bucket boundaries, so the attribution is exact there). A register that goes backwards (a replaced or
reset meter) contributes nothing for that step.

For the daily pre-aggregate (`daily_quantities`) the energy between two readings is instead spread over
the local days between them in proportion to time, so a gap's use lands on the days it was used; days a
meter says nothing about can be estimated from the subscriber's normative consumption (`estimate_days`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo


class Granularity(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


def bucket_start(at: datetime, granularity: Granularity, tz: tzinfo) -> datetime:
    """The local start of the bucket holding `at`, as an aware datetime in `tz`."""
    local = at.astimezone(tz)
    if granularity is Granularity.HOUR:
        return local.replace(minute=0, second=0, microsecond=0)
    if granularity is Granularity.DAY:
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def consumption_buckets(
    readings: Iterable[tuple[datetime, int]], granularity: Granularity, tz: tzinfo
) -> dict[datetime, int]:
    """{bucket start: Wh} from (read_at, cumulative Wh) pairs of ONE register of ONE meter."""
    out: dict[datetime, int] = {}
    previous: int | None = None
    for at, value in sorted(readings):
        if previous is not None:
            delta = value - previous
            if delta > 0:
                key = bucket_start(at, granularity, tz)
                out[key] = out.get(key, 0) + delta
        previous = value
    return out


def add_buckets(*series: dict[datetime, int]) -> dict[datetime, int]:
    """Sum several meters' buckets (a building, a transformer)."""
    out: dict[datetime, int] = {}
    for s in series:
        for k, v in s.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class DayQuantity:
    quantity: int  # the register's increase over the local day (Wh, litres)
    readings: int  # readings taken in that day
    estimated: bool = False


def _local_midnight_after(at: datetime, tz: tzinfo) -> datetime:
    local = at.astimezone(tz)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)


def spread_over_days(start: datetime, end: datetime, quantity: int, tz: tzinfo) -> dict[date, int]:
    """`quantity` used between two readings, apportioned to the local days of [start, end) in proportion to
    the time in each (largest remainder: the parts add up to `quantity` exactly)."""
    if end <= start or quantity <= 0:
        return {end.astimezone(tz).date(): max(quantity, 0)} if quantity > 0 else {}
    spans: list[tuple[date, int]] = []  # (local day, microseconds of [start, end) in it)
    at = start
    while at < end:
        nxt = min(_local_midnight_after(at, tz), end)
        spans.append((at.astimezone(tz).date(), (nxt - at) // timedelta(microseconds=1)))
        at = nxt
    total = sum(s for _, s in spans)
    parts = [quantity * s // total for _, s in spans]
    order = sorted(range(len(spans)), key=lambda i: quantity * spans[i][1] % total, reverse=True)
    for i in order[: quantity - sum(parts)]:
        parts[i] += 1
    out: dict[date, int] = {}
    for (day, _), part in zip(spans, parts, strict=True):
        out[day] = out.get(day, 0) + part
    return out


def daily_quantities(readings: Iterable[tuple[datetime, int]], tz: tzinfo) -> dict[date, DayQuantity]:
    """{local day: DayQuantity} from (read_at, cumulative value) pairs of ONE register of ONE meter: what was
    used between two consecutive readings is spread over the days between them; a register that goes
    backwards (a reset meter) contributes nothing for that step. Days with readings and no use are 0."""
    quantities: dict[date, int] = {}
    counts: dict[date, int] = {}
    previous: tuple[datetime, int] | None = None
    for at, value in sorted(readings):
        day = at.astimezone(tz).date()
        counts[day] = counts.get(day, 0) + 1
        quantities.setdefault(day, 0)
        if previous is not None and value > previous[1]:
            for d, part in spread_over_days(previous[0], at, value - previous[1], tz).items():
                quantities[d] = quantities.get(d, 0) + part
        previous = (at, value)
    return {d: DayQuantity(q, counts.get(d, 0)) for d, q in sorted(quantities.items())}


def normative_per_day(normative_per_month: int) -> int:
    """A subscriber's normative consumption (per month) as a day's estimate: a twelfth of a year, by day."""
    return normative_per_month * 12 // 365


def estimate_days(first: date, last: date, normative_per_month: int | None) -> dict[date, DayQuantity]:
    """Estimated days [first, last] for a meter that sent nothing for them, from the normative consumption."""
    if normative_per_month is None or normative_per_month <= 0 or last < first:
        return {}
    per_day = normative_per_day(normative_per_month)
    return {first + timedelta(days=i): DayQuantity(per_day, 0, True) for i in range((last - first).days + 1)}
