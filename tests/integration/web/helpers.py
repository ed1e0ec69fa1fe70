"""Seeding a small utility and signing in, for the web handler tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import insert

from meter_protocol import meter_code_with_check_digit
from store.crypto import wrap_for_storage
from store.schema import ledger, registry
from store.uow import UnitOfWork
from web import auth
from web.permissions import STAFF_ROLES

PASSWORD = "correct horse battery staple"
MASTER_KEY = bytes(range(32))
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass(frozen=True)
class Seeded:
    subscriber_ids: list[int]
    subscriber_codes: list[str]
    meter_ids: list[int]
    account_ids: list[int]
    operator_ids: dict[str, int]


async def seed(uow: UnitOfWork, now: datetime = START) -> Seeded:
    """Two subscribers with accounts, a meter each, a tariff, and one operator per staff role (user name =
    role name, password PASSWORD); subscriber A's portal password is PASSWORD too."""
    async with uow.begin() as conn:
        await conn.execute(insert(registry.regions).values(code="64", name="Nord"))
        await conn.execute(insert(registry.settlements).values(region_code="64", code="01", name="Balti"))
        await conn.execute(
            insert(registry.streets).values(region_code="64", settlement_code="01", code="001", name="Independentei")
        )
        tariff_id = await conn.scalar(
            insert(ledger.tariffs)
            .values(code="RES", name="Residential", kind="flat", created_at=now)
            .returning(ledger.tariffs.c.id)
        )
        subscriber_ids, codes, meter_ids, account_ids = [], [], [], []
        for n, (name, phone) in enumerate([("Ana Popescu", "37360000001"), ("Ivan Petrov", "37360000002")], start=1):
            code = f"64010010001000{n}"
            sid = await conn.scalar(
                insert(registry.subscribers)
                .values(
                    code=code,
                    region_code="64",
                    settlement_code="01",
                    street_code="001",
                    building="0001",
                    apartment=f"000{n}",
                    name=name,
                    phone=phone,
                    language="en",
                    tariff_id=tariff_id,
                    created_at=now,
                    updated_at=now,
                )
                .returning(registry.subscribers.c.id)
            )
            aid = await conn.scalar(
                insert(ledger.accounts)
                .values(subscriber_id=sid, currency="USD", created_at=now)
                .returning(ledger.accounts.c.id)
            )
            await conn.execute(
                insert(ledger.ledger_entries).values(
                    account_id=aid,
                    entry_type="payment",
                    amount_minor=1000 * n,
                    idempotency_key=f"seed-{n}",
                    created_at=now,
                    created_by="test",
                )
            )
            mid = await conn.scalar(
                insert(registry.meters)
                .values(
                    code=meter_code_with_check_digit(f"8800000000000000{n:03d}"),
                    subscriber_id=sid,
                    msisdn=f"3736900000{n}",
                    installed_at=now,
                )
                .returning(registry.meters.c.id)
            )
            await conn.execute(
                insert(registry.meter_keys).values(
                    meter_id=mid,
                    key_id=0,
                    wrapped_key=wrap_for_storage(MASTER_KEY, bytes([n]) * 16),
                    status="active",
                    created_at=now,
                )
            )
            subscriber_ids.append(sid)
            codes.append(code)
            meter_ids.append(mid)
            account_ids.append(aid)
        hashed = await password_hash()
        await auth.set_portal_password(conn, subscriber_ids[0], "", password_hash=hashed)
        operator_ids = {}
        for role in STAFF_ROLES:
            operator_ids[role] = await auth.create_operator(
                conn, username=role, display_name=f"The {role}", role=role, password=None, password_hash=hashed, now=now
            )
    return Seeded(subscriber_ids, codes, meter_ids, account_ids, operator_ids)


_HASH: list[str] = []


async def password_hash() -> str:
    """PASSWORD's argon2 hash, made once per run (hashing is deliberately slow)."""
    if not _HASH:
        _HASH.append(await auth.hash_password(PASSWORD))
    return _HASH[0]


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def form_token(client: TestClient, path: str) -> str:
    response = await client.get(path)
    return csrf_from(await response.text())


async def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in an operator; returns the session's CSRF token (read from the next page)."""
    token = await form_token(client, "/login")
    response = await client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    return await form_token(client, "/console/subscribers") if username != "cashier-only" else ""


async def portal_login(client: TestClient, code: str, password: str = PASSWORD) -> str:
    token = await form_token(client, "/portal/login")
    response = await client.post(
        "/portal/login", data={"code": code, "password": password, "csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    return await form_token(client, "/portal")
