"""Lists the console and the API page through: commands, payments, notices, wrong SMS, alarms, tariffs,
the audit log (read-only). Filters are exact matches or time ranges; pages are newest first."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import CommandNotFound
from gateway.outbox import get_command
from store.schema.auth import audit_log
from store.schema.commands import alarms, commands, wrong_sms
from store.schema.ledger import accounts, ledger_entries, tariff_versions, tariffs, topups
from store.schema.notices import notices
from store.schema.payments import payments
from store.schema.registry import meters
from web.queries import Page


async def _page(conn: AsyncConnection, query: Select[Any], order: Any, limit: int, offset: int) -> Page:
    total = int(await conn.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await conn.execute(query.order_by(order).limit(limit).offset(offset))
    return Page([dict(r) for r in rows.mappings()], total, limit, offset)


def _filters(
    query: Select[Any],
    table: Table,
    equal: dict[str, Any],
    time_column: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    for name, value in equal.items():
        if value is not None and value != "":
            query = query.where(table.c[name] == value)
    if time_column is not None:
        if since is not None:
            query = query.where(table.c[time_column] >= since)
        if until is not None:
            query = query.where(table.c[time_column] < until)
    return query


_COMMAND_COLUMNS = [c for c in commands.c if c.name not in {"frame", "claimed_by", "claimed_until"}]
_NOT_SHOWN = frozenset({"frame", "history", "parts"})  # the sealed frame is the gateway's alone


async def commands_page(
    conn: AsyncConnection,
    *,
    meter_id: int | None,
    state: str | None,
    kind: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> Page:
    query: Select[Any] = select(*_COMMAND_COLUMNS, meters.c.code.label("meter_code")).join(
        meters, meters.c.id == commands.c.meter_id
    )
    query = _filters(query, commands, {"meter_id": meter_id, "state": state, "kind": kind}, "created_at", since, until)
    return await _page(conn, query, commands.c.id.desc(), limit, offset)


async def command(conn: AsyncConnection, command_id: int) -> dict[str, Any] | None:
    """The command as the gateway sees it (`gateway.outbox.get_command`: state history, SMS parts), with
    its meter's code, as plain values; None when there is no such command."""
    try:
        view = await get_command(conn, command_id)
    except CommandNotFound:
        return None
    fields = {f.name: getattr(view, f.name) for f in dataclasses.fields(view) if f.name not in _NOT_SHOWN}
    return {
        **fields,
        "state": view.state.value,
        "meter_code": await conn.scalar(select(meters.c.code).where(meters.c.id == view.meter_id)),
        "topup": await _topup_of(conn, command_id),
        "history": [dataclasses.asdict(h) for h in view.history],
        "parts": [dataclasses.asdict(p) for p in view.parts],
    }


async def _topup_of(conn: AsyncConnection, command_id: int) -> dict[str, Any] | None:
    """The top-up whose credit this command carries now (a re-issue moves it to the new command)."""
    t = topups.c
    row = (
        await conn.execute(
            select(t.id, t.state, t.vend_minor, t.currency, t.transfer_id, t.subscriber_id).where(
                t.command_id == command_id
            )
        )
    ).first()
    return dict(row._mapping) if row is not None else None


async def payments_page(
    conn: AsyncConnection,
    *,
    subscriber_id: int | None,
    status: str | None,
    provider: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> Page:
    query = _filters(
        select(payments),
        payments,
        {"subscriber_id": subscriber_id, "status": status, "provider": provider},
        "created_at",
        since,
        until,
    )
    return await _page(conn, query, payments.c.id.desc(), limit, offset)


async def notices_page(
    conn: AsyncConnection,
    *,
    subscriber_id: int | None,
    status: str | None,
    channel: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> Page:
    query = _filters(
        select(notices),
        notices,
        {"subscriber_id": subscriber_id, "status": status, "channel": channel},
        "created_at",
        since,
        until,
    )
    return await _page(conn, query, notices.c.id.desc(), limit, offset)


async def wrong_sms_page(
    conn: AsyncConnection,
    *,
    reason: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> Page:
    query = _filters(select(wrong_sms), wrong_sms, {"reason": reason, "source": source}, "received_at", since, until)
    page = await _page(conn, query, wrong_sms.c.id.desc(), limit, offset)
    for item in page.items:
        item["body"] = bytes(item["body"]).hex()
    return page


async def alarms_page(
    conn: AsyncConnection,
    *,
    kind: str | None,
    meter_id: int | None,
    open_only: bool,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> Page:
    query = select(alarms, meters.c.code.label("meter_code")).outerjoin(meters, meters.c.id == alarms.c.meter_id)
    query = _filters(query, alarms, {"kind": kind, "meter_id": meter_id}, "raised_at", since, until)
    if open_only:
        query = query.where(alarms.c.acknowledged_at.is_(None))
    return await _page(conn, query, alarms.c.id.desc(), limit, offset)


async def alarm(conn: AsyncConnection, alarm_id: int) -> dict[str, Any] | None:
    query = select(alarms, meters.c.code.label("meter_code")).outerjoin(meters, meters.c.id == alarms.c.meter_id)
    row = (await conn.execute(query.where(alarms.c.id == alarm_id))).mappings().first()
    return dict(row) if row is not None else None


async def tariffs_list(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(tariffs).order_by(tariffs.c.code))).mappings().all()
    versions = (
        await conn.execute(select(tariff_versions).order_by(tariff_versions.c.tariff_id, tariff_versions.c.version))
    ).mappings()
    by_tariff: dict[int, list[dict[str, Any]]] = {}
    for v in versions:
        by_tariff.setdefault(v["tariff_id"], []).append(
            {"version": v["version"], "effective_from": v["effective_from"], "body": v["body"]}
        )
    return [{**dict(r), "versions": by_tariff.get(r["id"], [])} for r in rows]


async def ledger_page(conn: AsyncConnection, subscriber_id: int, *, limit: int, offset: int) -> Page | None:
    account_id = await conn.scalar(select(accounts.c.id).where(accounts.c.subscriber_id == subscriber_id))
    if account_id is None:
        return None
    query = select(ledger_entries).where(ledger_entries.c.account_id == account_id)
    return await _page(conn, query, ledger_entries.c.id.desc(), limit, offset)


async def audit_page(
    conn: AsyncConnection,
    *,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> Page:
    query = _filters(select(audit_log), audit_log, {"actor": actor, "action": action}, "at", since, until)
    return await _page(conn, query, audit_log.c.id.desc(), limit, offset)
