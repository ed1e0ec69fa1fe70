"""Money: an integer of minor units and an ISO 4217 currency. No float ever touches it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from billing.errors import CurrencyMismatch, InvalidMoney

# ISO 4217 minor-unit exponents that are not 2.
_EXPONENTS = {
    "BIF": 0,
    "CLP": 0,
    "JPY": 0,
    "KRW": 0,
    "UGX": 0,
    "VND": 0,
    "XAF": 0,
    "XOF": 0,
    "RWF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}
_CURRENCY = re.compile(r"[A-Z]{3}")


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


@dataclass(frozen=True, slots=True)
class Money:
    minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.minor) is not int:
            raise InvalidMoney(f"minor units must be an int, got {type(self.minor).__name__}")
        if not isinstance(self.currency, str) or _CURRENCY.fullmatch(self.currency) is None:
            raise InvalidMoney(f"currency must be an ISO 4217 code, got {self.currency!r}")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """'12.50' -> Money(1250, ...). Exact decimal parsing; more decimals than the currency has is an error."""
        raw = text.strip().replace(" ", "").replace(",", ".")
        match = re.fullmatch(r"(-?)(\d+)(?:\.(\d+))?", raw)
        if match is None:
            raise InvalidMoney(f"not an amount: {text!r}")
        sign, whole, frac = match.group(1), match.group(2), match.group(3) or ""
        exp = exponent(currency)
        if len(frac) > exp:
            raise InvalidMoney(f"{text!r} has more than {exp} decimals")
        minor = int(whole) * 10**exp + (int(frac.ljust(exp, "0")) if exp else 0)
        return cls(-minor if sign else minor, currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise InvalidMoney(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def __bool__(self) -> bool:
        return self.minor != 0

    def is_positive(self) -> bool:
        return self.minor > 0

    def is_negative(self) -> bool:
        return self.minor < 0

    def share_bp(self, basis_points: int) -> Money:
        """`basis_points`/10000 of this amount, rounded toward zero (the payer never loses a fraction)."""
        if type(basis_points) is not int or not 0 <= basis_points <= 10000:
            raise InvalidMoney(f"basis points must be 0..10000, got {basis_points!r}")
        magnitude = abs(self.minor) * basis_points // 10000
        return Money(magnitude if self.minor >= 0 else -magnitude, self.currency)

    def format(self) -> str:
        """'12.50 USD' — plain, locale-free."""
        exp = exponent(self.currency)
        sign = "-" if self.minor < 0 else ""
        whole, frac = divmod(abs(self.minor), 10**exp) if exp else (abs(self.minor), 0)
        body = f"{whole}.{frac:0{exp}d}" if exp else str(whole)
        return f"{sign}{body} {self.currency}"

    def __str__(self) -> str:
        return self.format()


def total(amounts: list[Money] | tuple[Money, ...], currency: str) -> Money:
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result
