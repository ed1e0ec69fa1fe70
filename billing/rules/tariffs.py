"""Tariffs: flat, block (by monthly consumption) and time-of-use (by local time of day); versions with
effective dates; the cost of consumption. Pure.

Prices are integers in thousandths of a minor unit per display unit (per kWh — the meter protocol's unit —,
per m³, per Gcal), quantities are in the register's base unit (Wh, litres; `base_per_unit` of them make one
display unit: 1000, or 1,163,000 Wh in a Gcal), so a cost is an exact fraction of a minor unit, rounded once,
half up, to minor units.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from billing.errors import InvalidTariff
from billing.rules.money import Money

MINUTES_PER_DAY = 1440


class TariffKind(enum.StrEnum):
    FLAT = "flat"
    BLOCK = "block"
    TOU = "tou"


@dataclass(frozen=True, slots=True)
class Step:
    """`start`: 0 (flat); Wh of monthly consumption where a block begins; or the local minute of the day
    where a time-of-use band begins."""

    start: int
    price_milli_minor_per_kwh: int


@dataclass(frozen=True, slots=True)
class TariffBody:
    kind: TariffKind
    steps: tuple[Step, ...]
    standing_charge_minor_per_day: int = 0

    def __post_init__(self) -> None:
        if not self.steps:
            raise InvalidTariff("steps", "at least one step")
        if self.steps[0].start != 0:
            raise InvalidTariff("steps", "the first step starts at 0")
        for a, b in zip(self.steps, self.steps[1:], strict=False):
            if a.start >= b.start:
                raise InvalidTariff("steps", "step starts must strictly increase")
        for s in self.steps:
            if type(s.start) is not int or type(s.price_milli_minor_per_kwh) is not int:
                raise InvalidTariff("steps", "starts and prices are integers")
            if s.price_milli_minor_per_kwh < 0 or s.start < 0:
                raise InvalidTariff("steps", "starts and prices are not negative")
        if self.kind is TariffKind.FLAT and len(self.steps) != 1:
            raise InvalidTariff("steps", "a flat tariff has exactly one price")
        if self.kind is TariffKind.TOU and self.steps[-1].start >= MINUTES_PER_DAY:
            raise InvalidTariff("steps", "a time-of-use band starts before minute 1440")
        if type(self.standing_charge_minor_per_day) is not int or self.standing_charge_minor_per_day < 0:
            raise InvalidTariff("standing_charge_minor_per_day", "a non-negative integer")

    # --- the stored form (tariff_versions.body) ---
    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "steps": [[s.start, s.price_milli_minor_per_kwh] for s in self.steps],
            "standing_charge_minor_per_day": self.standing_charge_minor_per_day,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TariffBody:
        try:
            kind = TariffKind(body["kind"])
            if "steps" in body:
                steps = tuple(Step(int(a), int(b)) for a, b in body["steps"])
            elif "price_minor_per_kwh" in body:  # the short flat form: a price in whole minor units
                steps = (Step(0, int(body["price_minor_per_kwh"]) * 1000),)
            else:
                steps = (Step(0, int(body["price_milli_minor_per_kwh"])),)
            return cls(kind, steps, int(body.get("standing_charge_minor_per_day", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidTariff("body", f"unreadable: {exc}") from exc

    @classmethod
    def flat(cls, price_milli_minor_per_kwh: int, standing_charge_minor_per_day: int = 0) -> TariffBody:
        return cls(TariffKind.FLAT, (Step(0, price_milli_minor_per_kwh),), standing_charge_minor_per_day)


@dataclass(frozen=True, slots=True)
class TariffVersion:
    version: int
    effective_from: datetime
    body: TariffBody


def version_at(versions: Iterable[TariffVersion], at: datetime) -> TariffVersion | None:
    """The version in force at `at`: the latest effective_from <= at (the highest version on a tie)."""
    best: TariffVersion | None = None
    for v in versions:
        if v.effective_from <= at and (
            best is None or (v.effective_from, v.version) > (best.effective_from, best.version)
        ):
            best = v
    return best


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def meter_price(price_milli_minor_per_unit: int, base_per_unit: int = 1000) -> int:
    """A price per display unit as the meter protocol carries it: thousandths of a minor unit per 1000 of the
    register's base units (per kWh of a Wh register, per m³ of a litre register), rounded half up — a price
    per Gcal becomes a price per kWh of the heat register."""
    return _round_half_up(price_milli_minor_per_unit * 1000, base_per_unit)


def block_cost_micro(body: TariffBody, month_to_date_wh: int, energy_wh: int) -> int:
    """Cost in millionths of a minor unit of `energy_wh` consumed after `month_to_date_wh` this month."""
    cost = 0
    position = month_to_date_wh
    end = month_to_date_wh + energy_wh
    for i, step in enumerate(body.steps):
        upper = body.steps[i + 1].start if i + 1 < len(body.steps) else None
        lo = max(position, step.start)
        hi = end if upper is None else min(end, upper)
        if hi > lo:
            cost += (hi - lo) * step.price_milli_minor_per_kwh
    return cost


def tou_price(body: TariffBody, local_minute: int) -> int:
    price = body.steps[0].price_milli_minor_per_kwh
    for step in body.steps:
        if step.start <= local_minute:
            price = step.price_milli_minor_per_kwh
    return price


def cost_of(
    body: TariffBody,
    intervals: Sequence[tuple[datetime, int]],
    currency: str,
    *,
    tz: tzinfo,
    month_to_date_wh: int = 0,
    base_per_unit: int = 1000,
) -> Money:
    """The energy cost of consumption given as (interval start, base units — Wh, litres) pairs, in time
    order, at prices per display unit of `base_per_unit` base units (1000: per kWh or m³; 1,163,000: per Gcal).

    Flat: quantity x price. Block: by the month's running total (`month_to_date_wh` consumed before the first
    interval; the total restarts at each local month; block starts in base units). Time-of-use: the band of
    each interval's local start.
    """
    micro = 0
    running = month_to_date_wh
    month: tuple[int, int] | None = None
    for start, wh in intervals:
        if wh < 0:
            raise InvalidTariff("consumption", "energy is not negative")
        local = start.astimezone(tz)
        if body.kind is TariffKind.FLAT:
            micro += wh * body.steps[0].price_milli_minor_per_kwh
        elif body.kind is TariffKind.BLOCK:
            this_month = (local.year, local.month)
            if month is not None and this_month != month:
                running = 0
            month = this_month
            micro += block_cost_micro(body, running, wh)
            running += wh
        else:
            micro += wh * tou_price(body, local.hour * 60 + local.minute)
    return Money(_round_half_up(micro, base_per_unit * 1000), currency)  # per kWh: millionths, half up


def standing_charge(body: TariffBody, start: datetime, end: datetime, currency: str) -> Money:
    """The fixed daily charge over [start, end), counted in whole days."""
    days = max(0, (end - start) // timedelta(days=1))
    return Money(days * body.standing_charge_minor_per_day, currency)
