"""An operator's money decisions on an account, each with a reason and audited with the balances before
and after, in the transaction that posts it:

- a charge — a penalty or a fixed charge added to the debt (`rules.ledger.plan_charge`);
- an adjustment — a correction on one book (`rules.ledger.plan_adjustment`); on the debt book a positive
  amount is a write-off (debt forgiven); the wallet never goes below zero, the debt never above it;
- the refund of a cash payment a cashier took: the ledger takes the amount back exactly as a provider's
  refund does (`topup.reverse_payment`: what the wallet still holds first, credit already on the meter
  becomes debt), once per request.

Every posting's idempotency key comes from the form's one-time request id, so a double submit is one
posting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import ledger, registry, topup
from billing.errors import InvalidField, NotFound
from billing.rules.ledger import Balances, Book, EntryType, Posting, plan_adjustment, plan_charge
from billing.rules.money import Money
from billing.values import PaymentReversed, ReversalKind
from store import audit
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812
from store.uow import UnitOfWork

CHARGES = (EntryType.PENALTY, EntryType.FIXED_CHARGE)


@dataclass(frozen=True, slots=True)
class Posted:
    subscriber_id: int
    before: Balances
    after: Balances
    duplicate: bool  # the same request was posted before: nothing new


def _balances_json(b: Balances) -> dict[str, int]:
    return {"wallet_minor": b.wallet.minor, "debt_minor": b.debt.minor}


def _check(amount_minor: int, memo: str, *, signed: bool = False) -> str:
    if type(amount_minor) is not int or amount_minor == 0 or (amount_minor < 0 and not signed):
        raise InvalidField("amount_minor", "a non-zero whole number of minor units" if signed else "a positive amount")
    memo = memo.strip()
    if not memo or len(memo) > 500:
        raise InvalidField("memo", "say why, in 1 to 500 characters")
    return memo


async def _post(
    conn: AsyncConnection,
    actor: Actor,
    subscriber_id: int,
    action: str,
    now: datetime,
    plan: Callable[[Balances, str], Sequence[Posting]],
    key: str,
    detail: dict[str, object],
) -> Posted:
    subscriber = await registry.get_subscriber(conn, subscriber_id)
    currency = await ledger.account_currency(conn, subscriber.account_id, lock=True)
    before = await ledger.balances(conn, subscriber.account_id)
    if await ledger.is_posted(conn, key):
        return Posted(subscriber_id, before, before, duplicate=True)
    postings = plan(before, currency)
    await ledger.post(conn, subscriber.account_id, postings, created_by=str(actor), now=now)
    after = before.after(postings)
    await audit.record(
        conn,
        actor,
        action,
        now,
        target=f"subscriber:{subscriber.code}",
        before=_balances_json(before),
        after={**_balances_json(after), **detail},
    )
    return Posted(subscriber_id, before, after, duplicate=False)


async def charge(
    uow: UnitOfWork,
    actor: Actor,
    subscriber_id: int,
    entry_type: EntryType,
    amount_minor: int,
    memo: str,
    now: datetime,
    *,
    request_id: str,
) -> Posted:
    """A penalty or fixed charge on the subscriber's debt. Raises NotFound, InvalidField, InvalidPosting."""
    if entry_type not in CHARGES:
        raise InvalidField("kind", "penalty or fixed_charge")
    memo = _check(amount_minor, memo)
    key = f"charge:{request_id}"
    async with uow.begin() as conn:
        return await _post(
            conn,
            actor,
            subscriber_id,
            "ledger.charge",
            now,
            lambda b, cur: plan_charge(entry_type, Money(amount_minor, cur), key=key, memo=memo),
            key,
            {"kind": entry_type.value, "amount_minor": amount_minor, "memo": memo},
        )


async def adjust(
    uow: UnitOfWork,
    actor: Actor,
    subscriber_id: int,
    book: Book,
    amount_minor: int,
    memo: str,
    now: datetime,
    *,
    request_id: str,
) -> Posted:
    """A signed correction on one book; on the debt book a positive amount writes debt off. Raises
    NotFound, InvalidField, InvalidPosting (the debt would turn positive), InsufficientFunds (the wallet
    would go below zero)."""
    memo = _check(amount_minor, memo, signed=True)
    key = f"adjust:{request_id}"
    action = "ledger.write_off" if book is Book.DEBT and amount_minor > 0 else "ledger.adjust"
    async with uow.begin() as conn:
        return await _post(
            conn,
            actor,
            subscriber_id,
            action,
            now,
            lambda b, cur: plan_adjustment(b, book, Money(amount_minor, cur), key=key, memo=memo),
            key,
            {"book": book.value, "amount_minor": amount_minor, "memo": memo},
        )


async def refund_cash(
    uow: UnitOfWork,
    actor: Actor,
    topup_id: int,
    now: datetime,
    *,
    reason: str,
    request_id: str,
    amount_minor: int | None = None,
) -> topup.ReversalResult:
    """Give back (part of) a cash payment a cashier took: `amount_minor` (default: all that is left of it).
    The reversal's audit row (`payment.refund`) names the operator; a second row (`cash.refund`) keeps the
    reason with what the top-up was before and after. Raises NotFound, InvalidField (not a cash payment,
    nothing left to refund, no reason)."""
    reason = reason.strip()
    if not reason or len(reason) > 500:
        raise InvalidField("reason", "say why, in 1 to 500 characters")
    async with uow.connect() as conn:
        row = (await conn.execute(select(L.topups).where(L.topups.c.id == topup_id))).first()
    if row is None:
        raise NotFound("top-up", topup_id)
    if row.provider != "cash":
        raise InvalidField("top-up", "only a cash payment is refunded here; a provider's refund comes from it")
    left = int(row.amount_minor) - int(row.reversed_minor)
    amount = left if amount_minor is None else amount_minor
    if amount <= 0 or amount > left:
        raise InvalidField("amount_minor", f"{left} of the payment is left to refund")
    result = await topup.reverse_payment(
        uow,
        PaymentReversed(
            provider="cash",
            provider_ref=row.provider_ref,
            reversal_ref=f"operator:{request_id}",
            amount_minor=amount,
            currency=row.currency,
            kind=ReversalKind.REFUND,
            at=now,
        ),
        now,
        actor=actor,
    )
    if not result.duplicate:
        async with uow.begin() as conn:
            await audit.record(
                conn,
                actor,
                "cash.refund",
                now,
                target=f"topup:{topup_id}",
                before={"state": row.state, "reversed_minor": int(row.reversed_minor)},
                after={
                    "reversed_minor": int(row.reversed_minor) + amount,
                    "amount_minor": amount,
                    "from_wallet_minor": result.from_wallet.minor,
                    "to_debt_minor": result.to_debt.minor,
                    "reason": reason,
                    "receipt_number": row.receipt_number,
                },
            )
    return result


async def cash_top_ups(conn: AsyncConnection, subscriber_id: int, *, limit: int = 10) -> list[dict[str, object]]:
    """The subscriber's cash top-ups that still have something to refund, newest first."""
    t = L.topups.c
    rows = await conn.execute(
        select(t.id, t.receipt_number, t.amount_minor, t.reversed_minor, t.currency, t.created_at)
        .where(t.subscriber_id == subscriber_id, t.provider == "cash", t.reversed_minor < t.amount_minor)
        .order_by(t.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]
