"""Subscriber self-service on the short number (both databases): keywords from a registered subscriber's phone
are answered by SMS in the subscriber's language (a notices row, sent from the short number), rate-limited per
number; unknown numbers and words stay wrong SMS with their reason; a meter's binary frame is never read as
a keyword."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from billing import topup
from billing.self_service import SelfServicePolicy, answer_keyword
from billing.values import PaymentConfirmed
from gateway.inbound import Inbound
from gateway.keys import KeyRing
from gateway.ports import InboundSms
from store.schema.commands import wrong_sms
from store.schema.notices import notices
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")
SHORT = "7220"
KEYS = KeyRing(MASTER_KEY)


def text(source: str, words: str, *, coding: int = 0x00) -> InboundSms:
    body = words.encode("utf-16-be") if coding == 0x08 else words.encode("ascii")
    return InboundSms(source, SHORT, body, False, coding, NOW)


def inbound(engine: AsyncEngine, per_hour: int = 5) -> Inbound:
    policy = SelfServicePolicy(answers_per_hour=per_hour)

    async def on_text(conn: AsyncConnection, sms: InboundSms, now: datetime) -> tuple[str, str] | None:
        return await answer_keyword(conn, sms.source, sms.body, sms.data_coding, sms.received_at, now, policy=policy)

    return Inbound(engine, KEYS, SHORT, clock=lambda: NOW, on_text=on_text)


async def _answers(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(notices.c.recipient, notices.c.stage, notices.c.body).order_by(notices.c.id))
        return [(r.recipient, r.stage, r.body) for r in rows]


async def _wrong(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(wrong_sms.c.source, wrong_sms.c.reason).order_by(wrong_sms.c.id))
        return [(r.source, r.reason) for r in rows]


async def test_keywords_are_answered_in_the_subscribers_language_and_strangers_stay_wrong_sms(
    uow: UnitOfWork, engine: AsyncEngine
) -> None:
    await new_subscriber(uow)  # Ana Popescu, 37360000001, Romanian
    await new_subscriber(uow, "640100100010002", meter=2, name="Ivan Petrov", phone="37360000002", language="ru")
    payment = PaymentConfirmed("stripe", "pi_1", 1250, "USD", NOW, subscriber_code="640100100010001")
    await topup.apply_payment(uow, payment, NOW, keys=KEYS)
    gateway = inbound(engine)
    await gateway.process(
        [
            text("37360000001", "bal"),
            text("+373 60 000 001", "ULTIM please"),
            text("37360000001", "DATORIE"),
            text("37360000002", "БАЛАНС", coding=0x08),
            text("37360000002", "ПОМОЩЬ", coding=0x08),
            text("37360000001", "HELLO"),
            text("37399999999", "BAL"),
            InboundSms("37399999999", SHORT, b"\x01\x02\x03", False, 0x04, NOW),
        ]
    )
    answers = await _answers(engine)
    assert [(r, s) for r, s, _ in answers] == [
        ("37360000001", "self_service:bal"),
        ("37360000001", "self_service:last"),
        ("37360000001", "self_service:debt"),
        ("37360000002", "self_service:bal"),
        ("37360000002", "self_service:help"),
    ]
    assert answers[0][2].startswith("Contul 640100100010001: 0.00 USD în cont")
    assert "12.50 USD" in answers[1][2]
    assert answers[2][2] == "Contul 640100100010001: nicio datorie."
    assert answers[3][2].startswith("Счёт 640100100010002:")
    assert "БАЛАНС" in answers[4][2]
    assert await _wrong(engine) == [
        ("37360000001", "unknown_keyword"),
        ("37399999999", "unknown_sender"),
        ("37399999999", "unknown_sender"),
    ]
    assert gateway.stats.texts_answered == 5


async def test_answers_are_rate_limited_per_number(uow: UnitOfWork, engine: AsyncEngine) -> None:
    await new_subscriber(uow)
    gateway = inbound(engine, per_hour=2)
    for n in range(4):
        sms = InboundSms("37360000001", SHORT, b"HELP", False, 0, NOW.replace(second=n))
        await gateway.process([sms])
    assert len(await _answers(engine)) == 2
    assert await _wrong(engine) == [("37360000001", "rate_limited"), ("37360000001", "rate_limited")]
