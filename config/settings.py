"""Typed, frozen settings and their loader.

Precedence: built-in defaults < a TOML file (`--config FILE` or `SMSMETER_CONFIG`) < environment
variables. A setting `field` of section `sec` is `[sec] field = …` in TOML and `SMSMETER_SEC_FIELD` in
the environment; a top-level setting is `field = …` and `SMSMETER_FIELD`. Values are converted by the
field's type, then each section validates itself; any failure is one `ConfigError` naming the key.
Secrets are `Secret` values: they never print, and errors never quote them.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from config.errors import ConfigError

ENV_PREFIX = "SMSMETER_"


@dataclasses.dataclass(frozen=True, slots=True)
class Secret:
    """A secret string. `str()` and `repr()` hide it; `.reveal()` gives it to the one place that needs it."""

    _value: str = dataclasses.field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "********"

    def __repr__(self) -> str:
        return "Secret('********')"


class TransportKind(enum.Enum):
    SIMULATOR = "simulator"
    SMPP = "smpp"
    MODEM = "modem"


class _InvalidSettingError(ValueError):
    """Raised by a section's validation; the loader turns it into a ConfigError naming the full key."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _require(condition: bool, field: str, reason: str) -> None:
    if not condition:
        raise _InvalidSettingError(field, reason)


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///var/smsmeter.db"
    pool_size: int = 10
    echo: bool = False

    def __post_init__(self) -> None:
        _require(self.pool_size >= 1, "pool_size", "must be at least 1")

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


@dataclasses.dataclass(frozen=True, slots=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how subscribers reach the portal (Checkout return URLs); default http://host:port

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "port", "must be a TCP port, 0-65535")
        _require(bool(self.host), "host", "must not be empty")


@dataclasses.dataclass(frozen=True, slots=True)
class SmppSettings:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: Secret | None = None
    system_type: str = ""
    source_ton: int = 3
    source_npi: int = 0
    dest_ton: int = 1
    dest_npi: int = 1
    window: int = 64
    rate_per_s: float = 0.0  # 0: no limit of our own; the SMSC's ESME_RTHROTTLED still applies
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    reconnect_max_s: float = 60.0

    def __post_init__(self) -> None:
        _require(0 < self.port <= 65535, "port", "must be a TCP port, 1-65535")
        _require(1 <= self.window <= 1024, "window", "must be 1-1024")
        _require(self.rate_per_s >= 0, "rate_per_s", "must not be negative")
        _require(len(self.system_id) <= 15, "system_id", "at most 15 characters (SMPP 3.4)")


@dataclasses.dataclass(frozen=True, slots=True)
class ModemSettings:
    port: str = "/dev/ttyUSB0"
    baudrate: int = 115200
    pin: Secret | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SimulatorSettings:
    receipt_delay_s: float = 0.2
    loss_rate: float = 0.0
    ack_delay_s: float = 0.5
    seed: int = 1
    report_interval_s: float = 60.0  # the simulated meters report their readings this often; 0: never
    fleet_capacity: int = 50_000  # simulated meters held in memory at once; others are loaded when reached

    def __post_init__(self) -> None:
        _require(0.0 <= self.loss_rate <= 1.0, "loss_rate", "must be between 0 and 1")
        _require(self.fleet_capacity >= 1, "fleet_capacity", "must be at least 1")
        _require(self.receipt_delay_s >= 0, "receipt_delay_s", "must not be negative")
        _require(self.ack_delay_s >= 0, "ack_delay_s", "must not be negative")


@dataclasses.dataclass(frozen=True, slots=True)
class StripeSettings:
    api_key: Secret | None = None
    webhook_secret: Secret | None = None
    api_base: str = ""  # empty: Stripe's own API; tests point it at an emulator
    webhook_tolerance_s: int = 300


