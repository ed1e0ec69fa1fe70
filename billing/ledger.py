"""The stored ledger: append-only entries with unique idempotency keys; a balance is a sum of entries.

`post` writes one operation's postings (see `billing.rules.ledger`) in the caller's transaction, all or
none: if one of its keys is stored already, the operation happened before and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import InvalidPosting, NotFound
from billing.rules.ledger import Balances, Book, EntryType, Posting
from billing.rules.money import Money
from store.schema import ledger as L  # noqa: N812
from store.sql import among_param, per_dialect

_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    entry_type: EntryType
    book: Book
    amount: Money
    idempotency_key: str
    memo: str | None
    created_at: datetime
    created_by: str
    payment_id: int | None
    command_id: int | None

    def posting(self) -> Posting:
        return Posting(self.entry_type, self.book, self.amount, self.idempotency_key, self.memo)


async def account_currency(conn: AsyncConnection, account_id: int, *, lock: bool = False) -> str:
    """The account's currency; with `lock`, the account row is locked (PostgreSQL) so that two operations
    on one account are serialised."""
    stmt = select(L.accounts.c.currency).where(L.accounts.c.id == account_id)
    if lock:
        stmt = stmt.with_for_update()
    currency = await conn.scalar(stmt)
    if currency is None:
        raise NotFound("account", account_id)
    return str(currency)


async def balances(conn: AsyncConnection, account_id: int, *, before: datetime | None = None) -> Balances:
    """Wallet and debt: sums of the account's entries (those created before `before`, when given)."""
    currency = await account_currency(conn, account_id)
    e = L.ledger_entries.c
    stmt = select(e.book, func.coalesce(func.sum(e.amount_minor), 0)).where(e.account_id == account_id)
    if before is not None:
        stmt = stmt.where(e.created_at < before)
    sums = {row[0]: int(row[1]) for row in await conn.execute(stmt.group_by(e.book))}
    return Balances(Money(sums.get("wallet", 0), currency), Money(sums.get("debt", 0), currency))


@per_dialect
def _sums_by_book(postgres: bool) -> Any:
    e = L.ledger_entries.c
    return (
        select(e.account_id, e.book, func.coalesce(func.sum(e.amount_minor), 0))
        .where(among_param(e.account_id, "ids", postgres), e.created_at < bindparam("before"))
        .group_by(e.account_id, e.book)
    )


_FOREVER = datetime.max.replace(tzinfo=UTC)


async def balances_many(
    conn: AsyncConnection, currencies: Mapping[int, str], *, before: datetime | None = None
) -> dict[int, Balances]:
    """Wallet and debt of many accounts (account id → currency) in one statement a thousand accounts: sums of
    their entries (those created before `before`, when given)."""
    if not currencies:
        return {}
    sums: dict[tuple[int, str], int] = {}
    ids = sorted(currencies)
    query = _sums_by_book(conn)
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(query, {"ids": ids[start : start + _CHUNK], "before": before or _FOREVER})
        sums.update({(int(a), str(b)): int(total) for a, b, total in rows})
    return {
        a: Balances(Money(sums.get((a, "wallet"), 0), c), Money(sums.get((a, "debt"), 0), c))
        for a, c in currencies.items()
    }


@per_dialect
def _postings_between(postgres: bool) -> Any:
    e = L.ledger_entries.c
    return (
        select(e.account_id, e.entry_type, e.book, e.amount_minor, e.idempotency_key, e.memo)
        .where(
            among_param(e.account_id, "ids", postgres),
            e.created_at >= bindparam("since"),
            e.created_at < bindparam("until"),
        )
        .order_by(e.account_id, e.id)
    )


async def postings_many(
    conn: AsyncConnection, currencies: Mapping[int, str], since: datetime, until: datetime
) -> dict[int, list[Posting]]:
    """The postings of many accounts (account id → currency) created in [since, until), each account's in
    the order they were written; one statement a thousand accounts."""
    out: dict[int, list[Posting]] = {a: [] for a in currencies}
    ids = sorted(currencies)
    query = _postings_between(conn)
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(query, {"ids": ids[start : start + _CHUNK], "since": since, "until": until})
        for r in rows:
            amount = Money(int(r.amount_minor), currencies[r.account_id])
            out[r.account_id].append(Posting(EntryType(r.entry_type), Book(r.book), amount, r.idempotency_key, r.memo))
    return out


