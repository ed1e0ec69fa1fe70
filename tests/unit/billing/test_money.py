import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.errors import CurrencyMismatch, InvalidMoney
from billing.rules.money import Money


def test_money_is_integer_minor_units() -> None:
    with pytest.raises(InvalidMoney):
        Money(1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(InvalidMoney):
        Money(True, "USD")  # type: ignore[arg-type]
    with pytest.raises(InvalidMoney):
        Money(1, "usd")


def test_arithmetic_needs_one_currency() -> None:
    assert Money(150, "USD") + Money(50, "USD") == Money(200, "USD")
    with pytest.raises(CurrencyMismatch) as err:
        Money(1, "USD") + Money(1, "EUR")
    assert err.value.expected == "USD"
    assert err.value.got == "EUR"


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("12.50", "USD", 1250), ("12,5", "EUR", 1250), ("7", "JPY", 7), ("-0.01", "USD", -1), ("1.234", "KWD", 1234)],
)
def test_parse(text: str, currency: str, minor: int) -> None:
    assert Money.parse(text, currency) == Money(minor, currency)


def test_parse_refuses_extra_decimals_and_garbage() -> None:
    for bad in ("1.001", "abc", "1e3", ""):
        with pytest.raises(InvalidMoney):
            Money.parse(bad, "USD")


def test_format() -> None:
    assert Money(1250, "USD").format() == "12.50 USD"
    assert Money(-5, "USD").format() == "-0.05 USD"
    assert Money(7, "JPY").format() == "7 JPY"


@given(st.integers(-(10**12), 10**12), st.integers(0, 10000))
def test_share_never_exceeds_the_amount_and_rounds_toward_zero(minor: int, bp: int) -> None:
    share = Money(minor, "USD").share_bp(bp)
    assert abs(share.minor) <= abs(minor)
    assert abs(share.minor) == abs(minor) * bp // 10000


@given(st.integers(-(10**12), 10**12))
def test_format_parse_round_trip(minor: int) -> None:
    m = Money(minor, "USD")
    assert Money.parse(m.format().split()[0], "USD") == m
