"""Billing fixtures: a small address book on the migrated database of each backend."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing import meter_registry, places, registry
from meter_protocol import meter_code_with_check_digit
from store.audit import Actor
from store.uow import UnitOfWork

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # a Tuesday, daytime
OPERATOR = Actor("operator", "alice", "127.0.0.1")
MASTER_KEY = bytes(range(16))


def meter_code(serial: int) -> str:
    return meter_code_with_check_digit(f"88000{serial:014d}")


@pytest.fixture
async def streets(uow: UnitOfWork) -> None:
    async with uow.begin() as conn:
        await places.add_region(conn, OPERATOR, "64", "Nord", NOW)
        await places.add_settlement(conn, OPERATOR, "64", "01", "Balti", NOW)
        await places.add_street(conn, OPERATOR, "64", "01", "001", "Independentei", NOW)
        await places.add_street(conn, OPERATOR, "64", "01", "002", "Stefan cel Mare", NOW)


async def new_subscriber(
    uow: UnitOfWork,
    code: str = "640100100010001",
    *,
    meter: int | None = 1,
    transformer_id: int | None = None,
    **fields: object,
) -> tuple[registry.Subscriber, meter_registry.Meter | None]:
    async with uow.begin() as conn:
        sub = await registry.create_subscriber(
            conn,
            OPERATOR,
            code,
            {"name": "Ana Popescu", "phone": "37360000001", "language": "ro", **fields},
            currency="USD",
            now=NOW,
        )
        m = None
        if meter is not None:
            m = await meter_registry.install_meter(
                conn,
                OPERATOR,
                sub.id,
                meter_registry.NewMeter(
                    code=meter_code(meter), msisdn=f"3736900{meter:04d}", transformer_id=transformer_id
                ),
                master_key=MASTER_KEY,
                now=NOW,
            )
    return sub, m
