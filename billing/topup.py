"""Top-ups: a confirmed payment -> ledger -> debt recovery -> a credit command to the meter, in ONE
transaction, idempotent on the payment; reversals (refunds, disputes); cashier top-ups with a receipt;
re-issue of an undelivered credit with the same transfer id (the meter credits a transfer id once);
and what the gateway reports back (a credit processed at 1:1, or failed).

A top-up counts as delivered only when its command reaches 1:1.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from billing import ledger, numbers, registry
from billing.errors import BillingError, CurrencyMismatch, InvalidField, NotFound
from billing.rules.ledger import TopUpPlan, plan_reversal, plan_top_up, plan_vend
from billing.rules.money import Money
from billing.values import PaymentConfirmed, PaymentReversed, ReversalKind
from gateway.bulk import add_in_id_order
from gateway.events import CommandSettled
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_command, enqueue_commands
from store import audit
from store.audit import Actor
from store.schema import commands as C  # noqa: N812
from store.schema import ledger as L  # noqa: N812
from store.schema import payments as P  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.sql import among_param
from store.uow import UnitOfWork

log = logging.getLogger("smsmeter.billing")

MAX_CREDIT_MINOR = 0xFFFF_FFFF  # the protocol's top-up amount field
T = TypeVar("T")


class PaymentNotApplied(BillingError):
    """A reversal for a payment billing has not applied (yet): webhooks arrive in any order."""

    def __init__(self, provider: str, provider_ref: str) -> None:
        super().__init__(f"payment {provider}:{provider_ref} has not been applied")
        self.provider = provider
        self.provider_ref = provider_ref


@dataclass(frozen=True, slots=True)
class TopUpPolicy:
    recovery_bp: int = 2500  # share of every payment that repays arrears first
    min_debt_minor: int = 100  # a debt below this counts as cleared (reconnect)
    utility: str = ""  # the utility's name, for the reconnect notice


@dataclass(frozen=True, slots=True)
class TopUpResult:
    topup_id: int
    account_id: int
    subscriber_id: int
    meter_id: int | None
    payment_id: int | None
    command_id: int | None  # the credit command; None when there is no meter (the credit waits)
    amount: Money
    recovered: Money
    vended: Money
    transfer_id: int | None
    state: str  # queued | delivered | failed | held | reversed
    duplicate: bool  # True: this payment was applied before; nothing new happened
    reconnect_command_id: int | None = None
    receipt_number: str | None = None


@dataclass(frozen=True, slots=True)
class ReversalResult:
    topup_id: int
    from_wallet: Money
    to_debt: Money
    duplicate: bool


def topup_key(provider: str, provider_ref: str) -> str:
    return f"{provider}:{provider_ref}"


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


async def _result_of(conn: AsyncConnection, row: Any, *, duplicate: bool) -> TopUpResult:
    currency = row.currency
    return TopUpResult(
        topup_id=row.id,
        account_id=row.account_id,
        subscriber_id=row.subscriber_id,
        meter_id=row.meter_id,
        payment_id=row.payment_id,
        command_id=row.command_id,
        amount=Money(int(row.amount_minor), currency),
        recovered=Money(int(row.recovered_minor), currency),
        vended=Money(int(row.vend_minor), currency),
        transfer_id=row.transfer_id,
        state=row.state,
        duplicate=duplicate,
        reconnect_command_id=row.reconnect_command_id,
        receipt_number=row.receipt_number,
    )


async def get_top_up(conn: AsyncConnection, topup_id: int) -> TopUpResult:
    row = (await conn.execute(select(L.topups).where(L.topups.c.id == topup_id))).first()
    if row is None:
        raise NotFound("top-up", topup_id)
    return await _result_of(conn, row, duplicate=False)


async def top_ups_of(conn: AsyncConnection, subscriber_id: int, *, limit: int = 50) -> list[TopUpResult]:
    t = L.topups.c
    rows = await conn.execute(
        select(L.topups).where(t.subscriber_id == subscriber_id).order_by(t.id.desc()).limit(limit)
    )
    return [await _result_of(conn, r, duplicate=False) for r in rows]


async def _find_topup(conn: AsyncConnection, key: str) -> Any:
    return (await conn.execute(select(L.topups).where(L.topups.c.idempotency_key == key))).first()


async def _subscriber_of(conn: AsyncConnection, payment: PaymentConfirmed) -> registry.Subscriber:
    if payment.subscriber_id is not None:
        return await registry.get_subscriber(conn, payment.subscriber_id)
    if payment.subscriber_code is not None:
        return await registry.get_subscriber_by_code(conn, payment.subscriber_code)
    raise InvalidField("subscriber", "a payment names its subscriber by id or code")


async def _record_payment(
    conn: AsyncConnection, payment: PaymentConfirmed, subscriber_id: int, meter_id: int | None, now: datetime
) -> int:
    p = P.payments.c
    stmt = select(p.id, p.status)
    if payment.payment_id is not None:
        stmt = stmt.where(p.id == payment.payment_id)
    else:
        stmt = stmt.where(p.provider == payment.provider, p.provider_ref == payment.provider_ref)
    row = (await conn.execute(stmt)).first()
    if row is not None:
        await conn.execute(
            update(P.payments).where(p.id == row.id).values(status="paid", paid_at=payment.paid_at, updated_at=now)
        )
        return int(row.id)
    pid = await conn.scalar(
        insert(P.payments)
        .values(
            provider=payment.provider,
            provider_ref=payment.provider_ref,
            subscriber_id=subscriber_id,
            meter_id=meter_id,
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            status="paid",
            created_at=now,
            paid_at=payment.paid_at,
            updated_at=now,
        )
        .returning(p.id)
    )
    assert pid is not None
    return int(pid)


async def next_transfer_id(conn: AsyncConnection, meter_id: int) -> int:
    """Allocate the meter's next top-up transfer id (locks the meter row until commit)."""
    m = R.meters.c
    new = await conn.scalar(
        update(R.meters)
        .where(m.id == meter_id)
        .values(next_transfer_id=m.next_transfer_id + 1)
        .returning(m.next_transfer_id)
    )
    if new is None:
        raise NotFound("meter", meter_id)
    return int(new) - 1


