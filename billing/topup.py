"""Top-ups: a confirmed payment -> ledger -> debt recovery -> a credit command to the meter, in ONE
transaction, idempotent on the payment; reversals (refunds, disputes); cashier top-ups with a receipt;
re-issue of an undelivered credit with the same transfer id (the meter credits a transfer id once);
and what the gateway reports back (a credit processed at 1:1, or failed).

A top-up counts as delivered only when its command reaches 1:1.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from billing import ledger, meter_registry, numbers, registry, reversals, sts
from billing.crediting import Credit, credit_payments
from billing.errors import BillingError, InvalidField, NotFound
from billing.rules.ledger import plan_vend
from billing.rules.money import Money
from billing.topup_records import (
    DEFAULT_POLICY,
    MAX_CREDIT_MINOR,
    PaymentNotApplied,
    ReinstatementResult,
    ReversalResult,
    TopUpPolicy,
    TopUpResult,
    find_topup,
    get_top_up,
    result_of,
    top_ups_of,
    topup_key,
)
from billing.transfers import next_transfer_id
from billing.values import PaymentConfirmed, PaymentReinstated, PaymentReversed, ReversalKind
from gateway.events import CommandSettled
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_command
from store import audit
from store.audit import Actor
from store.schema import commands as C  # noqa: N812
from store.schema import ledger as L  # noqa: N812
from store.uow import UnitOfWork

log = logging.getLogger("smsmeter.billing")

T = TypeVar("T")


async def _retrying(uow: UnitOfWork, work: Callable[[AsyncConnection], Awaitable[T]], attempts: int = 4) -> T:
    """Run `work` in a transaction; a conflict with a concurrent duplicate (unique key, SQLite busy
    snapshot, PostgreSQL serialization) rolls back and runs it again, when it finds the first one's result."""
    for attempt in range(1, attempts + 1):
        try:
            async with uow.begin() as conn:
                return await work(conn)
        except (IntegrityError, DBAPIError) as exc:
            retryable = isinstance(exc, IntegrityError) or "locked" in str(exc) or "serializ" in str(exc)
            if not retryable or attempt == attempts:
                raise
            log.info("top-up conflicted with a concurrent one (%s); retrying", type(exc.orig).__name__)
    raise AssertionError("unreachable")  # pragma: no cover


async def _credit(
    conn: AsyncConnection, credits: list[Credit], now: datetime, keys: KeyRing, policy: TopUpPolicy
) -> list[TopUpResult]:
    """Credit payments that must all go in: a refusal raises its BillingError."""
    answers = await credit_payments(conn, credits, now, keys=keys, policy=policy)
    for answer in answers:
        if isinstance(answer, BillingError):
            raise answer
    return [a for a in answers if isinstance(a, TopUpResult)]


async def apply_payment(
    uow: UnitOfWork,
    payment: PaymentConfirmed,
    now: datetime,
    *,
    keys: KeyRing,
    policy: TopUpPolicy = DEFAULT_POLICY,
    actor: Actor | None = None,
) -> TopUpResult:
    """Record the payment, its ledger entries (debt recovery first), the credit command (and a reconnect
    when the debt is cleared) and an audit row, in ONE transaction: `apply_payments` with one payment.
    Applying the same payment again returns the first result with `duplicate=True`. Raises NotFound
    (subscriber), CurrencyMismatch, InvalidField."""
    credit = Credit(payment, actor or Actor("system", payment.provider))
    return (await _retrying(uow, lambda conn: _credit(conn, [credit], now, keys, policy)))[0]


async def apply_payments(
    conn: AsyncConnection,
    payments: Sequence[PaymentConfirmed],
    now: datetime,
    *,
    keys: KeyRing,
    policy: TopUpPolicy = DEFAULT_POLICY,
    known_new: bool = False,
) -> list[TopUpResult | BillingError]:
    """`apply_payment` for many payments in the caller's open transaction, with the same effects as
    applying them one after another: one result (or the BillingError it raised) per payment, in order.
    One statement per step for the whole batch (`billing.crediting`). `known_new`: none of them was applied
    before (the caller marks a payment credited once), so they are not looked up. A database error (e.g. a
    concurrent duplicate's unique key) propagates: the caller rolls back and applies one by one."""
    credits = [Credit(p, Actor("system", p.provider)) for p in payments]
    return await credit_payments(conn, credits, now, keys=keys, policy=policy, known_new=known_new)


