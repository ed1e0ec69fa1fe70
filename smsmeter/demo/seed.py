"""Writing the demo utility (`smsmeter.demo.data`) through the registry's, the tariffs' and the ledger's own
services, step by step.

A step is `async def step(demo: Demo) -> None`. `IN_ONE_TRANSACTION` steps run in order inside one
transaction on `demo.conn` (the registry, the history and the cases); `THROUGH_USE_CASES` steps run after
it commits, each calling billing's use cases through `demo.uow` as an operator would (cash top-ups, the
transformer balances). To show something more in the demo, write a step here and list it: it finds what
the earlier steps made in `demo` (tariff, transformer, subscriber and meter ids by their demo keys).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import alarm_rules, ledger, losses, meter_registry, places, provisioning, reading_plans, topup
from billing import registry as billing_registry
from billing import sts as billing_sts
from billing import tariffs as billing_tariffs
from billing.rules.key_file import ExportRow, write_key_file
from billing.rules.ledger import Book, EntryType, Posting
from billing.rules.money import Money
from billing.rules.tariffs import NetBilling, Step, TariffBody, TariffKind
from billing.sts_vending import add_vending_key
from billing.topup import TopUpPolicy
from gateway.events import CommandSettled
from gateway.keys import KeyRing
from smsmeter.demo import data
from smsmeter.demo.data import Case, DemoSubscriber
from smsmeter.demo.online import online_payments_and_last_nights_reconciliation
from store.audit import Actor
from store.schema import auth
from store.schema.commands import alarms, balance_reports, commands, readings
from store.schema.ledger import arrears
from store.schema.registry import transformers
from store.uow import UnitOfWork
from web import scheduled_reports
from web.auth import set_portal_password
from web.queries.operators import OPERATORS


@dataclass(frozen=True, slots=True)
class Placed:
    """A demo subscriber as written: its ids."""

    person: DemoSubscriber
    subscriber_id: int
    account_id: int
    meter_id: int


@dataclass
class Demo:
    """What the steps share: where to write, when "now" is, and what earlier steps made."""

    uow: UnitOfWork
    keys: KeyRing
    master_key: bytes
    currency: str
    policy: TopUpPolicy
    now: datetime
    actor: Actor = field(default_factory=lambda: Actor("system", "demo"))
    conn: AsyncConnection | None = None  # inside IN_ONE_TRANSACTION
    people: tuple[DemoSubscriber, ...] = field(default_factory=data.subscribers)
    tariff_ids: dict[data.TariffCode, int] = field(default_factory=dict)
    transformer_ids: dict[str, int] = field(default_factory=dict)
    balance_meter_ids: dict[str, int] = field(default_factory=dict)
    placed: dict[int, Placed] = field(default_factory=dict)  # by serial
    logins: dict[str, str] = field(default_factory=dict)  # user name or subscriber code -> password
    provider_book: Path | None = None  # where the payment simulator keeps what it was paid

    @property
    def db(self) -> AsyncConnection:
        assert self.conn is not None, "a step of IN_ONE_TRANSACTION"
        return self.conn

    @property
    def midnight(self) -> datetime:
        return self.now.replace(hour=0, minute=0, second=0, microsecond=0)


DemoStep = Callable[[Demo], Awaitable[None]]


async def addresses(demo: Demo) -> None:
    region, region_name = data.REGION
    await places.add_region(demo.db, demo.actor, region, region_name, demo.now)
    for code, name in data.SETTLEMENTS:
        await places.add_settlement(demo.db, demo.actor, region, code, name, demo.now)
    for street in data.STREETS:
        await places.add_street(demo.db, demo.actor, region, street.settlement, street.code, street.name, demo.now)


async def tariffs(demo: Demo) -> None:
    since = demo.now - timedelta(days=data.DAYS_OF_READINGS + 30)
    for tariff in data.TARIFFS:
        kind = TariffKind(tariff.kind)
        tariff_id = await billing_tariffs.create_tariff(
            demo.db, demo.actor, tariff.code, tariff.name, kind, demo.now, net_billing=NetBilling(tariff.net_billing)
        )
        body = TariffBody(
            kind, tuple(Step(start, price) for start, price in tariff.steps), tariff.standing_minor_per_day
        )
        await billing_tariffs.add_version(demo.db, demo.actor, tariff_id, body, since, demo.now)
        demo.tariff_ids[tariff.code] = tariff_id


async def transformers_with_balance_meters(demo: Demo) -> None:
    for index, t in enumerate(data.TRANSFORMERS, start=1):
        transformer_id = await places.add_transformer(demo.db, demo.actor, t.code, t.name, demo.now, feeder=t.feeder)
        await demo.db.execute(
            transformers.update()
            .where(transformers.c.id == transformer_id)
            .values(loss_alarm_percent=data.LOSS_ALARM_PERCENT)
        )
        meter = await meter_registry.install_meter(
            demo.db,
            demo.actor,
            None,
            meter_registry.NewMeter(
                code=data.balance_meter_code(index),
                msisdn=f"3736990{index:04d}",
                make="Demo",
                model="BM-3",
                phases=3,
                transformer_id=transformer_id,
                is_balance_meter=True,
            ),
            master_key=demo.master_key,
            now=demo.now - timedelta(days=data.DAYS_OF_READINGS + 1),
        )
        demo.transformer_ids[t.code] = transformer_id
        demo.balance_meter_ids[t.code] = meter.id


async def subscribers_with_meters(demo: Demo) -> None:
    installed = demo.now - timedelta(days=data.DAYS_OF_READINGS + 1)
    for p in demo.people:
        subscriber = await billing_registry.create_subscriber(
            demo.db,
            demo.actor,
            p.code,
            {
                "name": p.name,
                "father_name": p.father_name or None,
                "phone": p.phone,
                "language": p.language,
                "contract_number": p.contract_number,
                "tariff_id": demo.tariff_ids[p.tariff],
            },
            currency=demo.currency,
            now=installed,
        )
        meter = await meter_registry.install_meter(
            demo.db,
            demo.actor,
            subscriber.id,
            meter_registry.NewMeter(
                code=p.meter_code,
                msisdn=p.msisdn,
                make="Demo",
                model="SM-1",
                transformer_id=demo.transformer_ids[data.transformer_of(p).code],
            ),
            master_key=demo.master_key,
            now=installed,
        )
        demo.placed[p.serial] = Placed(p, subscriber.id, subscriber.account_id, meter.id)


_DAY_SHAPE = (40, 35, 30, 30, 35, 50, 80, 110, 100, 90, 85, 90, 95, 90, 85, 90, 110, 140, 170, 180, 160, 130, 90, 60)


def _load_profile(meter_id: int, day_start: datetime, energy_wh: int) -> list[dict[str, object]]:
    """The day's energy as the meter's hourly load profile (low at night, an evening peak), as a read request
    for the load profile would have brought it."""
    total = sum(_DAY_SHAPE)
    return [
        {
            "meter_id": meter_id,
            "read_at": day_start + timedelta(hours=h),
            "register": "profile_wh",
            "value": energy_wh * w // total,
            "received_at": day_start + timedelta(days=1),
            "source": "read_request",
        }
        for h, w in enumerate(_DAY_SHAPE)
    ]


async def readings_of_90_days(demo: Demo) -> None:
    """A daily import register reading at midnight UTC for every meter, for DAYS_OF_READINGS days, and the
    hourly load profile of the last two of them; each balance meter reads its subscribers' sum plus the
    transformer's losses of the day."""
    first = demo.midnight - timedelta(days=data.DAYS_OF_READINGS)
    rows = []
    profiles: list[dict[str, object]] = []
    supplied: dict[str, list[int]] = {t.code: [0] * (data.DAYS_OF_READINGS + 1) for t in data.TRANSFORMERS}
    for placed in demo.placed.values():
        p = placed.person
        register = 1_000_000 + p.serial * 37_000  # what the meter showed when the demo's history begins
        transformer = data.transformer_of(p)
        for day in range(data.DAYS_OF_READINGS + 1):
            if day:
                register += data.daily_energy_wh(p, day - 1)
            at = first + timedelta(days=day)
            rows.append(
                {
                    "meter_id": placed.meter_id,
                    "read_at": at,
                    "register": "import_wh",
                    "value": register,
                    "received_at": at,
                }
            )
            supplied[transformer.code][day] += register
        for day in range(data.DAYS_OF_READINGS - 2, data.DAYS_OF_READINGS):
            profiles.extend(_load_profile(placed.meter_id, first + timedelta(days=day), data.daily_energy_wh(p, day)))
    for index, t in enumerate(data.TRANSFORMERS):
        totals = supplied[t.code]
        value = totals[0]
        for day, total in enumerate(totals):
            at = first + timedelta(days=day)
            if day:  # the day's losses move around the transformer's own level, by up to 2 points either way
                loss = t.loss_percent + (day * 7 + index * 3) % 5 - 2
                value += (total - totals[day - 1]) * (100 + loss) // 100
            rows.append(
                {
                    "meter_id": demo.balance_meter_ids[t.code],
                    "read_at": at,
                    "register": "import_wh",
                    "value": value,
                    "received_at": at,
                }
            )
    for start in range(0, len(rows), 2000):
        await demo.db.execute(insert(readings), rows[start : start + 2000])
    if profiles:
        await demo.db.execute(insert(readings), profiles)


