"""The registry of meters: installed for a subscriber (new, or from stock), replaced, archived, put on a
transformer; each change with its meter history row and its audit row, and each meter's key wrapped for storage.

Use cases take the caller's connection (one transaction: the change, its history row and its audit row
commit together), the acting `Actor` and `now`.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import places
from billing.errors import Conflict, InvalidField, NotFound
from billing.registry import get_subscriber, jsonable
from billing.rules.ledger import Book, EntryType
from gateway.keys import KeyRing
from meter_protocol import InvalidMeterCode, validate_meter_code
from store import audit
from store.audit import Actor
from store.crypto import wrap_for_storage
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812

METER_KINDS = ("electricity", "water", "gas", "heat")
PROFILES = ("binary", "xml")


@dataclass(frozen=True, slots=True)
class Meter:
    id: int
    code: str
    subscriber_id: int | None
    msisdn: str
    make: str | None
    model: str | None
    profile: str
    app_port: int | None
    kind: str
    phases: int
    transformer_id: int | None
    is_balance_meter: bool
    status: str
    installed_at: datetime
    archived_at: datetime | None
    replaced_by_id: int | None
    key_id: int
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class NewMeter:
    code: str
    msisdn: str
    make: str | None = None
    model: str | None = None
    profile: str = "binary"
    app_port: int | None = None
    kind: str = "electricity"
    phases: int = 1
    transformer_id: int | None = None
    is_balance_meter: bool = False


def _check_meter_code(code: str) -> str:
    try:
        return validate_meter_code(code)
    except InvalidMeterCode as exc:
        raise InvalidField("meter code", str(exc)) from exc


async def attach_meters(
    conn: AsyncConnection,
    actor: Actor,
    transformer_id: int | None,
    meter_ids: Sequence[int],
    now: datetime,
    *,
    balance_meter_id: int | None = None,
) -> int:
    """Put meters on a transformer (None: take them off), and optionally name its balance meter — the
    meter at the transformer that the monthly losses job compares with the sum of its subscribers'
    meters. Each changed meter gets a history row; one audit row lists every change. Returns how many
    meters changed."""
    target = "transformer:-"
    if transformer_id is not None:
        target = f"transformer:{(await places.get_transformer(conn, transformer_id))['code']}"
    elif balance_meter_id is not None:
        raise InvalidField("balance_meter_id", "a balance meter belongs to a transformer")
    wanted = sorted({*meter_ids, *([balance_meter_id] if balance_meter_id is not None else [])})
    m = R.meters.c
    rows = {r.id: r for r in await conn.execute(select(R.meters).where(m.id.in_(wanted)))} if wanted else {}
    missing = [i for i in wanted if i not in rows]
    if missing:
        raise NotFound("meter", missing[0])
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for meter_id in wanted:
        row = rows[meter_id]
        if row.status != "active":
            raise Conflict("meter", f"{row.code} is archived")
        balance = 1 if meter_id == balance_meter_id else int(row.is_balance_meter)
        if meter_id == balance_meter_id and row.subscriber_id is not None:
            raise InvalidField("balance_meter_id", f"{row.code} is a subscriber's meter, not one at the transformer")
        if row.transformer_id == transformer_id and bool(row.is_balance_meter) == bool(balance):
            continue
        old = {"transformer_id": row.transformer_id, "is_balance_meter": bool(row.is_balance_meter)}
        new = {"transformer_id": transformer_id, "is_balance_meter": bool(balance)}
        await conn.execute(
            update(R.meters).where(m.id == meter_id).values(transformer_id=transformer_id, is_balance_meter=balance)
        )
        await _history(conn, meter_id, actor, "updated", {k: [old[k], new[k]] for k in old if old[k] != new[k]}, now)
        before[row.code], after[row.code] = old, new
    if after:
        await audit.record(conn, actor, "transformer.attach", now, target=target, before=before, after=after)
    return len(after)


def _meter(row: Any) -> Meter:
    m = row._mapping
    names = {f.name for f in dataclasses.fields(Meter)}
    values = {k: m[k] for k in names}
    values["is_balance_meter"] = bool(values["is_balance_meter"])
    return Meter(**values)


async def get_meter(conn: AsyncConnection, meter_id: int) -> Meter:
    row = (await conn.execute(select(R.meters).where(R.meters.c.id == meter_id))).first()
    if row is None:
        raise NotFound("meter", meter_id)
    return _meter(row)


async def get_meter_by_code(conn: AsyncConnection, code: str) -> Meter:
    row = (await conn.execute(select(R.meters).where(R.meters.c.code == code.replace(" ", "")))).first()
    if row is None:
        raise NotFound("meter", code)
    return _meter(row)


async def active_meter(conn: AsyncConnection, subscriber_id: int) -> Meter | None:
    """The subscriber's active meter that takes credit (the first installed, balance meters aside)."""
    m = R.meters.c
    row = (
        await conn.execute(
            select(R.meters)
            .where(m.subscriber_id == subscriber_id, m.status == "active", m.is_balance_meter == 0)
            .order_by(m.id)
            .limit(1)
        )
    ).first()
    return None if row is None else _meter(row)


