"""Taking back (part of) a credited payment: a refund, or a dispute lost or with its funds withdrawn.

What the wallet still holds is taken from it; credit the meter already has becomes debt (recovered from
later payments): the head end never makes a meter's balance negative. A reversal takes first from the
top-up itself, then from each of its reinstatements (a won dispute's) in turn. Idempotent on the
reversal's reference.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import ledger
from billing.errors import CurrencyMismatch, InvalidField
from billing.rules.ledger import plan_reversal
from billing.rules.money import Money
from billing.topup_records import PaymentNotApplied, ReversalResult, find_topup, topup_key
from billing.values import PaymentReversed, ReversalKind
from store import audit
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812


async def reverse(conn: AsyncConnection, reversal: PaymentReversed, now: datetime, actor: Actor) -> ReversalResult:
    key = topup_key(reversal.provider, reversal.provider_ref)
    row = await find_topup(conn, key)
    if row is None:
        raise PaymentNotApplied(reversal.provider, reversal.provider_ref)
    currency = await ledger.account_currency(conn, row.account_id, lock=True)
    row = await find_topup(conn, key)  # re-read under the lock
    if reversal.currency != currency:
        raise CurrencyMismatch(currency, reversal.currency)
    op_key = f"{reversal.kind.value}:{reversal.provider}:{reversal.reversal_ref}"
    zero = Money.zero(currency)
    if await ledger.is_posted(conn, f"{op_key}:wallet") or await ledger.is_posted(conn, f"{op_key}:debt"):
        return ReversalResult(row.id, zero, zero, duplicate=True)
    # What is left to take back: of the top-up itself and of what a won dispute reinstated on it
    # ("<key>:reinstate:<n>"), taken from the top-up first, then from each reinstatement in turn.
    t = L.topups.c
    reinstated = select(L.topups).where(
        t.idempotency_key.startswith(f"{key}:reinstate:", autoescape=True), t.account_id == row.account_id
    )
    credits = [row, *await conn.execute(reinstated.order_by(t.id))]
    remaining = sum(int(c.amount_minor) - int(c.reversed_minor) for c in credits)
    if reversal.amount_minor <= 0 or reversal.amount_minor > remaining:
        raise InvalidField("amount", f"{reversal.amount_minor} to reverse, {remaining} of the payment is left")
    amount = Money(reversal.amount_minor, currency)
    before = await ledger.balances(conn, row.account_id)
    postings = plan_reversal(before, amount, key=op_key, refund=reversal.kind is ReversalKind.REFUND)
    await ledger.post(conn, row.account_id, postings, created_by=str(actor), now=now, payment_id=row.payment_id)
    after = before.after(postings)
    to_take = amount.minor
    for credit in credits:
        take = min(to_take, int(credit.amount_minor) - int(credit.reversed_minor))
        if take <= 0:
            continue
        to_take -= take
        reversed_total = int(credit.reversed_minor) + take
        await conn.execute(
            update(L.topups)
            .where(t.id == credit.id)
            .values(
                reversed_minor=reversed_total,
                state="reversed" if reversed_total >= int(credit.amount_minor) else credit.state,
                updated_at=now,
            )
        )
    from_wallet = before.wallet - after.wallet
    to_debt = before.debt - after.debt
    await audit.record(
        conn,
        actor,
        f"payment.{reversal.kind.value}",
        now,
        target=f"topup:{row.id}",
        after={
            "reversal_ref": reversal.reversal_ref,
            "event_id": reversal.event_id,
            "amount_minor": amount.minor,
            "from_wallet_minor": from_wallet.minor,
            "to_debt_minor": to_debt.minor,
        },
    )
    return ReversalResult(row.id, from_wallet, to_debt, duplicate=False)