async def a_water_meter(demo: Demo) -> None:
    """A subscriber with a water meter (kind water): its volume register in litres, read daily for
    DAYS_OF_READINGS days, shown in m³ wherever consumption is shown."""
    installed = demo.now - timedelta(days=data.DAYS_OF_READINGS + 1)
    subscriber = await billing_registry.create_subscriber(
        demo.db,
        demo.actor,
        data.WATER_SUBSCRIBER_CODE,
        {"name": data.WATER_SUBSCRIBER_NAME, "language": "ro", "tariff_id": demo.tariff_ids[data.TariffCode.FLAT]},
        currency=demo.currency,
        now=installed,
    )
    meter = await meter_registry.install_meter(
        demo.db,
        demo.actor,
        subscriber.id,
        meter_registry.NewMeter(
            code=data.WATER_METER_CODE, msisdn=data.WATER_METER_MSISDN, make="Demo", model="WM-1", kind="water"
        ),
        master_key=demo.master_key,
        now=installed,
    )
    first = demo.midnight - timedelta(days=data.DAYS_OF_READINGS)
    litres, rows = 120_000, []
    for day in range(data.DAYS_OF_READINGS + 1):
        at = first + timedelta(days=day)
        if day:
            litres += data.WATER_LITRES_PER_DAY[at.weekday()]
        rows.append({"meter_id": meter.id, "read_at": at, "register": "volume_l", "value": litres, "received_at": at})
    await demo.db.execute(insert(readings), rows)


