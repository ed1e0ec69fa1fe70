"""Units per utility (`billing.rules.units`): electricity in kWh from the energy register, heat in kWh from its
own heat register (in Gcal where the utility says so), water and gas in m³ from the litre register; quantities
shown exactly; each kind's unit reads the register its meters report (`meter_protocol.registers`)."""

from __future__ import annotations

from decimal import Decimal

from billing.rules.units import GCAL, HEAT_KWH, KWH, M3, Utility, kinds_read_in, unit_of
from meter_protocol.registers import has_export, main_register


def test_each_utility_has_its_unit_and_register() -> None:
    assert unit_of("electricity") is KWH
    assert (unit_of("water").symbol, unit_of("water").register) == ("m³", "volume_l")
    assert unit_of("gas") is M3
    assert unit_of("heat") is HEAT_KWH
    assert (HEAT_KWH.symbol, HEAT_KWH.register) == ("kWh", "heat_wh")
    assert unit_of("heat", heat_in_gcal=True) is GCAL
    assert unit_of("unknown") is KWH


def test_quantities_are_shown_exactly_in_the_display_unit() -> None:
    assert M3.of(12_345) == Decimal("12.345")
    assert M3.shown(12_345) == "12.345 m³"
    assert KWH.shown(1_500_999, places=1) == "1500.9 kWh"
    assert GCAL.shown(1_163_000) == "1.000 Gcal"
    assert M3.chart_value(1_234) == 1.23


def test_the_kinds_that_read_in_each_unit() -> None:
    assert kinds_read_in(KWH) == ("electricity",)
    assert kinds_read_in(M3) == ("water", "gas")
    assert kinds_read_in(GCAL) == ("heat",) == kinds_read_in(HEAT_KWH)  # the same heat register


def test_each_kind_is_read_from_the_register_its_meters_report() -> None:
    for utility in Utility:
        assert unit_of(utility.value).register == main_register(utility.value)
        assert unit_of(utility.value, heat_in_gcal=True).register == main_register(utility.value)
    assert [main_register(k) for k in ("electricity", "water", "gas", "heat", "?")] == [
        "import_wh",
        "volume_l",
        "volume_l",
        "heat_wh",
        "import_wh",
    ]
    assert [has_export(k) for k in ("electricity", "water", "gas", "heat")] == [True, False, False, False]


def test_heat_is_kept_in_wh_and_shown_in_gcal_exactly() -> None:
    """1 Gcal = 1163 kWh: the heat register stays in Wh, the conversion is exact at display."""
    assert GCAL.register == HEAT_KWH.register == "heat_wh"
    assert GCAL.of(1_163_000) == Decimal(1)
    assert GCAL.of(581_500) == Decimal("0.5")
    assert GCAL.shown(2_326_000) == "2.000 Gcal"
    assert GCAL.shown(1_162_999) == "0.999 Gcal"  # rounded down, never up
    assert HEAT_KWH.shown(1_163_000) == "1163.000 kWh"
    assert GCAL.chart_value(3_489_000) == 3.0


def test_a_price_per_gcal_costs_exactly_and_reaches_the_meter_per_kwh() -> None:
    from datetime import UTC, datetime

    from billing.rules.tariffs import TariffBody, cost_of, meter_price

    at = datetime(2026, 1, 1, tzinfo=UTC)
    per_gcal = TariffBody.flat(150_000_000)  # 1,500.00 a Gcal, in thousandths of a minor unit
    # 2 Gcal in the Wh register: 3,000.00, to the minor unit, no float on the way
    assert cost_of(per_gcal, [(at, 2_326_000)], "MDL", tz=UTC, base_per_unit=GCAL.base_per_unit).minor == 300_000
    # 1 kWh of heat at 1,500.00 a Gcal: 150,000 / 1,163 = 128.977 minor units → 129
    assert cost_of(per_gcal, [(at, 1000)], "MDL", tz=UTC, base_per_unit=GCAL.base_per_unit).minor == 129
    assert cost_of(TariffBody.flat(2150), [(at, 1500)], "MDL", tz=UTC).minor == 3  # per kWh: 3.225 → 3
    assert meter_price(150_000_000, GCAL.base_per_unit) == 128_977  # per kWh, half up (128,976.784…)
    assert meter_price(2150) == 2150
