"""The protocol's errors (docs/protocol.md §10).

One root, `ProtocolError`. Every subclass carries its reason on named attributes; `reason` is always a
short human-readable text. Decoding any input raises nothing but these.

Errors raised after a frame's tag was verified carry `authenticated = True` and the frame's `header`,
so a receiver can still acknowledge (reject) an authentic but unusable frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meter_protocol.frame import FrameHeader


class ProtocolError(Exception):
    """Root of every error the protocol raises."""

    reason: str
    header: FrameHeader | None
    authenticated: bool

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.header = None
        self.authenticated = False


class TooShort(ProtocolError):
    def __init__(self, length: int, minimum: int, what: str = "frame") -> None:
        super().__init__(f"{what} too short: {length} bytes, at least {minimum} needed")
        self.length = length
        self.minimum = minimum
        self.what = what


class Oversize(ProtocolError):
    def __init__(self, length: int, maximum: int, what: str = "frame") -> None:
        super().__init__(f"{what} too long: {length} bytes, at most {maximum} allowed")
        self.length = length
        self.maximum = maximum
        self.what = what


class UnsupportedVersion(ProtocolError):
    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported frame version {version}")
        self.version = version


class UnknownType(ProtocolError):
    def __init__(self, type_code: int) -> None:
        super().__init__(f"unknown message type 0x{type_code:02x}")
        self.type_code = type_code


class BadTag(ProtocolError):
    """The authentication tag did not verify: tampered frame, wrong key or wrong header."""

    def __init__(self, counter: int, key_id: int) -> None:
        super().__init__(f"authentication failed (counter {counter}, key id {key_id})")
        self.counter = counter
        self.key_id = key_id


class WrongMeter(ProtocolError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"frame is for meter {actual}, expected {expected}")
        self.expected = expected
        self.actual = actual


class WrongDirection(ProtocolError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"frame travels {actual}, expected {expected}")
        self.expected = expected
        self.actual = actual


class MalformedField(ProtocolError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"malformed {field}: {problem}")
        self.field = field
        self.problem = problem


class ValueOutOfRange(MalformedField):
    """A field holds a value its encoding can carry but the protocol excludes (docs/protocol.md §6: an
    amount of 0, a minute of the day above 1439, tariff steps out of order). A meter answers it with
    `rejected`, `value_out_of_range`; anything that does not parse at all is plain `MalformedField`."""


class InvalidMeterCode(MalformedField):
    def __init__(self, code: str, problem: str) -> None:
        super().__init__("meter code", problem)
        self.code = code


class BadKey(ProtocolError):
    """A key argument is not a 16-byte AES-128 key."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"bad key: {problem}")
        self.problem = problem


class UnknownKeyId(ProtocolError):
    def __init__(self, key_id: int) -> None:
        super().__init__(f"no key with id {key_id}")
        self.key_id = key_id


class KeyUnwrapFailed(ProtocolError):
    def __init__(self) -> None:
        super().__init__("wrapped key failed its integrity check (wrong key-encryption key or tampered)")


class ReplayError(ProtocolError):
    """Root of the anti-replay refusals."""

    counter: int


class Replayed(ReplayError):
    """The counter was already accepted once."""

    def __init__(self, counter: int) -> None:
        super().__init__(f"counter {counter} already seen")
        self.counter = counter


class OutsideWindow(ReplayError):
    """The counter is older than the anti-replay window remembers."""

    def __init__(self, counter: int, lowest: int) -> None:
        super().__init__(f"counter {counter} is below the window (lowest acceptable {lowest})")
        self.counter = counter
        self.lowest = lowest


class BadXml(ProtocolError):
    def __init__(self, problem: str) -> None:
        super().__init__(f"bad XML document: {problem}")
        self.problem = problem


class SegmentationError(ProtocolError):
    """Root of user-data-header and reassembly errors."""


class BadUdh(SegmentationError):
    def __init__(self, problem: str) -> None:
        super().__init__(f"bad user data header: {problem}")
        self.problem = problem


class PartConflict(SegmentationError):
    """Two parts with the same reference and sequence number differ."""

    def __init__(self, sender: str, reference: int, sequence: int) -> None:
        super().__init__(f"conflicting part {sequence} of reference {reference} from {sender}")
        self.sender = sender
        self.reference = reference
        self.sequence = sequence


class ReassemblyLimit(SegmentationError):
    """A multipart message would exceed a reassembly bound (parts, bytes)."""

    def __init__(self, limit: str, value: int, maximum: int) -> None:
        super().__init__(f"reassembly limit {limit} exceeded: {value} > {maximum}")
        self.limit = limit
        self.value = value
        self.maximum = maximum
