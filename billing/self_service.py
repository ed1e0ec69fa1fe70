"""Subscriber self-service on the short number (docs/self-service.md): a registered subscriber's phone
sends a keyword and gets the answer by SMS from the short number.

- `BAL` — the balance in the account and the meter's last reported credit;
- `DEBT` — what is owed, the arrears step and the next step with its date;
- `LAST` — the last top-up, its amount and state (and how it was delivered: SMS or token);
- `HELP` — the keywords.

Keywords are read in every shipped language (ro SOLD, DATORIE, ULTIM, AJUTOR; ru БАЛАНС, ДОЛГ, ПОСЛЕДНИЙ, ПОМОЩЬ;
es SALDO, DEUDA, ULTIMO, AYUDA; az BALANS, BORC, SON, KÖMƏK),
any case, with any text after them. The answer is in the subscriber's language and is a `notices` row (the
log of what was answered; the notices worker sends it from the short number). Answers are rate-limited per
number (`SelfServicePolicy.answers_per_hour`). What is not taken comes back as the wrong-SMS reason the
gateway records: `unknown_sender` (neither a meter nor a subscriber's phone), `unknown_keyword`,
`rate_limited`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import ledger
from billing.notices import queue_rows
from billing.rules.arrears import ArrearsPolicy
from billing.rules.money import Money
from billing.sms_text import gsm7_text
from store.schema import ledger as L  # noqa: N812
from store.schema.commands import balance_reports
from store.schema.notices import notices
from store.schema.registry import meters, subscribers

log = logging.getLogger("smsmeter.billing.self_service")

STAGE = "self_service"
KEYWORDS = {
    "BAL": "BAL", "SOLD": "BAL", "БАЛАНС": "BAL", "BALANS": "BAL",
    "DEBT": "DEBT", "DATORIE": "DEBT", "ДОЛГ": "DEBT",
    "LAST": "LAST", "ULTIM": "LAST", "ПОСЛЕДНИЙ": "LAST",
    "HELP": "HELP", "AJUTOR": "HELP", "ПОМОЩЬ": "HELP", "?": "HELP",
    "SALDO": "BAL", "DEUDA": "DEBT", "ULTIMO": "LAST", "ÚLTIMO": "LAST", "AYUDA": "HELP",
    "BORC": "DEBT", "SON": "LAST", "KÖMƏK": "HELP",
}  # fmt: skip

_TEXTS = {
    "en": {
        "BAL": "Account {code}: {balance} in the account; meter credit {credit}.",
        "BAL_NO_METER": "Account {code}: {balance} in the account; the meter has not reported its credit yet.",
        "DEBT": "Account {code}: you owe {owed}. Step: {stage}. Next: {next} on {date}.",
        "DEBT_NONE": "Account {code}: no debt.",
        "LAST": "Account {code}: last top-up {amount} on {date}: {state}.",
        "LAST_NONE": "Account {code}: no top-up yet.",
        "HELP": "Send BAL (balance), DEBT (debt), LAST (last top-up) or HELP to this number.",
    },
    "ro": {
        "BAL": "Contul {code}: {balance} în cont; creditul contorului {credit}.",
        "BAL_NO_METER": "Contul {code}: {balance} în cont; contorul nu și-a raportat încă creditul.",
        "DEBT": "Contul {code}: datorați {owed}. Etapa: {stage}. Urmează: {next} la {date}.",
        "DEBT_NONE": "Contul {code}: nicio datorie.",
        "LAST": "Contul {code}: ultima alimentare {amount} la {date}: {state}.",
        "LAST_NONE": "Contul {code}: nicio alimentare încă.",
        "HELP": "Trimiteți SOLD, DATORIE, ULTIM sau AJUTOR la acest număr.",
    },
    "ru": {
        "BAL": "Счёт {code}: на счёте {balance}; кредит счётчика {credit}.",
        "BAL_NO_METER": "Счёт {code}: на счёте {balance}; счётчик ещё не сообщил свой кредит.",
        "DEBT": "Счёт {code}: долг {owed}. Этап: {stage}. Далее: {next} {date}.",
        "DEBT_NONE": "Счёт {code}: долга нет.",
        "LAST": "Счёт {code}: последнее пополнение {amount} {date}: {state}.",
        "LAST_NONE": "Счёт {code}: пополнений ещё нет.",
        "HELP": "Отправьте БАЛАНС, ДОЛГ, ПОСЛЕДНИЙ или ПОМОЩЬ на этот номер.",
    },
}
_TEXTS["es"] = {
    "BAL": "Cuenta {code}: {balance} en la cuenta; crédito del contador {credit}.",
    "BAL_NO_METER": "Cuenta {code}: {balance} en la cuenta; el contador aún no ha informado su crédito.",
    "DEBT": "Cuenta {code}: debe {owed}. Etapa: {stage}. Siguiente: {next} el {date}.",
    "DEBT_NONE": "Cuenta {code}: sin deuda.",
    "LAST": "Cuenta {code}: última recarga {amount} el {date}: {state}.",
    "LAST_NONE": "Cuenta {code}: aún no hay recargas.",
    "HELP": "Envíe SALDO, DEUDA, ULTIMO o AYUDA a este número.",
}
_TEXTS["az"] = {
    "BAL": "Hesab {code}: hesabda {balance}; sayğacın krediti {credit}.",
    "BAL_NO_METER": "Hesab {code}: hesabda {balance}; sayğac hələ kreditini bildirməyib.",
    "DEBT": "Hesab {code}: borcunuz {owed}. Mərhələ: {stage}. Növbəti: {next}, {date}.",
    "DEBT_NONE": "Hesab {code}: borc yoxdur.",
    "LAST": "Hesab {code}: son ödəniş {amount}, {date}: {state}.",
    "LAST_NONE": "Hesab {code}: hələ ödəniş yoxdur.",
    "HELP": "Bu nömrəyə BALANS, BORC, SON və ya KÖMƏK göndərin.",
}
_NEXT = {"none": "reminder", "reminder": "final", "final": "disconnect"}


@dataclass(frozen=True, slots=True)
class SelfServicePolicy:
    answers_per_hour: int = 5
    arrears: ArrearsPolicy = ArrearsPolicy()  # noqa: RUF009 - frozen, shared


def read_text(body: bytes, data_coding: int) -> str:
    """An incoming text SMS's words: UCS-2 (0x08), else GSM 7-bit unpacked (one septet a byte)."""
    if data_coding == 0x08:
        return body.decode("utf-16-be", errors="replace")
    return gsm7_text(body)


