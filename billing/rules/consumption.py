"""Consumption from cumulative register readings: hourly, daily and monthly buckets in the utility's time
zone. Pure.

The energy between two consecutive readings is counted in the bucket of the later reading (meters read on
the bucket boundaries, so the attribution is exact there). A register that goes backwards (a replaced or
reset meter) contributes nothing for that step.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime, tzinfo


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
