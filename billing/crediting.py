"""Crediting payments: the one path every top-up takes, whether one payment comes or many at once.

`credit_payments` runs in the caller's open transaction and has, for a batch, the effects of applying its
payments one after another. Its steps, each one statement for the whole batch:
1. who pays: each payment's subscriber, account (locked, in id order, so that two batches never deadlock)
   and meter (the one named, else the subscriber's active meter), and whether a disconnection waits;
2. those applied before are answered as such (unless the caller knows them new);
3. each payment's postings, planned on its account's running balance (debt recovery first);
4. the meters' transfer ids, then the credit commands (sealed, in the outbox);
5. the ledger entries; a reconnect where a payment cleared the debt of a disconnected meter;
6. the top-up rows and their audit rows, and the payment-received notices the utility chose.
A payment that cannot be credited is answered with the BillingError it raises, before anything is
written; a database error propagates (the caller's transaction rolls back).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from billing import ledger, meter_registry
from billing.arrears import reconnect_if_cleared
from billing.errors import BillingError, CurrencyMismatch, InvalidField, NotFound
from billing.notices import Recipient, notice_rows, queue_rows
from billing.rules.codes import parse_subscriber_code
from billing.rules.ledger import Balances, TopUpPlan, plan_top_up
from billing.rules.money import Money
from billing.rules.notices import NoticeKind
from billing.topup_records import MAX_CREDIT_MINOR, TopUpPolicy, TopUpResult, find_topups, result_of, topup_key
from billing.transfers import next_transfer_ids
from billing.values import PaymentConfirmed
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_commands
from payments.recorded import record_paid
from store import audit, events
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.sql import among_param, per_dialect


@dataclass(frozen=True, slots=True)
class Credit:
    """One payment to credit, who applies it (for the audit log) and, for cash, its receipt number."""

    payment: PaymentConfirmed
    actor: Actor
    receipt_number: str | None = None


@dataclass(frozen=True, slots=True)
class _Payer:
    subscriber_id: int
    subscriber_code: str
    account_id: int
    currency: str
    disconnected: bool
    meters: tuple[Any, ...]  # the subscriber's meters (rows: meter_id, meter_code, meter_status, is_balance_meter)


@dataclass(slots=True)
class _Planned:
    index: int
    credit: Credit
    key: str
    payer: _Payer
    meter_id: int | None
    payment_id: int | None
    plan: TopUpPlan
    transfer_id: int | None = None
    command_id: int | None = None
    reconnect_id: int | None = None


Answer = TopUpResult | BillingError


async def credit_payments(
    conn: AsyncConnection,
    credits: Sequence[Credit],
    now: datetime,
    *,
    keys: KeyRing,
    policy: TopUpPolicy,
    known_new: bool = False,
) -> list[Answer]:
    """Credit each payment: ledger (debt recovery first), credit command, reconnect, top-up and audit rows.
    One answer per credit, in order: its TopUpResult (`duplicate=True` for one applied before) or the
    BillingError it raised. `known_new`: the caller knows none was applied before (payments, which marks a
    payment credited once), so they are not looked up — should one exist all the same, its unique key
    raises and the caller's transaction rolls back."""
    answers: list[Answer | _SameAs | None] = [None] * len(credits)
    payers = await _payers(conn, credits)
    seen = {} if known_new else await find_topups(conn, [_key(c) for c in credits])
    planned = await _plan(conn, credits, payers, seen, now, policy, answers)
    await _send_credits(conn, keys, planned, now)
    await _book(conn, keys, planned, now, policy)
    recorded = await _record_top_ups(conn, planned, now)
    for item, result in zip(planned, recorded, strict=True):
        answers[item.index] = result
    if policy.payment_notice and recorded:
        await _tell_payments(conn, recorded, now, policy)
    done: list[Answer] = []
    for answer in answers:
        if isinstance(answer, _SameAs):  # the same payment twice in the batch: the second is a duplicate
            answer = _as_duplicate(done[answer.index])
        assert answer is not None
        done.append(answer)
    return done


@dataclass(frozen=True, slots=True)
class _SameAs:
    """The answer of a payment met twice in one batch: that of its first (as a duplicate)."""

    index: int


def _as_duplicate(answer: Answer) -> Answer:
    return answer if isinstance(answer, BillingError) else replace(answer, duplicate=True)


def _key(credit: Credit) -> str:
    return topup_key(credit.payment.provider, credit.payment.provider_ref)


