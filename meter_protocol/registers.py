"""What a meter's main register holds, by the meter's kind (docs/protocol.md §6.2, `readings` and
`periodic_report`): the frames carry one cumulative register in the `import_wh` field for every kind of
meter; the head end stores it under the name of what it measures. Electricity: energy in Wh (`import_wh`);
water and gas: volume in litres (`volume_l`); heat: heat energy in Wh (`heat_wh`, kept apart from
electricity so the two never add up). Only an electricity meter's `export_wh` field is an export register.
"""

from __future__ import annotations

ENERGY = "import_wh"
EXPORT = "export_wh"
VOLUME = "volume_l"
HEAT = "heat_wh"
# every register that holds a meter's main cumulative quantity, whatever its kind
MAIN_REGISTERS = (ENERGY, VOLUME, HEAT)

_BY_KIND = {"electricity": ENERGY, "water": VOLUME, "gas": VOLUME, "heat": HEAT}


def main_register(kind: str) -> str:
    """The register a meter of `kind` (`meters.kind`) reports in its frames' `import_wh` field; an unknown
    kind reads as electricity."""
    return _BY_KIND.get(kind, ENERGY)


def has_export(kind: str) -> bool:
    """Whether the frames' `export_wh` field is a register of this kind of meter (electricity only)."""
    return main_register(kind) == ENERGY


def kinds_reporting(register: str) -> tuple[str, ...]:
    """The meter kinds whose main register is `register` (none for a register no kind reports)."""
    return tuple(kind for kind, main in _BY_KIND.items() if main == register)