def _check_new_meter(new: NewMeter) -> dict[str, Any]:
    code = _check_meter_code(new.code)
    msisdn = re.sub(r"[\s\-+]", "", new.msisdn)
    if not re.fullmatch(r"\d{5,15}", msisdn):
        raise InvalidField("msisdn", "the SIM's number, 5 to 15 digits")
    if new.kind not in METER_KINDS:
        raise InvalidField("kind", f"one of {', '.join(METER_KINDS)}")
    if new.profile not in PROFILES:
        raise InvalidField("profile", f"one of {', '.join(PROFILES)}")
    if new.phases not in (1, 3):
        raise InvalidField("phases", "1 or 3")
    if new.app_port is not None and not 0 <= new.app_port <= 65535:
        raise InvalidField("app_port", "0-65535")
    values = dataclasses.asdict(new)
    values.update(code=code, msisdn=msisdn, is_balance_meter=1 if new.is_balance_meter else 0)
    return values


async def _history(
    conn: AsyncConnection, meter_id: int, actor: Actor, event: str, detail: dict[str, Any], now: datetime
) -> None:
    await conn.execute(
        insert(R.meter_history).values(meter_id=meter_id, at=now, by=str(actor), event=event, detail=detail)
    )


async def install_meter(
    conn: AsyncConnection,
    actor: Actor,
    subscriber_id: int | None,
    new: NewMeter,
    *,
    master_key: bytes | KeyRing,
    now: datetime,
    meter_key: bytes | None = None,
) -> Meter:
    """A meter with a fresh random key (or `meter_key`, the one the factory loaded), wrapped at rest under
    the master key (given as bytes, or as the running service's KeyRing). `subscriber_id` None: a
    transformer's balance meter. A meter in stock (received with its key file) is installed as it is:
    it keeps its key, SIM number, profile, firmware and kind."""
    m = R.meters.c
    stocked = (await conn.execute(select(m.id, m.status).where(m.code == new.code.replace(" ", "")))).first()
    if stocked is not None and stocked.status == "stock":
        return await _install_from_stock(conn, actor, subscriber_id, int(stocked.id), new, now, meter_key)
    values = _check_new_meter(new)
    if await conn.scalar(select(m.id).where(m.code == values["code"])) is not None:
        raise Conflict("meter", f"code {values['code']} is registered")
    if subscriber_id is not None:
        await get_subscriber(conn, subscriber_id)
    if values["transformer_id"] is not None and (
        await conn.scalar(select(R.transformers.c.id).where(R.transformers.c.id == values["transformer_id"])) is None
    ):
        raise NotFound("transformer", values["transformer_id"])
    meter_id = await conn.scalar(
        insert(R.meters)
        .values(subscriber_id=subscriber_id, installed_at=now, status="active", key_id=0, **values)
        .returning(m.id)
    )
    assert meter_id is not None
    key = meter_key if meter_key is not None else secrets.token_bytes(16)
    if len(key) != 16:
        raise InvalidField("key", "a meter key is 16 bytes (32 hexadecimal digits)")
    wrapped = master_key.wrap(key) if isinstance(master_key, KeyRing) else wrap_for_storage(master_key, key)
    await conn.execute(
        insert(R.meter_keys).values(meter_id=meter_id, key_id=0, wrapped_key=wrapped, status="active", created_at=now)
    )
    detail = {k: v for k, v in values.items() if v is not None}
    await _history(conn, int(meter_id), actor, "installed", {**detail, "subscriber_id": subscriber_id}, now)
    await audit.record(conn, actor, "meter.install", now, target=f"meter:{values['code']}", after=detail)
    return await get_meter(conn, int(meter_id))


