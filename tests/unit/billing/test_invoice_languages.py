"""Invoices in every shipped language: each label and each line an invoice can carry has its words in Romanian,
Russian, Azerbaijani and Spanish, and the PDF is drawn in each of them."""

from __future__ import annotations

from datetime import date

import pytest

from billing.pdf import render_invoice
from billing.rules import invoice_text
from billing.rules.invoice import InvoiceContent, Party, build_invoice
from billing.rules.ledger import EntryType as E
from billing.rules.ledger import Ledger, plan_charge, plan_top_up
from billing.rules.money import Money
from web import i18n


def _invoice() -> InvoiceContent:
    ledger = Ledger("USD")
    ledger.post(plan_charge(E.PENALTY, Money(300, "USD"), key="pen"))
    opening = ledger.balances
    period = plan_top_up(opening, Money(1000, "USD"), key="p", recovery_bp=5000).postings
    period += plan_charge(E.FIXED_CHARGE, Money(120, "USD"), key="fix")
    return build_invoice(
        number="INV-00000007",
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


def test_every_shipped_language_says_every_invoice_line() -> None:
    assert set(invoice_text.languages()) == set(i18n.LANGUAGES)
    invoice = _invoice()
    for line in invoice.lines:
        assert line.description in invoice_text.LABELS
    for language in invoice_text.languages():
        if language != "en":
            assert all(invoice_text.say(label, language) != label for label in invoice_text.LABELS), language
    assert invoice_text.say("Tax invoice", "es") == "Factura fiscal"
    assert invoice_text.say("Debt at the end of the period", "az") == "Dövrün sonuna borc"


@pytest.mark.parametrize("language", sorted(i18n.LANGUAGES))
def test_the_invoice_pdf_is_drawn_in_each_language(language: str) -> None:
    pdf = render_invoice(_invoice(), language)
    assert pdf.startswith(b"%PDF")
    if language != "en":
        assert pdf != render_invoice(_invoice(), "en")
