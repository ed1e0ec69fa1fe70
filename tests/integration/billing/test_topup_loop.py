"""A paid top-up reaches 1:1 at a reference meter: payment -> ledger -> sealed credit command -> the
gateway's dispatcher over the simulated SMS network -> the reference meter credits it once and answers ->
the acknowledgement settles the command at 1:1 -> billing marks the top-up delivered (both databases)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from billing import topup
from billing.values import PaymentConfirmed
from config import load_settings
from gateway.keys import KeyRing
from gateway.outbox import get_command
from smsmeter.billing_setup import build_billing
from smsmeter.wiring import running_gateway
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")


async def test_a_paid_top_up_reaches_1_1_at_the_reference_meter(engine: AsyncEngine, uow: UnitOfWork) -> None:
    settings = load_settings(
        None,
        {"SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.01", "SMSMETER_SIMULATOR_ACK_DELAY_S": "0.01"},
    )
    keys = KeyRing(MASTER_KEY)
    billing = build_billing(settings, uow, keys)
    _, meter = await new_subscriber(uow)
    assert meter is not None
    async with running_gateway(settings, engine, keys, billing.on_gateway_event) as gateway:
        assert gateway.fleet is not None
        payment = PaymentConfirmed(
            "stripe", "pi_loop", 1234, "USD", datetime.now(UTC), subscriber_code="640100100010001"
        )
        result = await topup.apply_payment(uow, payment, datetime.now(UTC), keys=keys, policy=billing.topup_policy)
        again = await topup.apply_payment(uow, payment, datetime.now(UTC), keys=keys, policy=billing.topup_policy)
        assert again.duplicate
        assert result.command_id is not None
        async with asyncio.timeout(30):
            while True:
                async with uow.connect() as conn:
                    state = (await topup.get_top_up(conn, result.topup_id)).state
                if state != "queued":
                    break
                await asyncio.sleep(0.05)
        reference = gateway.fleet.meter(meter.msisdn)
    assert state == "delivered"
    async with uow.connect() as conn:
        command = await get_command(conn, result.command_id)
    walk = [h.to_state for h in command.history]
    assert walk[0] == "0:0"
    assert walk[-1] == "1:1"
    assert reference.credit_minor == 1234  # credited once, whatever was retried on the way
