"""Gapless numbers (invoices, cash receipts): taken with an UPDATE in the transaction that uses the number.
The row lock serialises takers; a rollback gives the number back, so the series has no gaps."""

from __future__ import annotations

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.ledger import number_sequences as S  # noqa: N812


async def take(conn: AsyncConnection, name: str, count: int = 1) -> int:
    """The first of the next `count` numbers of series `name` (1, 2, 3 ...). The series stays locked until the
    transaction ends; `count=0` takes none and only holds it (e.g. while a page of invoices is drawn up)."""
    taken = await conn.scalar(
        update(S).where(S.c.name == name).values(next_value=S.c.next_value + count).returning(S.c.next_value)
    )
    if taken is not None:
        return int(taken) - count
    try:
        async with conn.begin_nested():
            await conn.execute(insert(S).values(name=name, next_value=1 + count))
        return 1
    except IntegrityError:  # created concurrently: take the next ones
        return await take(conn, name, count)
