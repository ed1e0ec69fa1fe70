"""Binary payload layouts of every message (docs/protocol.md §6).

All integers big-endian; booleans one byte 0x00/0x01; enums one byte. Each payload is a fixed part,
then for two types a counted list. Trailing bytes are an error.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from meter_protocol.errors import MalformedField, UnknownType
from meter_protocol.messages import (
    MAX_PROFILE_INTERVALS,
    MAX_TARIFF_STEPS,
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


def _lookup(cls: type[enum.IntEnum]) -> Callable[[int], Any]:
    """A fast `cls(value)`: a dict lookup; raises ValueError for an undefined value."""
    members = {m.value: m for m in cls}

    def convert(value: int) -> Any:
        try:
            return members[value]
        except KeyError:
            raise ValueError(value) from None

    return convert


def _fast(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    if isinstance(convert, type) and issubclass(convert, enum.IntEnum):
        return _lookup(convert)
    return convert


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
    t: tuple((i, f[0], _fast(f[2])) for i, f in enumerate(fs) if f[2] is not None) for t, fs in LAYOUTS.items()
}
_TYPES = {t.value: t for t in MessageType}
_TAILED = frozenset({MessageType.SET_TARIFF, MessageType.LOAD_PROFILE})


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if not names:
        return lambda _: ()
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda message: (get(message),)
    return attrgetter(*names)


# enums and booleans are ints: struct packs them as they are
_GETTERS = {t: _getter(names) for t, names in _NAMES.items()}
_STEP = struct.Struct(">II")
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")


def encode_payload(message: Message) -> bytes:
    """The plaintext payload of `message` (docs/protocol.md §6)."""
    mtype = message.message_type
    fixed = _STRUCTS[mtype].pack(*_GETTERS[mtype](message))
    if isinstance(message, SetTariff):
        tail = _U8.pack(len(message.steps)) + b"".join(
            _STEP.pack(s.start, s.price_milli_minor_per_kwh) for s in message.steps
        )
        return fixed + tail
    if isinstance(message, LoadProfile):
        return fixed + _U8.pack(len(message.energies_wh)) + b"".join(_U32.pack(e) for e in message.energies_wh)
    return fixed


def decode_payload(type_code: int, payload: bytes) -> Message:
    """The message of type `type_code` in `payload`. Raises UnknownType, MalformedField (the payload does
    not parse: wrong length, count, undefined enum or boolean byte) or its subclass ValueOutOfRange (it
    parses, but a field breaks a rule of docs/protocol.md §6)."""
    mtype = _TYPES.get(type_code)
    if mtype is None:
        raise UnknownType(type_code)
    layout = _STRUCTS[mtype]
    size = layout.size
    tail = mtype in _TAILED
    if len(payload) != size and not (tail and len(payload) > size):
        if len(payload) < size:
            raise MalformedField("payload", f"{len(payload)} bytes, the fixed part needs {size}")
        raise MalformedField("payload", f"{len(payload) - size} trailing bytes")
    values: list[Any] = list(layout.unpack_from(payload, 0))
    for index, name, convert in _CONVERT[mtype]:
        try:
            values[index] = convert(values[index])
        except ValueError:
            raise MalformedField(name, f"value {values[index]} not defined") from None
    if tail:
        rest = payload[size:]
        if mtype is MessageType.SET_TARIFF:
            flat = _counted_flat(rest, _STEP, "steps", 1, MAX_TARIFF_STEPS)
            values.append(_steps([*zip(flat[0::2], flat[1::2], strict=True)]))
        else:
            values.append(tuple(v for (v,) in _counted(rest, _U32, "energies_wh", 0, MAX_PROFILE_INTERVALS)))
    # the layouts list the fields in the dataclasses' order (a test checks it)
    return MESSAGE_CLASSES[mtype](*values)


_new = object.__new__
_set_start = vars(TariffStep)["start"].__set__
_set_price = vars(TariffStep)["price_milli_minor_per_kwh"].__set__


def _step(start: int, price: int) -> TariffStep:
    """A TariffStep from two unpacked uint32 (always in range, so the field checks are skipped)."""
    step: TariffStep = _new(TariffStep)
    _set_start(step, start)
    _set_price(step, price)
    return step


# Tariff steps are values (frozen): the same (start, price) pair is one shared object. A utility has a
# handful of tariffs, so the same steps come back in every frame; the lookup runs at C speed (map).
_STEP_CACHE: dict[tuple[int, int], TariffStep] = {}
_STEP_CACHE_MAX = 4096


def _steps(pairs: list[tuple[int, int]]) -> tuple[TariffStep, ...]:
    found = [*map(_STEP_CACHE.get, pairs)]
    if None not in found:
        return tuple(found)  # type: ignore[arg-type]
    if len(_STEP_CACHE) > _STEP_CACHE_MAX:
        _STEP_CACHE.clear()
    for pair in pairs:
        if pair not in _STEP_CACHE:
            _STEP_CACHE[pair] = _step(*pair)
    return tuple(map(_STEP_CACHE.__getitem__, pairs))


def _counted(rest: bytes, item: struct.Struct, name: str, least: int, most: int) -> list[tuple[Any, ...]]:
    _count(rest, item, name, least, most)
    return list(item.iter_unpack(rest[1:]))


def _counted_flat(rest: bytes, item: struct.Struct, name: str, least: int, most: int) -> tuple[int, ...]:
    """The counted items' fields in one flat tuple (item after item), unpacked in one call."""
    count = _count(rest, item, name, least, most)
    return struct.unpack_from(f">{count * (item.size // 4)}I", rest, 1) if count else ()


def _count(rest: bytes, item: struct.Struct, name: str, least: int, most: int) -> int:
    """The count of a counted list. A count outside least..most is structure, not a value: malformed
    (as the schema's occurrence limits make it in the XML form)."""
    if not rest:
        raise MalformedField(name, "count byte missing")
    count = rest[0]
    if not least <= count <= most:
        raise MalformedField(name, f"count {count} outside {least}..{most}")
    if not least <= count <= most:
        raise MalformedField(name, f"count {count} outside {least}..{most}")
    if len(rest) != 1 + count * item.size:
        raise MalformedField(name, f"count {count} needs {count * item.size} bytes, {len(rest) - 1} present")
    return count
