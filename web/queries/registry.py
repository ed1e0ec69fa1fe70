"""Subscribers and meters: search and the subscriber card (read-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.arrears import arrears_of
from billing.notices import notices_of
from store.schema.commands import balance_reports, commands
from store.schema.ledger import accounts, ledger_entries, tariffs
from store.schema.payments import payments
from store.schema.registry import meters, settlements, streets, subscribers
from web.queries import Page
from web.queries.history import invoices_of, top_ups

_ADDRESS = [
    settlements.c.name.label("settlement"),
    streets.c.name.label("street"),
]


def _with_address(query: Select[Any]) -> Select[Any]:
    return query.outerjoin(
        streets,
        and_(
            streets.c.region_code == subscribers.c.region_code,
            streets.c.settlement_code == subscribers.c.settlement_code,
            streets.c.code == subscribers.c.street_code,
        ),
    ).outerjoin(
        settlements,
        and_(
            settlements.c.region_code == subscribers.c.region_code, settlements.c.code == subscribers.c.settlement_code
        ),
    )


def _address(row: dict[str, Any]) -> str:
    parts = [row.get("settlement") or "", row.get("street") or "", str(int(row["building"]))]
    text = ", ".join(p for p in parts[:2] if p) + f" {parts[2]}"
    return f"{text}, ap. {int(row['apartment'])}" if int(row["apartment"] or 0) else text


def _balances(account_ids: list[int]) -> Select[Any]:
    return (
        select(
            ledger_entries.c.account_id,
            func.coalesce(
                func.sum(case((ledger_entries.c.book == "wallet", ledger_entries.c.amount_minor), else_=0)), 0
            ).label("balance_minor"),
            func.coalesce(
                func.sum(case((ledger_entries.c.book == "debt", ledger_entries.c.amount_minor), else_=0)), 0
            ).label("debt_minor"),
        )
        .where(ledger_entries.c.account_id.in_(account_ids))
        .group_by(ledger_entries.c.account_id)
    )


async def search_subscribers(conn: AsyncConnection, q: str, *, status: str | None, limit: int, offset: int) -> Page:
    """By subscriber code (prefix), name, street or settlement name, phone, meter code (prefix) or meter SIM
    number."""
    query = _with_address(select(subscribers.c.id))
    text = q.strip()
    if text:
        like = f"%{text.lower()}%"
        meter_match = select(meters.c.subscriber_id).where(
            or_(meters.c.code.startswith(text), meters.c.msisdn.startswith(text))
        )
        query = query.where(
            or_(
                subscribers.c.code.startswith(text),
                func.lower(subscribers.c.name).like(like),
                func.lower(streets.c.name).like(like),
                func.lower(settlements.c.name).like(like),
                subscribers.c.phone.startswith(text),
                subscribers.c.contract_number == text,
                subscribers.c.id.in_(meter_match),
            )
        )
    if status:
        query = query.where(subscribers.c.status == status)
    total = int(await conn.scalar(select(func.count()).select_from(query.subquery())) or 0)
    ids = [r[0] for r in await conn.execute(query.order_by(subscribers.c.code).limit(limit).offset(offset))]
    items = await _subscriber_rows(conn, ids)
    return Page(items, total, limit, offset)


async def _subscriber_rows(conn: AsyncConnection, ids: list[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = (
        await conn.execute(
            _with_address(
                select(subscribers, *_ADDRESS, accounts.c.id.label("account_id"), accounts.c.currency).outerjoin(
                    accounts, accounts.c.subscriber_id == subscribers.c.id
                )
            ).where(subscribers.c.id.in_(ids))
        )
    ).mappings()
    by_id = {r["id"]: dict(r) for r in rows}
    account_ids = [r["account_id"] for r in by_id.values() if r["account_id"] is not None]
    balances = {r.account_id: r for r in await conn.execute(_balances(account_ids))} if account_ids else {}
    meter_rows = await conn.execute(
        select(meters.c.subscriber_id, meters.c.code).where(
            meters.c.subscriber_id.in_(ids), meters.c.status == "active"
        )
    )
    meter_codes: dict[int, list[str]] = {}
    for subscriber_id, code in meter_rows:
        meter_codes.setdefault(subscriber_id, []).append(code)
    reports = await _latest_meter_credit(conn, ids)
    items = []
    for subscriber_id in ids:
        row = by_id[subscriber_id]
        balance = balances.get(row["account_id"])
        items.append(
            {
                "id": row["id"],
                "code": row["code"],
                "name": row["name"],
                "address": _address(row),
                "phone": row["phone"],
                "status": row["status"],
                "language": row["language"],
                "meters": meter_codes.get(subscriber_id, []),
                "balance_minor": int(balance.balance_minor) if balance else 0,
                "debt_minor": int(balance.debt_minor) if balance else 0,
                "currency": row["currency"],
                "meter_credit_minor": reports.get(subscriber_id, (None, None))[0],
                "meter_credit_at": reports.get(subscriber_id, (None, None))[1],
            }
        )
    return items


async def _latest_meter_credit(conn: AsyncConnection, subscriber_ids: list[int]) -> dict[int, tuple[int, Any]]:
    """The credit the subscriber's active meter last reported, and when (None until it reports)."""
    latest = (
        select(balance_reports.c.meter_id, func.max(balance_reports.c.id).label("id"))
        .group_by(balance_reports.c.meter_id)
        .subquery()
    )
    rows = await conn.execute(
        select(meters.c.subscriber_id, balance_reports.c.credit_minor, balance_reports.c.reported_at)
        .join(latest, latest.c.id == balance_reports.c.id)
        .join(meters, meters.c.id == balance_reports.c.meter_id)
        .where(meters.c.subscriber_id.in_(subscriber_ids), meters.c.status == "active")
    )
    return {r.subscriber_id: (int(r.credit_minor), r.reported_at) for r in rows}


