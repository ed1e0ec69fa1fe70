"""The prepaid ledger's rules: which postings each operation makes. Pure.

Each account has two books, both sums of signed entries in the account's currency:

- `wallet` — money received and not yet sent to the meter as credit (never below zero);
- `debt` — what the subscriber owes (zero or negative: -500 means 5.00 owed).

An account's balance is the sum of all its entries (wallet + debt). A payment adds to the wallet; a share
of it first repays the debt (`debt_recovery`: wallet -x, debt +x); what is left is sent to the meter
(`credit_sent`: wallet -y). A reversal (refund or lost dispute) takes back what is still in the wallet
and turns the rest — credit the meter already has — into debt: the meter's balance is never made negative
by the head end. Every posting carries an idempotency key; a key seen before has no effect.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from billing.errors import InsufficientFunds, InvalidPosting
from billing.rules.money import Money


class EntryType(enum.StrEnum):
    PAYMENT = "payment"
    CREDIT_SENT = "credit_sent"
    DEBT_RECOVERY = "debt_recovery"
    PENALTY = "penalty"
    FIXED_CHARGE = "fixed_charge"
    ADJUSTMENT = "adjustment"
    REFUND = "refund"
    REVERSAL = "reversal"
    REINSTATEMENT = "reinstatement"  # a won dispute gives back what its reversal took


class Book(enum.StrEnum):
    WALLET = "wallet"
    DEBT = "debt"


@dataclass(frozen=True, slots=True)
class Posting:
    entry_type: EntryType
    book: Book
    amount: Money
    idempotency_key: str
    memo: str | None = None

    def __post_init__(self) -> None:
        if not self.idempotency_key or len(self.idempotency_key) > 200:
            raise InvalidPosting("an idempotency key is 1..200 characters")


@dataclass(frozen=True, slots=True)
class Balances:
    wallet: Money
    debt: Money  # <= 0: what is owed, negated

    @classmethod
    def zero(cls, currency: str) -> Balances:
        return cls(Money.zero(currency), Money.zero(currency))

    @property
    def total(self) -> Money:
        return self.wallet + self.debt

    @property
    def owed(self) -> Money:
        """What the subscriber owes, as a non-negative amount."""
        return Money(max(0, -self.debt.minor), self.debt.currency)

    def after(self, postings: Iterable[Posting]) -> Balances:
        wallet, debt = self.wallet, self.debt
        for p in postings:
            if p.book is Book.WALLET:
                wallet = wallet + p.amount
            else:
                debt = debt + p.amount
        return Balances(wallet, debt)


def balances_of(postings: Iterable[Posting], currency: str) -> Balances:
    return Balances.zero(currency).after(postings)


@dataclass(frozen=True, slots=True)
class TopUpPlan:
    postings: tuple[Posting, ...]
    paid: Money
    recovered: Money  # repaid debt
    vend: Money  # credit to send to the meter (zero when there is no meter to send it to)


def recovery_amount(balances: Balances, paid: Money, recovery_bp: int) -> Money:
    """The share of `paid` that repays debt: `recovery_bp`/10000 of it, never more than is owed."""
    share = paid.share_bp(recovery_bp)
    return Money(min(share.minor, balances.owed.minor), paid.currency)


def plan_top_up(balances: Balances, paid: Money, *, key: str, recovery_bp: int, vend: bool = True) -> TopUpPlan:
    """Postings for a confirmed payment: payment in, debt recovery first, the rest sent as credit.

    With `vend=False` (no meter to send to) the rest stays in the wallet. Whatever was already in the
    wallet is sent with it.
    """
    if not paid.is_positive():
        raise InvalidPosting("a payment is a positive amount")
    recovered = recovery_amount(balances, paid, recovery_bp)
    postings = [Posting(EntryType.PAYMENT, Book.WALLET, paid, f"{key}:payment")]
    if recovered.is_positive():
        postings += [
            Posting(EntryType.DEBT_RECOVERY, Book.WALLET, -recovered, f"{key}:recovery:wallet"),
            Posting(EntryType.DEBT_RECOVERY, Book.DEBT, recovered, f"{key}:recovery:debt"),
        ]
    available = balances.wallet + paid - recovered
    vend_amount = available if vend and available.is_positive() else Money.zero(paid.currency)
    if vend_amount.is_positive():
        postings.append(Posting(EntryType.CREDIT_SENT, Book.WALLET, -vend_amount, f"{key}:credit"))
    return TopUpPlan(tuple(postings), paid, recovered, vend_amount)


def plan_vend(balances: Balances, *, key: str) -> tuple[Posting, ...]:
    """Send whatever the wallet holds to the meter (e.g. after a meter is installed)."""
    if not balances.wallet.is_positive():
        return ()
    return (Posting(EntryType.CREDIT_SENT, Book.WALLET, -balances.wallet, f"{key}:credit"),)


def plan_reversal(balances: Balances, amount: Money, *, key: str, refund: bool) -> tuple[Posting, ...]:
    """Take back `amount` of a payment: from the wallet as far as it goes, the rest becomes debt.

    `refund=True` books it as a refund (money returned to the payer), else as a reversal (a dispute lost).
    """
    if not amount.is_positive():
        raise InvalidPosting("a reversal is a positive amount")
    entry = EntryType.REFUND if refund else EntryType.REVERSAL
    from_wallet = Money(min(max(balances.wallet.minor, 0), amount.minor), amount.currency)
    rest = amount - from_wallet
    postings = []
    if from_wallet.is_positive():
        postings.append(Posting(entry, Book.WALLET, -from_wallet, f"{key}:wallet"))
    if rest.is_positive():
        postings.append(Posting(entry, Book.DEBT, -rest, f"{key}:debt", "credit already delivered becomes debt"))
    return tuple(postings)


@dataclass(frozen=True, slots=True)
class ReinstatementPlan:
    postings: tuple[Posting, ...]
    cancelled: Money  # of the debt the payment's own reversals created
    credited: Money  # what is left: new credit, into the wallet
    vend: Money  # sent to the meter (the wallet's, with `vend`)


def plan_reinstatement(
    balances: Balances, amount: Money, *, own_debt: Money, key: str, vend: bool = True
) -> ReinstatementPlan:
    """Give back `amount` of a payment after a dispute over it was won. First it cancels the debt that the
    payment's own reversals created and that is still owed (`own_debt`; the meter kept that credit), so
    the same credit never reaches the meter twice; only what is left is new credit, into the wallet and,
    with `vend`, sent to the meter. No debt recovery is taken: it was taken when the payment came."""
    if not amount.is_positive():
        raise InvalidPosting("a reinstatement is a positive amount")
    cancelled = Money(max(0, min(amount.minor, own_debt.minor, balances.owed.minor)), amount.currency)
    credited = amount - cancelled
    postings = []
    if cancelled.is_positive():
        postings.append(Posting(EntryType.REINSTATEMENT, Book.DEBT, cancelled, f"{key}:debt", "dispute won"))
    if credited.is_positive():
        postings.append(Posting(EntryType.REINSTATEMENT, Book.WALLET, credited, f"{key}:wallet", "dispute won"))
    available = balances.wallet + credited
    vend_amount = available if vend and available.is_positive() else Money.zero(amount.currency)
    if vend_amount.is_positive():
        postings.append(Posting(EntryType.CREDIT_SENT, Book.WALLET, -vend_amount, f"{key}:credit"))
    return ReinstatementPlan(tuple(postings), cancelled, credited, vend_amount)


def plan_charge(entry_type: EntryType, amount: Money, *, key: str, memo: str | None = None) -> tuple[Posting, ...]:
    """A penalty or a fixed charge: added to the debt."""
    if entry_type not in (EntryType.PENALTY, EntryType.FIXED_CHARGE):
        raise InvalidPosting(f"{entry_type} is not a charge")
    if not amount.is_positive():
        raise InvalidPosting("a charge is a positive amount")
    return (Posting(entry_type, Book.DEBT, -amount, key, memo),)


def plan_adjustment(balances: Balances, book: Book, amount: Money, *, key: str, memo: str) -> tuple[Posting, ...]:
    """An operator's correction on one book. The wallet may not go below zero; the debt not above zero."""
    if not amount:
        raise InvalidPosting("an adjustment is not zero")
    if not memo:
        raise InvalidPosting("an adjustment needs a reason")
    after = balances.after([Posting(EntryType.ADJUSTMENT, book, amount, key)])
    if after.wallet.is_negative():
        raise InsufficientFunds(balances.wallet.minor, -amount.minor)
    if after.debt.is_positive():
        raise InvalidPosting("an adjustment cannot make the debt book positive; pay out of the wallet instead")
    return (Posting(EntryType.ADJUSTMENT, book, amount, key, memo),)