async def a_prosumer(demo: Demo) -> None:
    """A subscriber with rooftop solar on the net billing tariff: the meter's import and export registers read
    daily for DAYS_OF_READINGS days; invoices bill import less export, a surplus carried to the next month."""
    installed = demo.now - timedelta(days=data.DAYS_OF_READINGS + 1)
    subscriber = await billing_registry.create_subscriber(
        demo.db,
        demo.actor,
        data.PROSUMER_SUBSCRIBER_CODE,
        {"name": data.PROSUMER_SUBSCRIBER_NAME, "language": "ro", "tariff_id": demo.tariff_ids[data.TariffCode.NET]},
        currency=demo.currency,
        now=installed,
    )
    meter = await meter_registry.install_meter(
        demo.db,
        demo.actor,
        subscriber.id,
        meter_registry.NewMeter(
            code=data.PROSUMER_METER_CODE, msisdn=data.PROSUMER_METER_MSISDN, make="Demo", model="PV-1"
        ),
        master_key=demo.master_key,
        now=installed,
    )
    first = demo.midnight - timedelta(days=data.DAYS_OF_READINGS)
    imported, exported, rows = 2_400_000, 310_000, []
    for day in range(data.DAYS_OF_READINGS + 1):
        at = first + timedelta(days=day)
        if day:
            imported += data.PROSUMER_IMPORT_WH_PER_DAY
            exported += data.PROSUMER_EXPORT_WH_PER_DAY[at.weekday()]
        for register, value in (("import_wh", imported), ("export_wh", exported)):
            rows.append({"meter_id": meter.id, "read_at": at, "register": register, "value": value, "received_at": at})
    await demo.db.execute(insert(readings), rows)


async def no_credit_meters_cut_off(demo: Demo) -> None:
    """A subscriber who never paid: the meter reported credit 0 and its relay open (it cut the supply)."""
    rows = [
        {
            "meter_id": placed.meter_id,
            "reported_at": demo.now - timedelta(days=3),
            "credit_minor": 0,
            "relay_closed": 0,
            "received_at": demo.now - timedelta(days=3),
        }
        for placed in demo.placed.values()
        if placed.person.case is Case.NO_CREDIT
    ]
    if rows:
        await demo.db.execute(insert(balance_reports), rows)


