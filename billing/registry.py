"""The registry: subscribers with the history of every change, and meters (install, replace, archive) with their
keys. The reference tables (regions, settlements, streets, transformers, holidays) are in `billing.places`.

Use cases take the caller's connection (one transaction: the change, its history row and its audit row
commit together), the acting `Actor` and `now`.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import places
from billing.errors import Conflict, InvalidField, NotFound
from billing.rules.codes import code_prefix, is_code_prefix, parse_subscriber_code
from billing.rules.ledger import Book, EntryType
from gateway.keys import KeyRing
from meter_protocol import InvalidMeterCode, validate_meter_code
from store import audit
from store.audit import Actor
from store.crypto import wrap_for_storage
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812

STATUSES = ("active", "suspended", "closed")
METER_KINDS = ("electricity", "water", "gas", "heat")
PROFILES = ("binary", "xml")
_PHONE = re.compile(r"\+?\d{5,15}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    code: str
    region_code: str
    settlement_code: str
    street_code: str
    building: str
    apartment: str
    name: str
    father_name: str | None
    phone: str | None
    email: str | None
    language: str
    contract_number: str | None
    identity_document: str | None
    family_size: int | None
    rooms: int | None
    registered_on: date | None
    ended_on: date | None
    status: str
    old_code: str | None
    normative_wh_month: int | None
    tariff_id: int | None
    created_at: datetime
    updated_at: datetime
    account_id: int
    currency: str
    street_name: str = ""
    settlement_name: str = ""

    @property
    def address(self) -> str:
        return f"{self.settlement_name}, {self.street_name} {int(self.building)}, ap. {int(self.apartment)}"


# Fields an operator may set on a subscriber (the code's groups come from the code).
EDITABLE = (
    "name",
    "father_name",
    "phone",
    "email",
    "language",
    "contract_number",
    "identity_document",
    "family_size",
    "rooms",
    "registered_on",
    "ended_on",
    "status",
    "old_code",
    "normative_wh_month",
    "tariff_id",
)


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


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    changed_at: datetime
    changed_by: str
    changes: dict[str, list[Any]]


def _jsonable(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def _check_meter_code(code: str) -> str:
    try:
        return validate_meter_code(code)
    except InvalidMeterCode as exc:
        raise InvalidField("meter code", str(exc)) from exc


def _validate(fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in EDITABLE:
            raise InvalidField(name, "not a subscriber field an operator may set")
        if isinstance(value, str):
            value = value.strip() or None
        if name == "name" and not value:
            raise InvalidField("name", "a subscriber has a name")
        if name == "phone" and value is not None:
            value = re.sub(r"[\s\-()]", "", value)
            if not _PHONE.fullmatch(value):
                raise InvalidField("phone", "5 to 15 digits, an optional leading +")
        if name == "email" and value is not None and not _EMAIL.fullmatch(value):
            raise InvalidField("email", "not an e-mail address")
        if name == "language":
            value = value or "en"
            if not re.fullmatch(r"[a-z]{2}(-[A-Z]{2})?", value):
                raise InvalidField("language", "a language code such as en, ro, ru, az, es")
        if name == "status" and value not in STATUSES:
            raise InvalidField("status", f"one of {', '.join(STATUSES)}")
        numeric = name in ("family_size", "rooms", "normative_wh_month", "tariff_id")
        if numeric and value is not None and (type(value) is not int or value < 0):
            raise InvalidField(name, "a non-negative integer")
        if name in ("registered_on", "ended_on") and value is not None and not isinstance(value, date):
            raise InvalidField(name, "a date")
        out[name] = value
    return out


# --- meters and transformers -------------------------------------------------------------------------


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


# --- subscribers --------------------------------------------------------------------------------------


def _subscriber_query() -> Any:
    s, a, st, se = R.subscribers, L.accounts, R.streets, R.settlements
    return (
        select(
            s,
            a.c.id.label("account_id"),
            a.c.currency,
            st.c.name.label("street_name"),
            se.c.name.label("settlement_name"),
        )
        .join(a, a.c.subscriber_id == s.c.id)
        .join(
            st,
            and_(
                st.c.region_code == s.c.region_code,
                st.c.settlement_code == s.c.settlement_code,
                st.c.code == s.c.street_code,
            ),
        )
        .join(se, and_(se.c.region_code == s.c.region_code, se.c.code == s.c.settlement_code))
    )


_SUBSCRIBER_FIELDS = tuple(f.name for f in dataclasses.fields(Subscriber))


def _subscriber(row: Any) -> Subscriber:
    m = row._mapping
    return Subscriber(**{k: m[k] for k in _SUBSCRIBER_FIELDS if k in m})


async def get_subscriber(conn: AsyncConnection, subscriber_id: int) -> Subscriber:
    row = (await conn.execute(_subscriber_query().where(R.subscribers.c.id == subscriber_id))).first()
    if row is None:
        raise NotFound("subscriber", subscriber_id)
    return _subscriber(row)


async def get_subscribers(conn: AsyncConnection, subscriber_ids: Sequence[int]) -> list[Subscriber]:
    """The subscribers of `subscriber_ids` that exist, in id order."""
    if not subscriber_ids:
        return []
    s = R.subscribers.c
    rows = await conn.execute(_subscriber_query().where(s.id.in_(list(subscriber_ids))).order_by(s.id))
    return [_subscriber(row) for row in rows]


async def get_subscriber_by_code(conn: AsyncConnection, code: str) -> Subscriber:
    canonical = str(parse_subscriber_code(code))
    row = (await conn.execute(_subscriber_query().where(R.subscribers.c.code == canonical))).first()
    if row is None:
        raise NotFound("subscriber", canonical)
    return _subscriber(row)


async def create_subscriber(
    conn: AsyncConnection,
    actor: Actor,
    code: str,
    fields: Mapping[str, Any],
    *,
    currency: str,
    now: datetime,
) -> Subscriber:
    """A subscriber and its account. `fields`: any of EDITABLE (name required). Raises InvalidField (also
    for a code whose street is not registered), InvalidSubscriberCode, Conflict (code taken)."""
    parsed = parse_subscriber_code(code)
    values = _validate({"language": "en", "status": "active", **fields})
    if not values.get("name"):
        raise InvalidField("name", "a subscriber has a name")
    st = R.streets.c
    street = await conn.scalar(
        select(st.name).where(
            st.region_code == parsed.region, st.settlement_code == parsed.settlement, st.code == parsed.street
        )
    )
    if street is None:  # part of the code the caller sent: a field that is not valid, not a missing resource
        raise InvalidField(
            "code",
            f"street {parsed.region}{parsed.settlement}{parsed.street} (region {parsed.region}, settlement "
            f"{parsed.settlement}, street {parsed.street}) is not registered; the code's first 7 digits must "
            "name a registered street",
        )
    if await conn.scalar(select(R.subscribers.c.id).where(R.subscribers.c.code == str(parsed))) is not None:
        raise Conflict("subscriber", f"code {parsed} is taken")
    sid = await conn.scalar(
        insert(R.subscribers)
        .values(
            code=str(parsed),
            region_code=parsed.region,
            settlement_code=parsed.settlement,
            street_code=parsed.street,
            building=parsed.building,
            apartment=parsed.apartment,
            created_at=now,
            updated_at=now,
            **values,
        )
        .returning(R.subscribers.c.id)
    )
    assert sid is not None
    await conn.execute(insert(L.accounts).values(subscriber_id=sid, currency=currency, created_at=now))
    snapshot = {k: _jsonable(v) for k, v in values.items()}
    await conn.execute(
        insert(R.subscriber_history).values(
            subscriber_id=sid,
            changed_at=now,
            changed_by=str(actor),
            changes={k: [None, v] for k, v in snapshot.items() if v is not None},
        )
    )
    await audit.record(conn, actor, "subscriber.create", now, target=f"subscriber:{parsed}", after=snapshot)
    return await get_subscriber(conn, int(sid))


async def update_subscriber(
    conn: AsyncConnection, actor: Actor, subscriber_id: int, changes: Mapping[str, Any], now: datetime
) -> Subscriber:
    """Changes the given fields; writes one history row with {field: [before, after]} and an audit row."""
    before = await get_subscriber(conn, subscriber_id)
    values = _validate(changes)
    diff = {k: [_jsonable(getattr(before, k)), _jsonable(v)] for k, v in values.items() if getattr(before, k) != v}
    if not diff:
        return before
    await conn.execute(
        update(R.subscribers)
        .where(R.subscribers.c.id == subscriber_id)
        .values(updated_at=now, **{k: values[k] for k in diff})
    )
    await conn.execute(
        insert(R.subscriber_history).values(
            subscriber_id=subscriber_id, changed_at=now, changed_by=str(actor), changes=diff
        )
    )
    await audit.record(
        conn,
        actor,
        "subscriber.update",
        now,
        target=f"subscriber:{before.code}",
        before={k: v[0] for k, v in diff.items()},
        after={k: v[1] for k, v in diff.items()},
    )
    return await get_subscriber(conn, subscriber_id)


async def subscriber_history(conn: AsyncConnection, subscriber_id: int) -> list[HistoryEntry]:
    h = R.subscriber_history.c
    rows = await conn.execute(
        select(h.changed_at, h.changed_by, h.changes).where(h.subscriber_id == subscriber_id).order_by(h.id)
    )
    return [HistoryEntry(r.changed_at, r.changed_by, dict(r.changes)) for r in rows]


async def search_subscribers(
    conn: AsyncConnection, query: str, *, limit: int = 50, after_code: str | None = None
) -> list[Subscriber]:
    """By code prefix, name (also father's name), address (street or settlement name), phone or meter
    code; ordered by code, `after_code` for the next page."""
    s = R.subscribers.c
    text = query.strip()
    conditions = []
    if text:
        like = f"%{text.lower()}%"
        conditions += [
            func.lower(s.name).like(like),
            func.lower(s.father_name).like(like),
            func.lower(R.streets.c.name).like(like),
            func.lower(R.settlements.c.name).like(like),
            func.lower(s.contract_number) == text.lower(),
        ]
        digits = code_prefix(text)
        if digits.isascii() and digits.isdigit():
            if is_code_prefix(text):
                conditions.append(s.code.like(f"{digits}%"))
            conditions.append(s.phone.like(f"%{digits}%"))
            m = R.meters.c
            conditions.append(
                s.id.in_(select(m.subscriber_id).where(m.code.like(f"{digits}%"), m.subscriber_id.is_not(None)))
            )
        elif re.fullmatch(r"\+?[\d\s\-()]{5,}", text):
            conditions.append(s.phone.like(f"%{re.sub(r'[^0-9]', '', text)}%"))
    stmt = _subscriber_query()
    if conditions:
        stmt = stmt.where(or_(*conditions))
    if after_code is not None:
        stmt = stmt.where(s.code > after_code)
    rows = await conn.execute(stmt.order_by(s.code).limit(limit))
    return [_subscriber(r) for r in rows]


# --- meters -------------------------------------------------------------------------------------------


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


async def meters_of(conn: AsyncConnection, subscriber_id: int, *, include_archived: bool = False) -> list[Meter]:
    m = R.meters.c
    stmt = select(R.meters).where(m.subscriber_id == subscriber_id)
    if not include_archived:
        stmt = stmt.where(m.status == "active")
    return [_meter(r) for r in await conn.execute(stmt.order_by(m.id))]


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
    detail = {k: _jsonable(v) for k, v in values.items() if v is not None and k != "installed_at"}
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
