"""Taking back (part of) a credited payment: a refund, or a dispute lost or with its funds withdrawn.

What the wallet still holds is taken from it; credit the meter already has becomes debt (recovered from
later payments): the head end never makes a meter's balance negative. A reversal takes first from the
top-up itself, then from each of the credits a won dispute reinstated on it in turn. Idempotent on the
reversal's reference.

A won dispute gives back what its reversal took (`reinstate`): first it cancels the debt that the
payment's own reversals created (the meter kept that credit), and only what is left is new credit — so one
payment has one `payment` entry plus its `refund`/`reversal` and `reinstatement` entries, and the meter
never holds more credit than was finally paid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from billing import ledger, meter_registry
from billing.errors import CurrencyMismatch, InvalidField
from billing.rules.ledger import Book, EntryType, plan_reinstatement, plan_reversal
from billing.rules.money import Money
from billing.topup_records import (
    MAX_CREDIT_MINOR,
    PaymentNotApplied,
    ReinstatementResult,
    ReversalResult,
    find_topup,
    topup_key,
)
from billing.transfers import next_transfer_id
from billing.values import PaymentReinstated, PaymentReversed, ReversalKind
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_command
from store import audit, events
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812


async def reverse(conn: AsyncConnection, reversal: PaymentReversed, now: datetime, actor: Actor) -> ReversalResult:
    row, currency = await _locked_top_up(conn, reversal.provider, reversal.provider_ref, reversal.currency)
    op_key = f"{reversal.kind.value}:{reversal.provider}:{reversal.reversal_ref}"
    if await _posted(conn, op_key):
        return ReversalResult(row.id, Money.zero(currency), Money.zero(currency), duplicate=True)
    credits = await _credits_of(conn, row)
    remaining = sum(int(c.amount_minor) - int(c.reversed_minor) for c in credits)
    if reversal.amount_minor <= 0 or reversal.amount_minor > remaining:
        raise InvalidField("amount", f"{reversal.amount_minor} to reverse, {remaining} of the payment is left")
    amount = Money(reversal.amount_minor, currency)
    before = await ledger.balances(conn, row.account_id)
    postings = plan_reversal(before, amount, key=op_key, refund=reversal.kind is ReversalKind.REFUND)
    await ledger.post(conn, row.account_id, postings, created_by=str(actor), now=now, payment_id=row.payment_id)
    await _take_back(conn, credits, amount.minor, now)
    after = before.after(postings)
    from_wallet, to_debt = before.wallet - after.wallet, before.debt - after.debt
    facts = {"reversal_ref": reversal.reversal_ref, "event_id": reversal.event_id, "amount_minor": amount.minor}
    facts.update(from_wallet_minor=from_wallet.minor, to_debt_minor=to_debt.minor)
    await audit.record(conn, actor, f"payment.{reversal.kind.value}", now, target=f"topup:{row.id}", after=facts)
    await _tell(conn, row, reversal.kind.value, reversal.reversal_ref, currency, facts, now)
    return ReversalResult(row.id, from_wallet, to_debt, duplicate=False)


async def reinstate(
    conn: AsyncConnection, reinstated: PaymentReinstated, now: datetime, keys: KeyRing, actor: Actor
) -> ReinstatementResult:
    row, currency = await _locked_top_up(conn, reinstated.provider, reinstated.provider_ref, reinstated.currency)
    op_key = f"reinstatement:{reinstated.provider}:{reinstated.reinstatement_ref}"
    zero = Money.zero(currency)
    if await _posted(conn, op_key):
        return ReinstatementResult(row.id, zero, zero, None, duplicate=True)
    credits = await _credits_of(conn, row)
    taken = sum(int(c.reversed_minor) for c in credits)
    if reinstated.amount_minor <= 0 or reinstated.amount_minor > taken:
        raise InvalidField("amount", f"{reinstated.amount_minor} to give back, {taken} of the payment was taken back")
    amount = Money(reinstated.amount_minor, currency)
    before = await ledger.balances(conn, row.account_id)
    meter = await meter_registry.active_meter(conn, row.subscriber_id)
    own_debt = await _debt_of_reversals(conn, row.payment_id, currency)
    plan = plan_reinstatement(before, amount, own_debt=own_debt, key=op_key, vend=meter is not None)
    command_id = None
    if meter is not None and plan.vend.is_positive():
        command_id = await _send_reinstated(conn, keys, row, meter.id, plan.vend, reinstated, now, actor)
    await ledger.post(
        conn,
        row.account_id,
        plan.postings,
        created_by=str(actor),
        now=now,
        payment_id=row.payment_id,
        command_id=command_id,
    )
    await _give_back(conn, credits, amount.minor, now)
    facts: dict[str, object] = {"reinstatement_ref": reinstated.reinstatement_ref, "event_id": reinstated.event_id}
    facts.update(amount_minor=amount.minor, debt_cancelled_minor=plan.cancelled.minor, command_id=command_id)
    facts.update(credited_minor=plan.credited.minor, vend_minor=plan.vend.minor)
    await audit.record(conn, actor, "payment.reinstate", now, target=f"topup:{row.id}", after=facts)
    await _tell(conn, row, "reinstatement", reinstated.reinstatement_ref, currency, facts, now)
    return ReinstatementResult(row.id, plan.cancelled, plan.credited, command_id, duplicate=False)


async def _tell(
    conn: AsyncConnection, row: Any, action: str, ref: str, currency: str, facts: dict[str, Any], now: datetime
) -> None:
    """The `payment` webhook event of a refund, dispute or reinstatement, in its transaction (`store.events`)."""
    data = {"action": action, "topup_id": int(row.id), "provider": row.provider, "provider_ref": row.provider_ref}
    data.update(currency=currency, **{k: v for k, v in facts.items() if k != "event_id"})
    event_id = f"payment:{row.id}:{action}:{ref}"[:100]
    await events.emit(conn, [events.Event(event_id, events.EventKind.PAYMENT, now, data)], now)


async def _locked_top_up(conn: AsyncConnection, provider: str, provider_ref: str, currency: str) -> tuple[Any, str]:
    """The payment's top-up, its account locked (read again under the lock); raises PaymentNotApplied."""
    key = topup_key(provider, provider_ref)
    row = await find_topup(conn, key)
    if row is None:
        raise PaymentNotApplied(provider, provider_ref)
    account_currency = await ledger.account_currency(conn, row.account_id, lock=True)
    if currency != account_currency:
        raise CurrencyMismatch(account_currency, currency)
    return await find_topup(conn, key), account_currency