def keyword_of(text: str) -> str | None:
    words = text.strip().split()
    return KEYWORDS.get(words[0].upper()) if words else None


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


async def _subscriber_by_phone(conn: AsyncConnection, number: str) -> dict[str, object] | None:
    row = (
        await conn.execute(
            select(subscribers.c.id, subscribers.c.code, subscribers.c.language, subscribers.c.phone).where(
                subscribers.c.phone == number, subscribers.c.status == "active"
            )
        )
    ).first()
    return None if row is None else dict(row._mapping)


async def _answers_in_the_last_hour(conn: AsyncConnection, number: str, now: datetime) -> int:
    n = notices.c
    count = await conn.scalar(
        select(func.count())
        .select_from(notices)
        .where(n.recipient == number, n.stage.like(f"{STAGE}%"), n.created_at > now - timedelta(hours=1))
    )
    return int(count or 0)


async def _answer(
    conn: AsyncConnection,
    subscriber_id: int,
    code: str,
    keyword: str,
    texts: dict[str, str],
    policy: SelfServicePolicy,
    now: datetime,
) -> str:
    account_id = await ledger.account_of(conn, subscriber_id)
    currency = await ledger.account_currency(conn, account_id)
    if keyword == "BAL":
        balance = (await ledger.balances(conn, account_id)).wallet
        credit = await conn.scalar(
            select(balance_reports.c.credit_minor)
            .join(meters, meters.c.id == balance_reports.c.meter_id)
            .where(meters.c.subscriber_id == subscriber_id)
            .order_by(balance_reports.c.reported_at.desc())
            .limit(1)
        )
        if credit is None:
            return texts["BAL_NO_METER"].format(code=code, balance=balance.format())
        return texts["BAL"].format(code=code, balance=balance.format(), credit=Money(int(credit), currency).format())
    if keyword == "DEBT":
        owed = (await ledger.balances(conn, account_id)).owed
        if not owed.minor:
            return texts["DEBT_NONE"].format(code=code)
        row = (await conn.execute(select(L.arrears).where(L.arrears.c.account_id == account_id))).first()
        stage = row.stage if row is not None else "none"
        since = row.overdue_since if row is not None and row.overdue_since is not None else now
        days = {
            "reminder": policy.arrears.reminder_after_days,
            "final": policy.arrears.final_after_days,
            "disconnect": policy.arrears.disconnect_after_days,
        }
        step = _NEXT.get(stage, "disconnect")
        date = (since + timedelta(days=days[step])).strftime("%Y-%m-%d")
        return texts["DEBT"].format(code=code, owed=owed.format(), stage=stage, next=step, date=date)
    if keyword == "LAST":
        t = L.topups.c
        last = (
            await conn.execute(
                select(t.vend_minor, t.amount_minor, t.currency, t.created_at, t.state, t.delivered_by)
                .where(t.subscriber_id == subscriber_id)
                .order_by(t.id.desc())
                .limit(1)
            )
        ).first()
        if last is None:
            return texts["LAST_NONE"].format(code=code)
        state = last.state + (f" ({last.delivered_by})" if last.delivered_by else "")
        amount = Money(int(last.amount_minor), last.currency).format()
        return texts["LAST"].format(code=code, amount=amount, date=last.created_at.strftime("%Y-%m-%d"), state=state)
    return texts["HELP"]