async def subscriber_summary(conn: AsyncConnection, subscriber_id: int) -> dict[str, Any] | None:
    rows = (
        await _subscriber_rows(conn, [subscriber_id])
        if await conn.scalar(select(subscribers.c.id).where(subscribers.c.id == subscriber_id))
        else []
    )
    return rows[0] if rows else None


async def subscriber_card(conn: AsyncConnection, subscriber_id: int, *, limit: int = 50) -> dict[str, Any] | None:
    summary = await subscriber_summary(conn, subscriber_id)
    if summary is None:
        return None
    sub = (await conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id))).mappings().one()
    tariff = None
    if sub["tariff_id"] is not None:
        tariff = (await conn.execute(select(tariffs).where(tariffs.c.id == sub["tariff_id"]))).mappings().first()
    account_id = await conn.scalar(select(accounts.c.id).where(accounts.c.subscriber_id == subscriber_id))
    ledger: list[dict[str, Any]] = []
    if account_id is not None:
        ledger = [
            dict(r)
            for r in (
                await conn.execute(
                    select(ledger_entries)
                    .where(ledger_entries.c.account_id == account_id)
                    .order_by(ledger_entries.c.id.desc())
                    .limit(limit)
                )
            ).mappings()
        ]
    meter_list = [
        dict(r)
        for r in (
            await conn.execute(
                select(
                    meters.c.id,
                    meters.c.code,
                    meters.c.msisdn,
                    meters.c.make,
                    meters.c.model,
                    meters.c.kind,
                    meters.c.status,
                    meters.c.profile,
                    meters.c.installed_at,
                )
                .where(meters.c.subscriber_id == subscriber_id)
                .order_by(meters.c.status, meters.c.id)
            )
        ).mappings()
    ]
    meter_ids = [m["id"] for m in meter_list]
    command_list = await recent_commands(conn, meter_ids, limit=limit)
    notice_list = await notices_of(conn, subscriber_id, limit=limit)
    payment_list = [
        dict(r)
        for r in (
            await conn.execute(
                select(payments)
                .where(payments.c.subscriber_id == subscriber_id)
                .order_by(payments.c.id.desc())
                .limit(limit)
            )
        ).mappings()
    ]
    return {
        **summary,
        "top_ups": await top_ups(conn, subscriber_id, limit=10),
        "invoices": await invoices_of(conn, subscriber_id),
        "subscriber": dict(sub),
        "tariff": dict(tariff) if tariff else None,
        "account_id": account_id,
        "ledger": ledger,
        "meters": meter_list,
        "commands": command_list,
        "notices": notice_list,
        "arrears": None if account_id is None else await arrears_of(conn, account_id),
        "payments": payment_list,
    }


async def recent_commands(conn: AsyncConnection, meter_ids: list[int], *, limit: int = 50) -> list[dict[str, Any]]:
    if not meter_ids:
        return []
    rows = await conn.execute(
        select(
            commands.c.id,
            commands.c.meter_id,
            meters.c.code.label("meter_code"),
            commands.c.kind,
            commands.c.state,
            commands.c.payload,
            commands.c.attempts,
            commands.c.result_reason,
            commands.c.created_by,
            commands.c.created_at,
            commands.c.updated_at,
            commands.c.final_at,
        )
        .join(meters, meters.c.id == commands.c.meter_id)
        .where(commands.c.meter_id.in_(meter_ids))
        .order_by(commands.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in rows.mappings()]


async def meters_page(conn: AsyncConnection, *, q: str, status: str | None, limit: int, offset: int) -> Page:
    query = select(meters)
    if q:
        query = query.where(or_(meters.c.code.startswith(q), meters.c.msisdn.startswith(q)))
    if status:
        query = query.where(meters.c.status == status)
    total = int(await conn.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await conn.execute(query.order_by(meters.c.code).limit(limit).offset(offset))
    items = [dict(r) for r in rows.mappings()]
    return Page(items, total, limit, offset)


async def meter(conn: AsyncConnection, meter_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(meters).where(meters.c.id == meter_id))).mappings().first()
    if row is None:
        return None
    return dict(row)
