"""Readings -> hourly/daily/monthly consumption per subscriber, building and transformer; transformer
losses with an alarm; monthly invoices as PDF, numbered without gaps, e-mailed once (both databases)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import insert, select

from billing import invoices, losses, meter_registry, places, readings, tariffs, topup
from billing.notices import SmtpEmailSender
from billing.rules.consumption import Granularity
from billing.rules.invoice import Party
from billing.rules.tariffs import TariffBody, TariffKind
from billing.values import PaymentConfirmed
from gateway.keys import KeyRing
from store.schema import commands as C  # noqa: N812
from store.schema import ledger as L  # noqa: N812
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, meter_code, new_subscriber
from tests.support.net import free_port

pytestmark = pytest.mark.usefixtures("streets")
KEYS = KeyRing(MASTER_KEY)
MARCH = datetime(2026, 3, 1, tzinfo=UTC)


async def _readings(uow: UnitOfWork, meter_id: int, wh_per_hour: int, hours: int, start: datetime = MARCH) -> None:
    async with uow.begin() as conn:
        await conn.execute(
            insert(C.readings),
            [
                {
                    "meter_id": meter_id,
                    "read_at": start + timedelta(hours=h),
                    "register": "import_wh",
                    "value": 1_000_000 + h * wh_per_hour,
                    "received_at": start + timedelta(hours=h),
                }
                for h in range(hours + 1)
            ],
        )


async def test_consumption_per_subscriber_building_and_transformer(uow: UnitOfWork) -> None:
    async with uow.begin() as conn:
        tid = await places.add_transformer(conn, OPERATOR, "TP-L", "TP L", NOW, loss_alarm_percent=10)
    s1, m1 = await new_subscriber(uow, "640100100010001", meter=1, transformer_id=tid)
    _s2, m2 = await new_subscriber(uow, "640100100010002", meter=2, transformer_id=tid)
    assert m1
    assert m2
    await _readings(uow, m1.id, 500, 48)
    await _readings(uow, m2.id, 300, 48)
    async with uow.connect() as conn:
        hourly = await readings.consumption(
            conn, MARCH, MARCH + timedelta(days=2), Granularity.HOUR, UTC, subscriber_id=s1.id
        )
        daily = await readings.consumption(
            conn, MARCH, MARCH + timedelta(days=2), Granularity.DAY, UTC, building=("64", "01", "001", "0001")
        )
        monthly = await readings.consumption(
            conn, MARCH, MARCH + timedelta(days=31), Granularity.MONTH, UTC, transformer_id=tid
        )
    assert len(hourly) == 47  # hour 0 is the baseline
    assert set(hourly.values()) == {500}
    assert list(daily.values()) == [23 * 800, 24 * 800]
    assert monthly == {MARCH: 48 * 800}


async def test_transformer_losses_and_alarm(uow: UnitOfWork) -> None:
    async with uow.begin() as conn:
        tid = await places.add_transformer(conn, OPERATOR, "TP-B", "TP B", NOW, loss_alarm_percent=10)
        balance = await meter_registry.install_meter(
            conn,
            OPERATOR,
            None,
            meter_registry.NewMeter(meter_code(90), "37369000090", transformer_id=tid, is_balance_meter=True),
            master_key=MASTER_KEY,
            now=NOW,
        )
    _, m1 = await new_subscriber(uow, "640100100010001", meter=1, transformer_id=tid)
    assert m1
    await _readings(uow, balance.id, 1000, 24)
    await _readings(uow, m1.id, 850, 24)
    end = MARCH + timedelta(days=1)
    results = await losses.record_transformer_balances(uow, MARCH, end, NOW)
    again = await losses.record_transformer_balances(uow, MARCH, end, NOW)
    assert results[tid].loss_bp == 1500
    assert results[tid].alarm
    assert again[tid] == results[tid]
    async with uow.connect() as conn:
        alarms = (await conn.execute(select(C.alarms))).all()
    assert len(alarms) == 1
    assert alarms[0].kind == "transformer_loss"
    assert "15.00 %" in alarms[0].detail


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content, policy=email_policy.default))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_monthly_invoices_numbered_without_gaps_emailed_once_and_downloadable(
    uow: UnitOfWork, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    async with uow.begin() as conn:
        flat = await tariffs.create_tariff(conn, OPERATOR, "FLAT", "Flat", TariffKind.FLAT, NOW)
        await tariffs.add_version(conn, OPERATOR, flat, TariffBody.flat(200_000), MARCH - timedelta(days=30), NOW)
    s1, m1 = await new_subscriber(uow, "640100100010001", meter=1, email="ana@example.org", tariff_id=flat)
    s2, _ = await new_subscriber(uow, "640100100010002", meter=2)
    assert m1
    await _readings(uow, m1.id, 1000, 10)  # 10 kWh at 2.00 = 20.00
    await topup.apply_payment(
        uow,
        PaymentConfirmed("stripe", "pi_inv", 5000, "USD", MARCH, subscriber_id=s1.id),
        MARCH + timedelta(days=2),
        keys=KEYS,
    )
    utility = Party("Demo Utility", "", "1 Main St", "TAX-1")
    april = datetime(2026, 4, 1, 2, tzinfo=UTC)
    start, end = invoices.previous_month(april.date())
    assert (start, end) == (date(2026, 3, 1), date(2026, 3, 31))
    issued = await invoices.issue_invoices(uow, start, end, april, utility=utility, vat_bp=2000)
    assert issued == 2
    assert await invoices.issue_invoices(uow, start, end, april, utility=utility) == 0
    async with uow.connect() as conn:
        mine = await invoices.invoices_of(conn, s1.id)
        theirs = await invoices.invoices_of(conn, s2.id)
        pdf = await invoices.invoice_pdf(conn, mine[0]["number"])
    assert [mine[0]["number"], theirs[0]["number"]] == ["INV-00000001", "INV-00000002"]
    content = mine[0]["content"]
    assert content["consumption_wh"] == 10_000
    assert content["energy_value"] == 2000
    assert content["payments"] == 5000
    assert pdf.startswith(b"%PDF")
    async with uow.connect() as conn:  # the job drew no PDF: it is drawn from the content when asked for
        assert (await conn.scalars(select(L.invoices.c.pdf))).all() == [None, None]
    mail = SmtpEmailSender("127.0.0.1", port, "billing@utility.example", timeout_s=5)
    assert await invoices.email_invoices(uow, mail, april) == 1
    assert await invoices.email_invoices(uow, mail, april) == 0
    (message,) = inbox.messages
    attachment = next(message.iter_attachments())
    assert message["To"] == "ana@example.org"
    assert attachment.get_filename() == "INV-00000001.pdf"
    assert attachment.get_content().startswith(b"%PDF")


class _StopAfter:
    """Job progress that asks the job to stop once `items` are done (as the service does when it stops)."""

    def __init__(self, items: int) -> None:
        self.limit, self.done = items, 0

    def advanced(self, items: int) -> None:
        self.done += items

    @property
    def stop_requested(self) -> bool:
        return self.done >= self.limit


async def test_invoicing_stopped_midway_resumes_where_it_stopped_with_no_gap(uow: UnitOfWork) -> None:
    for n in range(1, 8):
        await new_subscriber(uow, f"64010010001000{n}", meter=n)
    utility = Party("Demo Utility", "", "1 Main St", "TAX-1")
    april = datetime(2026, 4, 1, 2, tzinfo=UTC)
    start, end = invoices.previous_month(april.date())
    progress = _StopAfter(3)
    first = await invoices.issue_invoices(uow, start, end, april, utility=utility, page_size=2, progress=progress)
    assert (first, progress.done) == (4, 4)  # stopped between pages, what was done committed
    rest = await invoices.issue_invoices(uow, start, end, april, utility=utility, page_size=2)
    assert rest == 3
    async with uow.connect() as conn:
        numbers = sorted((await conn.scalars(select(invoices.L.invoices.c.number))).all())
    assert numbers == [f"INV-{n:08d}" for n in range(1, 8)]