def plan_refund(balances: Balances, amount: Money, *, key: str) -> tuple[Posting, ...]:
    """Return wallet money (not yet sent to the meter) to the subscriber."""
    if not amount.is_positive():
        raise InvalidPosting("a refund is a positive amount")
    if amount > balances.wallet:
        raise InsufficientFunds(balances.wallet.minor, amount.minor)
    return (Posting(EntryType.REFUND, Book.WALLET, -amount, key),)


def plan_emergency_credit(amount: Money, *, key: str) -> tuple[Posting, ...]:
    """Emergency credit sent to the meter on loan: recorded as debt, repaid by debt recovery."""
    if not amount.is_positive():
        raise InvalidPosting("emergency credit is a positive amount")
    return (Posting(EntryType.CREDIT_SENT, Book.DEBT, -amount, key, "emergency credit"),)


@dataclass
class Ledger:
    """An in-memory append-only ledger with the same idempotency rule as the database: a posting whose key
    was seen before is ignored. Used by the property tests and as the reference for the stored ledger."""

    currency: str
    entries: list[Posting] = field(default_factory=list)
    _keys: set[str] = field(default_factory=set)

    def post(self, postings: Sequence[Posting]) -> list[Posting]:
        """Append one operation's postings, all or none: if any of their keys was seen, the operation was
        applied before and nothing is appended. Returns what was appended."""
        for p in postings:
            if p.amount.currency != self.currency:
                raise InvalidPosting(f"posting in {p.amount.currency} on a {self.currency} ledger")
        keys = [p.idempotency_key for p in postings]
        if len(set(keys)) != len(keys):
            raise InvalidPosting("one operation repeats an idempotency key")
        if any(k in self._keys for k in keys):
            return []
        self._keys.update(keys)
        self.entries.extend(postings)
        return list(postings)

    def has(self, key: str) -> bool:
        return key in self._keys

    @property
    def balances(self) -> Balances:
        return balances_of(self.entries, self.currency)

    @property
    def balance(self) -> Money:
        return self.balances.total
