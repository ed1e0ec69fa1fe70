"""Units per utility: what a meter measures and in which unit people read it. Electricity is energy
(`import_wh`, shown in kWh), heat is heat energy in its own register (`heat_wh`, in Wh, shown in kWh or, where
the utility says so, in Gcal), water and gas are volume (`volume_l`, in litres, shown in m³); the register a
meter's kind reports is `meter_protocol.registers.main_register`. Tariff prices are per display unit (per kWh,
per m³, per Gcal). Pure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from meter_protocol.registers import ENERGY, HEAT, VOLUME, kinds_reporting, main_register


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


KWH = Unit("kWh", ENERGY, 1000, "Wh")
M3 = Unit("m³", VOLUME, 1000, "l")
HEAT_KWH = Unit("kWh", HEAT, 1000, "Wh")  # heat, in the heat register
GCAL = Unit("Gcal", HEAT, 1_163_000, "Wh")  # 1 Gcal = 1.163 MWh


def unit_of(kind: str, *, heat_in_gcal: bool = False) -> Unit:
    """The unit of a meter kind (`meters.kind`), read from the register that kind reports; an unknown kind
    reads as electricity."""
    register = main_register(kind)
    if register == VOLUME:
        return M3
    if register == HEAT:
        return GCAL if heat_in_gcal else HEAT_KWH
    return KWH


def kinds_read_in(unit: Unit) -> tuple[str, ...]:
    """The meter kinds whose consumption is read from `unit`'s register (electricity: energy; water and gas:
    volume; heat: heat), so a total in one unit never adds another kind's register."""
    return kinds_reporting(unit.register)
