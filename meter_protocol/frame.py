"""The protected frame (docs/protocol.md §2, §3, §7).

    offset size field
    0      1    version (0x01)
    1      1    profile (0x00 binary payload, 0x01 compressed XML document)
    2      1    message type (high bit: 1 = meter -> head end)
    3      1    key id
    4      9    meter code, the 20 digits as one unsigned big-endian integer
    13     4    counter, unsigned big-endian, per meter and direction, from 1
    17     n    ciphertext of the payload
    17+n   8    CCM tag

AES-128-CCM, 8-byte tag, 13-byte nonce = meter code field (with its top bit set for meter -> head end)
|| counter. The 17 header bytes are the associated data. Pure functions: key, key id and counter go in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import NamedTuple

from cryptography.exceptions import InvalidTag

from meter_protocol.codec import decode_payload, encode_payload
from meter_protocol.errors import (
    BadTag,
    MalformedField,
    Oversize,
    ProtocolError,
    TooShort,
    UnknownType,
    UnsupportedVersion,
    WrongDirection,
    WrongMeter,
)
from meter_protocol.keys import TAG_BYTES, aead_for
from meter_protocol.messages import Direction, Message, MessageType
from meter_protocol.meter_code import METER_CODE_DIGITS, luhn_check_digit, validate_meter_code
from meter_protocol.replay import ReplayWindow

VERSION = 1
HEADER = struct.Struct(">BBBB9sI")
HEADER_BYTES = HEADER.size  # 17
MIN_FRAME_BYTES = HEADER_BYTES + TAG_BYTES  # 25
MAX_FRAME_BYTES = 4096
MAX_COUNTER = 0xFFFF_FFFF
_METER_LIMIT = 10**METER_CODE_DIGITS
_UPLINK_NONCE_BIT = 0x80


class Profile(IntEnum):
    BINARY = 0
    XML = 1


_PROFILES = {p.value: p for p in Profile}
_TYPES = {t.value: t for t in MessageType}


class FrameHeader(NamedTuple):
    """The cleartext header (an immutable value; a named tuple, as it is made for every frame)."""

    version: int
    profile: Profile
    message_type: MessageType
    key_id: int
    meter_code: str
    counter: int

    @property
    def direction(self) -> Direction:
        return Direction.UPLINK if self.message_type & 0x80 else Direction.DOWNLINK


class Decoded(NamedTuple):
    header: FrameHeader
    message: Message
    window: ReplayWindow | None  # the window with this counter marked, when one was given


@dataclass(frozen=True, slots=True)
class RawHeader:
    """The header as bytes say it, the message type not yet checked against the known types."""

    version: int
    profile: Profile
    type_code: int
    key_id: int
    meter_code: str
    counter: int


@lru_cache(maxsize=65536)
def meter_code_field(meter_code: str) -> bytes:
    """The 9-byte header field of a meter code (validated; cached, as a head end talks to the same
    meters again and again)."""
    return int(validate_meter_code(meter_code)).to_bytes(9, "big")


@lru_cache(maxsize=65536)
def _meter_code_of(field: bytes) -> str:
    number = int.from_bytes(field, "big")
    if number >= _METER_LIMIT:
        raise MalformedField("meter code", "more than 20 digits")
    code = f"{number:020d}"
    if luhn_check_digit(code[:-1]) != number % 10:
        raise MalformedField("meter code", f"{code} fails its check digit")
    return code


def nonce_for(meter_field: bytes, direction: Direction, counter: int) -> bytes:
    """The 13-byte CCM nonce: unique per key because the counter never repeats per meter and direction."""
    if direction is Direction.UPLINK:
        meter_field = bytes([meter_field[0] | _UPLINK_NONCE_BIT]) + meter_field[1:]
    return meter_field + counter.to_bytes(4, "big")


def encode_frame(
    message: Message,
    *,
    meter_code: str,
    key: bytes,
    key_id: int,
    counter: int,
    profile: Profile = Profile.BINARY,
) -> bytes:
    """The protected frame carrying `message`. `counter` (1..2^32-1) must never have been used before
    for this meter and direction (a retry re-sends the same bytes). Raises a ProtocolError subclass."""
    if profile is Profile.XML:
        from meter_protocol.documents import compress_document, message_to_xml

        payload = compress_document(message_to_xml(message, compact=True))
    else:
        payload = encode_payload(message)
    return seal_frame(
        message.message_type, payload, meter_code=meter_code, key=key, key_id=key_id, counter=counter, profile=profile
    )


def seal_frame(
    type_code: int,
    payload: bytes,
    *,
    meter_code: str,
    key: bytes,
    key_id: int,
    counter: int,
    profile: Profile = Profile.BINARY,
) -> bytes:
    """The protected frame around any plaintext `payload` with any type byte (bit 7: the direction).
    `encode_frame` seals a message's payload with it; a test bench seals with it what a conforming sender
    never sends (an unknown type, a value out of range), to see the receiver's answer."""
    if not isinstance(type_code, int) or not 0 <= type_code <= 0xFF:
        raise MalformedField("type", f"{type_code!r} outside 0..255")
    if type(key_id) is not int or not 0 <= key_id <= 0xFF:
        raise MalformedField("key_id", f"{key_id!r} outside 0..255")
    if type(counter) is not int or not 1 <= counter <= MAX_COUNTER:
        raise MalformedField("counter", f"{counter!r} outside 1..{MAX_COUNTER}")
    meter_field = meter_code_field(meter_code)
    header = HEADER.pack(VERSION, profile, type_code, key_id, meter_field, counter)
    if len(header) + len(payload) + TAG_BYTES > MAX_FRAME_BYTES:
        raise Oversize(len(header) + len(payload) + TAG_BYTES, MAX_FRAME_BYTES)
    direction = Direction.UPLINK if type_code & 0x80 else Direction.DOWNLINK
    sealed = aead_for(key).encrypt(nonce_for(meter_field, direction, counter), payload, header)
    return header + sealed


