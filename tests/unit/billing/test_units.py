"""Units per utility (`billing.rules.units`): electricity and heat in kWh from the Wh register (heat in Gcal
where the utility says so), water and gas in m³ from the litre register; quantities shown exactly."""

from __future__ import annotations

from decimal import Decimal

from billing.rules.units import GCAL, KWH, M3, kinds_read_in, unit_of


def test_each_utility_has_its_unit_and_register() -> None:
    assert unit_of("electricity") is KWH
    assert (unit_of("water").symbol, unit_of("water").register) == ("m³", "volume_l")
    assert unit_of("gas") is M3
    assert unit_of("heat") is KWH
    assert unit_of("heat", heat_in_gcal=True) is GCAL
    assert unit_of("unknown") is KWH


def test_quantities_are_shown_exactly_in_the_display_unit() -> None:
    assert M3.of(12_345) == Decimal("12.345")
    assert M3.shown(12_345) == "12.345 m³"
    assert KWH.shown(1_500_999, places=1) == "1500.9 kWh"
    assert GCAL.shown(1_163_000) == "1.000 Gcal"
    assert M3.chart_value(1_234) == 1.23


def test_the_kinds_that_read_in_each_unit() -> None:
    assert kinds_read_in(KWH) == ("electricity", "heat")
    assert kinds_read_in(M3) == ("water", "gas")
    assert kinds_read_in(GCAL) == ("electricity", "heat")  # the same energy register