async def _install_from_stock(
    conn: AsyncConnection,
    actor: Actor,
    subscriber_id: int | None,
    meter_id: int,
    new: NewMeter,
    now: datetime,
    meter_key: bytes | None,
) -> Meter:
    if meter_key is not None:
        raise InvalidField("key", "the meter is in stock with the key of its key file; leave the key empty")
    if subscriber_id is not None:
        await get_subscriber(conn, subscriber_id)
    stock = await get_meter(conn, meter_id)
    if not stock.msisdn:
        raise InvalidField("msisdn", f"meter {stock.code} is in stock without a SIM number: import its key file")
    values: dict[str, Any] = {
        "subscriber_id": subscriber_id,
        "status": "active",
        "installed_at": now,
        "make": new.make,
        "model": new.model,
        "phases": new.phases,
        "transformer_id": new.transformer_id,
        "is_balance_meter": 1 if new.is_balance_meter else 0,
    }
    if new.phases not in (1, 3):
        raise InvalidField("phases", "1 or 3")
    if new.transformer_id is not None and (
        await conn.scalar(select(R.transformers.c.id).where(R.transformers.c.id == new.transformer_id)) is None
    ):
        raise NotFound("transformer", new.transformer_id)
    await conn.execute(update(R.meters).where(R.meters.c.id == meter_id).values(**values))
    detail = {k: jsonable(v) for k, v in values.items() if v is not None and k != "installed_at"}
    await _history(conn, meter_id, actor, "installed", {**detail, "from": "stock"}, now)
    await audit.record(
        conn, actor, "meter.install", now, target=f"meter:{stock.code}", before={"status": "stock"}, after=detail
    )
    return await get_meter(conn, meter_id)


async def archive_meter(conn: AsyncConnection, actor: Actor, meter_id: int, reason: str, now: datetime) -> Meter:
    meter = await get_meter(conn, meter_id)
    if meter.status == "archived":
        raise Conflict("meter", f"{meter.code} is archived already")
    await conn.execute(update(R.meters).where(R.meters.c.id == meter_id).values(status="archived", archived_at=now))
    await conn.execute(
        update(R.meter_keys)
        .where(R.meter_keys.c.meter_id == meter_id, R.meter_keys.c.status != "retired")
        .values(status="retired", retired_at=now)
    )
    await _history(conn, meter_id, actor, "archived", {"reason": reason}, now)
    await audit.record(
        conn,
        actor,
        "meter.archive",
        now,
        target=f"meter:{meter.code}",
        before={"status": meter.status},
        after={"status": "archived", "reason": reason},
    )
    return await get_meter(conn, meter_id)