async def reverse_payment(
    uow: UnitOfWork, reversal: PaymentReversed, now: datetime, *, actor: Actor | None = None
) -> ReversalResult:
    """Take back a refunded or disputed amount: what is still in the wallet is taken from it; credit the
    meter already has becomes debt (recovered from later payments) — the meter's balance is never made
    negative. Idempotent on `reversal_ref`. Raises PaymentNotApplied (retry later), CurrencyMismatch,
    InvalidField (more than is left of the payment)."""
    who = actor or Actor("system", reversal.provider)
    return await _retrying(uow, lambda conn: reversals.reverse(conn, reversal, now, who))


async def reinstate_payment(
    uow: UnitOfWork, reinstated: PaymentReinstated, now: datetime, *, keys: KeyRing, actor: Actor | None = None
) -> ReinstatementResult:
    """Give back what a reversal took after the dispute over it was won: first the debt the payment's own
    reversals created is cancelled (the meter kept that credit), only the rest is new credit (sent to the
    meter). Idempotent on `reinstatement_ref`. Raises PaymentNotApplied, CurrencyMismatch, InvalidField
    (more than was taken back)."""
    who = actor or Actor("system", reinstated.provider)
    return await _retrying(uow, lambda conn: reversals.reinstate(conn, reinstated, now, keys, who))


async def cash_top_up(
    uow: UnitOfWork,
    actor: Actor,
    subscriber_code: str,
    amount_minor: int,
    currency: str,
    now: datetime,
    *,
    keys: KeyRing,
    request_id: str,
    policy: TopUpPolicy = DEFAULT_POLICY,
) -> TopUpResult:
    """A cashier takes cash: numbered receipt (gapless), then the same path as any payment. `request_id`
    (the form's one-time token) makes a double submit one top-up."""

    async def work(conn: AsyncConnection) -> TopUpResult:
        existing = await find_topup(conn, topup_key("cash", request_id))
        if existing is not None:
            return result_of(existing, duplicate=True)
        number = await numbers.take(conn, "receipt")
        receipt = f"R-{number:08d}"
        payment = PaymentConfirmed(
            provider="cash",
            provider_ref=request_id,
            amount_minor=amount_minor,
            currency=currency,
            paid_at=now,
            subscriber_code=subscriber_code,
        )
        return (await _credit(conn, [Credit(payment, actor, receipt)], now, keys, policy))[0]

    return await _retrying(uow, work)


async def _send_held_credit(
    conn: AsyncConnection, keys: KeyRing, meter_id: int, amount: Money, key: str, created_by: str, now: datetime
) -> tuple[int, int]:
    if amount.minor > MAX_CREDIT_MINOR:
        raise InvalidField("amount", f"at most {MAX_CREDIT_MINOR} minor units in one credit")
    transfer_id = await next_transfer_id(conn, meter_id)
    command_id = await enqueue_command(
        conn,
        keys,
        CommandRequest(
            meter_id=meter_id,
            message=mp.TopUp(transfer_id=transfer_id, amount_minor=amount.minor),
            created_by=created_by,
            idempotency_key=f"topup:{key}",
        ),
        now,
    )
    return command_id, transfer_id


async def vend_held_credit(
    uow: UnitOfWork, actor: Actor, subscriber_id: int, now: datetime, *, keys: KeyRing, request_id: str
) -> TopUpResult | None:
    """Send what the wallet holds (credit paid while no meter was installed, or carried from a replaced
    meter) to the subscriber's active meter. None when there is nothing to send or no meter."""

    async def work(conn: AsyncConnection) -> TopUpResult | None:
        key = topup_key("vend", request_id)
        existing = await find_topup(conn, key)
        if existing is not None:
            return result_of(existing, duplicate=True)
        subscriber = await registry.get_subscriber(conn, subscriber_id)
        currency = await ledger.account_currency(conn, subscriber.account_id, lock=True)
        meter = await meter_registry.active_meter(conn, subscriber_id)
        before = await ledger.balances(conn, subscriber.account_id)
        postings = plan_vend(before, key=f"topup:{key}")
        if meter is None or not postings:
            return None
        amount = -postings[0].amount
        command_id, transfer_id = await _send_held_credit(conn, keys, meter.id, amount, key, str(actor), now)
        await ledger.post(conn, subscriber.account_id, postings, created_by=str(actor), now=now, command_id=command_id)
        topup_id = await conn.scalar(
            insert(L.topups)
            .values(
                idempotency_key=key,
                account_id=subscriber.account_id,
                subscriber_id=subscriber.id,
                meter_id=meter.id,
                provider="vend",
                provider_ref=request_id,
                amount_minor=0,
                recovered_minor=0,
                vend_minor=amount.minor,
                currency=currency,
                transfer_id=transfer_id,
                command_id=command_id,
                state="queued",
                created_by=str(actor),
                created_at=now,
                updated_at=now,
            )
            .returning(L.topups.c.id)
        )
        await audit.record(
            conn,
            actor,
            "credit.vend_held",
            now,
            target=f"subscriber:{subscriber.code}",
            after={"amount_minor": amount.minor, "command_id": command_id},
        )
        assert topup_id is not None
        return await get_top_up(conn, int(topup_id))

    return await _retrying(uow, work)


