"""Arrears: penalties per overdue period, escalation reminder -> final notice -> disconnect, the friendly
calendar (no automatic disconnect at night, at weekends or on listed holidays), emergency credit and the
reconnect once the debt is cleared. Pure: the caller hands in the state, the policy and the time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from billing.errors import InvalidField
from billing.rules.money import Money


class Stage(enum.StrEnum):
    NONE = "none"
    REMINDER = "reminder"
    FINAL = "final"
    DISCONNECT = "disconnect"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Stage.NONE: 0, Stage.REMINDER: 1, Stage.FINAL: 2, Stage.DISCONNECT: 3}


@dataclass(frozen=True, slots=True)
class PenaltyRule:
    """Per full overdue period: `fixed_minor` plus `percent_bp`/10000 of what is owed, at most `max_periods`."""

    percent_bp: int = 0
    fixed_minor: int = 0
    period_days: int = 30
    max_periods: int = 12

    def __post_init__(self) -> None:
        if not 0 <= self.percent_bp <= 10000:
            raise InvalidField("penalty.percent_bp", "0..10000")
        if self.fixed_minor < 0 or self.period_days < 1 or self.max_periods < 0:
            raise InvalidField("penalty", "fixed_minor >= 0, period_days >= 1, max_periods >= 0")

    def amount(self, owed: Money) -> Money:
        return Money(self.fixed_minor, owed.currency) + owed.share_bp(self.percent_bp)


@dataclass(frozen=True, slots=True)
class FriendlyCalendar:
    """When an automatic disconnect is allowed. Night runs from `night_start_min` to `night_end_min`
    (minutes of the local day, wrapping midnight; equal = no night). Weekdays: 0 Monday .. 6 Sunday."""

    tz: tzinfo = UTC
    night_start_min: int = 18 * 60
    night_end_min: int = 8 * 60
    weekend_days: frozenset[int] = frozenset({5, 6})
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        for name in ("night_start_min", "night_end_min"):
            if not 0 <= getattr(self, name) < 1440:
                raise InvalidField(name, "a minute of the day, 0..1439")

    def why_not(self, now: datetime) -> str | None:
        """None when a disconnect is allowed at `now`, else the reason it is not."""
        local = now.astimezone(self.tz)
        if local.date() in self.holidays:
            return "holiday"
        if local.weekday() in self.weekend_days:
            return "weekend"
        minute = local.hour * 60 + local.minute
        start, end = self.night_start_min, self.night_end_min
        if start != end and (
            (start < end and start <= minute < end) or (start > end and (minute >= start or minute < end))
        ):
            return "night"
        return None

    def allows_disconnect(self, now: datetime) -> bool:
        return self.why_not(now) is None


@dataclass(frozen=True, slots=True)
class ArrearsPolicy:
    min_debt_minor: int = 100  # smaller debts start no arrears
    reminder_after_days: int = 3
    final_after_days: int = 10
    disconnect_after_days: int = 15
    penalty: PenaltyRule = field(default_factory=PenaltyRule)
    emergency_credit_minor: int = 0  # 0: no emergency credit
    emergency_grace_days: int = 3  # emergency credit postpones a disconnect this long

    def __post_init__(self) -> None:
        if not 0 <= self.reminder_after_days <= self.final_after_days <= self.disconnect_after_days:
            raise InvalidField("arrears", "reminder <= final <= disconnect days")


@dataclass(frozen=True, slots=True)
class ArrearsState:
    owed: Money  # >= 0
    overdue_since: datetime | None = None
    stage: Stage = Stage.NONE
    penalties_applied: int = 0
    disconnected: bool = False
    emergency_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class ArrearsDecision:
    overdue_since: datetime | None
    stage: Stage
    penalties: tuple[tuple[int, Money], ...] = ()  # (period number from 1, amount)
    notice: Stage | None = None  # the stage to notify now
    disconnect: bool = False
    reconnect: bool = False
    deferred: str | None = None  # why a due disconnect waits: night | weekend | holiday | emergency_credit

    def penalties_applied(self, state: ArrearsState) -> int:
        return self.penalties[-1][0] if self.penalties else (state.penalties_applied if self.overdue_since else 0)

    def changed(self, state: ArrearsState) -> bool:
        return (
            self.overdue_since != state.overdue_since
            or self.stage is not state.stage
            or bool(self.penalties)
            or self.disconnect
            or self.reconnect
        )


def _due_stage(policy: ArrearsPolicy, overdue: timedelta) -> Stage:
    if overdue >= timedelta(days=policy.disconnect_after_days):
        return Stage.DISCONNECT
    if overdue >= timedelta(days=policy.final_after_days):
        return Stage.FINAL
    if overdue >= timedelta(days=policy.reminder_after_days):
        return Stage.REMINDER
    return Stage.NONE


def decide(policy: ArrearsPolicy, calendar: FriendlyCalendar, state: ArrearsState, now: datetime) -> ArrearsDecision:
    """What the sweep does for one account now. Applying the same decision twice is harmless: the caller
    keys penalties by (episode, period) and notices by (episode, stage)."""
    if state.owed.minor < max(policy.min_debt_minor, 1):
        # Cleared (or too small to chase): the episode ends; a meter cut off for arrears is reconnected.
        return ArrearsDecision(None, Stage.NONE, reconnect=state.disconnected)
    since = state.overdue_since or now
    overdue = now - since
    periods_due = min(policy.penalty.max_periods, max(0, overdue // timedelta(days=policy.penalty.period_days)))
    penalties = tuple(
        (n, amount)
        for n in range(state.penalties_applied + 1, periods_due + 1)
        if (amount := policy.penalty.amount(state.owed)).is_positive()
    )
    due = _due_stage(policy, overdue)
    stage = state.stage if state.stage.rank >= due.rank else due
    disconnect = False
    deferred = None
    if due is Stage.DISCONNECT and not state.disconnected:
        if state.emergency_until is not None and now < state.emergency_until:
            deferred = "emergency_credit"
        else:
            deferred = calendar.why_not(now)
        if deferred is None:
            disconnect = True
        else:
            stage = Stage.FINAL if state.stage.rank <= Stage.FINAL.rank else state.stage
    notice = stage if stage.rank > state.stage.rank else None
    return ArrearsDecision(since, stage, penalties, notice, disconnect, False, deferred)


def emergency_credit_allowed(policy: ArrearsPolicy, state: ArrearsState, now: datetime) -> bool:
    """Emergency credit: offered once per arrears episode, when the policy has it."""
    return policy.emergency_credit_minor > 0 and state.emergency_until is None


def low_credit(credit_minor: int, threshold_minor: int) -> bool:
    return credit_minor <= threshold_minor


def next_step(policy: ArrearsPolicy, state: ArrearsState) -> tuple[Stage, datetime] | None:
    """The next arrears stage after the one reached and when it falls due; None when none follows (no
    overdue debt, or disconnected already). A disconnect may then wait for friendly hours."""
    if state.overdue_since is None or state.disconnected or state.owed.minor < max(policy.min_debt_minor, 1):
        return None
    after = {
        Stage.REMINDER: policy.reminder_after_days,
        Stage.FINAL: policy.final_after_days,
        Stage.DISCONNECT: policy.disconnect_after_days,
    }
    for stage, days in after.items():
        if stage.rank > state.stage.rank:
            return stage, state.overdue_since + timedelta(days=days)
    return None
