"""The arrears sweep (penalties, escalation, friendly hours, disconnect, reconnect, emergency credit) and
notices by SMS and e-mail — each sent once — to a real SMTP server (aiosmtpd) on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, timedelta
from email import message_from_bytes
from email import policy as email_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

import meter_protocol as mp
from billing import arrears, ledger, places, registry, topup
from billing.errors import InvalidField
from billing.notices import SmtpEmailSender, send_due_notices
from billing.rules.arrears import ArrearsPolicy, FriendlyCalendar, PenaltyRule
from billing.rules.ledger import EntryType, plan_charge
from billing.rules.money import Money
from billing.values import PaymentConfirmed
from gateway.keys import KeyRing
from gateway.outbox import get_command
from store.schema import commands as C  # noqa: N812
from store.schema import ledger as L  # noqa: N812
from store.schema.notices import notices
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, new_subscriber
from tests.support.net import free_port
from web.queries.registry import subscriber_card

pytestmark = pytest.mark.usefixtures("streets")
KEYS = KeyRing(MASTER_KEY)
POLICY = ArrearsPolicy(
    min_debt_minor=100,
    reminder_after_days=3,
    final_after_days=10,
    disconnect_after_days=15,
    penalty=PenaltyRule(percent_bp=100, fixed_minor=50, period_days=30),
    emergency_credit_minor=300,
)
CAL = FriendlyCalendar()  # nights 18:00-08:00 UTC and weekends are friendly; NOW is a Tuesday 10:00


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=email_policy.default)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Texts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = 0

    async def send_text(self, msisdn: str, text: str) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("SMSC not bound")
        self.sent.append((msisdn, text))


async def _owe(uow: UnitOfWork, account_id: int, minor: int, key: str = "fix") -> None:
    async with uow.begin() as conn:
        await ledger.post(
            conn, account_id, plan_charge(EntryType.FIXED_CHARGE, Money(minor, "USD"), key=key), created_by="t", now=NOW
        )


async def sweep(uow: UnitOfWork, when: Any, cal: FriendlyCalendar = CAL) -> arrears.SweepReport:
    return await arrears.run_arrears_sweep(uow, POLICY, cal, when, keys=KEYS, utility="Demo Utility", batch_size=2)


async def test_escalation_penalties_and_disconnect_in_friendly_hours_only(uow: UnitOfWork) -> None:
    sub, meter = await new_subscriber(uow, email="ana@example.org")
    await new_subscriber(uow, "640100100010002", meter=2)  # no debt: untouched
    assert meter is not None
    await _owe(uow, sub.account_id, 10_000)
    r0 = await sweep(uow, NOW)
    assert (r0.accounts, r0.notices, r0.disconnects) == (1, 0, 0)
    r1 = await sweep(uow, NOW + timedelta(days=3))
    assert r1.notices == 2  # reminder by SMS and by e-mail
    assert (await sweep(uow, NOW + timedelta(days=3, hours=1))).notices == 0  # never twice for the same cause
    await sweep(uow, NOW + timedelta(days=10))
    saturday_night = NOW + timedelta(days=18, hours=12)  # Saturday 22:00
    r3 = await sweep(uow, saturday_night)
    assert r3.disconnects == 0
    assert r3.deferred == {"weekend": 1}
    assert "weekend" in r3.deferred
    monday_night = NOW + timedelta(days=20, hours=12)
    assert "night" in (await sweep(uow, monday_night)).deferred
    async with uow.begin() as conn:
        await places.set_holiday(conn, OPERATOR, (NOW + timedelta(days=21)).date(), "Independence Day", NOW)
    assert "holiday" in (await sweep(uow, NOW + timedelta(days=21))).deferred
    r4 = await sweep(uow, NOW + timedelta(days=22))
    assert r4.disconnects == 1
    assert (await sweep(uow, NOW + timedelta(days=22, hours=1))).disconnects == 0
    r5 = await sweep(uow, NOW + timedelta(days=31))
    assert r5.penalties == 1
    async with uow.connect() as conn:
        stages = (await conn.execute(select(notices.c.stage, notices.c.channel).order_by(notices.c.id))).all()
        commands = (await conn.execute(select(C.commands.c.kind, C.commands.c.meter_id))).all()
        balances = await ledger.balances(conn, sub.account_id)
        state = await arrears.arrears_of(conn, sub.account_id)
        card = await subscriber_card(conn, sub.id)
    assert [s for s, _ in stages] == ["reminder", "reminder", "final", "final", "disconnect", "disconnect"]
    assert card is not None
    assert card["arrears"]["stage"] == "disconnect"
    assert [n["stage"] for n in card["notices"]] == [s for s, _ in reversed(stages)]  # the card: newest first
    assert commands == [("relay_off", meter.id)]
    assert balances.debt == Money(-10_000 - 150, "USD")  # one period: 50 + 1 % of 10000
    assert state is not None
    assert state["stage"] == "disconnect"
    assert state["disconnected_at"] is not None


async def test_payment_clearing_the_debt_reconnects_after_the_credit(uow: UnitOfWork) -> None:
    sub, meter = await new_subscriber(uow)
    assert meter is not None
    await _owe(uow, sub.account_id, 1_000)
    await sweep(uow, NOW)
    await sweep(uow, NOW + timedelta(days=15))
    policy = topup.TopUpPolicy(recovery_bp=10_000, min_debt_minor=100, utility="Demo Utility")
    result = await topup.apply_payment(
        uow,
        PaymentConfirmed("stripe", "pi_r", 5_000, "USD", NOW, subscriber_id=sub.id),
        NOW + timedelta(days=16),
        keys=KEYS,
        policy=policy,
    )
    assert result.recovered == Money(1_000, "USD")
    assert result.reconnect_command_id is not None
    async with uow.connect() as conn:
        relay_on = await get_command(conn, result.reconnect_command_id)
        state = await arrears.arrears_of(conn, sub.account_id)
        stages = (await conn.scalars(select(notices.c.stage))).all()
    assert relay_on.kind == "relay_on"
    assert relay_on.depends_on_id == result.command_id
    assert state is not None
    assert state["disconnected_at"] is None
    assert state["overdue_since"] is None
    assert "reconnect" in stages


async def test_the_sweep_reconnects_when_the_debt_is_cleared_another_way(uow: UnitOfWork) -> None:
    sub, _meter = await new_subscriber(uow)
    await _owe(uow, sub.account_id, 1_000)
    await sweep(uow, NOW)
    await sweep(uow, NOW + timedelta(days=15))
    from billing.rules.ledger import Book, Posting

    async with uow.begin() as conn:  # an operator writes the debt off
        await ledger.post(
            conn,
            sub.account_id,
            [Posting(EntryType.ADJUSTMENT, Book.DEBT, Money(1_000, "USD"), "writeoff", "write-off")],
            created_by="t",
            now=NOW,
        )
    report = await sweep(uow, NOW + timedelta(days=16))
    assert report.reconnects == 1
    assert report.cleared == 1
    async with uow.connect() as conn:
        kinds = (await conn.scalars(select(C.commands.c.kind).order_by(C.commands.c.id))).all()
    assert kinds == ["relay_off", "relay_on"]


async def test_emergency_credit_once_per_episode_postpones_the_disconnect(uow: UnitOfWork) -> None:
    sub, _ = await new_subscriber(uow)
    await _owe(uow, sub.account_id, 1_000)
    await sweep(uow, NOW)
    when = NOW + timedelta(days=14)
    command_id = await arrears.grant_emergency_credit(uow, OPERATOR, sub.id, POLICY, when, keys=KEYS)
    with pytest.raises(InvalidField):
        await arrears.grant_emergency_credit(uow, OPERATOR, sub.id, POLICY, when, keys=KEYS)
    report = await sweep(uow, NOW + timedelta(days=15))
    assert report.disconnects == 0
    assert "emergency_credit" in report.deferred
    assert (await sweep(uow, NOW + timedelta(days=17, hours=1))).disconnects == 1
    async with uow.connect() as conn:
        command = await get_command(conn, command_id)
        balances = await ledger.balances(conn, sub.account_id)
    assert command.kind == "top_up"
    assert balances.debt == Money(-1_300, "USD")
    assert mp.TopUp  # the credit went out as an ordinary top-up frame


async def test_notices_by_sms_and_email_once_each_with_retries(uow: UnitOfWork, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    sub, _ = await new_subscriber(uow, email="ana@example.org", language="ru")
    await _owe(uow, sub.account_id, 2_500)
    await sweep(uow, NOW)
    await sweep(uow, NOW + timedelta(days=3))
    texts = Texts()
    texts.fail = 1
    mail = SmtpEmailSender("127.0.0.1", port, "billing@utility.example", timeout_s=5)
    later = NOW + timedelta(days=3)
    first = await send_due_notices(uow, later, sms=texts, email=mail)
    assert (first.sent, first.retried) == (1, 1)
    assert (await send_due_notices(uow, later, sms=texts, email=mail)).sent == 0  # the retry waits its backoff
    second = await send_due_notices(uow, later + timedelta(hours=1), sms=texts, email=mail)
    assert second.sent == 1
    assert (await send_due_notices(uow, later + timedelta(days=1), sms=texts, email=mail)).sent == 0
    await asyncio.sleep(0)
    assert len(texts.sent) == 1
    assert texts.sent[0][0] == "37360000001"
    assert "Оплатите" in texts.sent[0][1]
    assert "25.00 USD" in texts.sent[0][1]
    assert len(inbox.messages) == 1
    rcpt, message = inbox.messages[0]
    assert rcpt == ["ana@example.org"]
    assert message["Subject"] == "Напоминание об оплате"
    async with uow.connect() as conn:
        statuses = (await conn.scalars(select(notices.c.status))).all()
        attempts = await conn.scalar(select(func.max(notices.c.attempts)))
    assert sorted(statuses) == ["sent", "sent"]
    assert attempts == 2


async def test_a_dead_smtp_server_fails_the_notice_visibly(uow: UnitOfWork) -> None:
    sub, _ = await new_subscriber(uow, email="ana@example.org", phone=None)
    await _owe(uow, sub.account_id, 2_500)
    await sweep(uow, NOW)
    await sweep(uow, NOW + timedelta(days=3))
    dead = SmtpEmailSender("127.0.0.1", free_port(), "billing@utility.example", timeout_s=2)
    when = NOW + timedelta(days=3)
    for hours in (0, 1, 3):
        await send_due_notices(uow, when + timedelta(hours=hours), sms=None, email=dead)
    async with uow.connect() as conn:
        row = (await conn.execute(select(notices))).one()
    assert row.status == "failed"
    assert row.attempts == 3
    assert row.error


async def test_sweep_leaves_closed_accounts_alone(uow: UnitOfWork) -> None:
    sub, _ = await new_subscriber(uow)
    await _owe(uow, sub.account_id, 2_500)
    async with uow.begin() as conn:
        await registry.update_subscriber(
            conn, OPERATOR, sub.id, {"status": "closed", "ended_on": date(2026, 3, 1)}, NOW
        )
    assert (await sweep(uow, NOW + timedelta(days=30))).accounts == 0
    async with uow.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(L.arrears)) == 0
