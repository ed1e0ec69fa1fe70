"""Subscriber self-service on the short number (docs/self-service.md): a text SMS from a subscriber's
registered phone is read as a keyword (billing.rules.self_service), answered by SMS from the short number,
and logged as a row (`sms_requests`) with the answer's row in the notices.

What is not a subscriber's number stays a wrong SMS (`unknown_sender`), and so does a text that starts with
no keyword (`unknown_keyword`). Answers are rate-limited per number; `PAY <code>` redeems a scratch-card
voucher through the one top-up path (billing.crediting.credit_payments, like a cash payment), and wrong codes
are limited per number a day: past the limit PAY is refused, logged and audited.

The gateway keeps the text SMS of numbers that are not meters (gateway.inbound_texts); billing.text_requests
answers them in a task of its own, so the meters' path never waits for it. Given the kept SMS's id, the
transaction that answers it also marks it handled: an SMS is answered once, even across a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import ledger
from billing.crediting import Credit, credit_payments
from billing.errors import BillingError
from billing.rules import self_service as rules
from billing.rules.arrears import ArrearsPolicy, ArrearsState, Stage, next_step
from billing.rules.money import Money
from billing.sms_text import read_text
from billing.topup_records import TopUpPolicy, TopUpResult
from billing.values import PaymentConfirmed
from billing.vouchers import code_hash
from gateway import inbound_texts
from gateway.inbound import digits
from gateway.inbound_store import record_wrong_sms
from gateway.keys import KeyRing
from gateway.ports import InboundSms
from gateway.reports import latest_balance
from store import audit
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.schema.notices import notices as N  # noqa: N812
from store.schema.self_service import sms_requests, vouchers
from store.uow import UnitOfWork

log = logging.getLogger("smsmeter.billing.self_service")


@dataclass(frozen=True, slots=True)
class SelfServicePolicy:
    utility: str = ""
    answers_per_window: int = 5  # answers to one number within `window`; more are logged, not answered
    window: timedelta = timedelta(minutes=10)
    wrong_codes_per_day: int = 5  # wrong voucher codes from one number in 24 h before PAY is refused


# a token for the last stuck credit: (top-up id) -> the 20 digits, or None (billing.sts.issue_credit_token)
TokenIssuer = Callable[[int], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Answered:
    outcome: str  # answered | rate_limited | credited | wrong_code | used | locked | no_code | wrong
    answer: str | None
    request_id: int | None
    notice_id: int | None


@dataclass(frozen=True, slots=True)
class _Subscriber:
    id: int
    code: str
    language: str


async def answer_text_sms(
    uow: UnitOfWork,
    sms: InboundSms,
    now: datetime,
    *,
    keys: KeyRing,
    topup_policy: TopUpPolicy,
    arrears_policy: ArrearsPolicy,
    policy: SelfServicePolicy,
    tokens: TokenIssuer | None = None,
    text_id: int | None = None,
) -> Answered:
    """Read one text SMS, answer it (queued in the notices, from the short number) and log it. With `text_id`
    (the SMS as kept by the gateway) the answering transaction marks it handled; one already handled is
    answered no more (outcome `already`)."""
    try:
        return await _answer_text_sms(uow, sms, now, keys, topup_policy, arrears_policy, policy, tokens, text_id)
    except _AlreadyHandled:
        log.info("self-service: SMS %s was answered already", text_id)
        return Answered("already", None, None, None)


class _AlreadyHandled(Exception):
    """Raised inside the answer's transaction to roll it back: another worker answered the SMS first."""


async def _handled(conn: AsyncConnection, text_id: int | None, now: datetime) -> None:
    if text_id is not None and not await inbound_texts.mark_handled(conn, text_id, now):
        raise _AlreadyHandled


