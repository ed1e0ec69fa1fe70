"""Fitting frames into 8-bit SMS user data (docs/protocol.md §8; 3GPP TS 23.040 §9.2.3.24).

An SMS carries at most 140 octets of 8-bit user data, including the user data header (UDH) when the
UDHI bit (SMPP esm_class 0x40) is set. A frame that does not fit is split into parts, each with a
concatenation element: IEI 0x00 (8-bit reference: ref, total, sequence) or IEI 0x08 (16-bit reference).
An optional application-port element (IEI 0x05, 16-bit destination and origin ports) routes the SMS to
the meter's metering application. Reassembly is pure and bounded in parts, bytes, age and pending count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from meter_protocol.errors import BadUdh, MalformedField, PartConflict, ReassemblyLimit, TooShort
from meter_protocol.frame import MAX_FRAME_BYTES

MAX_USER_DATA = 140
IEI_CONCAT_8 = 0x00
IEI_PORTS_8 = 0x04
IEI_PORTS_16 = 0x05
IEI_CONCAT_16 = 0x08


@dataclass(frozen=True, slots=True)
class Concatenation:
    reference: int
    total: int
    sequence: int  # 1..total
    reference_bits: Literal[8, 16] = 8


@dataclass(frozen=True, slots=True)
class ApplicationPorts:
    destination: int
    origin: int


@dataclass(frozen=True, slots=True)
class UserData:
    """One SMS's user data, its header taken apart."""

    payload: bytes
    concatenation: Concatenation | None = None
    ports: ApplicationPorts | None = None


def build_udh(concatenation: Concatenation | None, ports: ApplicationPorts | None) -> bytes:
    """The user data header (with its length octet), or b"" when there is nothing to say."""
    elements = b""
    if ports is not None:
        elements += bytes([IEI_PORTS_16, 4]) + ports.destination.to_bytes(2, "big") + ports.origin.to_bytes(2, "big")
    if concatenation is not None:
        c = concatenation
        if c.reference_bits == 16:
            elements += bytes([IEI_CONCAT_16, 4]) + c.reference.to_bytes(2, "big") + bytes([c.total, c.sequence])
        else:
            elements += bytes([IEI_CONCAT_8, 3, c.reference, c.total, c.sequence])
    return bytes([len(elements)]) + elements if elements else b""