async def answer_keyword(
    conn: AsyncConnection,
    source: str,
    body: bytes,
    data_coding: int,
    received_at: datetime,
    now: datetime,
    *,
    policy: SelfServicePolicy = SelfServicePolicy(),
) -> tuple[str, str] | None:
    """Answer a keyword from a subscriber's phone, in the caller's transaction: None when answered (the
    answer is queued as a notice), else (wrong-SMS reason, detail)."""
    number = _digits(source)
    subscriber = await _subscriber_by_phone(conn, number)
    if subscriber is None:
        return "unknown_sender", "neither a meter's nor a subscriber's number"
    text = read_text(body, data_coding)
    keyword = keyword_of(text)
    if keyword is None:
        return "unknown_keyword", f"not a keyword: {text.strip()[:40]!r}"
    if await _answers_in_the_last_hour(conn, number, now) >= policy.answers_per_hour:
        return "rate_limited", f"more than {policy.answers_per_hour} answers an hour"
    language = str(subscriber["language"])
    texts = _TEXTS.get(language, _TEXTS["en"])
    subscriber_id, code = int(str(subscriber["id"])), str(subscriber["code"])
    answer = await _answer(conn, subscriber_id, code, keyword, texts, policy, now)
    await queue_rows(
        conn,
        [
            {
                "subscriber_id": subscriber_id,
                "channel": "sms",
                "stage": f"{STAGE}:{keyword.lower()}",
                "cause_key": f"{STAGE}:{number}:{received_at.isoformat()}:{keyword}"[:200],
                "status": "queued",
                "subject": None,
                "body": answer,
                "created_at": now,
                "recipient": number,
                "language": language,
                "attempts": 0,
                "next_attempt_at": now,
            }
        ],
    )
    log.info("self-service %s from %s answered", keyword, number)
    return None