async def _answer_text_sms(
    uow: UnitOfWork,
    sms: InboundSms,
    now: datetime,
    keys: KeyRing,
    topup_policy: TopUpPolicy,
    arrears_policy: ArrearsPolicy,
    policy: SelfServicePolicy,
    tokens: TokenIssuer | None,
    text_id: int | None,
) -> Answered:
    number = digits(sms.source)
    text = read_text(sms.body, sms.data_coding)
    async with uow.begin() as conn:
        subscriber = await _subscriber_of(conn, number)
        if subscriber is None:
            await _handled(conn, text_id, now)
            await _wrong(conn, sms, "unknown_sender", "neither a meter's nor a subscriber's number")
            return Answered("wrong", None, None, None)
        request = rules.parse_request(text)
        if request is None:
            await _handled(conn, text_id, now)
            await _wrong(conn, sms, "unknown_keyword", f"subscriber {subscriber.code}: {text[:60]!r}")
            return Answered("wrong", None, None, None)
        language = rules.answer_language(request, subscriber.language)
        logged = _logged_text(request)
        if request.keyword is not rules.Keyword.TOKEN:  # TOKEN is answered in a transaction of its own below
            await _handled(conn, text_id, now)
        if await _answered_lately(conn, number, now - policy.window) >= policy.answers_per_window:
            if request.keyword is rules.Keyword.TOKEN:
                await _handled(conn, text_id, now)
            rid = await _log(conn, now, number, subscriber, request, logged, "rate_limited", None, language)
            log.info("self-service: %s rate-limited (%s)", number, request.keyword)
            return Answered("rate_limited", None, rid, None)
        if request.keyword is not rules.Keyword.TOKEN:
            outcome, answer, topup_id = await _answer(
                conn, subscriber, number, request, now, keys, topup_policy, arrears_policy, policy
            )
            return await _reply(
                conn, now, number, subscriber, request, logged, outcome, answer, language, policy, topup_id
            )
        stuck = await _last_top_up(conn, subscriber.id)
    token: rules.Token = rules.Token(None)
    if stuck is not None and stuck.sts_token:
        token = rules.Token(stuck.sts_token, Money(int(stuck.vend_minor), stuck.currency))
    elif stuck is not None and tokens is not None and stuck.state in ("queued", "failed"):
        digits20 = await tokens(int(stuck.id))
        if digits20 is not None:
            async with uow.connect() as conn:
                row = (await conn.execute(select(L.topups).where(L.topups.c.id == stuck.id))).one()
            token = rules.Token(digits20, Money(int(row.vend_minor), row.currency))
    async with uow.begin() as conn:
        await _handled(conn, text_id, now)
        return await _reply(
            conn, now, number, subscriber, request, logged, "answered", token, language, policy,
            None if stuck is None else int(stuck.id),
        )  # fmt: skip


async def _answer(
    conn: AsyncConnection,
    subscriber: _Subscriber,
    number: str,
    request: rules.Request,
    now: datetime,
    keys: KeyRing,
    topup_policy: TopUpPolicy,
    arrears_policy: ArrearsPolicy,
    policy: SelfServicePolicy,
) -> tuple[str, rules.Answer, int | None]:
    keyword = request.keyword
    if keyword is rules.Keyword.HELP:
        return "answered", rules.Help(), None
    if keyword is rules.Keyword.LAST:
        row = await _last_top_up(conn, subscriber.id)
        if row is None:
            return "answered", rules.LastTopUp(None), None
        amount = Money(int(row.amount_minor), row.currency)
        return "answered", rules.LastTopUp(amount, row.created_at.date(), row.state), int(row.id)
    account_id = await ledger.account_of(conn, subscriber.id)
    balances = await ledger.balances(conn, account_id)
    if keyword is rules.Keyword.BAL:
        credit = await _meter_credit(conn, subscriber.id)
        if credit is None:
            return "answered", rules.Balance(balances.total, None), None
        minor, at = credit
        return "answered", rules.Balance(balances.total, Money(minor, balances.wallet.currency), at.date()), None
    if keyword is rules.Keyword.DEBT:
        row = (await conn.execute(select(L.arrears).where(L.arrears.c.account_id == account_id))).first()
        state = ArrearsState(
            owed=balances.owed,
            overdue_since=None if row is None else row.overdue_since,
            stage=Stage.NONE if row is None else Stage(row.stage),
            disconnected=row is not None and row.disconnected_at is not None,
        )
        step = next_step(arrears_policy, state)
        if step is None:
            return "answered", rules.Debt(balances.owed), None
        return "answered", rules.Debt(balances.owed, step[0].value, step[1].date()), None
    return await _pay(conn, subscriber, number, request, now, keys, topup_policy, policy)


async def _pay(
    conn: AsyncConnection,
    subscriber: _Subscriber,
    number: str,
    request: rules.Request,
    now: datetime,
    keys: KeyRing,
    topup_policy: TopUpPolicy,
    policy: SelfServicePolicy,
) -> tuple[str, rules.Answer, int | None]:
    if not request.argument:
        return "no_code", rules.Paid("no_code"), None
    actor = Actor("subscriber", subscriber.code, number)
    wrong = await conn.scalar(
        select(func.count())
        .select_from(sms_requests)
        .where(
            sms_requests.c.msisdn == number,
            sms_requests.c.outcome == "wrong_code",
            sms_requests.c.received_at > now - timedelta(hours=24),
        )
    )
    if int(wrong or 0) >= policy.wrong_codes_per_day:
        log.warning("self-service: %s sent %s wrong voucher codes in 24 h; PAY refused", number, wrong)
        await audit.record(
            conn, actor, "voucher.refused", now, target=f"subscriber:{subscriber.code}",
            after={"msisdn": number, "wrong_codes_24h": int(wrong or 0)},
        )  # fmt: skip
        return "locked", rules.Paid("locked"), None
    code = rules.read_voucher_code(request.argument)
    v = vouchers.c
    row = None
    if code is not None:
        row = (await conn.execute(select(vouchers).where(v.code_hash == code_hash(code)).with_for_update())).first()
    if row is None:
        return "wrong_code", rules.Paid("wrong_code"), None
    if row.status == "void":  # withdrawn by the utility (billing.vouchers.void_vouchers)
        return "void", rules.Paid("void"), None
    if row.status != "new":
        return "used", rules.Paid("used"), None
    payment = PaymentConfirmed(
        "voucher", f"voucher:{row.id}", int(row.amount_minor), row.currency, now, subscriber_id=subscriber.id
    )
    (answer,) = await credit_payments(conn, [Credit(payment, actor)], now, keys=keys, policy=topup_policy)
    if isinstance(answer, BillingError):
        raise answer
    assert isinstance(answer, TopUpResult)
    await conn.execute(
        update(vouchers)
        .where(v.id == row.id, v.status == "new")
        .values(status="used", used_at=now, used_by=subscriber.id, topup_id=answer.topup_id)
    )
    await audit.record(
        conn, actor, "voucher.redeem", now, target=f"voucher:{row.id}",
        before={"status": "new"}, after={"status": "used", "topup_id": answer.topup_id, "last4": row.last4},
    )  # fmt: skip
    return "credited", rules.Paid("credited", answer.amount, answer.state), answer.topup_id