async def replace_meter(
    conn: AsyncConnection,
    actor: Actor,
    old_meter_id: int,
    new: NewMeter,
    *,
    master_key: bytes | KeyRing,
    now: datetime,
    carried_credit_minor: int = 0,
    meter_key: bytes | None = None,
) -> Meter:
    """The new meter takes the subscriber (so the account's balance and debts), the transformer and a fresh
    key; the old one is archived with its history. `carried_credit_minor`: credit left on the old meter
    (its last report or the final reading): it goes back into the wallet (an adjustment) and is sent to
    the new meter with the next vend (`billing.topup.vend_held_credit`)."""
    old = await get_meter(conn, old_meter_id)
    if old.status != "active":
        raise Conflict("meter", f"{old.code} is not active")
    if carried_credit_minor < 0:
        raise InvalidField("carried_credit_minor", "not negative")
    if new.transformer_id is None and old.transformer_id is not None:
        new = dataclasses.replace(new, transformer_id=old.transformer_id)
    fresh = await install_meter(
        conn, actor, old.subscriber_id, new, master_key=master_key, now=now, meter_key=meter_key
    )
    await archive_meter(conn, actor, old.id, f"replaced by {fresh.code}", now)
    await conn.execute(update(R.meters).where(R.meters.c.id == old.id).values(replaced_by_id=fresh.id))
    await _history(conn, fresh.id, actor, "replaced", {"old_meter": old.code}, now)
    await _history(
        conn, old.id, actor, "replaced", {"new_meter": fresh.code, "carried_credit_minor": carried_credit_minor}, now
    )
    if carried_credit_minor > 0 and old.subscriber_id is not None:
        account_id = await conn.scalar(select(L.accounts.c.id).where(L.accounts.c.subscriber_id == old.subscriber_id))
        await conn.execute(
            insert(L.ledger_entries).values(
                account_id=account_id,
                entry_type=EntryType.ADJUSTMENT.value,
                book=Book.WALLET.value,
                amount_minor=carried_credit_minor,
                idempotency_key=f"replace:{old.id}:carried",
                memo=f"credit left on meter {old.code}, for meter {fresh.code}",
                created_at=now,
                created_by=str(actor),
            )
        )
    await audit.record(
        conn,
        actor,
        "meter.replace",
        now,
        target=f"meter:{old.code}",
        before={"meter": old.code, "status": old.status},
        after={"new_meter": fresh.code, "carried_credit_minor": carried_credit_minor},
    )
    return fresh


async def meter_history(conn: AsyncConnection, meter_id: int) -> list[dict[str, Any]]:
    h = R.meter_history.c
    rows = await conn.execute(select(h.at, h.by, h.event, h.detail).where(h.meter_id == meter_id).order_by(h.id))
    return [dict(r._mapping) for r in rows]


async def meters_in_group(
    conn: AsyncConnection,
    *,
    transformer_id: int | None = None,
    street: tuple[str, str, str] | None = None,
    building: tuple[str, str, str, str] | None = None,
    meter_ids: Sequence[int] | None = None,
) -> list[int]:
    """Active subscriber meters (balance meters aside) of a transformer, a street or a building."""
    m, s = R.meters.c, R.subscribers.c
    stmt = select(m.id).where(m.status == "active", m.is_balance_meter == 0)
    if transformer_id is not None:
        stmt = stmt.where(m.transformer_id == transformer_id)
    if street is not None or building is not None:
        key = building or street
        assert key is not None
        stmt = stmt.join(R.subscribers, R.subscribers.c.id == m.subscriber_id).where(
            s.region_code == key[0], s.settlement_code == key[1], s.street_code == key[2]
        )
        if building is not None:
            stmt = stmt.where(s.building == building[3])
    if meter_ids is not None:
        stmt = stmt.where(m.id.in_(list(meter_ids)))
    return list((await conn.scalars(stmt.order_by(m.id))).all())


async def set_meter_profile(conn: AsyncConnection, actor: Actor, meter_id: int, profile: str, now: datetime) -> None:
    """An operator changes how the head end talks to the meter (docs/protocol.md §11.3): binary | xml.
    Commands sealed from now on use it; a history row and an audit row record the change."""
    if profile not in PROFILES:
        raise InvalidField("profile", f"one of {', '.join(PROFILES)}")
    m = R.meters.c
    row = (await conn.execute(select(m.code, m.profile).where(m.id == meter_id))).first()
    if row is None:
        raise NotFound("meter", meter_id)
    if row.profile == profile:
        return
    await conn.execute(update(R.meters).where(m.id == meter_id).values(profile=profile))
    await _history(conn, meter_id, actor, "updated", {"profile": [row.profile, profile]}, now)
    await audit.record(
        conn,
        actor,
        "meter.profile",
        now,
        target=f"meter:{row.code}",
        before={"profile": row.profile},
        after={"profile": profile},
    )