@per_dialect
def _payers_query(postgres: bool) -> Any:
    """The subscribers of `ids` and `codes` with their account (locked, in id order), whether a
    disconnection waits to be undone, and each of their meters (a row per meter)."""
    s, a, m, ar = R.subscribers.c, L.accounts.c, R.meters.c, L.arrears.c
    return (
        select(
            s.id.label("subscriber_id"),
            s.code.label("subscriber_code"),
            a.id.label("account_id"),
            a.currency,
            ar.disconnected_at,
            m.id.label("meter_id"),
            m.code.label("meter_code"),
            m.status.label("meter_status"),
            m.is_balance_meter,
        )
        .select_from(
            R.subscribers.join(L.accounts, a.subscriber_id == s.id)
            .outerjoin(L.arrears, ar.account_id == a.id)
            .outerjoin(R.meters, m.subscriber_id == s.id)
        )
        .where(or_(among_param(s.id, "ids", postgres), among_param(s.code, "codes", postgres)))
        .order_by(a.id, m.id)
        .with_for_update(of=L.accounts)
    )


def _code_of(payment: PaymentConfirmed) -> str | None:
    if payment.subscriber_id is not None or payment.subscriber_code is None:
        return None
    try:
        return str(parse_subscriber_code(payment.subscriber_code))
    except BillingError:
        return None  # answered in `_payer_of`


async def _payers(conn: AsyncConnection, credits: Sequence[Credit]) -> dict[int | str, _Payer]:
    """Step 1: the payers, by subscriber id and by code."""
    ids = sorted({c.payment.subscriber_id for c in credits if c.payment.subscriber_id is not None})
    codes = sorted({code for c in credits if (code := _code_of(c.payment))})
    if not ids and not codes:
        return {}
    rows = list(await conn.execute(_payers_query(conn), {"ids": ids, "codes": codes}))
    meters: dict[int, list[Any]] = {}
    for row in rows:
        meters.setdefault(int(row.subscriber_id), []).extend([row] if row.meter_id is not None else [])
    payers: dict[int | str, _Payer] = {}
    for row in rows:
        payer = _Payer(
            int(row.subscriber_id),
            str(row.subscriber_code),
            int(row.account_id),
            str(row.currency),
            row.disconnected_at is not None,
            tuple(meters[int(row.subscriber_id)]),
        )
        payers[payer.subscriber_id] = payers[payer.subscriber_code] = payer
    return payers


def _payer_of(payment: PaymentConfirmed, payers: dict[int | str, _Payer]) -> _Payer:
    if payment.subscriber_id is not None:
        payer = payers.get(payment.subscriber_id)
        if payer is None:
            raise NotFound("subscriber", payment.subscriber_id)
        return payer
    if payment.subscriber_code is not None:
        canonical = str(parse_subscriber_code(payment.subscriber_code))
        payer = payers.get(canonical)
        if payer is None:
            raise NotFound("subscriber", canonical)
        return payer
    raise InvalidField("subscriber", "a payment names its subscriber by id or code")


async def _meter_of(conn: AsyncConnection, payment: PaymentConfirmed, payer: _Payer) -> int | None:
    """The meter to credit: the one the payment names (an active meter of the payer's), else the payer's
    active meter that takes credit (the first installed, balance meters aside); None when there is none."""
    if not payment.meter_code:
        active = [m for m in payer.meters if m.meter_status == "active" and not m.is_balance_meter]
        return int(active[0].meter_id) if active else None
    code = payment.meter_code.replace(" ", "")
    named = [m for m in payer.meters if m.meter_code == code]
    if not named:
        meter = await meter_registry.get_meter_by_code(conn, code)  # raises NotFound when there is no such meter
        raise InvalidField("meter", f"{meter.code} is not an active meter of {payer.subscriber_code}")
    if named[0].meter_status != "active":
        raise InvalidField("meter", f"{code} is not an active meter of {payer.subscriber_code}")
    return int(named[0].meter_id)


