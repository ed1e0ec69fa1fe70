"""Reading validation and the readings CSV form (billing.rules.readings): pure, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from billing.errors import InvalidField
from billing.rules.consumption import daily_quantities, estimate_days, spread_over_days
from billing.rules.readings import (
    Status,
    ValidationPolicy,
    parse_readings_csv,
    parse_value,
    status_counts,
    validate,
    validate_series,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = ValidationPolicy()
DAILY = [(T0 + timedelta(days=d), 10_000 + d * 5_000) for d in range(10)]  # 5 kWh a day


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def test_a_reading_that_follows_the_history_is_ok() -> None:
    assert validate(DAILY, at(10), 10_000 + 10 * 5_000 + 4_000, "import_wh", POLICY) is Status.OK


def test_the_first_reading_of_a_register_is_ok() -> None:
    assert validate([], at(0), 123, "import_wh", POLICY) is Status.OK


def test_a_register_that_goes_down_is_backwards() -> None:
    assert validate(DAILY, at(10), 50_000, "import_wh", POLICY) is Status.BACKWARDS


def test_a_reading_after_a_long_silence_is_a_gap() -> None:
    assert validate(DAILY, at(9 + 3), 70_000, "import_wh", POLICY) is Status.GAP


def test_a_step_many_times_the_usual_rate_is_a_spike() -> None:
    assert validate(DAILY, at(10), 55_000 + 5_000 * 11, "import_wh", POLICY) is Status.SPIKE


def test_a_small_step_is_no_spike_even_at_a_high_rate() -> None:
    quiet = [(at(d), 1_000 + d) for d in range(10)]  # 1 Wh a day
    assert validate(quiet, at(10), 1_009 + 500, "import_wh", POLICY) is Status.OK


def test_instant_registers_are_not_validated_as_cumulative() -> None:
    assert validate(DAILY, at(10), 0, "power_w", POLICY) is Status.OK
    assert validate(DAILY, at(10), 0, "profile_wh", POLICY) is Status.OK


def test_only_readings_before_the_new_one_count() -> None:
    later = [*DAILY, (at(20), 1_000_000)]
    assert validate(later, at(10), 60_000, "import_wh", POLICY) is Status.OK


def test_a_series_is_checked_in_time_order_each_against_those_before_it() -> None:
    new = [(at(11), 40_000), (at(10), 58_000)]  # given out of order; day 11 goes below day 10
    assert validate_series(DAILY, new, "import_wh", POLICY) == [Status.BACKWARDS, Status.OK]


def test_values_as_typed() -> None:
    assert parse_value("12345", "value") == 12345
    assert parse_value("12,5", "kwh") == 12_500
    assert parse_value("3.141", "m3") == 3_141
    for bad, unit in (("-1", "value"), ("x", "kwh"), ("1.0005", "kwh"), ("nan", "value")):
        with pytest.raises(InvalidField):
            parse_value(bad, unit)


def test_the_csv_form_with_good_and_bad_rows() -> None:
    text = (
        "meter_code,read_at,register,kwh\n"
        "88000000000000000012,2026-03-01T08:00:00,import_wh,1234.5\n"
        "8800 0000 0000 0000 0012,2026-03-02T08:00:00+00:00,,1240\n"
        ",2026-03-02T08:00:00,,1\n"
        "88000000000000000012,yesterday,,1\n"
        "88000000000000000012,2026-03-03T08:00:00,power_w,1\n"
        "\n"
    )
    rows, rejects = parse_readings_csv(text, ZoneInfo("Europe/Chisinau"))
    assert [(r.meter_code, r.register, r.read_at, r.value, r.line) for r in rows] == [
        ("88000000000000000012", "import_wh", datetime(2026, 3, 1, 6, 0, tzinfo=UTC), 1_234_500, 2),
        ("88000000000000000012", "import_wh", datetime(2026, 3, 2, 8, 0, tzinfo=UTC), 1_240_000, 3),
    ]
    assert [line for line, _ in rejects] == [4, 5, 6]


def test_a_csv_without_the_columns_is_refused_at_line_one() -> None:
    rows, rejects = parse_readings_csv("code;when;value\n1;2;3\n", UTC)
    assert rows == []
    assert rejects[0][0] == 1


def test_status_counts_name_every_status() -> None:
    assert status_counts(["ok", "ok", "gap"]) == {"ok": 2, "gap": 1, "backwards": 0, "spike": 0, "estimated": 0}


# --- the daily pre-aggregate's rule (billing.rules.consumption) -------------------------------------------


def test_use_between_two_readings_is_spread_over_the_local_days_in_proportion() -> None:
    tz = ZoneInfo("Europe/Chisinau")  # UTC+2 in winter
    start = datetime(2026, 1, 10, 22, 0, tzinfo=tz)
    parts = spread_over_days(start, start + timedelta(hours=30), 3_001, tz)
    assert parts == {date(2026, 1, 10): 200, date(2026, 1, 11): 2_401, date(2026, 1, 12): 400}
    assert sum(parts.values()) == 3_001


def test_daily_quantities_count_readings_skip_a_reset_and_keep_quiet_days() -> None:
    series = [(at(0), 1_000), (at(1), 3_000), (at(1.5), 500), (at(2), 500), (at(3), 1_500)]
    days = daily_quantities(series, UTC)
    assert {d.isoformat(): (q.quantity, q.readings) for d, q in days.items()} == {
        "2026-03-01": (2_000, 1),
        "2026-03-02": (0, 2),
        "2026-03-03": (1_000, 1),
        "2026-03-04": (0, 1),
    }


def test_estimates_come_from_the_normative_consumption() -> None:
    days = estimate_days(date(2026, 3, 1), date(2026, 3, 3), 152_083)  # 5 kWh a day, by month
    assert [(q.quantity, q.estimated) for q in days.values()] == [(4_999, True)] * 3
    assert estimate_days(date(2026, 3, 1), date(2026, 3, 3), None) == {}
