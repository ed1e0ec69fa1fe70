from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.errors import InvalidSubscriberCode
from billing.rules.codes import make_subscriber_code, parse_subscriber_code, validate_subscriber_code
from billing.rules.consumption import Granularity, add_buckets, consumption_buckets
from billing.rules.invoice import Party, build_invoice, format_number, vat_included
from billing.rules.ledger import Balances, Ledger, plan_charge, plan_top_up
from billing.rules.ledger import EntryType as E
from billing.rules.losses import transformer_loss
from billing.rules.money import Money
from billing.rules.notices import NoticeKind, SmsEncoding, notice_text, sms_sizing


def test_subscriber_code_groups() -> None:
    code = parse_subscriber_code("64-01-001-0001-0002")
    assert (code.region, code.settlement, code.street, code.building, code.apartment) == (
        "64",
        "01",
        "001",
        "0001",
        "0002",
    )
    assert str(code) == "640100100010002"
    assert make_subscriber_code("64", "1", "1", "1", "2") == "640100100010002"


@pytest.mark.parametrize("bad", ["6401001000100", "64010010001000X", "000100100010001", "6401001000100011", ""])
def test_bad_subscriber_codes_say_why(bad: str) -> None:
    with pytest.raises(InvalidSubscriberCode) as err:
        validate_subscriber_code(bad)
    assert err.value.detail


@given(st.from_regex(r"[1-9][0-9]{14}", fullmatch=True))
def test_code_round_trip(code: str) -> None:
    assert str(parse_subscriber_code(code)) == code


def test_losses_and_alarm() -> None:
    r = transformer_loss(100_000, 88_000, threshold_percent=10)
    assert r.loss_wh == 12_000
    assert r.loss_bp == 1200
    assert r.alarm
    assert r.loss_percent_text == "12.00 %"
    assert not transformer_loss(100_000, 95_000, 10).alarm
    assert transformer_loss(100_000, 101_000, 10).alarm  # negative loss: something is wrong
    assert transformer_loss(0, 0, 10).loss_bp == 0


def test_consumption_buckets() -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    readings = [(t + timedelta(hours=h), 1000 * h * h) for h in range(0, 26)]
    hourly = consumption_buckets(readings, Granularity.HOUR, UTC)
    assert hourly[t + timedelta(hours=1)] == 1000
    assert hourly[t + timedelta(hours=2)] == 3000
    daily = consumption_buckets(readings, Granularity.DAY, UTC)
    assert sum(daily.values()) == 1000 * 25 * 25
    assert daily[t] == 1000 * 23 * 23
    monthly = consumption_buckets([*readings, (t - timedelta(hours=1), 0)], Granularity.MONTH, UTC)
    assert list(monthly.values()) == [1000 * 25 * 25]
    # a register reset counts nothing for the step
    assert consumption_buckets([(t, 500), (t + timedelta(hours=1), 10)], Granularity.HOUR, UTC) == {}
    assert add_buckets({t: 1}, {t: 2}) == {t: 3}


def test_sms_encoding() -> None:
    assert sms_sizing("Pay {now} 12.50 €").encoding is SmsEncoding.GSM7
    assert sms_sizing("a" * 160).parts == 1
    assert sms_sizing("a" * 161).parts == 2
    ru = sms_sizing("Оплатите")
    assert ru.encoding is SmsEncoding.UCS2
    assert ru.units == 8
    assert ru.parts == 1
    assert sms_sizing("ș" * 71).parts == 2


def test_notice_texts_in_the_subscribers_language() -> None:
    _subject, body = notice_text(NoticeKind.FINAL, "ru", utility="U", code="640100100010001", amount="5.00 USD")
    assert "640100100010001" in body
    assert "5.00 USD" in body
    assert "ПРЕДУПРЕЖДЕНИЕ" in body
    assert notice_text(NoticeKind.REMINDER, "xx", utility="U", code="c", amount="a")[0] == "Payment reminder"
    for language in ("en", "ro"):
        _, text = notice_text(
            NoticeKind.FINAL, language, utility="Demo Utility", code="640100100010001", amount="1.00 USD"
        )
        assert sms_sizing(text).encoding is SmsEncoding.GSM7


def test_invoice_content() -> None:
    ledger = Ledger("USD")
    ledger.post(plan_charge(E.PENALTY, Money(300, "USD"), key="pen"))
    opening = ledger.balances
    period = plan_top_up(opening, Money(1000, "USD"), key="p", recovery_bp=5000).postings
    period += plan_charge(E.FIXED_CHARGE, Money(120, "USD"), key="fix")
    inv = build_invoice(
        number=format_number("INV", 7),
        issued_on=date(2026, 4, 1),
        period_start=date(2026, 3, 1),
        period_end=date(2026, 3, 31),
        utility=Party("Demo", "", "Main st 1", "TX1"),
        subscriber=Party("Ana", "640100100010001", "Independentei 1/1"),
        opening=opening,
        postings=period,
        consumption_wh=123_456,
        energy_value=Money(2654, "USD"),
        vat_bp=2000,
    )
    assert inv.number == "INV-00000007"
    assert inv.opening_debt == Money(300, "USD")
    assert inv.closing_debt == Money(120, "USD")
    assert inv.payments == Money(1000, "USD")
    assert inv.charges == Money(120, "USD")
    assert any(line.quantity == "123.456 kWh" for line in inv.lines)
    assert inv.vat_included == vat_included(Money(2774, "USD"), 2000) == Money(462, "USD")
    assert Balances.zero("USD").total == Money(0, "USD")


def test_an_invoice_stored_as_json_reads_back_as_the_same_content() -> None:
    from billing.invoices import _content_of, _jsonable

    ledger = Ledger("USD")
    opening = ledger.balances
    postings = plan_top_up(opening, Money(1000, "USD"), key="p", recovery_bp=5000).postings
    content = build_invoice(
        number=format_number("INV", 9),
        issued_on=date(2026, 4, 1),
        period_start=date(2026, 3, 1),
        period_end=date(2026, 3, 31),
        utility=Party("Demo", "", "Main st 1", "TX1"),
        subscriber=Party("Ana", "640100100010001", "Independentei 1/1"),
        opening=opening,
        postings=postings,
        consumption_wh=5_000,
        energy_value=Money(1000, "USD"),
        vat_bp=2000,
    )
    assert _content_of(_jsonable(content)) == content
