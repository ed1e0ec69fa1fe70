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


def test_net_billing_bills_import_less_export_never_below_zero() -> None:
    from billing.rules.tariffs import NetBilling, NetQuantity, net_quantity

    assert net_quantity(NetBilling.OFF, 10_000, 4_000) == NetQuantity(10_000, 4_000, 0, 10_000, 0)
    assert net_quantity(NetBilling.NET, 10_000, 4_000) == NetQuantity(10_000, 4_000, 0, 6_000, 0)
    # a surplus is neither billed nor credited under NET...
    assert net_quantity(NetBilling.NET, 3_000, 5_000, carried_in=9_000) == NetQuantity(3_000, 5_000, 0, 0, 0)
    # ...and carried to the next period, as energy, under CARRY
    assert net_quantity(NetBilling.CARRY, 3_000, 5_000) == NetQuantity(3_000, 5_000, 0, 0, 2_000)
    assert net_quantity(NetBilling.CARRY, 10_000, 5_000, carried_in=2_000) == NetQuantity(
        10_000, 5_000, 2_000, 3_000, 0
    )
    assert net_quantity(NetBilling.CARRY, 6_000, 5_000, carried_in=2_000).carried_out == 1_000
    with pytest.raises(InvalidTariff):
        net_quantity(NetBilling.NET, -1, 0)


def test_a_net_is_spread_over_the_import_intervals_exactly() -> None:
    from billing.rules.tariffs import scaled_intervals

    t = [datetime(2026, 1, 1, h, tzinfo=UTC) for h in range(3)]
    intervals = [(t[0], 1_000), (t[1], 2_000), (t[2], 1_000)]
    assert scaled_intervals(intervals, 2_000) == [(t[0], 500), (t[1], 1_000), (t[2], 500)]
    spread = scaled_intervals(intervals, 1_001)
    assert sum(q for _, q in spread) == 1_001
    assert [q for _, q in spread] == [250, 501, 250]
    assert scaled_intervals(intervals, 0) == [(t[0], 0), (t[1], 0), (t[2], 0)]
    assert scaled_intervals(intervals, 9_999) == intervals
