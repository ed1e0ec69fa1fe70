"""A small demo utility — an address book, subscribers with meters on a transformer, a tariff and an
operator — made through the registry's own services, so that a newcomer sees something real. Loading it
twice changes nothing."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import insert, select

from billing import registry as billing_registry
from billing import tariffs
from billing.rules.tariffs import TariffBody, TariffKind
from config import Settings
from meter_protocol import meter_code_with_check_digit
from smsmeter.masterkey import load_master_key
from store import migrate
from store.audit import Actor
from store.engine import create_engine
from store.schema import auth

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
    """A 20-digit demo meter code: 19 digits and the protocol's check digit."""
    return meter_code_with_check_digit(f"8800{serial:015d}")


async def load_demo(settings: Settings) -> None:
    master_key = load_master_key(settings)
    engine = create_engine(settings.database.url)
    actor = Actor("system", "demo")
    try:
        await migrate.upgrade(engine)
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            exists = await conn.scalar(select(auth.operators.c.id).where(auth.operators.c.username == DEMO_OPERATOR))
            if exists is not None:
                print(f"The demo utility is loaded already. Operator login: {DEMO_OPERATOR}")
                return
            password = secrets.token_urlsafe(9)
            await billing_registry.add_region(conn, actor, "64", "Nord", now)
            await billing_registry.add_settlement(conn, actor, "64", "01", "Balti", now)
            await billing_registry.add_street(conn, actor, "64", "01", "001", "Independentei", now)
            await billing_registry.add_street(conn, actor, "64", "01", "002", "Stefan cel Mare", now)
            tariff_id = await tariffs.create_tariff(conn, actor, "RES-FLAT", "Residential flat", TariffKind.FLAT, now)
            await tariffs.add_version(conn, actor, tariff_id, TariffBody.flat(215_000), now, now)
            transformer_id = await billing_registry.add_transformer(
                conn, actor, "TP-101", "TP-101 Independentei", now, feeder="F-3"
            )
            for serial, (building, apartment, name, father, phone, language) in enumerate(_SUBSCRIBERS, start=1):
                subscriber = await billing_registry.create_subscriber(
                    conn,
                    actor,
                    f"6401001{building}{apartment}",
                    {
                        "name": name,
                        "father_name": father or None,
                        "phone": phone,
                        "language": language,
                        "contract_number": f"C-{serial:05d}",
                        "tariff_id": tariff_id,
                    },
                    currency=settings.utility.currency,
                    now=now,
                )
                await billing_registry.install_meter(
                    conn,
                    actor,
                    subscriber.id,
                    billing_registry.NewMeter(
                        code=demo_meter_code(serial),
                        msisdn=f"3736900{serial:04d}",
                        make="Demo",
                        model="SM-1",
                        transformer_id=transformer_id,
                    ),
                    master_key=master_key,
                    now=now,
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