async def reissue_top_up(uow: UnitOfWork, actor: Actor, topup_id: int, now: datetime, *, keys: KeyRing) -> int:
    """Send a failed top-up's credit again: a new command (new counter) carrying the SAME transfer id and
    amount, so a meter that did apply the first one answers `duplicate` and never credits twice. The
    ledger does not change. Returns the new command id."""
    async with uow.begin() as conn:
        row = (await conn.execute(select(L.topups).where(L.topups.c.id == topup_id).with_for_update())).first()
        if row is None:
            raise NotFound("top-up", topup_id)
        if row.state != "failed" or row.transfer_id is None or row.meter_id is None:
            raise InvalidField("top-up", f"only a failed credit is re-issued (this one is {row.state})")
        earlier = await conn.scalars(
            select(C.commands.c.id).where(C.commands.c.idempotency_key.like(f"topup:{row.idempotency_key}:reissue:%"))
        )
        n = 1 + len(earlier.all())
        command_id = await enqueue_command(
            conn,
            keys,
            CommandRequest(
                meter_id=row.meter_id,
                message=mp.TopUp(transfer_id=int(row.transfer_id), amount_minor=int(row.vend_minor)),
                created_by=str(actor),
                idempotency_key=f"topup:{row.idempotency_key}:reissue:{n}",
            ),
            now,
        )
        await conn.execute(
            update(L.topups)
            .where(L.topups.c.id == topup_id)
            .values(command_id=command_id, state="queued", updated_at=now)
        )
        await audit.record(
            conn,
            actor,
            "topup.reissue",
            now,
            target=f"topup:{topup_id}",
            before={"state": row.state, "command_id": row.command_id},
            after={"state": "queued", "command_id": command_id, "transfer_id": int(row.transfer_id)},
        )
        return command_id


async def on_command_settled(uow: UnitOfWork, event: CommandSettled, now: datetime) -> None:
    """A credit command reached a final state: 1:1 marks the top-up delivered; a failure marks it failed
    and raises an alarm (an operator re-issues it; the money stays booked as sent — the meter may have it)."""
    if event.kind != "top_up":
        return
    async with uow.begin() as conn:
        t = L.topups.c
        row = (await conn.execute(select(L.topups).where(t.command_id == event.command_id))).first()
        if row is None:
            return
        if row.delivered_by == "token":  # one transfer: the token delivered it (docs/sts.md)
            if event.state == "1:1" and row.sms_acked_at is None:
                await sts.on_sms_credit_acknowledged(conn, row, event.meter_id, now)
            return
        if row.state in ("delivered",):
            return
        if event.state == "1:1":
            await conn.execute(
                update(L.topups)
                .where(t.id == row.id)
                .values(state="delivered", delivered_by="sms", delivered_at=event.at or now, updated_at=now)
            )
            return
        await conn.execute(update(L.topups).where(t.id == row.id).values(state="failed", updated_at=now))
        await conn.execute(
            insert(C.alarms).values(
                meter_id=event.meter_id,
                command_id=event.command_id,
                kind="topup_failed",
                severity="critical",
                raised_at=now,
                detail=f"credit of top-up {row.id} not delivered: {event.state} {event.reason or ''}".strip()[:500],
            )
        )
        log.warning("top-up %s not delivered: command %s %s", row.id, event.command_id, event.state)


__all__ = [
    "PaymentConfirmed",
    "PaymentNotApplied",
    "PaymentReinstated",
    "PaymentReversed",
    "ReinstatementResult",
    "ReversalKind",
    "ReversalResult",
    "TopUpPolicy",
    "TopUpResult",
    "apply_payment",
    "apply_payments",
    "cash_top_up",
    "get_top_up",
    "on_command_settled",
    "reinstate_payment",
    "reissue_top_up",
    "reverse_payment",
    "top_ups_of",
    "vend_held_credit",
]
