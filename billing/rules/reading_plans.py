"""Scheduled reading, the rules: what a reading plan reads, when its runs fall due, and how fast a run may
queue its read requests so that reading never takes more than its share of the SMSC's licensed rate.
Pure: the plan, the time and the rates in, decisions out.

A run spreads its meters evenly over the plan's window (meters / window seconds a second), but never faster
than the reading budget (the licensed rate times the share the utility gives to reading; 0: no licence set,
the window alone paces the run). Several runs at once share the one budget: each pass hands out at most
`budget × seconds since the last pass`, oldest run first. A window too short for the budget stretches: the
run ends late rather than above the rate.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import meter_protocol as mp
from billing.errors import InvalidField

MINUTES_PER_DAY = 1440
PROFILE_DAYS = 7  # a weekly load-profile read asks for the last week's intervals
DEFAULT_PASS_S = 30.0  # the pace of the scheduled job; the first pass of a run hands out this much


class Items(enum.StrEnum):
    REGISTERS = "registers"  # the registers and the balance (a daily read)
    LOAD_PROFILE = "load_profile"  # the load profile since a week ago (a weekly read)

    def read_items(self) -> mp.ReadItems:
        if self is Items.LOAD_PROFILE:
            return mp.ReadItems.LOAD_PROFILE
        return mp.ReadItems.REGISTERS | mp.ReadItems.BALANCE


class Every(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class GroupKind(enum.StrEnum):
    ALL = "all"  # every active meter
    SETTLEMENT = "settlement"  # the subscribers of a settlement (code: region + settlement, e.g. 6401)
    TRANSFORMER = "transformer"  # the meters on a transformer (code: its id), its balance meter too
    TARIFF = "tariff"  # the subscribers on a tariff (code: its id)


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    items: Items
    every: Every
    weekday: int | None  # weekly: 0 Monday … 6 Sunday
    group_kind: GroupKind
    group_code: str | None
    window_start_min: int
    window_end_min: int

    @property
    def window(self) -> timedelta:
        """The window's length: end at or before start crosses midnight (equal: the whole day)."""
        minutes = (self.window_end_min - self.window_start_min) % MINUTES_PER_DAY
        return timedelta(minutes=minutes or MINUTES_PER_DAY)


def check_plan(
    *,
    name: str,
    items: str,
    every: str,
    weekday: int | None,
    group_kind: str,
    group_code: str | None,
    window_start_min: int,
    window_end_min: int,
) -> Plan:
    """The plan, or InvalidField naming the first field that is wrong."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidField("name", "1 to 100 characters")
    try:
        items_, every_, kind = Items(items), Every(every), GroupKind(group_kind)
    except ValueError as exc:
        field = "items" if items not in set(Items) else "every" if every not in set(Every) else "group_kind"
        raise InvalidField(field, str(exc)) from None
    if every_ is Every.WEEKLY and (weekday is None or not 0 <= weekday <= 6):
        raise InvalidField("weekday", "a weekly plan needs a weekday, 0 (Monday) to 6 (Sunday)")
    code = (group_code or "").strip() or None
    if kind is GroupKind.ALL:
        code = None
    elif code is None:
        raise InvalidField("group_code", f"a {kind.value} plan names its {kind.value}")
    elif kind is GroupKind.SETTLEMENT and not (len(code) == 4 and code.isdigit()):
        raise InvalidField("group_code", "a settlement is its region and settlement code, 4 digits (e.g. 6401)")
    elif kind in (GroupKind.TRANSFORMER, GroupKind.TARIFF) and not code.isdigit():
        raise InvalidField("group_code", f"the {kind.value}'s id")
    for field, minute in (("window_start_min", window_start_min), ("window_end_min", window_end_min)):
        if not 0 <= minute < MINUTES_PER_DAY:
            raise InvalidField(field, "minutes after local midnight, 0 to 1439")
    return Plan(
        name,
        items_,
        every_,
        weekday if every_ is Every.WEEKLY else None,
        kind,
        code,
        window_start_min,
        window_end_min,
    )


@dataclass(frozen=True, slots=True)
class Occasion:
    key: str  # the local day the window opened, e.g. 2026-12-03
    starts_at: datetime
    ends_at: datetime


def _window_on(plan: Plan, day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=tz) + timedelta(minutes=plan.window_start_min)
    return start, start + plan.window


def due_occasion(plan: Plan, now: datetime, tz: tzinfo) -> Occasion | None:
    """The occasion whose window holds `now` (local days; a window may begin the day before), or None."""
    today = now.astimezone(tz).date()
    for day in (today, today - timedelta(days=1)):
        if plan.every is Every.WEEKLY and day.weekday() != plan.weekday:
            continue
        start, end = _window_on(plan, day, tz)
        if start <= now < end:
            return Occasion(day.isoformat(), start, end)
    return None


def reading_budget_per_s(licensed_per_s: float, share_percent: int) -> float:
    """The read requests a second all runs together may queue: the SMSC's licensed rate times the share the
    utility gives to reading (0: no licensed rate set, no budget of its own)."""
    return licensed_per_s * share_percent / 100


def run_rate_per_s(meters: int, window: timedelta, budget_per_s: float) -> float:
    """The pace of a run: its meters evenly over the window, never above the budget (0: no budget)."""
    even = meters / max(window.total_seconds(), 1.0)
    return min(even, budget_per_s) if budget_per_s > 0 else even


def due_count(*, queued: int, rate_per_s: float, started_at: datetime, now: datetime) -> int:
    """How many more of a run's meters are due by `now` at its pace (0 pace: every one of them at once; the
    caller caps it at the meters left)."""
    if rate_per_s <= 0:
        return 10**9
    elapsed = max((now - started_at).total_seconds(), 0.0)
    return max(0, math.floor(elapsed * rate_per_s) + 1 - queued)


def pass_allowance(budget_per_s: float, since_last_pass: timedelta | None) -> int | None:
    """The read requests one pass may queue across all runs (None: no budget, no cap)."""
    if budget_per_s <= 0:
        return None
    seconds = DEFAULT_PASS_S if since_last_pass is None else min(since_last_pass.total_seconds(), DEFAULT_PASS_S)
    return max(0, math.floor(budget_per_s * max(seconds, 0.0)))


def run_ends(meters: int, starts_at: datetime, rate_per_s: float) -> datetime:
    """When the run will have queued its last meter at its pace (past the window's end when the budget
    stretches it; at once with no pace)."""
    if rate_per_s <= 0 or meters == 0:
        return starts_at
    return starts_at + timedelta(seconds=meters / rate_per_s)
