"""Top-ups: payment -> ledger -> debt recovery -> credit command in one transaction, idempotent;
reversals; cashier receipts; delivery at 1:1; re-issue with the same transfer id (both databases)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

import meter_protocol as mp
from billing import ledger, topup
from billing.errors import CurrencyMismatch
from billing.rules.ledger import EntryType
from billing.rules.money import Money
from billing.values import PaymentConfirmed, PaymentReversed, ReversalKind
from gateway.events import CommandSettled
from gateway.keys import KeyRing
from gateway.outbox import get_command
from store.schema import commands as C  # noqa: N812
from store.schema import ledger as L  # noqa: N812
from store.schema import payments as P  # noqa: N812
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")
KEYS = KeyRing(MASTER_KEY)
POLICY = topup.TopUpPolicy(recovery_bp=2500, min_debt_minor=100)


def paid(ref: str, amount: int, code: str = "640100100010001", currency: str = "USD") -> PaymentConfirmed:
    return PaymentConfirmed("stripe", ref, amount, currency, NOW, subscriber_code=code, event_id=f"evt_{ref}")


async def _debt(uow: UnitOfWork, account_id: int, minor: int) -> None:
    from billing.rules.ledger import plan_charge

    async with uow.begin() as conn:
        await ledger.post(
            conn,
            account_id,
            plan_charge(EntryType.FIXED_CHARGE, Money(minor, "USD"), key=f"fix:{minor}"),
            created_by="test",
            now=NOW,
        )


async def test_a_payment_books_recovers_debt_and_queues_one_sealed_credit(uow: UnitOfWork) -> None:
    sub, meter = await new_subscriber(uow)
    assert meter is not None
    await _debt(uow, sub.account_id, 400)
    result = await topup.apply_payment(uow, paid("pi_1", 1000), NOW, keys=KEYS, policy=POLICY)
    assert not result.duplicate
    assert result.state == "queued"
    assert result.transfer_id == 1
    assert result.recovered == Money(250, "USD")
    assert result.vended == Money(750, "USD")
    async with uow.connect() as conn:
        balances = await ledger.balances(conn, sub.account_id)
        command = await get_command(conn, result.command_id)
        _key_id, key = await KEYS.key_for(conn, meter.id)
        payment = (await conn.execute(select(P.payments))).one()
    assert balances.wallet == Money(0, "USD")
    assert balances.debt == Money(-150, "USD")
    assert command.state == "0:0"
    assert command.kind == "top_up"
    decoded = mp.decode_frame(command.frame, key=key, meter_code=meter.code)
    assert decoded.message == mp.TopUp(transfer_id=1, amount_minor=750)
    assert payment.status == "paid"
    assert payment.amount_minor == 1000


async def test_the_same_payment_twice_and_concurrently_has_one_effect(uow: UnitOfWork) -> None:
    sub, _ = await new_subscriber(uow)
    first = await topup.apply_payment(uow, paid("pi_2", 500), NOW, keys=KEYS, policy=POLICY)
    again = await topup.apply_payment(uow, paid("pi_2", 500), NOW, keys=KEYS, policy=POLICY)
    assert again.duplicate
    assert again.topup_id == first.topup_id
    assert again.command_id == first.command_id
    results = await asyncio.gather(
        *(topup.apply_payment(uow, paid("pi_3", 700), NOW, keys=KEYS, policy=POLICY) for _ in range(5))
    )
    assert len({r.topup_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    async with uow.connect() as conn:
        commands = await conn.scalar(select(func.count()).select_from(C.commands))
        entries = await ledger.entries(conn, sub.account_id)
    assert commands == 2
    assert sum(e.amount.minor for e in entries if e.entry_type is EntryType.PAYMENT) == 1200


async def test_currency_and_unknown_subscriber_are_refused(uow: UnitOfWork) -> None:
    await new_subscriber(uow)
    with pytest.raises(CurrencyMismatch):
        await topup.apply_payment(uow, paid("pi_4", 500, currency="EUR"), NOW, keys=KEYS, policy=POLICY)
    from billing.errors import NotFound

    with pytest.raises(NotFound):
        await topup.apply_payment(uow, paid("pi_5", 500, code="640100100019999"), NOW, keys=KEYS, policy=POLICY)
    async with uow.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(L.ledger_entries)) == 0


async def test_without_a_meter_the_credit_is_held_then_vended(uow: UnitOfWork) -> None:
    sub, _ = await new_subscriber(uow, meter=None)
    held = await topup.apply_payment(uow, paid("pi_6", 900), NOW, keys=KEYS, policy=POLICY)
    assert held.state == "held"
    assert held.command_id is None
    from billing import meter_registry
    from tests.integration.billing.conftest import meter_code

    async with uow.begin() as conn:
        await meter_registry.install_meter(
            conn,
            OPERATOR,
            sub.id,
            meter_registry.NewMeter(meter_code(5), "37369000005"),
            master_key=MASTER_KEY,
            now=NOW,
        )
    vended = await topup.vend_held_credit(uow, OPERATOR, sub.id, NOW, keys=KEYS, request_id="v1")
    assert vended is not None
    assert vended.vended == Money(900, "USD")
    assert vended.command_id is not None
    assert await topup.vend_held_credit(uow, OPERATOR, sub.id, NOW, keys=KEYS, request_id="v2") is None


async def test_reversal_turns_delivered_credit_into_debt_never_a_negative_meter(uow: UnitOfWork) -> None:
    sub, _ = await new_subscriber(uow)
    first = await topup.apply_payment(uow, paid("pi_7", 1000), NOW, keys=KEYS, policy=POLICY)
    refund = PaymentReversed("stripe", "pi_7", "re_1", 400, "USD", ReversalKind.REFUND, NOW)
    result = await topup.reverse_payment(uow, refund, NOW)
    assert result.to_debt == Money(400, "USD")
    assert result.from_wallet == Money(0, "USD")
    assert (await topup.reverse_payment(uow, refund, NOW)).duplicate
    dispute = PaymentReversed("stripe", "pi_7", "dp_1", 600, "USD", ReversalKind.DISPUTE, NOW)
    await topup.reverse_payment(uow, dispute, NOW)
    from billing.errors import InvalidField

    with pytest.raises(InvalidField):
        await topup.reverse_payment(
            uow, PaymentReversed("stripe", "pi_7", "re_2", 1, "USD", ReversalKind.REFUND, NOW), NOW
        )
    with pytest.raises(topup.PaymentNotApplied):
        await topup.reverse_payment(
            uow, PaymentReversed("stripe", "pi_x", "re_3", 1, "USD", ReversalKind.REFUND, NOW), NOW
        )
    async with uow.connect() as conn:
        balances = await ledger.balances(conn, sub.account_id)
        commands = await conn.scalar(select(func.count()).select_from(C.commands))
        state = await conn.scalar(select(L.topups.c.state).where(L.topups.c.id == first.topup_id))
    assert balances.debt == Money(-1000, "USD")
    assert balances.wallet == Money(0, "USD")
    assert commands == 1  # nothing is ever clawed back from the meter
    assert state == "reversed"
    # the next payment repays part of that debt first
    nxt = await topup.apply_payment(uow, paid("pi_8", 2000), NOW, keys=KEYS, policy=POLICY)
    assert nxt.recovered == Money(500, "USD")
    assert nxt.vended == Money(1500, "USD")


async def test_cashier_top_up_numbers_receipts_without_gaps(uow: UnitOfWork) -> None:
    await new_subscriber(uow)
    r1 = await topup.cash_top_up(uow, OPERATOR, "640100100010001", 500, "USD", NOW, keys=KEYS, request_id="form-1")
    again = await topup.cash_top_up(uow, OPERATOR, "640100100010001", 500, "USD", NOW, keys=KEYS, request_id="form-1")
    with pytest.raises(CurrencyMismatch):
        await topup.cash_top_up(uow, OPERATOR, "640100100010001", 500, "EUR", NOW, keys=KEYS, request_id="form-2")
    r2 = await topup.cash_top_up(uow, OPERATOR, "640100100010001", 300, "USD", NOW, keys=KEYS, request_id="form-3")
    assert (r1.receipt_number, again.receipt_number, r2.receipt_number) == ("R-00000001", "R-00000001", "R-00000002")
    assert again.duplicate
    from billing.receipts import receipt_text, render_receipt_pdf

    async with uow.connect() as conn:
        text = await receipt_text(conn, r1.topup_id, utility="Demo Utility")
        pdf = await render_receipt_pdf(conn, r1.topup_id, utility="Demo Utility")
    assert "R-00000001" in text
    assert "5.00 USD" in text
    assert "640100100010001" in text
    assert pdf.startswith(b"%PDF")


async def test_delivered_only_at_1_1_and_a_failed_credit_is_alarmed_and_reissued_with_the_same_transfer(
    uow: UnitOfWork,
) -> None:
    _, meter = await new_subscriber(uow)
    assert meter is not None
    ok = await topup.apply_payment(uow, paid("pi_9", 500), NOW, keys=KEYS, policy=POLICY)
    bad = await topup.apply_payment(uow, paid("pi_10", 600), NOW, keys=KEYS, policy=POLICY)
    assert ok.command_id
    assert bad.command_id
    await topup.on_command_settled(uow, CommandSettled(ok.command_id, meter.id, "top_up", "1:1", at=NOW), NOW)
    await topup.on_command_settled(uow, CommandSettled(bad.command_id, meter.id, "top_up", "timed_out"), NOW)
    async with uow.connect() as conn:
        assert (await topup.get_top_up(conn, ok.topup_id)).state == "delivered"
        assert (await topup.get_top_up(conn, bad.topup_id)).state == "failed"
        alarm = (await conn.execute(select(C.alarms))).one()
    assert alarm.kind == "topup_failed"
    assert alarm.command_id == bad.command_id
    new_command = await topup.reissue_top_up(uow, OPERATOR, bad.topup_id, NOW + timedelta(hours=1), keys=KEYS)
    async with uow.connect() as conn:
        view = await get_command(conn, new_command)
        _, key = await KEYS.key_for(conn, meter.id)
        again = await topup.get_top_up(conn, bad.topup_id)
    assert mp.decode_frame(view.frame, key=key, meter_code=meter.code).message == mp.TopUp(bad.transfer_id, 600)
    assert again.state == "queued"
    assert again.command_id == new_command