async def _posted(conn: AsyncConnection, op_key: str) -> bool:
    return any([await ledger.is_posted(conn, f"{op_key}:{part}") for part in ("wallet", "debt")])


async def _credits_of(conn: AsyncConnection, row: Any) -> list[Any]:
    """The top-up and the credits a won dispute reinstated on it as top-ups of their own
    ("<key>:reinstate:<n>", before reinstatements cancelled their dispute's debt first)."""
    t = L.topups.c
    reinstated = select(L.topups).where(
        t.idempotency_key.startswith(f"{row.idempotency_key}:reinstate:", autoescape=True),
        t.account_id == row.account_id,
    )
    return [row, *await conn.execute(reinstated.order_by(t.id))]


async def _debt_of_reversals(conn: AsyncConnection, payment_id: int | None, currency: str) -> Money:
    """The debt the payment's reversals created less what its reinstatements cancelled (never below 0)."""
    if payment_id is None:
        return Money.zero(currency)
    e = L.ledger_entries.c
    total = await conn.scalar(
        select(func.coalesce(func.sum(e.amount_minor), 0)).where(
            e.payment_id == payment_id,
            e.book == Book.DEBT.value,
            e.entry_type.in_((EntryType.REFUND.value, EntryType.REVERSAL.value, EntryType.REINSTATEMENT.value)),
        )
    )
    return Money(max(0, -int(total or 0)), currency)


async def _take_back(conn: AsyncConnection, credits: list[Any], minor: int, now: datetime) -> None:
    """Mark `minor` taken back: from the top-up first, then from each reinstated credit in turn."""
    for credit in credits:
        take = min(minor, int(credit.amount_minor) - int(credit.reversed_minor))
        if take <= 0:
            continue
        minor -= take
        reversed_total = int(credit.reversed_minor) + take
        state = "reversed" if reversed_total >= int(credit.amount_minor) else credit.state
        await _set_reversed(conn, credit.id, reversed_total, state, now)


async def _give_back(conn: AsyncConnection, credits: list[Any], minor: int, now: datetime) -> None:
    """Mark `minor` given back: the last taken back first."""
    for credit in reversed(credits):
        give = min(minor, int(credit.reversed_minor))
        if give <= 0:
            continue
        minor -= give
        state = credit.state
        if state == "reversed":
            state = "delivered" if credit.delivered_at else ("queued" if credit.command_id else "held")
        await _set_reversed(conn, credit.id, int(credit.reversed_minor) - give, state, now)


async def _set_reversed(conn: AsyncConnection, topup_id: int, reversed_minor: int, state: str, now: datetime) -> None:
    await conn.execute(
        update(L.topups)
        .where(L.topups.c.id == topup_id)
        .values(reversed_minor=reversed_minor, state=state, updated_at=now)
    )


async def _send_reinstated(
    conn: AsyncConnection,
    keys: KeyRing,
    row: Any,
    meter_id: int,
    vend: Money,
    reinstated: PaymentReinstated,
    now: datetime,
    actor: Actor,
) -> int:
    """The new credit of a reinstatement, sent to the meter as a credit of its own (a top-up row of amount
    0: it adds nothing to what may be taken back of the payment)."""
    if vend.minor > MAX_CREDIT_MINOR:
        raise InvalidField("amount", f"at most {MAX_CREDIT_MINOR} minor units in one credit")
    key = f"{row.idempotency_key}:reinstate:{reinstated.reinstatement_ref}"
    transfer_id = await next_transfer_id(conn, meter_id)
    message = mp.TopUp(transfer_id=transfer_id, amount_minor=vend.minor)
    command_id = await enqueue_command(
        conn, keys, CommandRequest(meter_id, message, str(actor), idempotency_key=f"topup:{key}"), now
    )
    await conn.execute(
        insert(L.topups).values(
            idempotency_key=key,
            account_id=row.account_id,
            subscriber_id=row.subscriber_id,
            meter_id=meter_id,
            payment_id=row.payment_id,
            provider=row.provider,
            provider_ref=f"{row.provider_ref}:reinstate:{reinstated.reinstatement_ref}"[:200],
            amount_minor=0,
            recovered_minor=0,
            vend_minor=vend.minor,
            currency=row.currency,
            transfer_id=transfer_id,
            command_id=command_id,
            state="queued",
            created_by=str(actor),
            created_at=now,
            updated_at=now,
        )
    )
    return command_id
