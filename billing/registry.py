"""The registry of subscribers: who they are, where they live, their account, and the history of every change.
Meters (install, replace, archive, transformers) are in `billing.meter_registry`; the reference tables
(regions, settlements, streets, transformers, holidays) in `billing.places`.

Use cases take the caller's connection (one transaction: the change, its history row and its audit row
commit together), the acting `Actor` and `now`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import Conflict, InvalidField, NotFound
from billing.rules.codes import code_prefix, is_code_prefix, parse_subscriber_code
from store import audit
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812

STATUSES = ("active", "suspended", "closed")
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
class HistoryEntry:
    changed_at: datetime
    changed_by: str
    changes: dict[str, list[Any]]


def jsonable(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


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
    snapshot = {k: jsonable(v) for k, v in values.items()}
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
    diff = {k: [jsonable(getattr(before, k)), jsonable(v)] for k, v in values.items() if getattr(before, k) != v}
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


async def set_portal_password_hash(conn: AsyncConnection, subscriber_id: int, password_hash: str) -> None:
    """The subscriber's portal password, as the web shell hashed it (a credential kept on the registry's row)."""
    await conn.execute(
        update(R.subscribers).where(R.subscribers.c.id == subscriber_id).values(portal_password_hash=password_hash)
    )
