"""The ledger invariant: balance == sum of entries, and a repeated idempotency key has no second effect."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.errors import InsufficientFunds, InvalidPosting
from billing.rules.ledger import (
    Balances,
    Book,
    EntryType,
    Ledger,
    plan_adjustment,
    plan_charge,
    plan_emergency_credit,
    plan_refund,
    plan_reversal,
    plan_top_up,
    plan_vend,
)
from billing.rules.money import Money


def usd(minor: int) -> Money:
    return Money(minor, "USD")


def test_top_up_without_debt_sends_everything() -> None:
    plan = plan_top_up(Balances.zero("USD"), usd(1000), key="p1", recovery_bp=2500)
    assert plan.recovered == usd(0)
    assert plan.vend == usd(1000)
    assert [(p.entry_type, p.book, p.amount.minor) for p in plan.postings] == [
        (EntryType.PAYMENT, Book.WALLET, 1000),
        (EntryType.CREDIT_SENT, Book.WALLET, -1000),
    ]


def test_top_up_recovers_a_share_of_debt_first() -> None:
    owing = Balances(usd(0), usd(-500))
    plan = plan_top_up(owing, usd(1000), key="p1", recovery_bp=2500)
    assert plan.recovered == usd(250)
    assert plan.vend == usd(750)
    after = owing.after(plan.postings)
    assert after == Balances(usd(0), usd(-250))


def test_recovery_never_takes_more_than_is_owed() -> None:
    plan = plan_top_up(Balances(usd(0), usd(-100)), usd(1000), key="p", recovery_bp=5000)
    assert plan.recovered == usd(100)
    assert plan.vend == usd(900)


def test_without_a_meter_the_money_stays_in_the_wallet_and_is_vended_later() -> None:
    plan = plan_top_up(Balances.zero("USD"), usd(300), key="p", recovery_bp=0, vend=False)
    after = Balances.zero("USD").after(plan.postings)
    assert plan.vend == usd(0)
    assert after.wallet == usd(300)
    (vend,) = plan_vend(after, key="v")
    assert vend.amount == usd(-300)
    assert after.after([vend]).wallet == usd(0)


def test_reversal_of_delivered_credit_becomes_debt() -> None:
    ledger = Ledger("USD")
    ledger.post(plan_top_up(ledger.balances, usd(1000), key="p", recovery_bp=0).postings)
    ledger.post(plan_reversal(ledger.balances, usd(1000), key="r", refund=False))
    assert ledger.balances == Balances(usd(0), usd(-1000))
    assert {p.entry_type for p in ledger.entries[-1:]} == {EntryType.REVERSAL}


def test_refund_takes_the_wallet_first() -> None:
    start = Balances(usd(300), usd(0))
    postings = plan_reversal(start, usd(1000), key="r", refund=True)
    assert start.after(postings) == Balances(usd(0), usd(-700))
    with pytest.raises(InsufficientFunds):
        plan_refund(start, usd(301), key="x")


def test_charges_and_adjustments() -> None:
    (p,) = plan_charge(EntryType.PENALTY, usd(50), key="pen")
    assert p.book is Book.DEBT
    assert p.amount == usd(-50)
    with pytest.raises(InvalidPosting):
        plan_charge(EntryType.PAYMENT, usd(50), key="x")
    with pytest.raises(InvalidPosting):
        plan_adjustment(Balances.zero("USD"), Book.DEBT, usd(10), key="a", memo="oops")  # debt above zero
    with pytest.raises(InvalidPosting):
        plan_adjustment(Balances.zero("USD"), Book.WALLET, usd(10), key="a", memo="")
    (e,) = plan_emergency_credit(usd(200), key="e")
    assert e.book is Book.DEBT
    assert e.entry_type is EntryType.CREDIT_SENT


def test_a_repeated_key_has_no_effect() -> None:
    ledger = Ledger("USD")
    postings = plan_top_up(ledger.balances, usd(1000), key="evt_1", recovery_bp=0).postings
    assert len(ledger.post(postings)) == 2
    assert ledger.post(postings) == []
    assert ledger.balance == usd(0)
    assert len(ledger.entries) == 2


_ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["pay", "pay_no_meter", "reverse", "refund", "penalty", "fixed", "adjust", "emergency", "vend"]
        ),
        st.integers(1, 100_000),
        st.integers(0, 12),  # key space small on purpose: keys repeat
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_ops, st.integers(0, 10000))
def test_invariants_over_random_operation_sequences(ops: list[tuple[str, int, int]], recovery_bp: int) -> None:
    ledger = Ledger("USD")
    applied: dict[str, int] = {}
    for op, amount, n in ops:
        key = f"{op}:{n}"
        b = ledger.balances
        try:
            if op == "pay":
                postings = plan_top_up(b, usd(amount), key=key, recovery_bp=recovery_bp).postings
            elif op == "pay_no_meter":
                postings = plan_top_up(b, usd(amount), key=key, recovery_bp=recovery_bp, vend=False).postings
            elif op == "reverse":
                postings = plan_reversal(b, usd(amount), key=key, refund=False)
            elif op == "refund":
                postings = plan_refund(b, usd(amount), key=key)
            elif op in ("penalty", "fixed"):
                kind = EntryType.PENALTY if op == "penalty" else EntryType.FIXED_CHARGE
                postings = plan_charge(kind, usd(amount), key=key)
            elif op == "adjust":
                postings = plan_adjustment(b, Book.WALLET, usd(amount), key=key, memo="correction")
            elif op == "emergency":
                postings = plan_emergency_credit(usd(amount), key=key)
            else:
                postings = plan_vend(b, key=key)
        except (InsufficientFunds, InvalidPosting):
            continue
        before_entries = len(ledger.entries)
        seen_before = any(ledger.has(p.idempotency_key) for p in postings)
        added = ledger.post(postings)
        if seen_before:
            # a replayed operation (same key, whatever its amount now): no effect at all
            assert added == []
        for p in added:
            applied[p.idempotency_key] = p.amount.minor
        assert len(ledger.entries) == before_entries + len(added)
        # balance == sum of entries, always
        assert ledger.balance.minor == sum(p.amount.minor for p in ledger.entries)
        assert ledger.balances.wallet.minor == sum(p.amount.minor for p in ledger.entries if p.book is Book.WALLET)
        # the head end never owes the meter: the wallet is never negative, the debt never positive
        assert ledger.balances.wallet.minor >= 0
        assert ledger.balances.debt.minor <= 0
    # every key appears once
    keys = [p.idempotency_key for p in ledger.entries]
    assert len(keys) == len(set(keys))
    assert sum(applied.values()) == ledger.balance.minor
