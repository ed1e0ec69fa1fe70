"""Keywords in every shipped language, the answer texts, and voucher codes with their check digit (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from billing.rules import self_service as r
from billing.rules.arrears import ArrearsPolicy, ArrearsState, Stage, next_step
from billing.rules.money import Money
from billing.sms_text import read_text

SHIPPED = ("en", "ro", "ru", "az", "es")


@pytest.mark.parametrize(
    ("text", "keyword", "argument", "languages"),
    [
        ("BAL", r.Keyword.BAL, "", ("en",)),
        ("  bal  ", r.Keyword.BAL, "", ("en",)),
        ("Sold", r.Keyword.BAL, "", ("ro",)),
        ("бал", r.Keyword.BAL, "", ("ru",)),
        ("БАЛАНС", r.Keyword.BAL, "", ("ru",)),
        ("balans", r.Keyword.BAL, "", ("az",)),
        ("SALDO", r.Keyword.BAL, "", ("es",)),
        ("debt", r.Keyword.DEBT, "", ("en",)),
        ("Долг", r.Keyword.DEBT, "", ("ru",)),
        ("PAY 1234 5678 9012 34", r.Keyword.PAY, "1234 5678 9012 34", ("en",)),
        ("ödə 12345678901234", r.Keyword.PAY, "12345678901234", ("az",)),
        ("ODE 1", r.Keyword.PAY, "1", ("az",)),
        ("Plată 1", r.Keyword.PAY, "1", ("ro",)),
        ("платёж 1", r.Keyword.PAY, "1", ("ru",)),
        ("token", r.Keyword.TOKEN, "", ("en", "ro", "az", "es")),
        ("código", r.Keyword.TOKEN, "", ("es",)),
        ("último", r.Keyword.LAST, "", ("es",)),
        ("последний", r.Keyword.LAST, "", ("ru",)),
        ("KÖMƏK", r.Keyword.HELP, "", ("az",)),
        ("ayuda", r.Keyword.HELP, "", ("es",)),
        ("AJUTOR", r.Keyword.HELP, "", ("ro",)),
    ],
)
def test_keywords_in_any_shipped_language_and_case(
    text: str, keyword: r.Keyword, argument: str, languages: tuple[str, ...]
) -> None:
    assert r.parse_request(text) == r.Request(keyword, argument, languages)


def test_not_a_keyword() -> None:
    assert r.parse_request("") is None
    assert r.parse_request("hello there") is None
    assert r.parse_request("BALX") is None


def test_every_language_names_every_keyword_and_says_every_answer() -> None:
    assert set(r.KEYWORDS) == set(SHIPPED) == set(r.languages())
    for language in SHIPPED:
        assert set(r.KEYWORDS[language]) == set(r.Keyword)
        help_text = r.answer_text(r.Help(), language, utility="U", code="c")
        for keyword, words in r.KEYWORDS[language].items():  # HELP names every other keyword
            assert keyword is r.Keyword.HELP or any(w in r._fold(help_text).split() for w in words), (language, words)
    for language in SHIPPED:
        said = r.answer_text(r.Balance(Money(1250, "USD"), None), language, utility="U", code="c")
        assert "12.50 USD" in said


def test_the_answer_is_in_the_words_language_or_the_subscribers_for_a_shared_word() -> None:
    token = r.parse_request("TOKEN")
    assert token is not None
    assert r.answer_language(token, "es") == "es"
    assert r.answer_language(token, "ru") == "en"
    bal = r.parse_request("БАЛ")
    assert bal is not None
    assert r.answer_language(bal, "ro") == "ru"


def test_answer_texts() -> None:
    usd = Money(500, "USD")
    on = date(2026, 3, 4)
    en = {"utility": "Demo", "code": "640100100010001"}
    assert r.answer_text(r.Balance(usd, usd, on), "en", **en) == (
        "Demo: account 640100100010001: balance 5.00 USD; meter credit 5.00 USD on 2026-03-04."
    )
    assert r.answer_text(r.Debt(Money(0, "USD")), "en", **en) == "Demo: account 640100100010001 has no debt."
    assert r.answer_text(r.Debt(usd, "disconnect", on), "es", **en) == (
        "Demo: la cuenta 640100100010001 debe 5.00 USD. Siguiente paso: corte el 2026-03-04."
    )
    assert r.answer_text(r.LastTopUp(usd, on, "delivered"), "ru", **en) == (
        "Demo: последнее пополнение 5.00 USD от 2026-03-04: на счётчике."
    )
    assert r.answer_text(r.Token("12345678901234567890", usd), "en", **en).endswith("1234 5678 9012 3456 7890")
    assert "no keypad token" in r.answer_text(r.Token(None), "en", **en)
    assert r.answer_text(r.Paid("locked"), "az", **en) == (
        "Demo: çox sayda yanlış vauçer kodu; sabah yenidən cəhd edin."
    )


def test_voucher_codes_carry_a_luhn_check_digit() -> None:
    code = r.voucher_code("1234567890123")
    assert len(code) == r.VOUCHER_DIGITS
    assert r.read_voucher_code(code) == code
    assert r.read_voucher_code(r.printed(code)) == code
    assert r.read_voucher_code("-".join(r.printed(code).split())) == code
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    assert r.read_voucher_code(wrong) is None
    swapped = code[1] + code[0] + code[2:]
    assert r.read_voucher_code(swapped) is None  # a swap of two neighbours is caught
    assert r.read_voucher_code(code[:-1]) is None
    assert r.voucher_code("0007992739871") == "00079927398713"  # the textbook Luhn example, zero-padded
    with pytest.raises(ValueError, match="13 random digits"):
        r.voucher_code("12")


def test_the_next_arrears_step_and_its_date() -> None:
    policy = ArrearsPolicy(reminder_after_days=3, final_after_days=10, disconnect_after_days=15)
    since = datetime(2026, 3, 1, tzinfo=UTC)
    owed = Money(5000, "USD")
    assert next_step(policy, ArrearsState(owed, since)) == (Stage.REMINDER, since + timedelta(days=3))
    assert next_step(policy, ArrearsState(owed, since, Stage.REMINDER)) == (Stage.FINAL, since + timedelta(days=10))
    assert next_step(policy, ArrearsState(owed, since, Stage.FINAL)) == (Stage.DISCONNECT, since + timedelta(days=15))
    assert next_step(policy, ArrearsState(owed, since, Stage.DISCONNECT, disconnected=True)) is None
    assert next_step(policy, ArrearsState(Money(0, "USD"))) is None


def test_text_sms_are_read_in_their_coding() -> None:
    assert read_text(b"PAY 1234", 0x00) == "PAY 1234"
    assert read_text("БАЛ".encode("utf-16-be"), 0x08) == "БАЛ"
    assert read_text(bytes([0x1B, 0x65]), 0x00) == "€"
    assert read_text("Plată".encode("latin-1", "replace"), 0x03) == "Plat?"