async def _plan(
    conn: AsyncConnection,
    credits: Sequence[Credit],
    payers: dict[int | str, _Payer],
    seen: dict[str, Any],
    now: datetime,
    policy: TopUpPolicy,
    answers: list[Answer | _SameAs | None],
) -> list[_Planned]:
    """Steps 2 and 3: answer the duplicates and the payments that cannot be credited; plan the others."""
    accounts = {p.account_id: p.currency for p in payers.values()}
    balances: dict[int, Balances] = await ledger.balances_many(conn, accounts) if accounts else {}
    first: dict[str, int] = {}
    planned: list[_Planned] = []
    for i, credit in enumerate(credits):
        key = _key(credit)
        if key in seen:
            answers[i] = result_of(seen[key], duplicate=True)
            continue
        if key in first:
            answers[i] = _SameAs(first[key])
            continue
        try:
            item = await _planned(conn, i, credit, key, payers, balances, now, policy)
        except BillingError as exc:
            answers[i] = exc
            continue
        first[key] = i
        balances[item.payer.account_id] = balances[item.payer.account_id].after(item.plan.postings)
        planned.append(item)
    return planned


async def _planned(
    conn: AsyncConnection,
    index: int,
    credit: Credit,
    key: str,
    payers: dict[int | str, _Payer],
    balances: dict[int, Balances],
    now: datetime,
    policy: TopUpPolicy,
) -> _Planned:
    payment = credit.payment
    payer = _payer_of(payment, payers)
    if payment.currency != payer.currency:
        raise CurrencyMismatch(payer.currency, payment.currency)
    if payment.amount_minor <= 0:
        raise InvalidField("amount", "a payment is a positive amount")
    meter_id = await _meter_of(conn, payment, payer)
    paid = Money(payment.amount_minor, payer.currency)
    plan = plan_top_up(
        balances[payer.account_id], paid, key=f"topup:{key}", recovery_bp=policy.recovery_bp, vend=meter_id is not None
    )
    if plan.vend.minor > MAX_CREDIT_MINOR:
        raise InvalidField("amount", f"at most {MAX_CREDIT_MINOR} minor units in one credit")
    payment_id = payment.payment_id
    if payment_id is None:
        payment_id = await record_paid(  # payments owns the payment rows; billing asks it to write this one
            conn,
            provider=payment.provider,
            provider_ref=payment.provider_ref,
            subscriber_id=payer.subscriber_id,
            meter_id=meter_id,
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            paid_at=payment.paid_at,
            now=now,
        )
    return _Planned(index, credit, key, payer, meter_id, payment_id, plan)


async def _send_credits(conn: AsyncConnection, keys: KeyRing, planned: list[_Planned], now: datetime) -> None:
    """Step 4: transfer ids for the credits to send, then their commands."""
    sending = [item for item in planned if item.meter_id is not None and item.plan.vend.is_positive()]
    if not sending:
        return
    per_meter = Counter(item.meter_id for item in sending if item.meter_id is not None)
    first = await next_transfer_ids(conn, per_meter)
    taken: Counter[int] = Counter()
    requests = []
    for item in sending:
        assert item.meter_id is not None
        item.transfer_id = first[item.meter_id] + taken[item.meter_id]
        taken[item.meter_id] += 1
        requests.append(
            CommandRequest(
                meter_id=item.meter_id,
                message=mp.TopUp(transfer_id=item.transfer_id, amount_minor=item.plan.vend.minor),
                created_by="system:topup",
                idempotency_key=f"topup:{item.key}",
            )
        )
    # a command's key is its top-up's, and the top-up is new (looked up, or known new, in `credit_payments`)
    command_ids = await enqueue_commands(conn, keys, requests, now, keys_are_new=True)
    for item, command_id in zip(sending, command_ids, strict=True):
        item.command_id = command_id


async def _book(
    conn: AsyncConnection, keys: KeyRing, planned: list[_Planned], now: datetime, policy: TopUpPolicy
) -> None:
    """Step 5: the ledger entries; then a reconnect for a disconnected meter whose debt is now cleared."""
    await ledger.post_many(
        conn,
        [
            ledger.Operation(
                item.payer.account_id,
                item.plan.postings,
                created_by=str(item.credit.actor),
                payment_id=item.payment_id,
                command_id=item.command_id,
            )
            for item in planned
        ],
        now=now,
    )
    for item in planned:
        if item.payer.disconnected and item.meter_id is not None:
            item.reconnect_id = await reconnect_if_cleared(
                conn,
                keys,
                item.payer.account_id,
                item.meter_id,
                now,
                min_debt_minor=policy.min_debt_minor,
                depends_on_id=item.command_id,
                created_by=str(item.credit.actor),
                utility=policy.utility,
            )


_INSERT_TOPUPS = insert(L.topups).returning(L.topups.c.id, sort_by_parameter_order=True)