_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,29}")


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentsSettings:
    """Payment webhooks from providers other than Stripe, the replay window, and reconciliation.

    `providers` maps a provider's name (the `{provider}` in POST /webhooks/payments/{provider}) to its
    HMAC-SHA256 secret: `[payments.providers]` in TOML, or `SMSMETER_PAYMENTS_PROVIDERS="mpesa=s1,kiosk=s2"`.
    """

    providers: dict[str, Secret] = dataclasses.field(default_factory=dict)
    replay_window_s: int = 300  # a signed timestamp older than this is refused (and replays with it)
    future_skew_s: int = 60  # a signed timestamp further ahead than this is refused (Stripe's too)
    topup_amounts_minor: str = "500,1000,2000,5000"  # amounts offered on the top-up page
    topup_min_minor: int = 100
    topup_max_minor: int = 1_000_000
    reconcile_at: str = "02:30"  # daily, UTC, HH:MM; the previous 48 hours are reconciled
    reconcile_enabled: bool = True
    delivery_check_h: int = 6  # a paid top-up whose credit command is not at 1:1 after this is reported
    reports_dir: str = "reports"  # under data_dir unless absolute
    # the built-in payment simulator in place of Stripe Checkout (docs/payments-integration.md): "auto" is on
    # only with the simulated SMS network and no stripe.api_key; "on" asks for it whatever the rest says
    simulator: Literal["auto", "on", "off"] = "auto"

    def __post_init__(self) -> None:
        for name, secret in self.providers.items():
            _require(_PROVIDER_NAME.fullmatch(name) is not None, "providers", f"bad provider name {name!r}")
            _require(name != "stripe", "providers", "stripe has its own [stripe] section")
            _require(len(secret.reveal()) >= 16, "providers", f"the secret of {name} must be at least 16 characters")
        _require(self.replay_window_s > 0, "replay_window_s", "must be positive")
        _require(self.future_skew_s >= 0, "future_skew_s", "must not be negative")
        _require(
            re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", self.reconcile_at) is not None, "reconcile_at", "must be HH:MM"
        )
        _require(self.delivery_check_h >= 1, "delivery_check_h", "must be at least 1")
        _require(0 < self.topup_min_minor <= self.topup_max_minor, "topup_min_minor", "must be positive and <= max")
        try:
            amounts = self.topup_amounts
        except ValueError:
            amounts = ()
        _require(
            bool(amounts) and all(self.topup_min_minor <= a <= self.topup_max_minor for a in amounts),
            "topup_amounts_minor",
            "must be comma-separated integers between topup_min_minor and topup_max_minor",
        )

    @property
    def topup_amounts(self) -> tuple[int, ...]:
        return tuple(int(a) for a in self.topup_amounts_minor.split(",") if a.strip())


@dataclasses.dataclass(frozen=True, slots=True)
class GatewaySettings:
    max_attempts: int = 5
    retry_base_s: float = 30.0
    ack_timeout_s: float = 3600.0
    validity_s: int = 86400
    claim_batch: int = 500
    lease_s: float = 120.0  # a dispatcher's claim on a command; after a crash others take it over then
    stuck_after_min: int = 15  # commands in 0:0 longer than this raise a `commands_stuck` alarm
    bind_down_after_s: float = 120.0  # the SMS channel unbound this long raises an `smsc_down` alarm

    def __post_init__(self) -> None:
        _require(self.max_attempts >= 1, "max_attempts", "must be at least 1")
        _require(self.lease_s > 0, "lease_s", "must be positive")
        _require(self.stuck_after_min >= 1, "stuck_after_min", "must be at least 1")
        _require(self.bind_down_after_s > 0, "bind_down_after_s", "must be positive")


@dataclasses.dataclass(frozen=True, slots=True)
class UtilitySettings:
    name: str = "Demo Utility"
    currency: str = "USD"
    timezone: str = "UTC"
    heat_unit: Literal["kWh", "Gcal"] = "kWh"  # heat meters are shown, invoiced and priced in this unit

    def __post_init__(self) -> None:
        _require(re.fullmatch(r"[A-Z]{3}", self.currency) is not None, "currency", "must be an ISO 4217 code, e.g. USD")
        _require(self.heat_unit in ("kWh", "Gcal"), "heat_unit", "must be kWh or Gcal")


