"""Keyword SMS are kept, not held in memory (docs/self-service.md), on both databases: the inbound path writes
each text SMS in the transaction that received it; what a stopped process left unanswered is answered by a new
worker on a new engine; a lease that a dead worker held runs out and another takes the SMS; an SMS is answered
once even when two workers meet it; a failing answer is tried again when its lease ends, then given up with
its error."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from billing.rules.arrears import ArrearsPolicy
from billing.self_service import Answered, SelfServicePolicy, answer_text_sms
from billing.text_requests import TextRequests
from billing.topup_records import TopUpPolicy
from gateway import inbound_texts as kept
from gateway.inbound import Inbound
from gateway.keys import KeyRing
from gateway.ports import InboundSms
from store.engine import create_engine
from store.schema.commands import inbound_texts, wrong_sms
from store.schema.notices import notices
from store.schema.self_service import sms_requests
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")
KEYS = KeyRing(MASTER_KEY)
PHONE = "37360000001"
SHORT = "1234"
POLICY = SelfServicePolicy(utility="Demo")


def text(body: str, source: str = PHONE) -> InboundSms:
    return InboundSms(source, SHORT, body.encode("ascii"), False, 0x00, NOW)


def answerer(uow: UnitOfWork) -> object:
    async def answer(sms: InboundSms, now: datetime, text_id: int) -> Answered:
        return await answer_text_sms(
            uow, sms, now, keys=KEYS, topup_policy=TopUpPolicy(), arrears_policy=ArrearsPolicy(), policy=POLICY,
            text_id=text_id,
        )  # fmt: skip

    return answer


class _Phones:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send_text(self, msisdn: str, text: str) -> None:
        self.sent.append((msisdn, text))


async def _count(uow: UnitOfWork, table: object, *where: object) -> int:
    async with uow.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)  # type: ignore[arg-type]


async def _run_until_idle(requests: TextRequests) -> None:
    worker = asyncio.create_task(requests.run())
    requests.on_texts([text("wake")])  # look at once
    await requests.idle()
    requests.stop()
    await worker


async def test_text_sms_are_kept_with_their_batch_and_answered_after_a_restart(
    uow: UnitOfWork, migrated_db_url: str
) -> None:
    await new_subscriber(uow)
    told: list[InboundSms] = []
    # the process that received them stops before answering: only the rows are left
    inbound = Inbound(uow.engine, KEYS, SHORT, clock=lambda: NOW, on_text=told.extend)
    await inbound.process([text("BAL"), text("HELLO"), text("BAL", source="37399999999")])
    assert len(told) == 3
    async with uow.connect() as conn:
        rows = (await conn.execute(select(inbound_texts).order_by(inbound_texts.c.id))).all()
    assert [(r.source, bytes(r.body), r.data_coding, r.handled_at) for r in rows] == [
        (PHONE, b"BAL", 0, None),
        (PHONE, b"HELLO", 0, None),
        ("37399999999", b"BAL", 0, None),
    ]
    assert await _count(uow, sms_requests) == 0
    # a new process: its own engine on the same database
    engine = create_engine(migrated_db_url)
    try:
        fresh = UnitOfWork(engine)
        phones = _Phones()
        requests = TextRequests(fresh, answerer(fresh), sender=phones, clock=lambda: NOW)  # type: ignore[arg-type]
        await _run_until_idle(requests)
    finally:
        await engine.dispose()
    assert requests.answered == 3
    assert [n for n, _ in phones.sent] == [PHONE]
    assert phones.sent[0][1].startswith("Demo: account 640100100010001: balance 0.00 USD")
    assert await _count(uow, inbound_texts, inbound_texts.c.handled_at.is_(None)) == 0
    async with uow.connect() as conn:
        reasons = (await conn.execute(select(wrong_sms.c.reason).order_by(wrong_sms.c.id))).scalars().all()
    assert reasons == ["unknown_keyword", "unknown_sender"]


async def test_a_dead_workers_lease_runs_out_and_an_sms_is_answered_once(uow: UnitOfWork) -> None:
    await new_subscriber(uow)
    await Inbound(uow.engine, KEYS, SHORT, clock=lambda: NOW, on_text=lambda _b: None).process([text("BAL")])
    async with uow.begin() as conn:
        (dead,) = await kept.claim_texts(conn, NOW, lease_s=60)  # claimed by a worker that then died
        assert dead.attempts == 1
        assert await kept.claim_texts(conn, NOW + timedelta(seconds=30)) == []  # its lease still holds
    later = NOW + timedelta(seconds=61)
    requests = TextRequests(uow, answerer(uow), clock=lambda: later)  # type: ignore[arg-type]
    await _run_until_idle(requests)
    assert requests.answered == 1
    # the dead worker comes back and answers what it had claimed: nothing is answered twice
    again = await answerer(uow)(dead.sms, later, dead.id)  # type: ignore[operator]
    assert again == Answered("already", None, None, None)
    assert await _count(uow, sms_requests) == 1
    assert await _count(uow, notices, notices.c.stage == "answer") == 1
    async with uow.connect() as conn:
        row = (await conn.execute(select(inbound_texts))).one()
    assert (row.attempts, row.handled_at, row.claimed_until) == (2, later, None)


async def test_a_failing_answer_is_tried_again_then_given_up_with_its_error(uow: UnitOfWork) -> None:
    await new_subscriber(uow)
    await Inbound(uow.engine, KEYS, SHORT, clock=lambda: NOW, on_text=lambda _b: None).process([text("BAL")])
    calls: list[int] = []

    async def broken(sms: InboundSms, now: datetime, text_id: int) -> Answered:
        calls.append(text_id)
        raise RuntimeError("the answer could not be written")

    clock = [NOW]
    requests = TextRequests(uow, broken, clock=lambda: clock[0], lease_s=60, max_attempts=3)
    for _ in range(4):
        await _run_until_idle(requests)
        clock[0] += timedelta(seconds=61)  # tried again when the lease ends
    assert len(calls) == 3  # then given up
    async with uow.connect() as conn:
        row = (await conn.execute(select(inbound_texts))).one()
    assert (row.attempts, row.handled_at, row.error) == (3, None, "RuntimeError: the answer could not be written")
    # given up: no longer claimed; a working answerer with a higher limit takes it
    healed = TextRequests(uow, answerer(uow), clock=lambda: clock[0], max_attempts=5)  # type: ignore[arg-type]
    await _run_until_idle(healed)
    assert healed.answered == 1
    assert await _count(uow, inbound_texts, inbound_texts.c.handled_at.is_(None)) == 0