async def _record_top_ups(conn: AsyncConnection, planned: list[_Planned], now: datetime) -> list[TopUpResult]:
    """Step 6: the top-up rows and their audit rows; the results."""
    if not planned:
        return []
    rows = [_top_up_row(item, now) for item in planned]
    topup_ids = (await conn.execute(_INSERT_TOPUPS, rows)).scalars().all()
    await audit.record_many(conn, [_audit_entry(item, now) for item in planned])
    await events.emit(
        conn, [_payment_event(item, int(t), now) for item, t in zip(planned, topup_ids, strict=True)], now
    )
    return [
        TopUpResult(
            topup_id=int(topup_id),
            account_id=item.payer.account_id,
            subscriber_id=item.payer.subscriber_id,
            meter_id=item.meter_id,
            payment_id=item.payment_id,
            command_id=item.command_id,
            amount=item.plan.paid,
            recovered=item.plan.recovered,
            vended=item.plan.vend,
            transfer_id=item.transfer_id,
            state=str(row["state"]),
            duplicate=False,
            reconnect_command_id=item.reconnect_id,
            receipt_number=item.credit.receipt_number,
        )
        for item, topup_id, row in zip(planned, topup_ids, rows, strict=True)
    ]


async def _tell_payments(
    conn: AsyncConnection, results: Sequence[TopUpResult], now: datetime, policy: TopUpPolicy
) -> None:
    """The payment-received notice of each credited top-up, on the channels the utility chose (one read of
    the subscribers, one insert; once per top-up)."""
    s = R.subscribers.c
    ids = sorted({r.subscriber_id for r in results})
    people = {
        row.id: row
        for row in await conn.execute(select(s.id, s.code, s.language, s.phone, s.email).where(s.id.in_(ids)))
    }
    rows: list[dict[str, Any]] = []
    for result in results:
        who = people[result.subscriber_id]
        recipient = Recipient(who.id, who.code, who.language or "en", who.phone, who.email)
        rows += [
            row
            for row in notice_rows(
                recipient,
                NoticeKind.PAYMENT,
                f"payment:{result.topup_id}",
                utility=policy.utility,
                amount=result.amount.format(),
                now=now,
            )
            if row["channel"] in policy.payment_notice
        ]
    await queue_rows(conn, rows)


def _top_up_row(item: _Planned, now: datetime) -> dict[str, Any]:
    payment = item.credit.payment
    return {
        "idempotency_key": item.key,
        "account_id": item.payer.account_id,
        "subscriber_id": item.payer.subscriber_id,
        "meter_id": item.meter_id,
        "payment_id": item.payment_id,
        "provider": payment.provider,
        "provider_ref": payment.provider_ref,
        "amount_minor": item.plan.paid.minor,
        "recovered_minor": item.plan.recovered.minor,
        "vend_minor": item.plan.vend.minor,
        "currency": item.payer.currency,
        "transfer_id": item.transfer_id,
        "command_id": item.command_id,
        "reconnect_command_id": item.reconnect_id,
        "state": "queued" if item.command_id is not None else "held",
        "receipt_number": item.credit.receipt_number,
        "created_by": str(item.credit.actor),
        "created_at": now,
        "updated_at": now,
    }


def _audit_entry(item: _Planned, now: datetime) -> audit.Entry:
    payment = item.credit.payment
    return audit.Entry(
        item.credit.actor,
        "payment.apply",
        now,
        target=f"subscriber:{item.payer.subscriber_code}",
        after={
            "provider": payment.provider,
            "provider_ref": payment.provider_ref,
            "event_id": payment.event_id,
            "amount_minor": item.plan.paid.minor,
            "recovered_minor": item.plan.recovered.minor,
            "vend_minor": item.plan.vend.minor,
            "command_id": item.command_id,
        },
    )


def _payment_event(item: _Planned, topup_id: int, now: datetime) -> events.Event:
    """The `payment` webhook event of a credited top-up, written with it (`store.events`)."""
    payment = item.credit.payment
    return events.Event(
        f"payment:{topup_id}",
        events.EventKind.PAYMENT,
        now,
        {
            "action": "credited",
            "topup_id": topup_id,
            "subscriber": item.payer.subscriber_code,
            "meter_id": item.meter_id,
            "provider": payment.provider,
            "provider_ref": payment.provider_ref,
            "amount_minor": item.plan.paid.minor,
            "recovered_minor": item.plan.recovered.minor,
            "vend_minor": item.plan.vend.minor,
            "currency": item.payer.currency,
            "command_id": item.command_id,
            "receipt_number": item.credit.receipt_number,
        },
    )