@dataclasses.dataclass(frozen=True, slots=True)
class WebSettings:
    """The web shell: sessions, cookies, login throttling, languages."""

    # Keys the session and CSRF tokens (HMAC); unset: a random key per start (sessions end at a restart).
    session_secret: Secret | None = None
    session_idle_min: int = 30  # a session unused this long ends
    session_max_h: int = 12  # no session lives longer
    cookie_secure: Literal["auto", "always", "never"] = "auto"  # auto: Secure when the request came by https
    cookie_samesite: Literal["Lax", "Strict"] = "Lax"
    trust_forwarded: bool = False  # believe X-Forwarded-Proto / X-Forwarded-For (behind a reverse proxy)
    login_max_failures: int = 5  # failed logins in a row before the account is locked
    lockout_min: int = 15
    login_attempts_per_min: int = 20  # per client address, all accounts together
    default_language: Literal["en", "ro", "ru", "az", "es"] = "en"
    otp_ttl_s: int = 300  # one-time sign-in codes sent by SMS

    def __post_init__(self) -> None:
        if self.session_secret is not None:
            _require(len(self.session_secret.reveal()) >= 32, "session_secret", "must be at least 32 characters")
        _require(self.session_idle_min >= 1, "session_idle_min", "must be at least 1")
        _require(self.session_max_h >= 1, "session_max_h", "must be at least 1")
        _require(self.login_max_failures >= 1, "login_max_failures", "must be at least 1")
        _require(self.lockout_min >= 1, "lockout_min", "must be at least 1")
        _require(self.login_attempts_per_min >= 1, "login_attempts_per_min", "must be at least 1")
        _require(30 <= self.otp_ttl_s <= 3600, "otp_ttl_s", "must be 30-3600 seconds")


@dataclasses.dataclass(frozen=True, slots=True)
class RadiusSettings:
    """Operator login through a RADIUS server (PAP). Off while `server` is empty."""

    server: str = ""
    port: int = 1812
    secret: Secret | None = None
    timeout_s: float = 3.0  # per attempt
    retries: int = 1  # resends after the first attempt
    nas_identifier: str = "smsmeter"
    # The role of a RADIUS user whose reply carries no Class attribute naming one; empty: refuse the login.
    default_role: Literal["", "admin", "operator", "cashier", "viewer", "auditor"] = "viewer"

    def __post_init__(self) -> None:
        _require(0 < self.port <= 65535, "port", "must be a UDP port, 1-65535")
        _require(0 < self.timeout_s <= 30, "timeout_s", "must be more than 0 and at most 30 seconds")
        _require(0 <= self.retries <= 5, "retries", "must be 0-5")
        _require(not self.server or self.secret is not None, "secret", "is required when server is set")

    @property
    def enabled(self) -> bool:
        return bool(self.server)


