"""Binary payload layouts of every message (docs/protocol.md §6).

All integers big-endian; booleans one byte 0x00/0x01; enums one byte. Each payload is a fixed part,
then for two types a counted list. Trailing bytes are an error.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any

from meter_protocol.errors import MalformedField, UnknownType
from meter_protocol.messages import (
    MESSAGE_CLASSES,
    AckResult,
    EventKind,
    LoadProfile,
    Message,
    MessageType,
    ReadItems,
    ReasonCode,
    RelayReason,
    SetTariff,
    TariffKind,
    TariffStep,
)

# (field name, struct code, converter from the wire value; None = int as is)
Field = tuple[str, str, Callable[[Any], Any] | None]


def _flag(value: int) -> bool:
    if value not in (0, 1):
        raise ValueError(f"boolean byte must be 0 or 1, not {value}")
    return value == 1


def _read_items(value: int) -> ReadItems:
    return ReadItems(value)


LAYOUTS: dict[MessageType, tuple[Field, ...]] = {
    MessageType.TOP_UP: (("transfer_id", "Q", None), ("amount_minor", "I", None)),
    MessageType.SET_TARIFF: (
        ("version", "H", None),
        ("effective_at", "I", None),
        ("kind", "B", TariffKind),
        ("standing_charge_minor_per_day", "I", None),
    ),
    MessageType.RELAY_OFF: (("reason", "B", RelayReason),),
    MessageType.RELAY_ON: (("reason", "B", RelayReason),),
    MessageType.SET_POWER_LIMIT: (("limit_w", "I", None),),
    MessageType.TIME_SYNC: (("utc_at", "I", None),),
    MessageType.READ_REQUEST: (("items", "B", _read_items), ("profile_since", "I", None)),
    MessageType.KEY_CHANGE: (("new_key_id", "B", None), ("wrapped_key", "24s", None)),
    MessageType.CONFIGURE: (
        ("low_credit_minor", "I", None),
        ("emergency_credit_minor", "I", None),
        ("friendly_start_min", "H", None),
        ("friendly_end_min", "H", None),
        ("friendly_days", "B", None),
        ("utc_offset_min", "h", None),
        ("report_interval_s", "I", None),
    ),
    MessageType.CLEAR_TAMPER: (),
    MessageType.PING: (),
    MessageType.ACK: (
        ("acked_counter", "I", None),
        ("acked_type", "B", None),
        ("result", "B", AckResult),
        ("reason", "B", ReasonCode),
        ("credit_minor", "q", None),
    ),
    MessageType.READINGS: (
        ("taken_at", "I", None),
        ("import_wh", "Q", None),
        ("export_wh", "Q", None),
        ("power_w", "I", None),
        ("voltage_dv", "H", None),
    ),
    MessageType.BALANCE_REPORT: (
        ("taken_at", "I", None),
        ("credit_minor", "q", None),
        ("relay_closed", "B", _flag),
        ("emergency_active", "B", _flag),
        ("tariff_version", "H", None),
        ("last_transfer_id", "Q", None),
    ),
    MessageType.EVENT_REPORT: (("occurred_at", "I", None), ("event", "B", EventKind), ("value", "i", None)),
    MessageType.PERIODIC_REPORT: (
        ("taken_at", "I", None),
        ("import_wh", "Q", None),
        ("power_w", "I", None),
        ("credit_minor", "q", None),
        ("relay_closed", "B", _flag),
        ("emergency_active", "B", _flag),
        ("tamper_latched", "B", _flag),
        ("tariff_version", "H", None),
    ),
    MessageType.LOAD_PROFILE: (("start_at", "I", None), ("interval_s", "H", None)),
}

_STRUCTS: dict[MessageType, struct.Struct] = {
    t: struct.Struct(">" + "".join(code for _, code, _ in fields)) for t, fields in LAYOUTS.items()
}
_NAMES: dict[MessageType, tuple[str, ...]] = {t: tuple(f[0] for f in fs) for t, fs in LAYOUTS.items()}
_CONVERT: dict[MessageType, tuple[tuple[int, str, Callable[[Any], Any]], ...]] = {
    t: tuple((i, f[0], f[2]) for i, f in enumerate(fs) if f[2] is not None) for t, fs in LAYOUTS.items()
}
_STEP = struct.Struct(">II")
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")


def encode_payload(message: Message) -> bytes:
    """The plaintext payload of `message` (docs/protocol.md §6)."""
    mtype = message.message_type
    values = [getattr(message, name) for name in _NAMES[mtype]]
    fixed = _STRUCTS[mtype].pack(*[v.value if isinstance(v, enum.Enum) else v for v in values])
    if isinstance(message, SetTariff):
        tail = _U8.pack(len(message.steps)) + b"".join(
            _STEP.pack(s.start, s.price_milli_minor_per_kwh) for s in message.steps
        )
        return fixed + tail
    if isinstance(message, LoadProfile):
        return fixed + _U8.pack(len(message.energies_wh)) + b"".join(_U32.pack(e) for e in message.energies_wh)
    return fixed


def decode_payload(type_code: int, payload: bytes) -> Message:
    """The message of type `type_code` in `payload`. Raises UnknownType or MalformedField."""
    try:
        mtype = MessageType(type_code)
    except ValueError:
        raise UnknownType(type_code) from None
    layout = _STRUCTS[mtype]
    if len(payload) < layout.size:
        raise MalformedField("payload", f"{len(payload)} bytes, the fixed part needs {layout.size}")
    values: list[Any] = list(layout.unpack_from(payload, 0))
    for index, name, convert in _CONVERT[mtype]:
        try:
            values[index] = convert(values[index])
        except ValueError:
            raise MalformedField(name, f"value {values[index]} not defined") from None
    kwargs = dict(zip(_NAMES[mtype], values, strict=True))
    rest = payload[layout.size :]
    if mtype is MessageType.SET_TARIFF:
        kwargs["steps"] = tuple(TariffStep(a, b) for a, b in _counted(rest, _STEP, "steps"))
    elif mtype is MessageType.LOAD_PROFILE:
        kwargs["energies_wh"] = tuple(v for (v,) in _counted(rest, _U32, "energies_wh"))
    elif rest:
        raise MalformedField("payload", f"{len(rest)} trailing bytes")
    return MESSAGE_CLASSES[mtype](**kwargs)


def _counted(rest: bytes, item: struct.Struct, name: str) -> list[tuple[Any, ...]]:
    if not rest:
        raise MalformedField(name, "count byte missing")
    count = rest[0]
    if len(rest) != 1 + count * item.size:
        raise MalformedField(name, f"count {count} needs {count * item.size} bytes, {len(rest) - 1} present")
    return list(item.iter_unpack(rest[1:]))
