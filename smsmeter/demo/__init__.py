"""The demo utility that `smsmeter demo` and `smsmeter serve --demo` load: three settlements, 60 subscribers
with meters on two transformers (each with a balance meter; one loses more than its alarm threshold),
flat, block and time-of-use tariffs, credit at the cashier, a subscriber without credit, arrears at every
step of the escalation, tamper / cover / magnetic alarms and 90 days of readings — written through the
registry's and billing's own services (`smsmeter.demo.seed`), described in `smsmeter.demo.data`.

Loading it twice changes nothing; both times the operator's and a subscriber's logins are printed (and
kept, readable by the owner only, in `<data_dir>/demo-login.txt`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from config import Settings
from gateway.keys import KeyRing
from smsmeter.demo import data
from smsmeter.demo.data import demo_meter_code
from smsmeter.demo.seed import Demo, seed, utc_now
from smsmeter.masterkey import load_master_key
from smsmeter.payments_wiring import payment_simulator_on, simulator_book, top_up_policy
from store import migrate
from store.engine import create_engine
from store.schema import auth
from store.uow import UnitOfWork

DEMO_OPERATOR = data.OPERATOR
__all__ = ["DEMO_OPERATOR", "demo_meter_code", "load_demo", "logins_file"]


def logins_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "demo-login.txt"


def _print_logins(path: Path) -> None:
    lines = path.read_text().split()
    if len(lines) >= 2:
        print(f"Operator login: {lines[0]} / {lines[1]}   at /login", flush=True)
    if len(lines) >= 4:
        print(
            f"Subscriber login: {lines[2]} / {lines[3]}   at /portal/login "
            "(or ask for a sign-in code: it shows in the console under SMS outbox)",
            flush=True,
        )
    print(f"(the logins are also in {path})", flush=True)


async def load_demo(settings: Settings) -> None:
    master_key = load_master_key(settings)
    engine = create_engine(settings.database.url)
    path = logins_file(settings)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            exists = await conn.scalar(select(auth.operators.c.id).where(auth.operators.c.username == DEMO_OPERATOR))
        if exists is not None:
            print("The demo utility is loaded already.", flush=True)
            if path.exists():
                _print_logins(path)
            else:
                print(f"Operator login: {DEMO_OPERATOR}", flush=True)
            return
        demo = Demo(
            uow=UnitOfWork(engine),
            keys=KeyRing(master_key),
            master_key=master_key,
            currency=settings.utility.currency,
            policy=top_up_policy(settings),
            now=utc_now(),
            provider_book=simulator_book(settings) if payment_simulator_on(settings) else None,
        )
        await seed(demo)
    finally:
        await engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n{password}\n" for name, password in demo.logins.items()))
    path.chmod(0o600)
    tariffs = ", ".join(t.code for t in data.TARIFFS)
    print(
        f"Demo utility loaded: {len(demo.placed)} subscribers with meters in {len(data.SETTLEMENTS)} settlements, "
        f"{len(data.TRANSFORMERS)} transformers with balance meters, tariffs {tariffs}, "
        f"{data.DAYS_OF_READINGS} days of readings.",
        flush=True,
    )
    _print_logins(path)