@dataclasses.dataclass(frozen=True, slots=True)
class BillingSettings:
    """Prepaid and arrears policy. Amounts in minor units of the utility's currency."""

    debt_recovery_percent: int = 25  # share of every payment that repays arrears first
    low_credit_minor: int = 200  # a meter reporting this or less gets a low-credit alert
    emergency_credit_minor: int = 0  # 0: no emergency credit
    emergency_grace_days: int = 3
    min_debt_minor: int = 100  # smaller debts start no arrears
    reminder_after_days: int = 3
    final_after_days: int = 10
    disconnect_after_days: int = 15
    penalty_percent_bp: int = 0  # per overdue period, basis points of the debt (100 = 1 %)
    penalty_fixed_minor: int = 0  # per overdue period
    penalty_period_days: int = 30
    penalty_max_periods: int = 12
    night_start: str = "18:00"  # no automatic disconnect from night_start to night_end (local time)
    night_end: str = "08:00"
    weekend_days: str = "sat,sun"  # no automatic disconnect on these days (holidays: the console's calendar)
    vat_bp: int = 0  # VAT included in prices, basis points (2000 = 20 %)
    invoice_series: str = "INV"
    utility_address: str = ""
    utility_tax_id: str = ""
    sweep_interval_s: float = 3600.0  # the arrears sweep
    notice_interval_s: float = 60.0  # sending queued notices
    consumption_interval_s: float = 300.0  # the daily consumption pre-aggregate, from new readings
    report_interval_s: float = 300.0  # reports by e-mail: schedules due (midnight, or "send now") are sent
    mdm_export: bool = True  # write each finished day's readings as CSV and MeterReadings XML for an MDM
    mdm_export_dir: str = "exports"  # under data_dir unless absolute
    time_sync_days: int = 7  # a scheduled time sync to every meter whose clock was not set for this long; 0: none
    reading_share_percent: int = 50  # reading plans use at most this share of smpp.rate_per_s (the licensed rate)
    reading_interval_s: float = 30.0  # the reading plans' pass: runs that fall due start, due meters are queued
    alarm_interval_s: float = 60.0  # applying the alarm rules (notices, automatic actions), stuck commands
    alarm_actions: bool = False  # alarm rules may act (relay off on tamper, in friendly hours) only when true
    sms_answers_per_window: int = 5  # keyword answers to one number within sms_answer_window_s; more are logged only
    sms_answer_window_s: float = 600.0
    voucher_wrong_codes_per_day: int = 5  # wrong voucher codes from one number in 24 h before PAY is refused
    payment_notice: Literal["none", "sms", "email", "both"] = "none"  # told when a top-up is credited
    event_interval_s: float = 5.0  # outbound event webhooks: new events fanned out and due deliveries posted
    event_max_attempts: int = 8  # then a delivery is dead (shown in the console, sent again by a person)
    event_retry_base_s: float = 30.0  # the first retry after this, doubling
    event_retry_max_s: float = 3600.0  # the longest wait between two attempts
    event_timeout_s: float = 10.0  # a receiver that has not answered in this long has failed the attempt
    event_keep_days: int = 30  # delivered events (their deliveries and attempts) are removed after this

    def __post_init__(self) -> None:
        _require(0 <= self.debt_recovery_percent <= 100, "debt_recovery_percent", "must be 0-100")
        _require(
            0 <= self.reminder_after_days <= self.final_after_days <= self.disconnect_after_days,
            "disconnect_after_days",
            "reminder <= final <= disconnect days",
        )
        _require(0 <= self.penalty_percent_bp <= 10000, "penalty_percent_bp", "must be 0-10000")
        _require(1 <= self.reading_share_percent <= 100, "reading_share_percent", "must be 1-100")
        _require(self.reading_interval_s > 0, "reading_interval_s", "must be positive")
        _require(self.report_interval_s > 0, "report_interval_s", "must be positive")
        _require(self.sms_answers_per_window >= 1, "sms_answers_per_window", "must be at least 1")
        _require(self.voucher_wrong_codes_per_day >= 1, "voucher_wrong_codes_per_day", "must be at least 1")
        _require(self.penalty_period_days >= 1, "penalty_period_days", "must be at least 1")
        for name in ("night_start", "night_end"):
            _require(re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", getattr(self, name)) is not None, name, "must be HH:MM")
        days = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
        _require(
            all(d.strip().lower() in days for d in self.weekend_days.split(",") if d.strip()),
            "weekend_days",
            "comma-separated mon,tue,wed,thu,fri,sat,sun",
        )
        _require(0 <= self.vat_bp <= 10000, "vat_bp", "must be 0-10000")
        _require(self.event_max_attempts >= 1, "event_max_attempts", "must be at least 1")
        _require(self.event_keep_days >= 1, "event_keep_days", "must be at least 1")
        _require(0 < self.event_retry_base_s <= self.event_retry_max_s, "event_retry_base_s", "0 < base <= max")


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long the tables that grow for years keep their rows: whole months before the current one, 0 keeping
    everything. Older rows are archived to files under `archive_dir` (gzip JSON lines) when `archive` is true,
    then removed: PostgreSQL drops the month partitions, SQLite deletes in batches (docs/operations.md)."""

    command_history_months: int = 24
    command_parts_months: int = 12
    wrong_sms_months: int = 12
    webhook_events_months: int = 24
    audit_log_months: int = 0  # the audit trail: kept unless the utility's rules let it go
    readings_months: int = 0  # meter readings: billing evidence, kept unless the utility's rules let them go
    archive: bool = True
    archive_dir: str = "archive"  # under data_dir unless absolute
    batch_rows: int = 5000  # rows a transaction deletes where no partition is dropped
    months_ahead: int = 3  # PostgreSQL: month partitions created ahead of time
    interval_s: float = 86400.0  # the scheduled job: partitions ahead, then the retention

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name.endswith("_months"):
                _require(getattr(self, f.name) >= 0, f.name, "must be 0 (keep everything) or more")
        _require(self.batch_rows >= 1, "batch_rows", "must be at least 1")
        _require(1 <= self.months_ahead <= 24, "months_ahead", "must be 1-24")
        _require(self.interval_s > 0, "interval_s", "must be positive")

    def months(self) -> dict[str, int]:
        """{table: months kept}."""
        return {
            f.name.removesuffix("_months"): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name.endswith("_months")
        }


@dataclasses.dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Outgoing e-mail (notices, invoices). An empty host switches e-mail off."""

    host: str = ""
    port: int = 25
    sender: str = "billing@localhost"
    username: str = ""
    password: Secret | None = None
    starttls: bool = False
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        _require(0 < self.port <= 65535, "port", "must be a TCP port, 1-65535")
        _require("@" in self.sender, "sender", "must be an e-mail address")


@dataclasses.dataclass(frozen=True, slots=True)
class LogSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    short_number: str = "7220"
    transport: TransportKind = TransportKind.SIMULATOR
    master_key: Secret | None = None  # hex, 32 or 64 digits; unset: var/master.key is made on first start
    data_dir: str = "var"
    database: DatabaseSettings = dataclasses.field(default_factory=DatabaseSettings)
    http: HttpSettings = dataclasses.field(default_factory=HttpSettings)
    smpp: SmppSettings = dataclasses.field(default_factory=SmppSettings)
    modem: ModemSettings = dataclasses.field(default_factory=ModemSettings)
    simulator: SimulatorSettings = dataclasses.field(default_factory=SimulatorSettings)
    stripe: StripeSettings = dataclasses.field(default_factory=StripeSettings)
    payments: PaymentsSettings = dataclasses.field(default_factory=PaymentsSettings)
    gateway: GatewaySettings = dataclasses.field(default_factory=GatewaySettings)
    utility: UtilitySettings = dataclasses.field(default_factory=UtilitySettings)
    web: WebSettings = dataclasses.field(default_factory=WebSettings)
    radius: RadiusSettings = dataclasses.field(default_factory=RadiusSettings)
    billing: BillingSettings = dataclasses.field(default_factory=BillingSettings)
    smtp: SmtpSettings = dataclasses.field(default_factory=SmtpSettings)
    retention: RetentionSettings = dataclasses.field(default_factory=RetentionSettings)
    log: LogSettings = dataclasses.field(default_factory=LogSettings)

    def __post_init__(self) -> None:
        if re.fullmatch(r"\d{3,15}", self.short_number) is None:
            raise ConfigError("short_number", "must be 3 to 15 digits")
        if self.master_key is not None:
            hexkey = self.master_key.reveal()
            if re.fullmatch(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{64}", hexkey) is None:
                raise ConfigError("master_key", "must be 32 or 64 hexadecimal digits (a 128- or 256-bit key)")
        if self.transport is TransportKind.SMPP and not self.smpp.system_id:
            raise ConfigError("smpp.system_id", "is required when transport = smpp")


def _env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "_".join(p.upper() for p in path)


def _convert(key: str, hint: Any, raw: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None or raw == "":
            return None
        return _convert(key, args[0], raw)
    if origin is Literal:
        allowed = typing.get_args(hint)
        value = str(raw).upper() if all(isinstance(a, str) and a.isupper() for a in allowed) else raw
        if value not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(map(str, allowed))}")
        return value
    if origin is dict:  # a table of secrets, e.g. [payments.providers]; env: "name=value,name2=value2"
        if isinstance(raw, str):
            pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ConfigError(key, "must be name=value pairs separated by commas")
            raw = {name.strip(): value.strip() for name, value in pairs}
        if not isinstance(raw, Mapping):
            raise ConfigError(key, "must be a table")
        value_hint = typing.get_args(hint)[1]
        return {str(name): _convert(f"{key}.{name}", value_hint, value) for name, value in raw.items()}
    if hint is Secret:
        if not isinstance(raw, str):
            raise ConfigError(key, "must be a string")
        return Secret(raw)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(str(raw).lower())
        except ValueError:
            raise ConfigError(key, f"must be one of {', '.join(m.value for m in hint)}") from None
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, "must be true or false")
    if hint is int:
        if isinstance(raw, bool):
            raise ConfigError(key, "must be an integer")
        try:
            return int(str(raw).strip()) if not isinstance(raw, int) else raw
        except ValueError:
            raise ConfigError(key, "must be an integer") from None
    if hint is float:
        if isinstance(raw, bool):
            raise ConfigError(key, "must be a number")
        try:
            return float(str(raw).strip()) if not isinstance(raw, int | float) else float(raw)
        except ValueError:
            raise ConfigError(key, "must be a number") from None
    if hint is str:
        if not isinstance(raw, str | int):
            raise ConfigError(key, "must be a string")
        return str(raw)
    raise ConfigError(key, f"unsupported setting type {hint!r}")  # pragma: no cover - a programming error


def _build(cls: type[Any], prefix: tuple[str, ...], toml: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for name in toml:
        if name not in known:
            raise ConfigError(".".join((*prefix, name)), "unknown setting")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = (*prefix, f.name)
        key = ".".join(path)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            section = toml.get(f.name, {})
            if not isinstance(section, Mapping):
                raise ConfigError(key, "must be a table")
            values[f.name] = _build(typing.cast(type[Any], hint), path, section, environ)
            continue
        env = _env_name(path)
        if env in environ:
            values[f.name] = _convert(key, hint, environ[env])
        elif f.name in toml:
            values[f.name] = _convert(key, hint, toml[f.name])
    try:
        return cls(**values)
    except _InvalidSettingError as exc:
        raise ConfigError(".".join((*prefix, exc.field)), exc.reason) from None


def _normalise_database_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


def load_settings(config_file: str | Path | None, environ: Mapping[str, str]) -> Settings:
    """Build the settings from defaults, an optional TOML file and the given environment.

    `config_file` None falls back to `SMSMETER_CONFIG` in `environ`. Raises `ConfigError`.
    """
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    toml: dict[str, Any] = {}
    if path:
        try:
            with Path(path).open("rb") as fh:
                toml = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    unknown_env = sorted(
        k for k in environ if k.startswith(ENV_PREFIX) and k != ENV_PREFIX + "CONFIG" and k not in _ALL_ENV_NAMES
    )
    if unknown_env:
        raise ConfigError(unknown_env[0], "unknown setting in the environment")
    settings: Settings = _build(Settings, (), toml, environ)
    database = dataclasses.replace(settings.database, url=_normalise_database_url(settings.database.url))
    return dataclasses.replace(settings, database=database)


def _all_env_names(cls: type[Any], prefix: tuple[str, ...]) -> set[str]:
    names: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            names |= _all_env_names(typing.cast(type[Any], hint), (*prefix, f.name))
        else:
            names.add(_env_name((*prefix, f.name)))
    return names


_ALL_ENV_NAMES = frozenset(_all_env_names(Settings, ()))