async def debts_in_arrears(demo: Demo) -> None:
    """A debt (an unpaid connection fee) overdue for 1, 4, 11 and 16 days: the arrears sweep, which runs
    when the service starts, sends the notices and the disconnect that are due."""
    for placed in demo.placed.values():
        p = placed.person
        days = data.ARREARS_DAYS.get(p.case)
        if days is None:
            continue
        since = demo.now - timedelta(days=days)
        posting = Posting(
            EntryType.FIXED_CHARGE,
            Book.DEBT,
            Money(-p.credit_minor, demo.currency),
            f"demo:debt:{p.code}",
            memo="connection fee, unpaid",
        )
        await ledger.post(demo.db, placed.account_id, [posting], created_by=str(demo.actor), now=since)
        await demo.db.execute(
            insert(arrears).values(account_id=placed.account_id, overdue_since=since, stage="none", updated_at=since)
        )


async def meter_alarms(demo: Demo) -> None:
    rows = [
        {
            "meter_id": demo.placed[serial].meter_id,
            "kind": kind,
            "severity": severity,
            "raised_at": demo.now - timedelta(days=days_ago, hours=3),
            "detail": detail,
        }
        for serial, kind, severity, days_ago, detail in data.ALARMS
    ]
    await demo.db.execute(insert(alarms), rows)


async def logins(demo: Demo) -> None:
    """The operator (admin) and one subscriber's portal password, both random, printed at start."""
    password = secrets.token_urlsafe(9)
    await demo.db.execute(
        insert(auth.operators).values(
            username=data.OPERATOR,
            display_name="Demo administrator",
            password_hash=PasswordHasher().hash(password),
            role="admin",
            email=data.OPERATOR_EMAIL,
            created_at=demo.now,
        )
    )
    demo.logins[data.OPERATOR] = password
    subscriber = next(p for p in demo.placed.values() if p.person.code == data.PORTAL_SUBSCRIBER)
    portal_password = secrets.token_urlsafe(9)
    await set_portal_password(demo.db, subscriber.subscriber_id, portal_password)
    demo.logins[data.PORTAL_SUBSCRIBER] = portal_password


async def cash_top_ups(demo: Demo) -> None:
    """Everyone with credit (and those in arrears, a little) paid at the cashier: the credit commands go
    to the meters as soon as the service runs, and debt recovery takes its share of the arrears."""
    for placed in demo.placed.values():
        p = placed.person
        if p.case is Case.CREDIT:
            amount = p.credit_minor
        elif p.case in data.ARREARS_DAYS:
            amount = 2_000
        else:
            continue
        await topup.cash_top_up(
            demo.uow,
            demo.actor,
            p.code,
            amount,
            demo.currency,
            demo.now,
            keys=demo.keys,
            request_id=f"demo-cash-{p.serial:04d}",
            policy=demo.policy,
        )


async def transformer_balances(demo: Demo) -> None:
    """The last two calendar months' energy balance per transformer (one of them above the alarm)."""
    end = demo.midnight.replace(day=1)
    for _ in range(2):
        start = (end - timedelta(days=1)).replace(day=1)
        await losses.record_transformer_balances(demo.uow, start, end, demo.now)
        end = start


async def sts_keypads(demo: Demo) -> None:
    """A vending key (random, wrapped under the master key), keypads on a few meters, and one credit stuck
    before 1:1: its command timed out, as the gateway reports a meter that never answered."""
    async with demo.uow.begin() as conn:
        await add_vending_key(
            conn, demo.actor, demo.master_key, data.STS_SUPPLY_GROUP, 1, secrets.token_bytes(8), demo.now
        )
    by_code = {p.person.code: p for p in demo.placed.values()}
    for code in data.STS_KEYPAD_SUBSCRIBERS:
        await billing_sts.register_keypad(
            demo.uow, demo.actor, by_code[code].meter_id, demo.now, supply_group_code=data.STS_SUPPLY_GROUP
        )
    placed = by_code[data.STS_STUCK_SUBSCRIBER]
    sent_at = demo.now - timedelta(hours=3)
    stuck = await topup.cash_top_up(
        demo.uow,
        demo.actor,
        placed.person.code,
        data.STS_STUCK_CREDIT_MINOR,
        demo.currency,
        sent_at,
        keys=demo.keys,
        request_id="demo-sts-stuck",
        policy=demo.policy,
    )
    assert stuck.command_id is not None
    async with demo.uow.begin() as conn:
        await conn.execute(
            update(commands)
            .where(commands.c.id == stuck.command_id)
            .values(state="timed_out", result_reason="no acknowledgement", final_at=sent_at + timedelta(hours=1))
        )
    settled = CommandSettled(stuck.command_id, placed.meter_id, "top_up", "timed_out", at=sent_at + timedelta(hours=1))
    await topup.on_command_settled(demo.uow, settled, demo.now)


