"""What a monthly tax invoice says: utility, subscriber, period, consumption, payments, charges, debt.
Pure: the caller hands in the period's ledger postings and consumption; rendering is elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from billing.rules.ledger import Balances, Book, EntryType, Posting
from billing.rules.money import Money
from billing.rules.tariffs import NetQuantity
from billing.rules.units import KWH, Unit


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    description: str
    amount: Money
    quantity: str = ""


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    code: str
    address: str
    tax_id: str = ""


@dataclass(frozen=True, slots=True)
class InvoiceContent:
    number: str
    issued_on: date
    period_start: date
    period_end: date  # inclusive
    utility: Party
    subscriber: Party
    consumption_wh: int
    energy_value: Money  # the consumption at the tariff in force
    vat_included: Money
    lines: tuple[InvoiceLine, ...]
    payments: Money
    charges: Money
    opening_debt: Money
    closing_debt: Money
    currency: str
    net: NetQuantity | None = None  # a net-billed prosumer's import, export and surplus (consumption_wh: billed)


def format_number(series: str, number: int) -> str:
    return f"{series}-{number:08d}"


def vat_included(gross: Money, vat_bp: int) -> Money:
    """The VAT inside a gross amount at `vat_bp` (2000 = 20 %), rounded half up."""
    if vat_bp <= 0:
        return Money.zero(gross.currency)
    numerator = gross.minor * vat_bp
    denominator = 10000 + vat_bp
    return Money((numerator * 2 + denominator) // (2 * denominator), gross.currency)


def build_invoice(
    *,
    number: str,
    issued_on: date,
    period_start: date,
    period_end: date,
    utility: Party,
    subscriber: Party,
    opening: Balances,
    postings: Sequence[Posting],
    consumption_wh: int,
    energy_value: Money,
    vat_bp: int,
    unit: Unit = KWH,
    net: NetQuantity | None = None,
) -> InvoiceContent:
    """`consumption_wh`: the period's use in the register's base unit (Wh, or litres for `unit` m³); with
    `net` (net billing) the billed net, the import, export and surplus shown on lines of their own."""
    currency = opening.wallet.currency
    sums: dict[tuple[EntryType, Book], Money] = {}
    for p in postings:
        k = (p.entry_type, p.book)
        sums[k] = sums.get(k, Money.zero(currency)) + p.amount
    zero = Money.zero(currency)

    def get(t: EntryType, b: Book) -> Money:
        return sums.get((t, b), zero)

    payments = get(EntryType.PAYMENT, Book.WALLET)
    penalties = -get(EntryType.PENALTY, Book.DEBT)
    fixed = -get(EntryType.FIXED_CHARGE, Book.DEBT)
    emergency = -get(EntryType.CREDIT_SENT, Book.DEBT)
    credit = -get(EntryType.CREDIT_SENT, Book.WALLET)
    recovered = get(EntryType.DEBT_RECOVERY, Book.DEBT)
    adjustments = get(EntryType.ADJUSTMENT, Book.WALLET) + get(EntryType.ADJUSTMENT, Book.DEBT)
    returned = -(
        get(EntryType.REFUND, Book.WALLET)
        + get(EntryType.REFUND, Book.DEBT)
        + get(EntryType.REVERSAL, Book.WALLET)
        + get(EntryType.REVERSAL, Book.DEBT)
    )
    closing = opening.after(postings)
    kwh = unit.shown(consumption_wh)
    lines = [
        InvoiceLine("Debt at the start of the period", opening.owed),
        InvoiceLine("Payments received", payments),
        InvoiceLine("Credit sent to the meter", credit),
    ]
    if net is not None:
        lines += [
            InvoiceLine("Energy imported", zero, unit.shown(net.imported)),
            InvoiceLine("Energy exported", zero, unit.shown(net.exported)),
        ]
        if net.carried_in:
            lines.append(InvoiceLine("Surplus from the previous period", zero, unit.shown(net.carried_in)))
        lines.append(InvoiceLine("Net energy billed (value at tariff)", energy_value, kwh))
        if net.carried_out:
            lines.append(InvoiceLine("Surplus carried to the next period", zero, unit.shown(net.carried_out)))
    else:
        lines.append(InvoiceLine("Energy consumed (value at tariff)", energy_value, kwh))
    lines.append(InvoiceLine("Debt recovered from payments", recovered))
    optional = [
        ("Emergency credit", emergency),
        ("Penalties", penalties),
        ("Fixed charges", fixed),
        ("Adjustments", adjustments),
        ("Refunds and reversals", returned),
    ]
    lines += [InvoiceLine(text, amount) for text, amount in optional if amount]
    lines.append(InvoiceLine("Debt at the end of the period", closing.owed))
    return InvoiceContent(
        number=number,
        issued_on=issued_on,
        period_start=period_start,
        period_end=period_end,
        utility=utility,
        subscriber=subscriber,
        consumption_wh=consumption_wh,
        energy_value=energy_value,
        vat_included=vat_included(energy_value + fixed, vat_bp),
        lines=tuple(lines),
        payments=payments,
        charges=penalties + fixed,
        opening_debt=opening.owed,
        closing_debt=closing.owed,
        currency=currency,
        net=net,
    )
