"""Fixtures for the payments tests: a few subscribers with accounts and meters, written straight into the
registry tables, and a hand-written applier that posts to the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.ports import CreditApplied, CreditRequest, ReversalRequest
from store.schema.ledger import accounts, ledger_entries
from store.schema.registry import meters, regions, settlements, streets, subscribers
from store.uow import UnitOfWork
from tests.support.stripe_emulator import LocalStripe, localstripe_server

NOW = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)


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
        await conn.execute(insert(regions).values(code="01", name="North"))
        await conn.execute(insert(settlements).values(region_code="01", code="02", name="Riverside"))
        await conn.execute(insert(streets).values(region_code="01", settlement_code="02", code="003", name="Main"))
        for i in range(count):
            code = f"0102003{i + 1:04d}0001"
            sid = (
                await conn.execute(
                    insert(subscribers)
                    .values(
                        code=code,
                        region_code="01",
                        settlement_code="02",
                        street_code="003",
                        building=f"{i + 1:04d}",
                        apartment="0001",
                        name=f"Subscriber {i + 1}",
                        created_at=NOW,
                        updated_at=NOW,
                    )
                    .returning(subscribers.c.id)
                )
            ).scalar_one()
            aid = (
                await conn.execute(
                    insert(accounts)
                    .values(subscriber_id=sid, currency=currency, created_at=NOW)
                    .returning(accounts.c.id)
                )
            ).scalar_one()
            meter_code = f"{i + 1:020d}"
            mid = (
                await conn.execute(
                    insert(meters)
                    .values(code=meter_code, subscriber_id=sid, msisdn=f"+1555{i:07d}", installed_at=NOW)
                    .returning(meters.c.id)
                )
            ).scalar_one()
            made.append(Subscriber(sid, code, mid, meter_code, aid))
    return made


class LedgerApplier:
    """Posts credits and reversals to the ledger (one entry each, keyed by the request's idempotency key)."""

    def __init__(self) -> None:
        self.credits = 0
        self.reversals = 0

    async def _account(self, conn: AsyncConnection, subscriber_id: int) -> int:
        return (await conn.execute(select(accounts.c.id).where(accounts.c.subscriber_id == subscriber_id))).scalar_one()

    async def credit(self, conn: AsyncConnection, request: CreditRequest, now: datetime) -> CreditApplied:
        await conn.execute(
            insert(ledger_entries).values(
                account_id=await self._account(conn, request.subscriber_id),
                entry_type="payment" if request.reason == "payment" else "adjustment",
                amount_minor=request.amount_minor,
                idempotency_key=request.idempotency_key,
                payment_id=request.payment_id,
                created_at=now,
                created_by=f"{request.provider}:webhook",
            )
        )
        self.credits += 1
        return CreditApplied(command_id=None)

    async def reverse(self, conn: AsyncConnection, request: ReversalRequest, now: datetime) -> None:
        await conn.execute(
            insert(ledger_entries).values(
                account_id=await self._account(conn, request.subscriber_id),
                entry_type="reversal",
                amount_minor=-request.amount_minor,
                idempotency_key=request.idempotency_key,
                payment_id=request.payment_id,
                created_at=now,
                created_by=f"{request.provider}:webhook",
            )
        )
        self.reversals += 1


async def ledger_total(uow: UnitOfWork, account_id: int | None = None) -> int:
    query = select(func.coalesce(func.sum(ledger_entries.c.amount_minor), 0))
    if account_id is not None:
        query = query.where(ledger_entries.c.account_id == account_id)
    async with uow.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


@pytest.fixture
def applier() -> LedgerApplier:
    return LedgerApplier()


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """A real localstripe on a free port, its state in a folder of this run."""
    state: Path = tmp_path_factory.mktemp("localstripe")
    with localstripe_server(state) as server:
        yield server
