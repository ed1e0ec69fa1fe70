"""Subscriber self-service on the short number (docs/self-service.md), on both databases: each keyword
answered by SMS from the short number and logged; vouchers single-use, wrong codes limited per number and
the refusal audited; unknown numbers and words stay wrong SMS; answers rate-limited; the inbound path hands
subscribers' text SMS over and keeps meters' frames to itself."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from billing import ledger, topup
from billing.errors import InvalidField, NotFound
from billing.rules.arrears import ArrearsPolicy
from billing.rules.ledger import EntryType, plan_charge
from billing.rules.money import Money
from billing.rules.self_service import printed
from billing.self_service import Answered, SelfServicePolicy, answer_text_sms
from billing.text_requests import TextRequests
from billing.topup_records import TopUpPolicy
from billing.values import PaymentConfirmed
from billing.vouchers import generate_vouchers, void_vouchers, voucher_batches_list
from gateway.inbound import Inbound
from gateway.keys import KeyRing
from gateway.ports import InboundSms
from store.schema import ledger as L  # noqa: N812
from store.schema.auth import audit_log
from store.schema.commands import wrong_sms
from store.schema.notices import notices
from store.schema.self_service import sms_requests, vouchers
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")
KEYS = KeyRing(MASTER_KEY)
PHONE = "37360000001"  # the subscriber's registered phone (new_subscriber)
SHORT = "1234"
POLICY = SelfServicePolicy(utility="Demo", answers_per_window=5, window=timedelta(minutes=10), wrong_codes_per_day=5)


def text(body: str, source: str = PHONE, *, ucs2: bool = False) -> InboundSms:
    data = body.encode("utf-16-be") if ucs2 else body.encode("ascii")
    return InboundSms(source, SHORT, data, False, 0x08 if ucs2 else 0x00, NOW)


async def ask(
    uow: UnitOfWork, sms: InboundSms, *, at: timedelta = timedelta(0), policy: SelfServicePolicy = POLICY
) -> Answered:
    return await answer_text_sms(
        uow, sms, NOW + at, keys=KEYS, topup_policy=TopUpPolicy(), arrears_policy=ArrearsPolicy(), policy=policy
    )


async def _count(uow: UnitOfWork, table: object, *where: object) -> int:
    async with uow.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)  # type: ignore[arg-type]


async def test_bal_is_answered_in_the_words_language_from_the_short_number_and_logged(uow: UnitOfWork) -> None:
    await new_subscriber(uow)
    done = await ask(uow, text("bal"))
    assert done.outcome == "answered"
    assert done.answer == ("Demo: account 640100100010001: balance 0.00 USD; the meter has not reported its credit.")
    async with uow.connect() as conn:
        request = (await conn.execute(select(sms_requests))).one()
        notice = (await conn.execute(select(notices).where(notices.c.id == done.notice_id))).one()
    assert (request.msisdn, request.keyword, request.outcome, request.language) == (PHONE, "bal", "answered", "en")
    assert (notice.channel, notice.stage, notice.status, notice.recipient) == ("sms", "answer", "queued", PHONE)
    assert notice.body == done.answer
    sold = await ask(uow, text("SOLD"))
    assert sold.answer is not None
    assert sold.answer.startswith("Demo: contul 640100100010001: sold 0.00 USD")
    ru = await ask(uow, text("БАЛ", ucs2=True))
    assert ru.answer is not None
    assert ru.answer.startswith("Demo: счёт 640100100010001: баланс")


async def test_debt_last_token_and_help(uow: UnitOfWork) -> None:
    sub, _meter = await new_subscriber(uow)
    many = SelfServicePolicy(utility="Demo", answers_per_window=100)
    help_ = await ask(uow, text("AJUTOR"), policy=many)
    assert help_.answer is not None
    assert "SOLD" in help_.answer
    last = await ask(uow, text("LAST"), policy=many)
    assert last.answer == "Demo: no top-up yet on account 640100100010001."
    await topup.apply_payment(
        uow, PaymentConfirmed("cash", "r1", 2000, "USD", NOW, subscriber_id=sub.id), NOW, keys=KEYS
    )
    last = await ask(uow, text("LAST"), policy=many)
    assert last.answer == "Demo: last top-up 20.00 USD on 2026-03-03: on its way to the meter."
    token = await ask(uow, text("TOKEN"), policy=many)
    # no keypad here; TOKEN is a word of several languages, so the answer is in the subscriber's (Romanian)
    assert token.answer == "Demo: nu exista niciun cod pentru tastatura pentru contul 640100100010001."
    assert (await ask(uow, text("DEBT"), policy=many)).answer == "Demo: account 640100100010001 has no debt."
    async with uow.begin() as conn:
        account_id = await ledger.account_of(conn, sub.id)
        await conn.execute(
            insert(L.arrears).values(
                account_id=account_id, overdue_since=NOW - timedelta(days=4), stage="reminder", updated_at=NOW
            )
        )
    async with uow.begin() as conn:
        charge = plan_charge(EntryType.FIXED_CHARGE, Money(5000, "USD"), key="fix:1")
        await ledger.post(conn, account_id, list(charge), created_by="test", now=NOW)
    debt = await ask(uow, text("DEBT"), policy=many)
    assert debt.answer == "Demo: account 640100100010001 owes 50.00 USD. Next: final notice on 2026-03-09."


async def test_a_voucher_pays_once_like_cash(uow: UnitOfWork) -> None:
    sub, _meter = await new_subscriber(uow)
    batch = await generate_vouchers(uow, OPERATOR, 2, Money(1500, "USD"), NOW, note="kiosk 7")
    assert len(set(batch.codes)) == 2
    async with uow.connect() as conn:
        kept = (await conn.execute(select(vouchers.c.code_hash, vouchers.c.status))).all()
        account_id = await ledger.account_of(conn, sub.id)
    assert {row.status for row in kept} == {"new"}
    assert batch.codes[0] not in {row.code_hash for row in kept}  # only the hash is kept
    paid = await ask(uow, text(f"PAY {batch.codes[0][:4]} {batch.codes[0][4:]}"))
    assert paid.outcome == "credited"
    assert paid.answer == "Demo: voucher accepted, 15.00 USD paid to account 640100100010001: on its way to the meter."
    async with uow.connect() as conn:
        balances = await ledger.balances(conn, account_id)
        top = (await conn.execute(select(L.topups))).one()
        request = (await conn.execute(select(sms_requests).where(sms_requests.c.id == paid.request_id))).one()
    assert balances.total == Money(0, "USD")  # the whole voucher is on its way to the meter as credit
    assert (top.amount_minor, top.vend_minor, top.state) == (1500, 1500, "queued")
    assert top.idempotency_key.startswith("voucher:")
    assert request.topup_id == top.id
    assert batch.codes[0] not in request.text  # the code is logged by its last four digits
    again = await ask(uow, text(f"PAY {batch.codes[0]}"))
    assert again.outcome == "used"
    assert await _count(uow, L.topups) == 1


async def test_a_withdrawn_voucher_is_refused_with_its_reason_and_used_ones_stay_used(uow: UnitOfWork) -> None:
    await new_subscriber(uow, language="es")
    batch = await generate_vouchers(uow, OPERATOR, 3, Money(1000, "USD"), NOW, note="stolen run")
    assert (await ask(uow, text(f"PAY {batch.codes[0]}"))).outcome == "credited"
    with pytest.raises(InvalidField):
        await void_vouchers(uow, OPERATOR, NOW, reason=" ", batch_id=batch.id)
    with pytest.raises(InvalidField):
        await void_vouchers(uow, OPERATOR, NOW, reason="stolen", batch_id=batch.id, code=batch.codes[1])
    with pytest.raises(NotFound):
        await void_vouchers(uow, OPERATOR, NOW, reason="stolen", batch_id=batch.id + 1)
    one = await void_vouchers(uow, OPERATOR, NOW, reason="misprinted", code=printed(batch.codes[1]))
    assert (one.batch_id, one.voided, one.used, one.already_void) == (batch.id, 1, 0, 0)
    rest = await void_vouchers(uow, OPERATOR, NOW, reason="the kiosk was robbed", batch_id=batch.id)
    assert (rest.voided, rest.used, rest.already_void) == (1, 1, 1)
    async with uow.connect() as conn:
        statuses = sorted((await conn.execute(select(vouchers.c.status))).scalars())
        audited = (
            await conn.execute(
                select(audit_log.c.target, audit_log.c.after)
                .where(audit_log.c.action == "voucher.void")
                .order_by(audit_log.c.id)
            )
        ).all()
        (listed,) = await voucher_batches_list(conn)
    assert statuses == ["used", "void", "void"]
    assert [a.after["reason"] for a in audited] == ["misprinted", "the kiosk was robbed"]
    assert audited[1].target == f"voucher_batch:{batch.id}"
    assert (listed["used"], listed["void"]) == (1, 2)
    refused = await ask(uow, text(f"PAGO {batch.codes[2]}"), at=timedelta(minutes=1))
    assert refused.outcome == "void"
    assert refused.answer == "Demo: este cupón fue anulado por la compañía y no tiene valor; consulte donde lo compró."
    english = await ask(uow, text(f"PAY {batch.codes[1]}"), at=timedelta(minutes=2))
    assert english.answer == (
        "Demo: this voucher was withdrawn by the utility and pays nothing; ask where you bought it."
    )
    assert await _count(uow, L.topups) == 1
    assert await _count(uow, sms_requests, sms_requests.c.outcome == "void") == 2


async def test_wrong_voucher_codes_are_limited_per_number_then_refused_and_audited(uow: UnitOfWork) -> None:
    await new_subscriber(uow)
    batch = await generate_vouchers(uow, OPERATOR, 1, Money(1000, "USD"), NOW)
    good = batch.codes[0]
    outcomes = []
    for n in range(5):
        guess = f"{n:013d}"
        outcomes.append((await ask(uow, text(f"PAY {guess}{(n + 1) % 10}"), at=timedelta(minutes=3 * n))).outcome)
    assert outcomes == ["wrong_code"] * 5
    refused = await ask(uow, text(f"PAY {good}"), at=timedelta(minutes=20))
    assert refused.outcome == "locked"
    assert refused.answer == "Demo: too many wrong voucher codes; try again tomorrow."
    assert await _count(uow, audit_log, audit_log.c.action == "voucher.refused") == 1
    assert await _count(uow, L.topups) == 0
    later = await ask(uow, text(f"PAY {good}"), at=timedelta(hours=25))  # the day has passed
    assert later.outcome == "credited"


async def test_unknown_numbers_and_words_stay_wrong_sms(uow: UnitOfWork) -> None:
    await new_subscriber(uow)
    assert (await ask(uow, text("BAL", source="37369999999"))).outcome == "wrong"
    assert (await ask(uow, text("hello"))).outcome == "wrong"
    async with uow.connect() as conn:
        rows = (await conn.execute(select(wrong_sms.c.source, wrong_sms.c.reason).order_by(wrong_sms.c.id))).all()
    assert [tuple(r) for r in rows] == [("37369999999", "unknown_sender"), (PHONE, "unknown_keyword")]
    assert await _count(uow, sms_requests) == 0


async def test_answers_are_rate_limited_per_number(uow: UnitOfWork) -> None:
    await new_subscriber(uow)
    outcomes = [(await ask(uow, text("BAL"), at=timedelta(seconds=n))).outcome for n in range(7)]
    assert outcomes == ["answered"] * 5 + ["rate_limited"] * 2
    assert await _count(uow, notices, notices.c.stage == "answer") == 5
    assert await _count(uow, sms_requests) == 7
    assert (await ask(uow, text("BAL"), at=timedelta(minutes=11))).outcome == "answered"


async def test_inbound_hands_subscribers_text_sms_over_and_keeps_meter_frames(uow: UnitOfWork) -> None:
    _sub, meter = await new_subscriber(uow)
    assert meter is not None
    handed: list[InboundSms] = []
    inbound = Inbound(uow.engine, KEYS, SHORT, on_text=handed.extend)
    await inbound.process(
        [
            text("BAL"),
            InboundSms(meter.msisdn, SHORT, b"\x00garbage", False, 0x04, NOW),  # a meter: its own path
            InboundSms("37369999999", SHORT, b"\x01\x02", True, 0x04, NOW),  # binary from a stranger
        ]
    )
    assert [s.source for s in handed] == [PHONE]
    async with uow.connect() as conn:
        reasons = sorted((await conn.execute(select(wrong_sms.c.reason))).scalars())
    assert reasons == ["malformed", "unknown_sender"]


class _Phones:
    """A text sender that keeps what it sent (the short number's SMS to people)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send_text(self, msisdn: str, text: str) -> None:
        self.sent.append((msisdn, text))


async def test_from_the_inbound_path_to_the_answer_on_the_phone(uow: UnitOfWork) -> None:
    await new_subscriber(uow)  # Ana Popescu, 37360000001, Romanian
    await new_subscriber(uow, "640100100010002", meter=2, name="Ivan Petrov", phone="37360000002", language="ru")
    phones = _Phones()

    async def answer(sms: InboundSms, now: datetime, text_id: int) -> Answered:
        return await answer_text_sms(
            uow, sms, now, keys=KEYS, topup_policy=TopUpPolicy(), arrears_policy=ArrearsPolicy(), policy=POLICY,
            text_id=text_id,
        )  # fmt: skip

    requests = TextRequests(uow, answer, sender=phones, clock=lambda: NOW)
    inbound = Inbound(uow.engine, KEYS, SHORT, clock=lambda: NOW, on_text=requests.on_texts)
    worker = asyncio.create_task(requests.run())
    await inbound.process(
        [
            text("sold"),
            text("ULTIM please", source="+373 60 000 001"),
            text("БАЛАНС", source="37360000002", ucs2=True),
            text("HELLO"),
            text("BAL", source="37399999999"),
        ]
    )
    await requests.idle()
    requests.stop()
    await worker
    assert [number for number, _ in phones.sent] == [PHONE, PHONE, "37360000002"]
    assert phones.sent[0][1].startswith("Demo: contul 640100100010001: sold 0.00 USD")
    assert phones.sent[1][1] == "Demo: contul 640100100010001 nu are inca nicio reincarcare."
    assert phones.sent[2][1].startswith("Demo: счёт 640100100010002: баланс 0.00 USD")
    assert inbound.stats.texts == 5
    assert await _count(uow, notices, notices.c.status == "sent") == 3
    async with uow.connect() as conn:
        reasons = (await conn.execute(select(wrong_sms.c.source, wrong_sms.c.reason).order_by(wrong_sms.c.id))).all()
    assert [tuple(r) for r in reasons] == [(PHONE, "unknown_keyword"), ("37399999999", "unknown_sender")]


async def test_a_credited_top_up_tells_the_subscriber_on_the_channels_the_utility_chose(uow: UnitOfWork) -> None:
    sub, _meter = await new_subscriber(uow, email="ana@example.org")
    told = TopUpPolicy(utility="Demo", payment_notice=("sms",))
    await topup.apply_payment(
        uow, PaymentConfirmed("cash", "r9", 1200, "USD", NOW, subscriber_id=sub.id), NOW, keys=KEYS, policy=told
    )
    await topup.apply_payment(  # the same payment again: no second notice
        uow, PaymentConfirmed("cash", "r9", 1200, "USD", NOW, subscriber_id=sub.id), NOW, keys=KEYS, policy=told
    )
    await topup.apply_payment(
        uow, PaymentConfirmed("cash", "r10", 100, "USD", NOW, subscriber_id=sub.id), NOW, keys=KEYS
    )
    async with uow.connect() as conn:
        rows = (await conn.execute(select(notices).where(notices.c.stage == "payment"))).all()
    assert [(r.channel, r.recipient, r.body) for r in rows] == [
        ("sms", PHONE, "Demo: plata de 12.00 USD pentru contul 640100100010001 a fost primita. Multumim.")
    ]


async def test_token_answers_the_stuck_credit_as_an_sts_token_on_a_keypad_meter(uow: UnitOfWork) -> None:
    from billing import sts
    from billing.sts_vending import SoftwareTokenGenerator
    from store.audit import Actor
    from tests.integration.billing.test_sts_tokens import _keypad_meter

    generator = SoftwareTokenGenerator(MASTER_KEY)
    await _keypad_meter(uow)
    await topup.apply_payment(
        uow, PaymentConfirmed("cash", "r1", 1000, "USD", NOW, subscriber_code="640100100010001"), NOW, keys=KEYS
    )

    async def issue(topup_id: int) -> str | None:
        issued = await sts.issue_credit_token(uow, Actor("system", "self-service"), topup_id, NOW, generator=generator)
        return issued.token

    done = await answer_text_sms(
        uow, text("TOKEN"), NOW, keys=KEYS, topup_policy=TopUpPolicy(), arrears_policy=ArrearsPolicy(),
        policy=POLICY, tokens=issue,
    )  # fmt: skip
    assert done.answer is not None
    assert done.answer.startswith("Demo: cod pentru tastatura, 10.00 USD: ")
    async with uow.connect() as conn:
        top = (await conn.execute(select(L.topups))).one()
    assert (top.delivered_by, top.state) == ("token", "delivered")
    assert " ".join(top.sts_token[i : i + 4] for i in range(0, 20, 4)) in done.answer
    again = await ask(uow, text("TOKEN"))  # asked again: the same token, no second one
    assert again.answer == done.answer
