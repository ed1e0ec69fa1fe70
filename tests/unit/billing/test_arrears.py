from datetime import UTC, date, datetime, timedelta

from billing.rules.arrears import ArrearsPolicy, ArrearsState, FriendlyCalendar, PenaltyRule, Stage, decide
from billing.rules.money import Money

# Tuesday 2026-03-03 10:00 UTC: a working day, daytime
TUE = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
POLICY = ArrearsPolicy(
    min_debt_minor=100,
    reminder_after_days=3,
    final_after_days=10,
    disconnect_after_days=15,
    penalty=PenaltyRule(percent_bp=100, fixed_minor=50, period_days=30, max_periods=3),
)
CAL = FriendlyCalendar(holidays=frozenset({date(2026, 3, 8)}))


def owed(minor: int) -> Money:
    return Money(minor, "USD")


def test_a_new_debt_starts_an_episode_without_notice() -> None:
    d = decide(POLICY, CAL, ArrearsState(owed(1000)), TUE)
    assert d.overdue_since == TUE
    assert d.stage is Stage.NONE
    assert d.notice is None
    assert not d.disconnect


def test_small_debts_are_not_chased() -> None:
    d = decide(POLICY, CAL, ArrearsState(owed(99)), TUE)
    assert d.overdue_since is None
    assert d.stage is Stage.NONE


def test_escalation_reminder_final_disconnect() -> None:
    since = TUE - timedelta(days=3)
    d = decide(POLICY, CAL, ArrearsState(owed(1000), since), TUE)
    assert d.notice is Stage.REMINDER
    d = decide(POLICY, CAL, ArrearsState(owed(1000), since - timedelta(days=7), Stage.REMINDER), TUE)
    assert d.notice is Stage.FINAL
    assert not d.disconnect
    d = decide(POLICY, CAL, ArrearsState(owed(1000), TUE - timedelta(days=15), Stage.FINAL), TUE)
    assert d.disconnect
    assert d.notice is Stage.DISCONNECT
    assert d.stage is Stage.DISCONNECT


def test_a_late_sweep_sends_only_the_stage_due_not_every_stage() -> None:
    d = decide(POLICY, CAL, ArrearsState(owed(1000), TUE - timedelta(days=12)), TUE)
    assert d.notice is Stage.FINAL


def test_the_same_state_twice_sends_nothing_twice() -> None:
    state = ArrearsState(owed(1000), TUE - timedelta(days=4), Stage.REMINDER)
    assert decide(POLICY, CAL, state, TUE).notice is None


def test_no_automatic_disconnect_at_night_weekends_or_holidays() -> None:
    state = ArrearsState(owed(1000), TUE - timedelta(days=20), Stage.FINAL)
    night = TUE.replace(hour=22)
    saturday = TUE + timedelta(days=4)
    holiday = datetime(2026, 3, 8, 10, tzinfo=UTC)  # a Sunday anyway; use a weekday holiday too
    for when, reason in ((night, "night"), (saturday, "weekend"), (holiday, "holiday")):
        d = decide(POLICY, CAL, state, when)
        assert not d.disconnect
        assert d.deferred == reason
        assert d.stage is Stage.FINAL
    weekday_holiday = FriendlyCalendar(holidays=frozenset({TUE.date()}))
    assert decide(POLICY, weekday_holiday, state, TUE).deferred == "holiday"


def test_emergency_credit_postpones_the_disconnect() -> None:
    state = ArrearsState(owed(1000), TUE - timedelta(days=20), Stage.FINAL, emergency_until=TUE + timedelta(days=1))
    d = decide(POLICY, CAL, state, TUE)
    assert not d.disconnect
    assert d.deferred == "emergency_credit"


def test_penalties_per_full_period_once_each_and_capped() -> None:
    state = ArrearsState(owed(10_000), TUE - timedelta(days=65), Stage.FINAL)
    d = decide(POLICY, CAL, state, TUE)
    assert [(n, m.minor) for n, m in d.penalties] == [(1, 150), (2, 150)]  # 50 fixed + 1 % of 10000
    d2 = decide(POLICY, CAL, ArrearsState(owed(10_300), state.overdue_since, Stage.FINAL, 2), TUE)
    assert d2.penalties == ()
    d3 = decide(POLICY, CAL, ArrearsState(owed(1), TUE - timedelta(days=400), Stage.FINAL, 0), TUE)
    assert d3.penalties == ()  # below the minimum: the episode is over


def test_reconnect_when_the_debt_is_cleared() -> None:
    state = ArrearsState(owed(0), TUE - timedelta(days=20), Stage.DISCONNECT, disconnected=True)
    d = decide(POLICY, CAL, state, TUE)
    assert d.reconnect
    assert d.overdue_since is None
    assert d.stage is Stage.NONE


def test_night_wraps_midnight() -> None:
    cal = FriendlyCalendar(night_start_min=22 * 60, night_end_min=6 * 60, weekend_days=frozenset())
    assert cal.why_not(TUE.replace(hour=23)) == "night"
    assert cal.why_not(TUE.replace(hour=5, minute=59)) == "night"
    assert cal.why_not(TUE.replace(hour=6)) is None
