"""What the demo utility contains, as plain values: addresses, people, tariffs, transformers and the cases a
newcomer should meet (credit, no credit, arrears at each step, alarms). No I/O here; `smsmeter.demo.seed`
writes it. Everything is fixed or drawn from one seeded `random.Random`, so two loads are the same utility.

The first subscribers are the ones the documentation and the journeys name:

| code | who | case |
| --- | --- | --- |
| 640100100010001 | Ana Popescu | portal password printed at start; credit on a flat tariff |
| 640100100010002 | Ivan Petrov | credit: relay off, then on again |
| 640100100010003 | Maria Rusu | block tariff |
| 640100100020001 | John Smith | credit |
| 640100100020002 | Elena Ceban | portal in Romanian, one meter |
| 640100100030001 | Olga Sokolova | no credit: the meter has cut the supply, a relay on is refused |
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from billing.alarm_rules import RuleFields
from billing.reading_plans import PlanFields
from meter_protocol import meter_code_with_check_digit

REGION = ("64", "Nord")
SEED = 17
DAYS_OF_READINGS = 90


@dataclass(frozen=True, slots=True)
class Street:
    settlement: str  # settlement code within the region
    code: str
    name: str


SETTLEMENTS = (("01", "Balti"), ("02", "Soroca"), ("03", "Edinet"))
STREETS = (
    Street("01", "001", "Independentei"),
    Street("01", "002", "Stefan cel Mare"),
    Street("02", "001", "Mihai Eminescu"),
    Street("02", "002", "Decebal"),
    Street("03", "001", "Alexandru cel Bun"),
)


class Case(StrEnum):
    """What a subscriber shows in the demo."""

    CREDIT = "credit"  # topped up at the cashier: the meter has credit
    NO_CREDIT = "no_credit"  # never paid: the meter opened its relay, relay on is refused
    ARREARS_NEW = "arrears_new"  # a debt, overdue 1 day: no notice yet
    ARREARS_REMINDER = "arrears_reminder"  # overdue past the reminder day
    ARREARS_FINAL = "arrears_final"  # overdue past the final-notice day
    ARREARS_DISCONNECT = "arrears_disconnect"  # overdue past the disconnect day: the sweep cuts the supply


ARREARS_DAYS = {
    Case.ARREARS_NEW: 1,
    Case.ARREARS_REMINDER: 4,
    Case.ARREARS_FINAL: 11,
    Case.ARREARS_DISCONNECT: 16,
}


class TariffCode(StrEnum):
    FLAT = "RES-FLAT"
    BLOCK = "RES-BLOCK"
    TOU = "RES-TOU"
    NET = "RES-NET"


@dataclass(frozen=True, slots=True)
class DemoTariff:
    code: TariffCode
    name: str
    kind: str  # billing.rules.tariffs.TariffKind value
    steps: tuple[tuple[int, int], ...]  # (start, price in thousandths of a minor unit per kWh)
    standing_minor_per_day: int = 0
    net_billing: str = "off"  # billing.rules.tariffs.NetBilling value


TARIFFS = (
    DemoTariff(TariffCode.FLAT, "Residential flat", "flat", ((0, 215_000),)),
    DemoTariff(TariffCode.BLOCK, "Residential block", "block", ((0, 180_000), (100_000, 240_000), (300_000, 320_000))),
    # night 23:00-07:00 cheap, day dear, evening peak 18:00-23:00 dearest (local minutes of the day)
    DemoTariff(
        TariffCode.TOU,
        "Residential time of use",
        "tou",
        ((0, 120_000), (420, 230_000), (1080, 310_000), (1380, 120_000)),
    ),
    # prosumers: import less export, a surplus carried over as energy to the next month
    DemoTariff(TariffCode.NET, "Prosumer net billing", "flat", ((0, 215_000),), net_billing="carry"),
)


@dataclass(frozen=True, slots=True)
class DemoTransformer:
    code: str
    name: str
    feeder: str
    loss_percent: int  # what its balance meter measures above its subscribers' meters
    settlements: tuple[str, ...]  # the settlements it feeds


TRANSFORMERS = (
    DemoTransformer("TP-101", "TP-101 Balti centre", "F-3", 6, ("01",)),
    DemoTransformer("TP-205", "TP-205 Soroca and Edinet", "F-7", 19, ("02", "03")),  # above the 10 % alarm
)
LOSS_ALARM_PERCENT = 10


@dataclass(frozen=True, slots=True)
class DemoSubscriber:
    serial: int  # from 1: the meter's code and SIM number derive from it
    street: Street
    building: str
    apartment: str
    name: str
    father_name: str
    phone: str
    language: str
    tariff: TariffCode
    case: Case
    credit_minor: int  # the cash top-up the demo takes (CREDIT), or the debt (ARREARS_*)
    daily_wh: int  # mean consumption per day

    @property
    def code(self) -> str:
        return f"{REGION[0]}{self.street.settlement}{self.street.code}{self.building}{self.apartment}"

    @property
    def meter_code(self) -> str:
        return demo_meter_code(self.serial)

    @property
    def msisdn(self) -> str:
        return f"3736900{self.serial:04d}"

    @property
    def contract_number(self) -> str:
        return f"C-{self.serial:05d}"


def demo_meter_code(serial: int) -> str:
    """A 20-digit demo meter code: 19 digits and the protocol's check digit."""
    return meter_code_with_check_digit(f"8800{serial:015d}")