async def _reply(
    conn: AsyncConnection,
    now: datetime,
    number: str,
    subscriber: _Subscriber,
    request: rules.Request,
    logged: str,
    outcome: str,
    answer: rules.Answer,
    language: str,
    policy: SelfServicePolicy,
    topup_id: int | None,
) -> Answered:
    text = rules.answer_text(answer, language, utility=policy.utility, code=subscriber.code)
    rid = await _log(conn, now, number, subscriber, request, logged, outcome, text, language, topup_id)
    notice_id = await conn.scalar(
        insert(N)
        .values(
            subscriber_id=subscriber.id,
            channel="sms",
            stage="answer",
            cause_key=f"sms_request:{rid}",
            status="queued",
            subject=None,
            body=text,
            created_at=now,
            recipient=number,
            language=language,
            attempts=0,
            next_attempt_at=now,
        )
        .returning(N.c.id)
    )
    await conn.execute(update(sms_requests).where(sms_requests.c.id == rid).values(notice_id=notice_id))
    return Answered(outcome, text, rid, None if notice_id is None else int(notice_id))


def _logged_text(request: rules.Request) -> str:
    """What is kept of the SMS: a voucher code only as its last four digits."""
    if request.keyword is rules.Keyword.PAY and request.argument:
        kept = "".join(c for c in request.argument if c.isdigit())[-4:]
        return f"{request.keyword.value.upper()} …{kept}"
    return f"{request.keyword.value.upper()} {request.argument}".strip()[:200]


async def _log(
    conn: AsyncConnection,
    now: datetime,
    number: str,
    subscriber: _Subscriber,
    request: rules.Request,
    text: str,
    outcome: str,
    answer: str | None,
    language: str,
    topup_id: int | None = None,
) -> int:
    rid = await conn.scalar(
        insert(sms_requests)
        .values(
            received_at=now,
            msisdn=number,
            subscriber_id=subscriber.id,
            keyword=request.keyword.value,
            text=text,
            outcome=outcome,
            answer=answer,
            language=language,
            topup_id=topup_id,
        )
        .returning(sms_requests.c.id)
    )
    assert rid is not None
    return int(rid)


async def _wrong(conn: AsyncConnection, sms: InboundSms, reason: str, detail: str) -> None:
    log.warning("wrong SMS from %s to %s: %s (%s)", sms.source, sms.destination, reason, detail)
    await record_wrong_sms(conn, sms, reason, detail)


async def _subscriber_of(conn: AsyncConnection, number: str) -> _Subscriber | None:
    s = R.subscribers.c
    row = (
        await conn.execute(
            select(s.id, s.code, s.language)
            .where(or_(s.phone == number, s.phone == f"+{number}"), s.status == "active")
            .order_by(s.id)
            .limit(1)
        )
    ).first()
    return None if row is None else _Subscriber(int(row.id), row.code, row.language or "en")


async def _answered_lately(conn: AsyncConnection, number: str, since: datetime) -> int:
    q = sms_requests.c
    count = await conn.scalar(
        select(func.count())
        .select_from(sms_requests)
        .where(q.msisdn == number, q.received_at > since, q.outcome != "rate_limited")
    )
    return int(count or 0)


async def _last_top_up(conn: AsyncConnection, subscriber_id: int) -> Any:
    t = L.topups.c
    return (
        await conn.execute(select(L.topups).where(t.subscriber_id == subscriber_id).order_by(t.id.desc()).limit(1))
    ).first()


async def _meter_credit(conn: AsyncConnection, subscriber_id: int) -> tuple[int, datetime] | None:
    m = R.meters.c
    meter_ids = (await conn.scalars(select(m.id).where(m.subscriber_id == subscriber_id, m.status == "active"))).all()
    return await latest_balance(conn, meter_ids)


async def sms_requests_of(conn: AsyncConnection, *, limit: int = 100) -> list[dict[str, Any]]:
    q = sms_requests.c
    rows = await conn.execute(select(sms_requests).order_by(q.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


__all__ = [
    "Answered",
    "SelfServicePolicy",
    "answer_text_sms",
    "sms_requests_of",
]