def parse_raw_header(frame: bytes) -> RawHeader:
    """The header fields without the key; the type code is not checked. Raises a ProtocolError."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise MalformedField("frame", f"expected bytes, got {type(frame).__name__}")
    if len(frame) < MIN_FRAME_BYTES:
        raise TooShort(len(frame), MIN_FRAME_BYTES)
    if len(frame) > MAX_FRAME_BYTES:
        raise Oversize(len(frame), MAX_FRAME_BYTES)
    version, profile, type_code, key_id, meter_field, counter = HEADER.unpack_from(frame)
    if version != VERSION:
        raise UnsupportedVersion(version)
    if profile not in _PROFILES:
        raise MalformedField("profile", f"unknown profile {profile}")
    code = _meter_code_of(meter_field)
    if counter == 0:
        raise MalformedField("counter", "counter 0 is never used")
    return RawHeader(version, _PROFILES[profile], type_code, key_id, code, counter)


_unpack_header = HEADER.unpack_from


def peek_header(frame: bytes) -> FrameHeader:
    """The header of `frame` read WITHOUT the key (meter identity, key id, counter, direction, type),
    so the receiver can look the key and the window up. Nothing here is authenticated yet."""
    if type(frame) is not bytes:
        if not isinstance(frame, bytearray | memoryview):
            raise MalformedField("frame", f"expected bytes, got {type(frame).__name__}")
        frame = bytes(frame)
    size = len(frame)
    if size < MIN_FRAME_BYTES:
        raise TooShort(size, MIN_FRAME_BYTES)
    if size > MAX_FRAME_BYTES:
        raise Oversize(size, MAX_FRAME_BYTES)
    version, profile, type_code, key_id, meter_field, counter = _unpack_header(frame)
    if version != VERSION:
        raise UnsupportedVersion(version)
    profile_value = _PROFILES.get(profile)
    if profile_value is None:
        raise MalformedField("profile", f"unknown profile {profile}")
    mtype = _TYPES.get(type_code)
    if mtype is None:
        raise UnknownType(type_code)
    if counter == 0:
        raise MalformedField("counter", "counter 0 is never used")
    return FrameHeader(version, profile_value, mtype, key_id, _meter_code_of(meter_field), counter)


def open_frame(frame: bytes, raw: RawHeader, key: bytes) -> bytes:
    """The verified plaintext of `frame`. Raises BadTag."""
    direction = Direction.UPLINK if raw.type_code & 0x80 else Direction.DOWNLINK
    nonce = nonce_for(bytes(frame[4:13]), direction, raw.counter)
    try:
        return aead_for(key).decrypt(nonce, bytes(frame[HEADER_BYTES:]), bytes(frame[:HEADER_BYTES]))
    except InvalidTag:
        raise BadTag(raw.counter, raw.key_id) from None


def parse_plaintext(header: FrameHeader, plaintext: bytes) -> Message:
    """The message in a verified plaintext, binary or XML profile. Raises MalformedField, BadXml."""
    if header.profile is Profile.XML:
        from meter_protocol.documents import decompress_document, message_from_xml

        message = message_from_xml(decompress_document(plaintext))
        if message.message_type is not header.message_type:
            raise MalformedField("document", "its message type differs from the header's")
        return message
    return decode_payload(header.message_type, plaintext)


def decode_frame(
    frame: bytes,
    *,
    key: bytes,
    window: ReplayWindow | None = None,
    meter_code: str | None = None,
    direction: Direction | None = None,
) -> Decoded:
    """Verify and decode `frame`.

    Checks, in order: the header (TooShort, Oversize, UnsupportedVersion, MalformedField, UnknownType),
    the expected `meter_code` (WrongMeter) and `direction` (WrongDirection), the tag (BadTag), then the
    anti-replay `window` if given (Replayed, OutsideWindow) and the payload (MalformedField, BadXml).
    Errors after the tag check carry `authenticated = True` and the header. The returned `window` has
    the counter marked; store it only if the message is then processed.
    """
    header = peek_header(frame)
    frame = bytes(frame)
    if meter_code is not None and header.meter_code != meter_code:
        raise WrongMeter(meter_code, header.meter_code)
    uplink = header.message_type & 0x80
    if direction is not None and bool(uplink) is not bool(direction):
        raise WrongDirection(direction.name.lower(), header.direction.name.lower())
    nonce = frame[4:17] if not uplink else bytes([frame[4] | _UPLINK_NONCE_BIT]) + frame[5:17]
    try:
        plaintext = aead_for(key).decrypt(nonce, frame[HEADER_BYTES:], frame[:HEADER_BYTES])
    except InvalidTag:
        raise BadTag(header.counter, header.key_id) from None
    try:
        new_window = window.check_and_mark(header.counter) if window is not None else None
        if header.profile is Profile.BINARY:
            message = decode_payload(header.message_type, plaintext)
        else:
            message = parse_plaintext(header, plaintext)
    except ProtocolError as exc:
        exc.authenticated = True
        exc.header = header
        raise
    return Decoded(header, message, new_window)