def stock_meter_code(index: int) -> str:
    """A meter of the factory's last delivery, in stock (received with its key file, not installed)."""
    return meter_code_with_check_digit(f"8877{index:015d}")


STOCK_METERS = 6
DEMO_TRANSPORT_KEY = bytes.fromhex("d3e0a1b2c3d4e5f60718293a4b5c6d7e")  # what the demo's factory wraps keys under


def balance_meter_code(index: int) -> str:
    return meter_code_with_check_digit(f"8899{index:015d}")


_NAMED = (
    # (street, building, apartment, name, father's name, phone, language, tariff, case, credit)
    (STREETS[0], "0001", "0001", "Ana Popescu", "Ion", "37360000001", "ro", TariffCode.FLAT, Case.CREDIT, 15_000),
    (STREETS[0], "0001", "0002", "Ivan Petrov", "Sergei", "37360000002", "ru", TariffCode.FLAT, Case.CREDIT, 8_000),
    (STREETS[0], "0001", "0003", "Maria Rusu", "Vasile", "37360000003", "ro", TariffCode.BLOCK, Case.CREDIT, 5_000),
    (STREETS[0], "0002", "0001", "John Smith", "", "37360000004", "en", TariffCode.FLAT, Case.CREDIT, 3_000),
    (STREETS[0], "0002", "0002", "Elena Ceban", "Mihai", "37360000005", "ro", TariffCode.TOU, Case.CREDIT, 6_000),
    (STREETS[0], "0003", "0001", "Olga Sokolova", "Pavel", "37360000006", "ru", TariffCode.FLAT, Case.NO_CREDIT, 0),
)
NAMED_SUBSCRIBERS = len(_NAMED)  # serials 1..N: the people the guides and journeys follow by name

_FIRST = {
    "ro": ("Andrei", "Mihai", "Elena", "Cristina", "Victor", "Natalia", "Sorin", "Tatiana", "Dumitru", "Irina"),
    "ru": ("Sergei", "Natalia", "Dmitri", "Svetlana", "Alexei", "Irina", "Pavel", "Galina", "Oleg", "Tamara"),
    "en": ("James", "Emily", "Daniel", "Sarah", "Thomas", "Laura"),
}
_LAST = {
    "ro": ("Ciobanu", "Munteanu", "Lupu", "Rotaru", "Cojocaru", "Botnaru", "Grosu", "Moraru", "Turcanu", "Bivol"),
    "ru": ("Ivanov", "Smirnov", "Kuznetsov", "Volkov", "Morozov", "Lebedev", "Kozlov", "Novikov", "Orlov", "Pavlov"),
    "en": ("Brown", "Wilson", "Taylor", "Clarke", "Walker", "Green"),
}
_FATHERS = {"ro": ("Ion", "Gheorghe", "Vasile", "Petru"), "ru": ("Ivan", "Nikolai", "Viktor", "Petr"), "en": ("",)}
GENERATED = 54  # besides the named six: 60 subscribers in all


def subscribers() -> tuple[DemoSubscriber, ...]:
    """The named six, then generated neighbours over every street, with every case of arrears twice."""
    rng = random.Random(SEED)
    people = [
        DemoSubscriber(serial, street, building, apartment, name, father, phone, lang, tariff, case, credit, 0)
        for serial, (street, building, apartment, name, father, phone, lang, tariff, case, credit) in enumerate(
            _NAMED, start=1
        )
    ]
    arrears_cases = [Case.ARREARS_NEW, Case.ARREARS_REMINDER, Case.ARREARS_FINAL, Case.ARREARS_DISCONNECT] * 2
    taken = {(p.street, p.building, p.apartment) for p in people}
    tariffs = (TariffCode.FLAT, TariffCode.FLAT, TariffCode.BLOCK, TariffCode.TOU)
    for n in range(GENERATED):
        street = STREETS[1 + n % (len(STREETS) - 1)] if n % 5 else STREETS[0]
        while True:
            building, apartment = f"{rng.randint(4, 40):04d}", f"{rng.randint(1, 60):04d}"
            if (street, building, apartment) not in taken:
                taken.add((street, building, apartment))
                break
        language = "en" if n % 9 == 0 else ("ru" if n % 3 == 0 else "ro")
        name = f"{rng.choice(_FIRST[language])} {rng.choice(_LAST[language])}"
        if n < len(arrears_cases):
            case, credit = arrears_cases[n], rng.randrange(1_500, 9_000, 50)  # the debt
        elif n % 11 == 10:
            case, credit = Case.NO_CREDIT, 0
        else:
            case, credit = Case.CREDIT, rng.randrange(1_000, 20_000, 500)
        people.append(
            DemoSubscriber(
                serial=len(people) + 1,
                street=street,
                building=building,
                apartment=apartment,
                name=name,
                father_name=rng.choice(_FATHERS[language]),
                phone=f"373{rng.choice('67')}{rng.randint(1000000, 9999999)}",
                language=language,
                tariff=tariffs[n % len(tariffs)],
                case=case,
                credit_minor=credit,
                daily_wh=0,
            )
        )
    return tuple(_with_consumption(p, rng) for p in people)