IN_ONE_TRANSACTION: list[DemoStep] = [
    addresses,
    tariffs,
    transformers_with_balance_meters,
    subscribers_with_meters,
    readings_of_90_days,
    a_water_meter,
    a_prosumer,
    no_credit_meters_cut_off,
    debts_in_arrears,
    meter_alarms,
    logins,
]


async def alarm_rules_for_the_duty_desk(demo: Demo) -> None:
    """Critical alarms to the admins by e-mail, and a relay off on tamper (it runs only where the utility turns
    on `billing.alarm_actions`; the demo leaves it off, so the alarms page says why it did not run)."""
    for fields in data.ALARM_RULES:
        await alarm_rules.create_rule(demo.uow, demo.actor, fields, demo.now, operators=OPERATORS)


async def reports_by_email(demo: Demo) -> None:
    """The finance office's revenue report, weekly as PDF, and the duty desk's communication report, daily as
    XLSX (they go where the utility sets `smtp.host`; the demo has no mail server, so they wait)."""
    for report, period, fmt, recipients in data.REPORT_SCHEDULES:
        await scheduled_reports.create_schedule(demo.uow, demo.actor, report, period, recipients, demo.now, fmt=fmt)


async def meters_in_stock(demo: Demo) -> None:
    """The factory's last delivery, imported from its key file: meters in stock on the meters page."""
    rows = [
        ExportRow(
            data.stock_meter_code(n),
            f"3736988{n:04d}",
            0,
            secrets.token_bytes(16),
            "xml" if n % 3 == 0 else "binary",
            "2.4.1",
            "electricity",
        )
        for n in range(1, data.STOCK_METERS + 1)
    ]
    key_file = write_key_file(rows, data.DEMO_TRANSPORT_KEY)
    await provisioning.import_key_file(
        demo.uow,
        demo.actor,
        key_file,
        data.DEMO_TRANSPORT_KEY,
        file_name="factory-delivery-1.csv",
        master_key=demo.keys,
        now=demo.now,
    )


async def reading_plans_with_last_nights_run(demo: Demo) -> None:
    """Two reading plans, and last night's run of the nightly one through the scheduler's own pass: its read
    requests went out over the window; every meter answered but a few, whose read requests timed out (as the
    gateway reports a meter that never answered), so the run's report names them."""
    created = demo.now - timedelta(days=2)
    nightly = await reading_plans.create_plan(demo.uow, demo.actor, data.NIGHTLY_READING, created)
    weekly = dataclasses.replace(
        data.WEEKLY_PROFILE, group_code=str(demo.transformer_ids[data.WEEKLY_PROFILE_TRANSFORMER])
    )
    await reading_plans.create_plan(demo.uow, demo.actor, weekly, created)
    window = demo.midnight - timedelta(days=1) + timedelta(minutes=data.NIGHTLY_READING.window_start_min)
    for at in (window, window + timedelta(hours=4) - timedelta(seconds=1)):
        await reading_plans.run_plans(demo.uow, at, keys=demo.keys, tz=UTC, budget_per_s=0)
    async with demo.uow.begin() as conn:
        (run,) = [r for r in await reading_plans.list_runs(conn) if r["plan_id"] == nightly["id"]]
        of_run = commands.c.idempotency_key.like(f"job:{run['job_id']}:%")
        ids = list((await conn.scalars(select(commands.c.id).where(of_run).order_by(commands.c.id))).all())
        silent, answered = ids[-data.SILENT_LAST_NIGHT :], ids[: -data.SILENT_LAST_NIGHT]
        done_at = window + timedelta(hours=4)
        await conn.execute(
            update(commands)
            .where(commands.c.id.in_(answered))
            .values(state="1:1", final_at=done_at, updated_at=done_at)
        )
        await conn.execute(
            update(commands)
            .where(commands.c.id.in_(silent))
            .values(state="timed_out", result_reason="no acknowledgement", final_at=done_at, updated_at=done_at)
        )


THROUGH_USE_CASES: list[DemoStep] = [
    cash_top_ups,
    transformer_balances,
    sts_keypads,
    alarm_rules_for_the_duty_desk,
    reports_by_email,
    reading_plans_with_last_nights_run,
    meters_in_stock,
    online_payments_and_last_nights_reconciliation,
]


async def seed(demo: Demo) -> None:
    async with demo.uow.begin() as conn:
        demo.conn = conn
        for step in IN_ONE_TRANSACTION:
            await step(demo)
    demo.conn = None
    for step in THROUGH_USE_CASES:
        await step(demo)


def utc_now() -> datetime:
    return datetime.now(UTC)
