"""The running service's billing: gateway events (credit settled, balance reported -> one low-credit
alert per top-up cycle), settings -> policies, the monthly job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from billing import topup
from billing.values import PaymentConfirmed
from config import load_settings
from gateway.events import BalanceReported, CommandSettled
from gateway.keys import KeyRing
from smsmeter.billing_setup import build_billing
from store.schema import ledger as L  # noqa: N812
from store.schema.notices import notices
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")


def _service(uow: UnitOfWork):  # type: ignore[no-untyped-def]
    settings = load_settings(
        None,
        {
            "SMSMETER_BILLING_LOW_CREDIT_MINOR": "300",
            "SMSMETER_BILLING_DEBT_RECOVERY_PERCENT": "50",
            "SMSMETER_BILLING_WEEKEND_DAYS": "fri,sat",
            "SMSMETER_UTILITY_TIMEZONE": "Europe/Chisinau",
        },
    )
    return build_billing(settings, uow, KeyRing(MASTER_KEY))


async def test_settings_become_policies(uow: UnitOfWork) -> None:
    service = _service(uow)
    assert service.topup_policy.recovery_bp == 5000
    assert service.calendar.weekend_days == frozenset({4, 5})
    assert service.calendar.night_start_min == 18 * 60
    assert str(service.tz) == "Europe/Chisinau"


async def test_events_settle_top_ups_and_alert_low_credit_once_per_cycle(uow: UnitOfWork) -> None:
    service = _service(uow)
    _, meter = await new_subscriber(uow)
    assert meter
    result = await topup.apply_payment(
        uow,
        PaymentConfirmed("stripe", "pi_s", 500, "USD", NOW, subscriber_code="640100100010001"),
        NOW,
        keys=service.keys,
    )
    assert result.command_id
    await service.on_gateway_event(CommandSettled(result.command_id, meter.id, "top_up", "1:1", at=NOW))
    for credit in (250, 100, 1000):
        await service.on_gateway_event(BalanceReported(meter.id, NOW, credit, True, last_transfer_id=1))
    await service.on_gateway_event(BalanceReported(meter.id, NOW, 50, True, last_transfer_id=2))
    async with uow.connect() as conn:
        state = await conn.scalar(select(L.topups.c.state))
        rows = (await conn.execute(select(notices.c.stage, notices.c.body))).all()
    assert state == "delivered"
    assert [r.stage for r in rows] == ["low_credit", "low_credit"]
    assert "2.50 USD" in rows[0].body


async def test_monthly_issues_last_months_invoices_once(uow: UnitOfWork) -> None:
    service = _service(uow)
    await new_subscriber(uow)
    april = datetime(2026, 4, 1, 6, tzinfo=UTC)
    assert await service.monthly(april) == 1
    assert await service.monthly(april + timedelta(hours=1)) == 0
