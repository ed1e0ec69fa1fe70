"""The protocol's messages as values (docs/protocol.md §5, §6).

Frozen, slotted dataclasses, one per message type. Money is in integer minor units, energy in Wh,
power in W, times are integer epoch seconds (UTC) passed in by the caller. Construction validates every
field against its wire range, so a message that exists can always be encoded; a violation raises
`MalformedField`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from operator import attrgetter, lt
from typing import ClassVar

from meter_protocol.errors import MalformedField, ValueOutOfRange

U8 = 0xFF
U16 = 0xFFFF
U32 = 0xFFFF_FFFF
U64 = 0xFFFF_FFFF_FFFF_FFFF
I16 = (-0x8000, 0x7FFF)
I32 = (-0x8000_0000, 0x7FFF_FFFF)
I64 = (-0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF)

MINUTES_PER_DAY = 1440
MAX_TARIFF_STEPS = 64
MAX_PROFILE_INTERVALS = 96


class Direction(enum.IntEnum):
    """Which way a frame travels. The high bit of the message type code."""

    DOWNLINK = 0  # head end -> meter
    UPLINK = 1  # meter -> head end


class MessageType(enum.IntEnum):
    # head end -> meter
    TOP_UP = 0x01
    SET_TARIFF = 0x02
    RELAY_OFF = 0x03
    RELAY_ON = 0x04
    SET_POWER_LIMIT = 0x05
    TIME_SYNC = 0x06
    READ_REQUEST = 0x07
    KEY_CHANGE = 0x08
    CONFIGURE = 0x09
    CLEAR_TAMPER = 0x0A
    PING = 0x0B
    # meter -> head end
    ACK = 0x81
    READINGS = 0x82
    BALANCE_REPORT = 0x83
    EVENT_REPORT = 0x84
    PERIODIC_REPORT = 0x85
    LOAD_PROFILE = 0x86

    @property
    def direction(self) -> Direction:
        return Direction.UPLINK if self.value & 0x80 else Direction.DOWNLINK


class TariffKind(enum.IntEnum):
    FLAT = 0  # one step, start 0
    BLOCK = 1  # steps start at a monthly consumption in Wh
    TIME_OF_USE = 2  # steps start at a minute of the local day


class RelayReason(enum.IntEnum):
    OPERATOR = 1
    ARREARS = 2
    TAMPER = 3
    MAINTENANCE = 4
    CREDIT = 5  # credit exhausted, or restored by a top-up
    POWER_LIMIT = 6
    CUSTOMER_REQUEST = 7


class ReadItems(enum.IntFlag):
    REGISTERS = 0x01
    BALANCE = 0x02
    LOAD_PROFILE = 0x04


class AckResult(enum.IntEnum):
    OK = 0
    DUPLICATE = 1  # already applied once; nothing was done again
    REJECTED = 2  # not applied; `reason` says why


class ReasonCode(enum.IntEnum):
    NONE = 0
    MALFORMED = 1  # authentic, but the payload does not parse
    UNKNOWN_TYPE = 2
    COUNTER_TOO_OLD = 3  # below the anti-replay window: re-issue with a new counter
    TRANSFER_TOO_OLD = 4  # top-up transfer id below the transfer window: not credited
    TARIFF_OUTDATED = 5  # tariff version not newer than the active/pending one
    KEY_UNWRAP_FAILED = 6
    KEY_ID_IN_USE = 7
    VALUE_OUT_OF_RANGE = 8
    CREDIT_OVERFLOW = 9
    NO_CREDIT = 10  # relay on refused: no credit and no emergency credit
    UNSUPPORTED = 11  # e.g. a frame profile this meter does not take
    TAMPER_LATCHED = 12  # relay on refused until the tamper is cleared


class EventKind(enum.IntEnum):
    TAMPER = 1
    MAGNETIC_FIELD = 2
    COVER_OPEN = 3
    NEUTRAL_MISSING = 4
    RELAY_CHANGED = 5  # value: 1 closed, 0 open
    LOW_CREDIT = 6  # value: credit in minor units
    CREDIT_EXHAUSTED = 7  # value: credit in minor units
    OUTAGE = 8
    RESTORED = 9
    POWER_LIMIT_EXCEEDED = 10  # value: load in W
    KEY_CHANGED = 11  # value: new key id
    CLOCK_SET = 12  # value: adjustment in seconds
    EMERGENCY_CREDIT = 13  # value: credit in minor units


# --- field checks -----------------------------------------------------------------------------------


def _uint(name: str, value: object, maximum: int, minimum: int = 0) -> None:
    if type(value) is not int:
        raise MalformedField(name, f"expected an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueOutOfRange(name, f"{value} outside {minimum}..{maximum}")


def _sint(name: str, value: object, bounds: tuple[int, int]) -> None:
    _uint(name, value, bounds[1], bounds[0])


def _bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise MalformedField(name, f"expected a boolean, got {type(value).__name__}")


def _enum(name: str, value: object, cls: type[enum.Enum]) -> None:
    if not isinstance(value, cls):
        raise MalformedField(name, f"expected {cls.__name__}, got {value!r}")


# --- head end -> meter ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopUp:
    """Add credit. `transfer_id` (1..2^64-1) increases per meter in issue order; the meter credits each
    transfer id at most once (docs/protocol.md §7.3)."""

    message_type: ClassVar[MessageType] = MessageType.TOP_UP
    transfer_id: int
    amount_minor: int

    def __post_init__(self) -> None:
        _uint("transfer_id", self.transfer_id, U64, 1)
        _uint("amount_minor", self.amount_minor, U32, 1)


@dataclass(frozen=True, slots=True)
class TariffStep:
    """`start`: 0 for a flat tariff; the monthly consumption in Wh where a block begins; or the minute
    of the local day where a time-of-use band begins. Price in thousandths of a minor unit per kWh."""

    start: int
    price_milli_minor_per_kwh: int

    def __post_init__(self) -> None:
        _uint("start", self.start, U32)
        _uint("price_milli_minor_per_kwh", self.price_milli_minor_per_kwh, U32)


@dataclass(frozen=True, slots=True)
class SetTariff:
    message_type: ClassVar[MessageType] = MessageType.SET_TARIFF
    version: int  # 1..65535, must grow
    effective_at: int  # epoch s; 0 = at once
    kind: TariffKind
    standing_charge_minor_per_day: int
    steps: tuple[TariffStep, ...]

    def __post_init__(self) -> None:
        _uint("version", self.version, U16, 1)
        _uint("effective_at", self.effective_at, U32)
        _enum("kind", self.kind, TariffKind)
        _uint("standing_charge_minor_per_day", self.standing_charge_minor_per_day, U32)
        # the checks run over the whole tuple at C speed (map), not step by step in Python: a 48-band
        # tariff is decoded on the meter side at every delivery (bench/protocol.py)
        if type(self.steps) is not tuple or {*map(type, self.steps)} - {TariffStep}:
            raise MalformedField("steps", "expected a tuple of TariffStep")
        if not 1 <= len(self.steps) <= MAX_TARIFF_STEPS:
            raise ValueOutOfRange("steps", f"{len(self.steps)} steps, 1..{MAX_TARIFF_STEPS} allowed")
        starts = [*map(_START, self.steps)]
        if starts[0] != 0:
            raise ValueOutOfRange("steps", "the first step must start at 0")
        if not all(map(lt, starts, starts[1:])):
            raise ValueOutOfRange("steps", "step starts must strictly increase")
        if self.kind is TariffKind.FLAT and len(self.steps) != 1:
            raise ValueOutOfRange("steps", "a flat tariff has exactly one step")
        if self.kind is TariffKind.TIME_OF_USE and starts[-1] >= MINUTES_PER_DAY:
            raise ValueOutOfRange("steps", "a time-of-use band starts before minute 1440")


_START = attrgetter("start")


@dataclass(frozen=True, slots=True)
class RelayOff:
    message_type: ClassVar[MessageType] = MessageType.RELAY_OFF
    reason: RelayReason

    def __post_init__(self) -> None:
        _enum("reason", self.reason, RelayReason)


@dataclass(frozen=True, slots=True)
class RelayOn:
    message_type: ClassVar[MessageType] = MessageType.RELAY_ON
    reason: RelayReason

    def __post_init__(self) -> None:
        _enum("reason", self.reason, RelayReason)


@dataclass(frozen=True, slots=True)
class SetPowerLimit:
    message_type: ClassVar[MessageType] = MessageType.SET_POWER_LIMIT
    limit_w: int  # 0 = no limit

    def __post_init__(self) -> None:
        _uint("limit_w", self.limit_w, U32)


@dataclass(frozen=True, slots=True)
class TimeSync:
    message_type: ClassVar[MessageType] = MessageType.TIME_SYNC
    utc_at: int  # epoch s

    def __post_init__(self) -> None:
        _uint("utc_at", self.utc_at, U32)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    message_type: ClassVar[MessageType] = MessageType.READ_REQUEST
    items: ReadItems
    profile_since: int = 0  # epoch s; the first load-profile interval wanted

    def __post_init__(self) -> None:
        if not isinstance(self.items, ReadItems):
            raise MalformedField("items", f"expected ReadItems, got {self.items!r}")
        if not 0 < int(self.items) <= int(ReadItems.REGISTERS | ReadItems.BALANCE | ReadItems.LOAD_PROFILE):
            raise ValueOutOfRange("items", f"{int(self.items)}: at least one of the bits 0x01, 0x02, 0x04, no other")
        _uint("profile_since", self.profile_since, U32)


@dataclass(frozen=True, slots=True)
class KeyChange:
    """`wrapped_key`: the new 16-byte key wrapped under the current key (RFC 3394, 24 bytes)."""

    message_type: ClassVar[MessageType] = MessageType.KEY_CHANGE
    new_key_id: int
    wrapped_key: bytes

    def __post_init__(self) -> None:
        _uint("new_key_id", self.new_key_id, U8)
        if type(self.wrapped_key) is not bytes or len(self.wrapped_key) != 24:
            raise MalformedField("wrapped_key", "expected 24 bytes")


@dataclass(frozen=True, slots=True)
class Configure:
    """Friendly hours: no disconnection from `friendly_start_min` to `friendly_end_min` (minutes of the
    local day, wrapping midnight; equal = none) nor on the weekdays in `friendly_days` (bit 0 Monday ..
    bit 6 Sunday). Local time is UTC + `utc_offset_min`."""

    message_type: ClassVar[MessageType] = MessageType.CONFIGURE
    low_credit_minor: int
    emergency_credit_minor: int
    friendly_start_min: int = 0
    friendly_end_min: int = 0
    friendly_days: int = 0
    utc_offset_min: int = 0
    report_interval_s: int = 0  # 0 = no periodic report

    def __post_init__(self) -> None:
        _uint("low_credit_minor", self.low_credit_minor, U32)
        _uint("emergency_credit_minor", self.emergency_credit_minor, U32)
        _uint("friendly_start_min", self.friendly_start_min, MINUTES_PER_DAY - 1)
        _uint("friendly_end_min", self.friendly_end_min, MINUTES_PER_DAY - 1)
        _uint("friendly_days", self.friendly_days, 0x7F)
        _sint("utc_offset_min", self.utc_offset_min, (-720, 840))
        _uint("report_interval_s", self.report_interval_s, U32)


@dataclass(frozen=True, slots=True)
class ClearTamper:
    message_type: ClassVar[MessageType] = MessageType.CLEAR_TAMPER


@dataclass(frozen=True, slots=True)
class Ping:
    message_type: ClassVar[MessageType] = MessageType.PING


# --- meter -> head end ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """The meter's signed acknowledgement of the head-end frame with counter `acked_counter`: moves the
    command to 1:1 (docs/protocol.md §9). `credit_minor` is the balance after processing."""

    message_type: ClassVar[MessageType] = MessageType.ACK
    acked_counter: int
    acked_type: int
    result: AckResult
    reason: ReasonCode = ReasonCode.NONE
    credit_minor: int = 0

    def __post_init__(self) -> None:
        _uint("acked_counter", self.acked_counter, U32, 1)
        _uint("acked_type", self.acked_type, U8)
        _enum("result", self.result, AckResult)
        _enum("reason", self.reason, ReasonCode)
        _sint("credit_minor", self.credit_minor, I64)

    @property
    def applied(self) -> bool:
        """The command has taken effect at the meter (state 1:1): processed now (OK), or a duplicate of
        one that was (DUPLICATE with reason NONE). Otherwise it was rejected, now or the first time,
        for `reason` (docs/protocol.md §9)."""
        return self.result is AckResult.OK or (self.result is AckResult.DUPLICATE and self.reason is ReasonCode.NONE)


@dataclass(frozen=True, slots=True)
class Readings:
    message_type: ClassVar[MessageType] = MessageType.READINGS
    taken_at: int
    import_wh: int
    export_wh: int
    power_w: int
    voltage_dv: int  # decivolts

    def __post_init__(self) -> None:
        _uint("taken_at", self.taken_at, U32)
        _uint("import_wh", self.import_wh, U64)
        _uint("export_wh", self.export_wh, U64)
        _uint("power_w", self.power_w, U32)
        _uint("voltage_dv", self.voltage_dv, U16)


@dataclass(frozen=True, slots=True)
class BalanceReport:
    message_type: ClassVar[MessageType] = MessageType.BALANCE_REPORT
    taken_at: int
    credit_minor: int
    relay_closed: bool
    emergency_active: bool
    tariff_version: int
    last_transfer_id: int

    def __post_init__(self) -> None:
        _uint("taken_at", self.taken_at, U32)
        _sint("credit_minor", self.credit_minor, I64)
        _bool("relay_closed", self.relay_closed)
        _bool("emergency_active", self.emergency_active)
        _uint("tariff_version", self.tariff_version, U16)
        _uint("last_transfer_id", self.last_transfer_id, U64)


@dataclass(frozen=True, slots=True)
class EventReport:
    message_type: ClassVar[MessageType] = MessageType.EVENT_REPORT
    occurred_at: int
    event: EventKind
    value: int = 0

    def __post_init__(self) -> None:
        _uint("occurred_at", self.occurred_at, U32)
        _enum("event", self.event, EventKind)
        _sint("value", self.value, I32)


@dataclass(frozen=True, slots=True)
class PeriodicReport:
    message_type: ClassVar[MessageType] = MessageType.PERIODIC_REPORT
    taken_at: int
    import_wh: int
    power_w: int
    credit_minor: int
    relay_closed: bool
    emergency_active: bool
    tamper_latched: bool
    tariff_version: int

    def __post_init__(self) -> None:
        _uint("taken_at", self.taken_at, U32)
        _uint("import_wh", self.import_wh, U64)
        _uint("power_w", self.power_w, U32)
        _sint("credit_minor", self.credit_minor, I64)
        _bool("relay_closed", self.relay_closed)
        _bool("emergency_active", self.emergency_active)
        _bool("tamper_latched", self.tamper_latched)
        _uint("tariff_version", self.tariff_version, U16)


@dataclass(frozen=True, slots=True)
class LoadProfile:
    message_type: ClassVar[MessageType] = MessageType.LOAD_PROFILE
    start_at: int
    interval_s: int
    energies_wh: tuple[int, ...]

    def __post_init__(self) -> None:
        _uint("start_at", self.start_at, U32)
        _uint("interval_s", self.interval_s, U16, 1)
        if type(self.energies_wh) is not tuple:
            raise MalformedField("energies_wh", "expected a tuple")
        if len(self.energies_wh) > MAX_PROFILE_INTERVALS:
            raise ValueOutOfRange("energies_wh", f"{len(self.energies_wh)} intervals, at most {MAX_PROFILE_INTERVALS}")
        for value in self.energies_wh:
            _uint("energies_wh", value, U32)


Command = (
    TopUp
    | SetTariff
    | RelayOff
    | RelayOn
    | SetPowerLimit
    | TimeSync
    | ReadRequest
    | KeyChange
    | Configure
    | ClearTamper
    | Ping
)
Report = Ack | Readings | BalanceReport | EventReport | PeriodicReport | LoadProfile
Message = Command | Report

MESSAGE_CLASSES: dict[MessageType, type[Message]] = {
    cls.message_type: cls
    for cls in (
        TopUp,
        SetTariff,
        RelayOff,
        RelayOn,
        SetPowerLimit,
        TimeSync,
        ReadRequest,
        KeyChange,
        Configure,
        ClearTamper,
        Ping,
        Ack,
        Readings,
        BalanceReport,
        EventReport,
        PeriodicReport,
        LoadProfile,
    )
}