def split_frame(
    frame: bytes,
    *,
    reference: int,
    max_part: int = MAX_USER_DATA,
    reference_bits: Literal[8, 16] = 8,
    ports: ApplicationPorts | None = None,
) -> list[bytes]:
    """The SMS user-data parts carrying `frame`, each with its UDH.

    A frame that fits one SMS (with the port element, if `ports`) gives one part, and that part has a
    UDH only when `ports` is given. Otherwise every part has a UDH with a concatenation element
    (IEI 0x00 and a `reference` of 0..255, or IEI 0x08 and 0..65535) — so set the UDHI bit (esm_class
    0x40) exactly when `len(parts) > 1 or ports is not None`. Use a reference not in flight to the same
    meter (e.g. the frame's counter modulo 256).
    """
    if type(max_part) is not int or not 1 <= max_part <= MAX_USER_DATA:
        raise MalformedField("max_part", f"{max_part!r} outside 1..{MAX_USER_DATA}")
    if reference_bits not in (8, 16):
        raise MalformedField("reference_bits", f"{reference_bits!r}: 8 or 16")
    if type(reference) is not int or not 0 <= reference < (1 << reference_bits):
        raise MalformedField("reference", f"{reference!r} does not fit {reference_bits} bits")
    if ports is not None and not (0 <= ports.destination <= 0xFFFF and 0 <= ports.origin <= 0xFFFF):
        raise MalformedField("ports", "ports are 0..65535")
    if not frame:
        raise TooShort(0, 1)
    single = build_udh(None, ports)
    if len(single) + len(frame) <= max_part:
        return [single + frame]
    udh_bytes = len(build_udh(Concatenation(reference, 1, 1, reference_bits), ports))
    room = max_part - udh_bytes
    if room < 1:
        raise MalformedField("max_part", f"{max_part} leaves no room after a {udh_bytes}-byte header")
    total = -(-len(frame) // room)
    if total > 255:
        raise ReassemblyLimit("parts", total, 255)
    return [
        build_udh(Concatenation(reference, total, i + 1, reference_bits), ports) + frame[i * room : (i + 1) * room]
        for i in range(total)
    ]


def parse_user_data(body: bytes, *, has_udh: bool) -> UserData:
    """Take one SMS's user data apart. Unknown header elements are skipped. Raises BadUdh."""
    if not has_udh:
        return UserData(bytes(body))
    if not body:
        raise BadUdh("empty user data")
    udhl = body[0]
    if udhl + 1 > len(body):
        raise BadUdh(f"header length {udhl} exceeds the {len(body)}-byte user data")
    concatenation: Concatenation | None = None
    ports: ApplicationPorts | None = None
    pos, end = 1, 1 + udhl
    while pos < end:
        if pos + 2 > end:
            raise BadUdh("truncated information element")
        iei, length = body[pos], body[pos + 1]
        data = body[pos + 2 : pos + 2 + length]
        if pos + 2 + length > end:
            raise BadUdh(f"element 0x{iei:02x} overruns the header")
        if iei in (IEI_CONCAT_8, IEI_CONCAT_16):
            size = 3 if iei == IEI_CONCAT_8 else 4
            if length != size:
                raise BadUdh(f"concatenation element 0x{iei:02x} has length {length}, not {size}")
            reference = data[0] if iei == IEI_CONCAT_8 else int.from_bytes(data[:2], "big")
            total, sequence = data[-2], data[-1]
            if total == 0 or not 1 <= sequence <= total:
                raise BadUdh(f"part {sequence} of {total}")
            concatenation = Concatenation(reference, total, sequence, 8 if iei == IEI_CONCAT_8 else 16)
        elif iei in (IEI_PORTS_8, IEI_PORTS_16):
            size = 2 if iei == IEI_PORTS_8 else 4
            if length != size:
                raise BadUdh(f"port element 0x{iei:02x} has length {length}, not {size}")
            half = size // 2
            ports = ApplicationPorts(int.from_bytes(data[:half], "big"), int.from_bytes(data[half:], "big"))
        pos += 2 + length
    return UserData(bytes(body[end:]), concatenation, ports)


@dataclass(frozen=True, slots=True)
class _Partial:
    first_at: int
    parts: tuple[bytes | None, ...]
    size: int


PartsKey = tuple[str, int, int, int]  # sender, reference bits, reference, total


@dataclass(frozen=True, slots=True)
class Reassembler:
    """Pure reassembly of concatenated SMS, any order. `add` returns a new reassembler.

    Bounds: at most `max_parts` parts and `max_bytes` bytes per message, `max_pending` messages in
    progress (the oldest is dropped first), each at most `max_age_s` old (counted from its first part).
    Identical duplicate parts are ignored; a differing one raises PartConflict.
    """

    max_parts: int = 32
    max_bytes: int = MAX_FRAME_BYTES
    max_age_s: int = 3600
    max_pending: int = 1024
    pending: Mapping[PartsKey, _Partial] = field(default_factory=dict)

    @property
    def pending_count(self) -> int:
        return len(self.pending)

    def expire(self, now: int) -> Reassembler:
        """Without the messages whose first part is older than `max_age_s` at `now` (epoch s)."""
        fresh = {k: p for k, p in self.pending.items() if now - p.first_at <= self.max_age_s}
        if len(fresh) == len(self.pending):
            return self
        return self._with(fresh)

    def add(self, *, sender: str, body: bytes, has_udh: bool, now: int) -> tuple[Reassembler, bytes | None]:
        """Take one SMS. Returns the new reassembler and the complete frame once all its parts are in
        (at once for an SMS without a concatenation element). Raises BadUdh, PartConflict,
        ReassemblyLimit; the reassembler is then unchanged."""
        user_data = parse_user_data(body, has_udh=has_udh)
        concat = user_data.concatenation
        if concat is None or concat.total == 1:
            return self, user_data.payload
        if concat.total > self.max_parts:
            raise ReassemblyLimit("parts", concat.total, self.max_parts)
        state = self.expire(now)
        key = (sender, concat.reference_bits, concat.reference, concat.total)
        partial = state.pending.get(key) or _Partial(now, (None,) * concat.total, 0)
        index = concat.sequence - 1
        existing = partial.parts[index]
        if existing is not None:
            if existing == user_data.payload:
                return state, None
            raise PartConflict(sender, concat.reference, concat.sequence)
        size = partial.size + len(user_data.payload)
        if size > self.max_bytes:
            raise ReassemblyLimit("bytes", size, self.max_bytes)
        parts = (*partial.parts[:index], user_data.payload, *partial.parts[index + 1 :])
        pending = dict(state.pending)
        if all(p is not None for p in parts):
            del pending[key]
            return state._with(pending), b"".join(p for p in parts if p is not None)
        if key not in pending and len(pending) >= self.max_pending:
            oldest = min(pending, key=lambda k: pending[k].first_at)
            del pending[oldest]
        pending[key] = _Partial(partial.first_at, parts, size)
        return state._with(pending), None

    def _with(self, pending: dict[PartsKey, _Partial]) -> Reassembler:
        return Reassembler(self.max_parts, self.max_bytes, self.max_age_s, self.max_pending, pending)