async def balance(conn: AsyncConnection, account_id: int) -> Money:
    """The account's balance: the sum of all its entries (wallet + debt)."""
    return (await balances(conn, account_id)).total


async def is_posted(conn: AsyncConnection, key: str) -> bool:
    e = L.ledger_entries.c
    return await conn.scalar(select(e.id).where(e.idempotency_key == key)) is not None


async def post(
    conn: AsyncConnection,
    account_id: int,
    postings: Sequence[Posting],
    *,
    created_by: str,
    now: datetime,
    payment_id: int | None = None,
    command_id: int | None = None,
) -> bool:
    """Append one operation's postings. False (nothing written) when any of their keys exists."""
    if not postings:
        return True
    currency = await account_currency(conn, account_id)
    for p in postings:
        if p.amount.currency != currency:
            raise InvalidPosting(f"posting in {p.amount.currency} on a {currency} account")
    keys = [p.idempotency_key for p in postings]
    e = L.ledger_entries.c
    if await conn.scalar(select(e.id).where(e.idempotency_key.in_(keys)).limit(1)) is not None:
        return False
    await conn.execute(
        insert(L.ledger_entries),
        [
            {
                "account_id": account_id,
                "entry_type": p.entry_type.value,
                "book": p.book.value,
                "amount_minor": p.amount.minor,
                "idempotency_key": p.idempotency_key,
                "payment_id": payment_id,
                "command_id": command_id,
                "memo": p.memo,
                "created_at": now,
                "created_by": created_by,
            }
            for p in postings
        ],
    )
    return True


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation's postings on one account, for `post_many`."""

    account_id: int
    postings: Sequence[Posting]
    created_by: str
    payment_id: int | None = None
    command_id: int | None = None


_INSERT_ENTRIES = insert(L.ledger_entries)


async def post_many(conn: AsyncConnection, operations: Sequence[Operation], *, now: datetime) -> None:
    """Append many operations' postings in one statement. The caller has checked that none of them
    happened before (and the accounts' currencies): a key stored already raises IntegrityError (the unique
    key is the last guard), and the caller's transaction must roll back."""
    rows = [
        {
            "account_id": op.account_id,
            "entry_type": p.entry_type.value,
            "book": p.book.value,
            "amount_minor": p.amount.minor,
            "idempotency_key": p.idempotency_key,
            "payment_id": op.payment_id,
            "command_id": op.command_id,
            "memo": p.memo,
            "created_at": now,
            "created_by": op.created_by,
        }
        for op in operations
        for p in op.postings
    ]
    for start in range(0, len(rows), _CHUNK):
        await conn.execute(_INSERT_ENTRIES, rows[start : start + _CHUNK])


async def entries(
    conn: AsyncConnection,
    account_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> list[Entry]:
    """Entries in time order, created in [since, until)."""
    currency = await account_currency(conn, account_id)
    e = L.ledger_entries.c
    stmt = select(L.ledger_entries).where(e.account_id == account_id)
    if since is not None:
        stmt = stmt.where(e.created_at >= since)
    if until is not None:
        stmt = stmt.where(e.created_at < until)
    stmt = stmt.order_by(e.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        Entry(
            r.id,
            EntryType(r.entry_type),
            Book(r.book),
            Money(int(r.amount_minor), currency),
            r.idempotency_key,
            r.memo,
            r.created_at,
            r.created_by,
            r.payment_id,
            r.command_id,
        )
        for r in await conn.execute(stmt)
    ]


async def account_of(conn: AsyncConnection, subscriber_id: int) -> int:
    account_id = await conn.scalar(select(L.accounts.c.id).where(L.accounts.c.subscriber_id == subscriber_id))
    if account_id is None:
        raise NotFound("account of subscriber", subscriber_id)
    return int(account_id)
