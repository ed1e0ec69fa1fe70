"""Units per utility: what a meter measures and in which unit people read it. Electricity and heat are
energy (registers in Wh, shown in kWh, heat optionally in Gcal), water and gas are volume (registers in
litres, `volume_l`, shown in m³). Tariff prices are per display unit (per kWh, per m³), so the same
integer price arithmetic holds for every utility: 1000 base units make one kWh or one m³. Pure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal


class Utility(enum.StrEnum):
    ELECTRICITY = "electricity"
    WATER = "water"
    GAS = "gas"
    HEAT = "heat"


@dataclass(frozen=True, slots=True)
class Unit:
    symbol: str  # kWh, m³, Gcal
    register: str  # the cumulative register the consumption is read from
    base_per_unit: int  # register units (Wh, litres) in one display unit
    base_symbol: str  # Wh, l

    def of(self, base: int) -> Decimal:
        """An exact quantity in the display unit (e.g. 12345 l → 12.345 m³)."""
        return Decimal(base) / Decimal(self.base_per_unit)

    def shown(self, base: int, places: int = 3) -> str:
        """'12.345 m³': a quantity of base units in the display unit, rounded down to `places` decimals."""
        step = Decimal(1).scaleb(-places)
        return f"{self.of(base).quantize(step, rounding='ROUND_DOWN')} {self.symbol}"

    def chart_value(self, base: int) -> float:
        """A display value for a chart bar (two decimals are enough)."""
        return round(base / self.base_per_unit, 2)


KWH = Unit("kWh", "import_wh", 1000, "Wh")
M3 = Unit("m³", "volume_l", 1000, "l")
GCAL = Unit("Gcal", "import_wh", 1_163_000, "Wh")  # 1 Gcal = 1.163 MWh


def unit_of(kind: str, *, heat_in_gcal: bool = False) -> Unit:
    """The unit of a meter kind (`meters.kind`); an unknown kind reads as electricity."""
    try:
        utility = Utility(kind)
    except ValueError:
        return KWH
    if utility in (Utility.WATER, Utility.GAS):
        return M3
    if utility is Utility.HEAT and heat_in_gcal:
        return GCAL
    return KWH


def kinds_read_in(unit: Unit) -> tuple[str, ...]:
    """The meter kinds whose consumption is read from `unit`'s register (electricity and heat: energy; water
    and gas: volume), so a total in one unit never adds another kind's register."""
    return tuple(u.value for u in Utility if unit_of(u.value).register == unit.register)
