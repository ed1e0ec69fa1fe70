from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.errors import InvalidTariff
from billing.rules.money import Money
from billing.rules.tariffs import (
    Step,
    TariffBody,
    TariffKind,
    TariffVersion,
    cost_of,
    standing_charge,
    version_at,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_flat_cost_is_exact_and_rounded_once() -> None:
    body = TariffBody.flat(215_500)  # 2.155 minor... per kWh x1000: 215.5 minor units per kWh
    cost = cost_of(body, [(T0, 1000), (T0 + timedelta(hours=1), 1)], "USD", tz=UTC)
    assert cost == Money(round(1001 * 215_500 / 1_000_000), "USD")  # 215.7155 -> 216


def test_block_tariff_splits_across_blocks_and_restarts_monthly() -> None:
    body = TariffBody(TariffKind.BLOCK, (Step(0, 100_000), Step(100_000, 200_000)))  # 100 / 200 minor per kWh
    # 150 kWh in March: 100 kWh at 100 + 50 kWh at 200 = 20000
    assert cost_of(body, [(T0, 150_000)], "USD", tz=UTC).minor == 20_000
    # 90 kWh already consumed this month: 10 at 100, 40 at 200
    assert cost_of(body, [(T0, 50_000)], "USD", tz=UTC, month_to_date_wh=90_000).minor == 9_000
    # a new month starts at the first block again
    april = datetime(2026, 4, 1, 1, tzinfo=UTC)
    assert cost_of(body, [(T0, 100_000), (april, 10_000)], "USD", tz=UTC).minor == 11_000


def test_time_of_use_by_local_time() -> None:
    body = TariffBody(TariffKind.TOU, (Step(0, 50_000), Step(7 * 60, 150_000), Step(23 * 60, 50_000)))
    plus2 = timezone(timedelta(hours=2))
    # 05:30 UTC is 07:30 local: day band
    assert cost_of(body, [(datetime(2026, 3, 1, 5, 30, tzinfo=UTC), 1000)], "USD", tz=plus2).minor == 150
    assert cost_of(body, [(datetime(2026, 3, 1, 4, 30, tzinfo=UTC), 1000)], "USD", tz=plus2).minor == 50


def test_versions_by_effective_date() -> None:
    v1 = TariffVersion(1, T0, TariffBody.flat(100_000))
    v2 = TariffVersion(2, T0 + timedelta(days=10), TariffBody.flat(120_000))
    assert version_at([v1, v2], T0 - timedelta(seconds=1)) is None
    assert version_at([v2, v1], T0 + timedelta(days=9)) is v1
    assert version_at([v1, v2], T0 + timedelta(days=10)) is v2


def test_invalid_tariffs_are_refused_with_a_reason() -> None:
    with pytest.raises(InvalidTariff):
        TariffBody(TariffKind.FLAT, (Step(0, 1), Step(10, 2)))
    with pytest.raises(InvalidTariff):
        TariffBody(TariffKind.BLOCK, (Step(0, 1), Step(0, 2)))
    with pytest.raises(InvalidTariff):
        TariffBody(TariffKind.TOU, (Step(0, 1), Step(1440, 2)))
    with pytest.raises(InvalidTariff):
        TariffBody.from_json({"kind": "weird"})


def test_json_round_trip_and_the_short_flat_form() -> None:
    body = TariffBody(TariffKind.BLOCK, (Step(0, 1), Step(5, 2)), standing_charge_minor_per_day=3)
    assert TariffBody.from_json(body.to_json()) == body
    assert TariffBody.from_json({"kind": "flat", "price_minor_per_kwh": 215}) == TariffBody.flat(215_000)


def test_standing_charge_counts_whole_days() -> None:
    body = TariffBody.flat(1, standing_charge_minor_per_day=12)
    assert standing_charge(body, T0, T0 + timedelta(days=31), "USD").minor == 372


@given(st.lists(st.integers(0, 50_000), max_size=30))
def test_block_cost_equals_one_interval_of_the_same_total(energies: list[int]) -> None:
    body = TariffBody(TariffKind.BLOCK, (Step(0, 100_000), Step(60_000, 170_000), Step(200_000, 250_000)))
    split = cost_of(body, [(T0 + timedelta(hours=i), e) for i, e in enumerate(energies)], "USD", tz=UTC)
    whole = cost_of(body, [(T0, sum(energies))], "USD", tz=UTC)
    assert split == whole
