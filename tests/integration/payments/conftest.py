"""Fixtures for the payments tests: subscribers with accounts and keyed meters made through billing's
registry, billing's real top-up use cases behind the `PaymentApplier` port, and a localstripe."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billing import ledger, meter_registry, places, registry
from billing.rules.ledger import Balances
from billing.topup import TopUpPolicy
from gateway.keys import KeyRing
from meter_protocol import meter_code_with_check_digit
from store.audit import Actor
from store.schema.commands import commands
from store.schema.ledger import ledger_entries
from store.uow import UnitOfWork
from tests.support.stripe_emulator import LocalStripe, localstripe_server
from web.webhooks import BillingApplier

NOW = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
MASTER_KEY = bytes(range(16))
OPERATOR = Actor("operator", "test")


@dataclass(frozen=True)
class Subscriber:
    id: int
    code: str
    meter_id: int
    meter_code: str
    account_id: int


async def add_subscribers(uow: UnitOfWork, count: int, *, currency: str = "USD") -> list[Subscriber]:
    made = []
    async with uow.begin() as conn:
        await places.add_region(conn, OPERATOR, "64", "Nord", NOW)
        await places.add_settlement(conn, OPERATOR, "64", "01", "Balti", NOW)
        await places.add_street(conn, OPERATOR, "64", "01", "001", "Independentei", NOW)
        for i in range(count):
            code = f"6401001{i + 1:04d}0001"
            sub = await registry.create_subscriber(
                conn, OPERATOR, code, {"name": f"Subscriber {i + 1}"}, currency=currency, now=NOW
            )
            meter = await meter_registry.install_meter(
                conn,
                OPERATOR,
                sub.id,
                meter_registry.NewMeter(code=meter_code_with_check_digit(f"88000{i + 1:014d}"), msisdn=f"37369{i:06d}"),
                master_key=MASTER_KEY,
                now=NOW,
            )
            made.append(Subscriber(sub.id, code, meter.id, meter.code, sub.account_id))
    return made


async def net_received(uow: UnitOfWork, account_id: int | None = None) -> int:
    """Money received on the ledger, net of what refunds and disputes took back and won disputes gave back
    (payment + refund + reversal + reinstatement)."""
    e = ledger_entries.c
    query = select(func.coalesce(func.sum(e.amount_minor), 0)).where(
        e.entry_type.in_(("payment", "refund", "reversal", "reinstatement"))
    )
    if account_id is not None:
        query = query.where(e.account_id == account_id)
    async with uow.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def balances(uow: UnitOfWork, account_id: int) -> Balances:
    async with uow.connect() as conn:
        return await ledger.balances(conn, account_id)


async def credit_commands(uow: UnitOfWork) -> int:
    async with uow.connect() as conn:
        query = select(func.count()).select_from(commands).where(commands.c.kind == "top_up")
        return int((await conn.execute(query)).scalar_one())


@pytest.fixture
def applier() -> BillingApplier:
    return BillingApplier(KeyRing(MASTER_KEY), TopUpPolicy(recovery_bp=2500, min_debt_minor=100))


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """A real localstripe on a free port, its state in a folder of this run."""
    state: Path = tmp_path_factory.mktemp("localstripe")
    with localstripe_server(state) as server:
        yield server
