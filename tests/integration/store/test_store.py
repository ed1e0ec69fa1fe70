"""The store's own parts on both databases: UTC times, the unit of work, keys at rest."""

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Integer, func, insert, literal_column, select, union_all
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from store.crypto import unwrap_from_storage, wrap_for_storage
from store.errors import KeyUnwrapError
from store.schema import auth
from store.sql import among_param
from store.uow import UnitOfWork


async def test_times_come_back_as_aware_utc(engine: AsyncEngine) -> None:
    local = datetime(2026, 3, 1, 14, 55, 7, 123000, tzinfo=timezone(timedelta(hours=2)))
    async with engine.begin() as conn:
        await conn.execute(insert(auth.audit_log).values(at=local, actor_kind="system", actor="t", action="x"))
    async with engine.connect() as conn:
        at = await conn.scalar(select(auth.audit_log.c.at))
    assert at == local
    assert at.tzinfo is not None
    assert at.utcoffset() == timedelta(0)


async def test_naive_times_are_refused(engine: AsyncEngine) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with engine.begin() as conn:
            await conn.execute(
                insert(auth.audit_log).values(at=datetime(2026, 1, 1), actor_kind="system", actor="t", action="x")
            )


async def test_unit_of_work_rolls_back_on_error(uow: UnitOfWork) -> None:
    now = datetime.now(UTC)

    class BoomError(Exception):
        pass

    async def fail_inside_a_transaction() -> None:
        async with uow.begin() as conn:
            await conn.execute(insert(auth.audit_log).values(at=now, actor_kind="system", actor="t", action="x"))
            raise BoomError

    with pytest.raises(BoomError):
        await fail_inside_a_transaction()
    async with uow.connect() as conn:
        assert await conn.scalar(select(auth.audit_log.c.id)) is None


async def test_a_savepoint_before_the_first_write_rolls_back_with_its_transaction(uow: UnitOfWork) -> None:
    """On SQLite the driver used to begin the transaction only at the first write, so a savepoint taken
    first began it and its release committed: the outer rollback then undid nothing."""
    now = datetime.now(UTC)

    class BoomError(Exception):
        pass

    async def savepoint_first_then_fail() -> None:
        async with uow.begin() as conn:
            async with conn.begin_nested():
                await conn.execute(insert(auth.audit_log).values(at=now, actor_kind="system", actor="t", action="x"))
            raise BoomError

    with pytest.raises(BoomError):
        await savepoint_first_then_fail()
    async with uow.connect() as conn:
        assert await conn.scalar(select(auth.audit_log.c.id)) is None


async def test_two_transactions_that_read_then_write_both_commit(engine: AsyncEngine) -> None:
    """On SQLite a transaction that has read holds a snapshot; had another committed a write since, its own first
    write would fail at once ("database is locked"). `engine.begin()` takes the write lock when it begins, so the
    second transaction waits for the first instead."""
    row = {"at": datetime.now(UTC), "actor_kind": "system", "actor": "t"}
    first_has_read = asyncio.Event()

    async def second() -> None:
        await first_has_read.wait()
        async with engine.begin() as conn:
            await conn.scalar(select(func.count()).select_from(auth.audit_log))
            await conn.execute(insert(auth.audit_log).values(**row, action="second"))

    task = asyncio.create_task(second())
    async with engine.begin() as conn:
        await conn.scalar(select(func.count()).select_from(auth.audit_log))
        first_has_read.set()
        await asyncio.sleep(0.2)  # the other transaction reads and writes meanwhile, if it may
        await conn.execute(insert(auth.audit_log).values(**row, action="first"))
    await task
    async with engine.connect() as conn:
        actions = sorted((await conn.execute(select(auth.audit_log.c.action))).scalars())
    assert actions == ["first", "second"]


def test_keys_at_rest_unwrap_only_under_their_master_key() -> None:
    master, other, key = bytes(range(32)), bytes(32), bytes(range(16))
    wrapped = wrap_for_storage(master, key)
    assert key not in wrapped
    assert unwrap_from_storage(master, wrapped) == key
    with pytest.raises(KeyUnwrapError):
        unwrap_from_storage(other, wrapped)
    with pytest.raises(KeyUnwrapError):
        unwrap_from_storage(master, wrapped[:-1] + bytes([wrapped[-1] ^ 1]))


async def test_audit_rows_commit_with_their_change(uow: UnitOfWork) -> None:
    from store.audit import Actor, record

    now = datetime.now(UTC)
    actor = Actor("operator", "alice", "192.0.2.7")
    async with uow.begin() as conn:
        await record(
            conn, actor, "meter.relay_off", now, target="meter:1", before={"relay": "on"}, after={"relay": "off"}
        )
    async with uow.connect() as conn:
        row = (await conn.execute(select(auth.audit_log))).one()
    assert (row.actor_kind, row.actor, row.action, row.address) == ("operator", "alice", "meter.relay_off", "192.0.2.7")
    assert row.before == {"relay": "on"}
    assert row.after == {"relay": "off"}


async def test_a_statement_built_once_takes_lists_of_any_length(engine: AsyncEngine) -> None:
    """`among_param`: one statement object (one text on PostgreSQL) for every list, the empty one too."""
    numbers = union_all(*(select(literal_column(str(n), Integer).label("n")) for n in range(1, 6))).subquery()
    postgres = engine.dialect.name == "postgresql"
    query = select(numbers.c.n).where(among_param(numbers.c.n, "wanted", postgres)).order_by(numbers.c.n)
    async with engine.connect() as conn:
        for wanted in ([], [3], [1, 4, 5], list(range(1, 2000))):
            found = (await conn.execute(query, {"wanted": wanted})).scalars().all()
            assert found == sorted(n for n in range(1, 6) if n in wanted)