async def _send_credit(
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


async def _apply(
    conn: AsyncConnection,
    payment: PaymentConfirmed,
    now: datetime,
    keys: KeyRing,
    policy: TopUpPolicy,
    actor: Actor,
    receipt_number: str | None = None,
) -> TopUpResult:
    key = topup_key(payment.provider, payment.provider_ref)
    subscriber = await _subscriber_of(conn, payment)
    currency = await ledger.account_currency(conn, subscriber.account_id, lock=True)  # serialises the account
    existing = await _find_topup(conn, key)
    if existing is not None:
        return await _result_of(conn, existing, duplicate=True)
    if payment.currency != currency:
        raise CurrencyMismatch(currency, payment.currency)
    if payment.amount_minor <= 0:
        raise InvalidField("amount", "a payment is a positive amount")
    meter = (
        await registry.get_meter_by_code(conn, payment.meter_code)
        if payment.meter_code
        else await registry.active_meter(conn, subscriber.id)
    )
    if meter is not None and (meter.subscriber_id != subscriber.id or meter.status != "active"):
        raise InvalidField("meter", f"{meter.code} is not an active meter of {subscriber.code}")
    payment_id = await _record_payment(conn, payment, subscriber.id, meter.id if meter else None, now)
    before = await ledger.balances(conn, subscriber.account_id)
    paid = Money(payment.amount_minor, currency)
    plan = plan_top_up(before, paid, key=f"topup:{key}", recovery_bp=policy.recovery_bp, vend=meter is not None)
    command_id = transfer_id = None
    if meter is not None and plan.vend.is_positive():
        command_id, transfer_id = await _send_credit(conn, keys, meter.id, plan.vend, key, "system:topup", now)
    await ledger.post(
        conn,
        subscriber.account_id,
        plan.postings,
        created_by=str(actor),
        now=now,
        payment_id=payment_id,
        command_id=command_id,
    )
    reconnect_id = None
    if meter is not None:
        from billing.arrears import reconnect_if_cleared

        reconnect_id = await reconnect_if_cleared(
            conn,
            keys,
            subscriber.account_id,
            meter.id,
            now,
            min_debt_minor=policy.min_debt_minor,
            depends_on_id=command_id,
            created_by=str(actor),
            utility=policy.utility,
        )
    state = "queued" if command_id is not None else "held"
    topup_id = await conn.scalar(
        insert(L.topups)
        .values(
            idempotency_key=key,
            account_id=subscriber.account_id,
            subscriber_id=subscriber.id,
            meter_id=meter.id if meter else None,
            payment_id=payment_id,
            provider=payment.provider,
            provider_ref=payment.provider_ref,
            amount_minor=paid.minor,
            recovered_minor=plan.recovered.minor,
            vend_minor=plan.vend.minor,
            currency=currency,
            transfer_id=transfer_id,
            command_id=command_id,
            reconnect_command_id=reconnect_id,
            state=state,
            receipt_number=receipt_number,
            created_by=str(actor),
            created_at=now,
            updated_at=now,
        )
        .returning(L.topups.c.id)
    )
    assert topup_id is not None
    await audit.record(
        conn,
        actor,
        "payment.apply",
        now,
        target=f"subscriber:{subscriber.code}",
        after={
            "provider": payment.provider,
            "provider_ref": payment.provider_ref,
            "event_id": payment.event_id,
            "amount_minor": paid.minor,
            "recovered_minor": plan.recovered.minor,
            "vend_minor": plan.vend.minor,
            "command_id": command_id,
        },
    )
    return await get_top_up(conn, int(topup_id))


async def apply_payment(
    uow: UnitOfWork,
    payment: PaymentConfirmed,
    now: datetime,
    *,
    keys: KeyRing,
    policy: TopUpPolicy = TopUpPolicy(),
    actor: Actor | None = None,
) -> TopUpResult:
    """Record the payment, its ledger entries (debt recovery first), the credit command (and a reconnect
    when the debt is cleared) and an audit row, in ONE transaction. Applying the same payment again
    returns the first result with `duplicate=True`. Raises NotFound (subscriber), CurrencyMismatch,
    InvalidField."""
    who = actor or Actor("system", payment.provider)
    return await _retrying(uow, lambda conn: _apply(conn, payment, now, keys, policy, who))


@dataclass(slots=True)
class _Plain:
    """A payment of the common shape, applied set-based by `apply_payments`."""

    index: int
    payment: PaymentConfirmed
    key: str
    account_id: int
    subscriber_code: str
    meter_id: int
    actor: Actor
    transfer_id: int | None = None
    command_id: int | None = None


async def apply_payments(
    conn: AsyncConnection,
    payments: Sequence[PaymentConfirmed],
    now: datetime,
    *,
    keys: KeyRing,
    policy: TopUpPolicy = TopUpPolicy(),
) -> list[TopUpResult | BillingError]:
    """`apply_payment` for many payments in the caller's open transaction, with the same effects as
    applying them one after another: one result (or the BillingError it raised) per payment, in order —
    except that the payment rows of those written set-based are left as they are: the caller (payments,
    which owns them) marks them paid in the same transaction, with what it learnt of them.

    The common case — a payment row made by payments (`payment_id`), for a subscriber by id and a meter by
    code, first applied now, on an account with no disconnection to undo — is written set-based: a
    statement per step for all of them (account locks in id order, balances, transfer ids, the credit
    commands, ledger entries, top-ups, audit rows). Every other payment takes the one-by-one path, in a
    savepoint each, after them. A database error (e.g. a concurrent duplicate's unique key) propagates:
    the caller rolls back and applies one by one."""
    results: list[TopUpResult | BillingError | None] = [None] * len(payments)
    plain, others = await _sort_out(conn, payments)
    if plain:
        others = sorted(others + await _apply_plain(conn, plain, now, keys, policy, results))
    for i in others:
        payment = payments[i]
        try:
            async with conn.begin_nested():
                results[i] = await _apply(conn, payment, now, keys, policy, Actor("system", payment.provider))
        except BillingError as exc:
            results[i] = exc
    return [r for r in results if r is not None]


@functools.cache
def _meters_to_credit(postgres: bool) -> Any:
    """The meters of `codes` with their subscriber's account (locked, in id order, as `_apply` locks the
    account) and whether a disconnection waits to be undone there."""
    a, m, ar = L.accounts.c, R.meters.c, L.arrears.c
    return (
        select(
            m.code,
            m.id.label("meter_id"),
            m.subscriber_id,
            m.status,
            a.id.label("account_id"),
            a.currency,
            R.subscribers.c.code.label("subscriber_code"),
            ar.disconnected_at,
        )
        .select_from(
            R.meters.join(L.accounts, a.subscriber_id == m.subscriber_id)
            .join(R.subscribers, R.subscribers.c.id == m.subscriber_id)
            .outerjoin(L.arrears, ar.account_id == a.id)
        )
        .where(among_param(m.code, "codes", postgres))
        .order_by(a.id)
        .with_for_update(of=L.accounts)
    )


async def _sort_out(conn: AsyncConnection, payments: Sequence[PaymentConfirmed]) -> tuple[list[_Plain], list[int]]:
    """Which payments take the set-based path (account rows locked, in id order), which the one-by-one."""
    candidates = [
        i
        for i, p in enumerate(payments)
        if p.subscriber_id is not None and p.payment_id is not None and p.meter_code and p.amount_minor > 0
    ]
    others = sorted(set(range(len(payments))) - set(candidates))
    if not candidates:
        return [], others
    # One statement: each named meter with its subscriber's account (locked, in id order, as `_apply` locks
    # the account) and whether a disconnection waits to be undone there.
    codes = sorted({(payments[i].meter_code or "").replace(" ", "") for i in candidates})
    rows = await conn.execute(_meters_to_credit(conn.dialect.name == "postgresql"), {"codes": codes})
    meters_by_code = {row.code: row for row in rows}
    plain: list[_Plain] = []
    seen: set[str] = set()
    for i in candidates:
        payment = payments[i]
        key = topup_key(payment.provider, payment.provider_ref)
        meter = meters_by_code.get((payment.meter_code or "").replace(" ", ""))
        if (
            meter is None
            or key in seen
            or meter.subscriber_id != payment.subscriber_id
            or meter.status != "active"
            or payment.currency != meter.currency
            or meter.disconnected_at is not None
        ):
            others.append(i)  # the one-by-one path gives the answer (or the error to raise)
            continue
        # A payment applied before is not looked up here: the payments side applies a payment once, and
        # should a top-up of the same key exist all the same, its unique key rolls the batch back and the
        # caller applies one by one (where it is answered as a duplicate).
        seen.add(key)
        who = Actor("system", payment.provider)
        plain.append(
            _Plain(i, payment, key, int(meter.account_id), str(meter.subscriber_code), int(meter.meter_id), who)
        )
    others.sort()
    return plain, others


async def _apply_plain(
    conn: AsyncConnection,
    plain: list[_Plain],
    now: datetime,
    keys: KeyRing,
    policy: TopUpPolicy,
    results: list[TopUpResult | BillingError | None],
) -> list[int]:
    """Write the plain payments set-based; returns the indexes of those that must go one by one after all
    (a credit above the protocol's limit: `_apply` raises for it)."""
    balances = await ledger.balances_many(conn, {p.account_id: p.payment.currency for p in plain})
    ready: list[tuple[_Plain, TopUpPlan]] = []
    later: list[int] = []
    for item in plain:
        before = balances[item.account_id]
        paid = Money(item.payment.amount_minor, item.payment.currency)
        plan = plan_top_up(before, paid, key=f"topup:{item.key}", recovery_bp=policy.recovery_bp, vend=True)
        if plan.vend.minor > MAX_CREDIT_MINOR:
            later.append(item.index)
            continue
        balances[item.account_id] = before.after(plan.postings)
        ready.append((item, plan))
    if not ready:
        return later
    sending = [(item, plan) for item, plan in ready if plan.vend.is_positive()]
    per_meter = Counter(item.meter_id for item, _ in sending)
    first_transfer = await _next_transfer_ids(conn, per_meter)
    taken: Counter[int] = Counter()
    for item, _ in sending:
        item.transfer_id = first_transfer[item.meter_id] + taken[item.meter_id]
        taken[item.meter_id] += 1
    command_ids = await enqueue_commands(
        conn,
        keys,
        [
            CommandRequest(
                meter_id=item.meter_id,
                message=mp.TopUp(transfer_id=item.transfer_id or 0, amount_minor=plan.vend.minor),
                created_by="system:topup",
                idempotency_key=f"topup:{item.key}",
            )
            for item, plan in sending
        ],
        now,
        keys_are_new=True,  # a command's key is its top-up's, and the top-up is new (see `_sort_out`)
    )
    for (item, _), command_id in zip(sending, command_ids, strict=True):
        item.command_id = command_id
    await ledger.post_many(
        conn,
        [
            ledger.Operation(
                item.account_id,
                plan.postings,
                created_by=str(item.actor),
                payment_id=item.payment.payment_id,
                command_id=item.command_id,
            )
            for item, plan in ready
        ],
        now=now,
    )
    rows = [
        {
            "idempotency_key": item.key,
            "account_id": item.account_id,
            "subscriber_id": item.payment.subscriber_id,
            "meter_id": item.meter_id,
            "payment_id": item.payment.payment_id,
            "provider": item.payment.provider,
            "provider_ref": item.payment.provider_ref,
            "amount_minor": plan.paid.minor,
            "recovered_minor": plan.recovered.minor,
            "vend_minor": plan.vend.minor,
            "currency": item.payment.currency,
            "transfer_id": item.transfer_id,
            "command_id": item.command_id,
            "reconnect_command_id": None,
            "state": "queued" if item.command_id is not None else "held",
            "receipt_number": None,
            "created_by": str(item.actor),
            "created_at": now,
            "updated_at": now,
        }
        for item, plan in ready
    ]
    topup_ids = (await conn.execute(_INSERT_TOPUPS, rows)).scalars().all()
    await audit.record_many(
        conn,
        [
            audit.Entry(
                item.actor,
                "payment.apply",
                now,
                target=f"subscriber:{item.subscriber_code}",
                after={
                    "provider": item.payment.provider,
                    "provider_ref": item.payment.provider_ref,
                    "event_id": item.payment.event_id,
                    "amount_minor": plan.paid.minor,
                    "recovered_minor": plan.recovered.minor,
                    "vend_minor": plan.vend.minor,
                    "command_id": item.command_id,
                },
            )
            for item, plan in ready
        ],
    )
    for (item, plan), topup_id, row in zip(ready, topup_ids, rows, strict=True):
        results[item.index] = TopUpResult(
            topup_id=int(topup_id),
            account_id=item.account_id,
            subscriber_id=int(item.payment.subscriber_id or 0),
            meter_id=item.meter_id,
            payment_id=item.payment.payment_id,
            command_id=item.command_id,
            amount=plan.paid,
            recovered=plan.recovered,
            vended=plan.vend,
            transfer_id=item.transfer_id,
            state=str(row["state"]),
            duplicate=False,
        )
    return later


_INSERT_TOPUPS = insert(L.topups).returning(L.topups.c.id, sort_by_parameter_order=True)


async def _next_transfer_ids(conn: AsyncConnection, per_meter: Counter[int]) -> dict[int, int]:
    """Allocate `per_meter[m]` consecutive transfer ids for each meter (rows locked in id order); returns
    each meter's first."""
    ids = sorted(per_meter)
    rows = await add_in_id_order(conn, R.meters, "next_transfer_id", per_meter)
    first = {int(i): int(n) - per_meter[int(i)] for i, n in rows}
    for i in ids:
        if i not in first:
            raise NotFound("meter", i)
    return first


async def _reverse(conn: AsyncConnection, reversal: PaymentReversed, now: datetime, actor: Actor) -> ReversalResult:
    key = topup_key(reversal.provider, reversal.provider_ref)
    row = await _find_topup(conn, key)
    if row is None:
        raise PaymentNotApplied(reversal.provider, reversal.provider_ref)
    currency = await ledger.account_currency(conn, row.account_id, lock=True)
    row = await _find_topup(conn, key)  # re-read under the lock
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
    if row.payment_id is not None:
        status = "refunded" if reversal.kind is ReversalKind.REFUND else "disputed"
        await conn.execute(
            update(P.payments).where(P.payments.c.id == row.payment_id).values(status=status, updated_at=now)
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


async def reverse_payment(
    uow: UnitOfWork, reversal: PaymentReversed, now: datetime, *, actor: Actor | None = None
) -> ReversalResult:
    """Take back a refunded or disputed amount: what is still in the wallet is taken from it; credit the
    meter already has becomes debt (recovered from later payments) — the meter's balance is never made
    negative. Idempotent on `reversal_ref`. Raises PaymentNotApplied (retry later), CurrencyMismatch,
    InvalidField (more than is left of the payment)."""
    who = actor or Actor("system", reversal.provider)
    return await _retrying(uow, lambda conn: _reverse(conn, reversal, now, who))


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
    policy: TopUpPolicy = TopUpPolicy(),
) -> TopUpResult:
    """A cashier takes cash: numbered receipt (gapless), then the same path as any payment. `request_id`
    (the form's one-time token) makes a double submit one top-up."""

    async def work(conn: AsyncConnection) -> TopUpResult:
        existing = await _find_topup(conn, topup_key("cash", request_id))
        if existing is not None:
            return await _result_of(conn, existing, duplicate=True)
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
        return await _apply(conn, payment, now, keys, policy, actor, receipt_number=receipt)

    return await _retrying(uow, work)


async def vend_held_credit(
    uow: UnitOfWork, actor: Actor, subscriber_id: int, now: datetime, *, keys: KeyRing, request_id: str
) -> TopUpResult | None:
    """Send what the wallet holds (credit paid while no meter was installed, or carried from a replaced
    meter) to the subscriber's active meter. None when there is nothing to send or no meter."""

    async def work(conn: AsyncConnection) -> TopUpResult | None:
        key = topup_key("vend", request_id)
        existing = await _find_topup(conn, key)
        if existing is not None:
            return await _result_of(conn, existing, duplicate=True)
        subscriber = await registry.get_subscriber(conn, subscriber_id)
        currency = await ledger.account_currency(conn, subscriber.account_id, lock=True)
        meter = await registry.active_meter(conn, subscriber_id)
        before = await ledger.balances(conn, subscriber.account_id)
        postings = plan_vend(before, key=f"topup:{key}")
        if meter is None or not postings:
            return None
        amount = -postings[0].amount
        command_id, transfer_id = await _send_credit(conn, keys, meter.id, amount, key, str(actor), now)
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
        if row is None or row.state in ("delivered",):
            return
        if event.state == "1:1":
            await conn.execute(
                update(L.topups)
                .where(t.id == row.id)
                .values(state="delivered", delivered_at=event.at or now, updated_at=now)
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
    "PaymentReversed",
    "ReversalKind",
    "ReversalResult",
    "TopUpPolicy",
    "TopUpResult",
    "apply_payment",
    "apply_payments",
    "cash_top_up",
    "get_top_up",
    "on_command_settled",
    "reissue_top_up",
    "reverse_payment",
    "top_ups_of",
    "vend_held_credit",
]