def _with_consumption(p: DemoSubscriber, rng: random.Random) -> DemoSubscriber:
    from dataclasses import replace

    return replace(p, daily_wh=rng.randrange(3_000, 14_000, 100))


def transformer_of(subscriber: DemoSubscriber) -> DemoTransformer:
    return next(t for t in TRANSFORMERS if subscriber.street.settlement in t.settlements)


def daily_energy_wh(subscriber: DemoSubscriber, day_index: int) -> int:
    """Energy used on day `day_index` (0 = the first of the 90 days): a weekly rhythm, a slow seasonal
    rise and a day-to-day wobble, all from the subscriber's own numbers (no randomness: the same every load)."""
    weekly = (100, 96, 98, 97, 104, 118, 121)[day_index % 7]
    season = 90 + day_index * 20 // DAYS_OF_READINGS
    wobble = 85 + (subscriber.serial * 7919 + day_index * 104729) % 31
    return subscriber.daily_wh * weekly * season * wobble // 1_000_000


ALARMS = (
    # (subscriber serial, kind, severity, days ago, detail)
    (8, "tamper", "critical", 2, "terminal cover seal broken"),
    (15, "cover_open", "warning", 1, "cover opened for 4 min"),
    (23, "magnetic", "critical", 0, "magnetic field 180 mT for 12 s"),
)

OPERATOR = "admin"
OPERATOR_EMAIL = "duty-desk@demo-utility.example"
ALARM_RULES = (
    RuleFields(name="Critical alarms to the admins", kind="*", min_severity="critical", role="admin"),
    RuleFields(
        name="Relay off on tamper",
        kind="tamper",
        min_severity="critical",
        email=True,
        sms=True,
        recipients=("security@demo-utility.example", "+37369000999"),
        action="relay_off",
    ),
)
PORTAL_SUBSCRIBER = "640100100010001"  # Ana Popescu: the portal login printed at start
# STS keypads (docs/sts.md): these subscribers' meters have one; Maria Rusu's last credit is stuck (its SMS
# timed out), waiting for an operator, a cashier or the portal to turn it into a token
STS_SUPPLY_GROUP = "123456"
STS_KEYPAD_SUBSCRIBERS = ("640100100010001", "640100100010003", "640100100020001")
STS_STUCK_SUBSCRIBER = "640100100010003"
STS_STUCK_CREDIT_MINOR = 2_500

# Scheduled reading: every meter's registers each night, one transformer's load profile each Sunday.
NIGHTLY_READING = PlanFields(
    name="Nightly registers, every meter",
    items="registers",
    every="daily",
    group_kind="all",
    window_start_min=60,
    window_end_min=300,
)
WEEKLY_PROFILE_TRANSFORMER = "TP-101"
WEEKLY_PROFILE = PlanFields(
    name="Weekly load profile, TP-101",
    items="load_profile",
    every="weekly",
    weekday=6,
    group_kind="transformer",
    window_start_min=120,
    window_end_min=240,
)
SILENT_LAST_NIGHT = 3  # meters whose read request last night timed out: the run's report names them

# A water meter: the subscriber reads in m³ on the portal, the meter card and the invoice (units per utility).
WATER_SUBSCRIBER_CODE = "640100200990001"
WATER_SUBSCRIBER_NAME = "Vasile Lungu"
WATER_METER_CODE = meter_code_with_check_digit(f"8844{1:015d}")
WATER_METER_MSISDN = "37369550001"
WATER_LITRES_PER_DAY = (140, 155, 150, 165, 180, 210, 190)  # by weekday: more at the weekend

# A prosumer: rooftop solar, an export register beside the import one, on the net billing tariff.
PROSUMER_SUBSCRIBER_CODE = "640100200990002"
PROSUMER_SUBSCRIBER_NAME = "Elena Rusu"
PROSUMER_METER_CODE = meter_code_with_check_digit(f"8845{1:015d}")
PROSUMER_METER_MSISDN = "37369550002"
PROSUMER_IMPORT_WH_PER_DAY = 7_500
PROSUMER_EXPORT_WH_PER_DAY = (2_000, 5_500, 9_000, 8_000, 3_500, 10_500, 6_000)  # by weekday: the weather

REPORT_SCHEDULES = (  # (report, period, file, recipients): the console's Reports by e-mail
    ("revenue", "weekly", "pdf", ("finance@demo-utility.example",)),
    ("communication", "daily", "xlsx", ("noc@demo-utility.example",)),
)
