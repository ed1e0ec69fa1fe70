"""Who pays for what, as payments asks it (payments reads no table of billing's): the accounts a provider's
payments name, with their currency and meters, and the codes of the subscribers and meters its payment rows
were asked for. Read in the caller's transaction, a statement per question whatever the number asked."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from store.bulk import select_among
from store.schema.ledger import accounts
from store.schema.registry import meters, subscribers


@dataclass(frozen=True, slots=True)
class PayerMeter:
    id: int
    code: str
    active: bool


@dataclass(frozen=True, slots=True)
class Payer:
    subscriber_id: int
    code: str
    status: str  # active | suspended | closed
    currency: str | None  # None before the account exists
    meters: tuple[PayerMeter, ...]  # in id order


_PAYER = (
    subscribers.c.id,
    subscribers.c.code,
    subscribers.c.status,
    accounts.c.currency,
    meters.c.id.label("meter_id"),
    meters.c.code.label("meter_code"),
    meters.c.status.label("meter_status"),
)
_PAYER_FROM = subscribers.outerjoin(accounts, accounts.c.subscriber_id == subscribers.c.id).outerjoin(
    meters, meters.c.subscriber_id == subscribers.c.id
)
_BY_METER = (meters.c.id,)
_SUBSCRIBER_CODES = (subscribers.c.id, subscribers.c.code)
_METER_CODES = (meters.c.id, meters.c.code)


async def payers_by_code(conn: AsyncConnection, codes: Collection[str]) -> dict[str, Payer]:
    """The subscribers of `codes` that exist, by code, each with every meter of theirs."""
    found: dict[str, tuple[tuple[int, str, str | None], list[PayerMeter]]] = {}
    for row in await select_among(conn, _PAYER, subscribers.c.code, codes, order_by=_BY_METER, from_=_PAYER_FROM):
        _, their_meters = found.setdefault(row.code, ((row.id, row.status, row.currency), []))
        if row.meter_id is not None:
            their_meters.append(PayerMeter(row.meter_id, row.meter_code, row.meter_status == "active"))
    return {
        code: Payer(subscriber_id, code, status, currency, tuple(their_meters))
        for code, ((subscriber_id, status, currency), their_meters) in found.items()
    }


async def codes_by_id(
    conn: AsyncConnection, subscriber_ids: Collection[int], meter_ids: Collection[int]
) -> tuple[dict[int, str], dict[int, str]]:
    """The codes of the subscribers and of the meters of those ids."""
    subscriber_codes = {
        r.id: r.code for r in await select_among(conn, _SUBSCRIBER_CODES, subscribers.c.id, subscriber_ids)
    }
    meter_codes = {r.id: r.code for r in await select_among(conn, _METER_CODES, meters.c.id, meter_ids)}
    return subscriber_codes, meter_codes
