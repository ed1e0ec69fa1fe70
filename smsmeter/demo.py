"""A small demo utility — an address book, subscribers with meters, a tariff and an operator — so that a
newcomer sees something real. Loading it twice changes nothing."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import insert, select

from config import Settings
from smsmeter.masterkey import load_master_key
from store import migrate
from store.crypto import wrap_for_storage
from store.engine import create_engine
from store.schema import auth, ledger, registry

DEMO_OPERATOR = "admin"

_SUBSCRIBERS = [
    # (building, apartment, name, father's name, phone, language)
    ("0001", "0001", "Ana Popescu", "Ion", "37360000001", "ro"),
    ("0001", "0002", "Ivan Petrov", "Sergei", "37360000002", "ru"),
    ("0001", "0003", "Maria Rusu", "Vasile", "37360000003", "ro"),
    ("0002", "0001", "John Smith", "", "37360000004", "en"),
    ("0002", "0002", "Elena Ceban", "Mihai", "37360000005", "ro"),
    ("0003", "0001", "Olga Sokolova", "Pavel", "37360000006", "ru"),
]


def demo_meter_code(serial: int) -> str:
    """A 20-digit demo meter code: 19 digits and a Luhn check digit."""
    body = f"8800{serial:015d}"
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


async def load_demo(settings: Settings) -> None:
    master_key = load_master_key(settings)
    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            exists = await conn.scalar(select(auth.operators.c.id).where(auth.operators.c.username == DEMO_OPERATOR))
            if exists is not None:
                print(f"The demo utility is loaded already. Operator login: {DEMO_OPERATOR}")
                return
            password = secrets.token_urlsafe(9)
            await conn.execute(insert(registry.regions), [{"code": "64", "name": "Nord"}])
            await conn.execute(insert(registry.settlements), [{"region_code": "64", "code": "01", "name": "Balti"}])
            await conn.execute(
                insert(registry.streets),
                [
                    {"region_code": "64", "settlement_code": "01", "code": "001", "name": "Independentei"},
                    {"region_code": "64", "settlement_code": "01", "code": "002", "name": "Stefan cel Mare"},
                ],
            )
            tariff_id = await conn.scalar(
                insert(ledger.tariffs)
                .values(code="RES-FLAT", name="Residential flat", kind="flat", created_at=now)
                .returning(ledger.tariffs.c.id)
            )
            await conn.execute(
                insert(ledger.tariff_versions).values(
                    tariff_id=tariff_id,
                    version=1,
                    effective_from=now,
                    body={"kind": "flat", "price_minor_per_kwh": 215},
                    created_at=now,
                    created_by="demo",
                )
            )
            transformer_id = await conn.scalar(
                insert(registry.transformers)
                .values(code="TP-101", name="TP-101 Independentei", feeder="F-3")
                .returning(registry.transformers.c.id)
            )
            for serial, (building, apartment, name, father, phone, language) in enumerate(_SUBSCRIBERS, start=1):
                code = f"6401001{building}{apartment}"
                subscriber_id = await conn.scalar(
                    insert(registry.subscribers)
                    .values(
                        code=code,
                        region_code="64",
                        settlement_code="01",
                        street_code="001",
                        building=building,
                        apartment=apartment,
                        name=name,
                        father_name=father or None,
                        phone=phone,
                        language=language,
                        contract_number=f"C-{serial:05d}",
                        tariff_id=tariff_id,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(registry.subscribers.c.id)
                )
                await conn.execute(
                    insert(ledger.accounts).values(
                        subscriber_id=subscriber_id, currency=settings.utility.currency, created_at=now
                    )
                )
                meter_id = await conn.scalar(
                    insert(registry.meters)
                    .values(
                        code=demo_meter_code(serial),
                        subscriber_id=subscriber_id,
                        msisdn=f"3736900{serial:04d}",
                        make="Demo",
                        model="SM-1",
                        transformer_id=transformer_id,
                        installed_at=now,
                    )
                    .returning(registry.meters.c.id)
                )
                await conn.execute(
                    insert(registry.meter_keys).values(
                        meter_id=meter_id,
                        key_id=0,
                        wrapped_key=wrap_for_storage(master_key, secrets.token_bytes(16)),
                        status="active",
                        created_at=now,
                    )
                )
            await conn.execute(
                insert(auth.operators).values(
                    username=DEMO_OPERATOR,
                    display_name="Demo administrator",
                    password_hash=PasswordHasher().hash(password),
                    role="admin",
                    created_at=now,
                )
            )
        credentials = Path(settings.data_dir) / "demo-login.txt"
        credentials.parent.mkdir(parents=True, exist_ok=True)
        credentials.write_text(f"{DEMO_OPERATOR}\n{password}\n")
        credentials.chmod(0o600)
        print(f"Demo utility loaded: {len(_SUBSCRIBERS)} subscribers with meters, tariff RES-FLAT.")
        print(f"Operator login: {DEMO_OPERATOR} / {password}   (also in {credentials})")
    finally:
        await engine.dispose()
