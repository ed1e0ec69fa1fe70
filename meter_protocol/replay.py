"""The anti-replay window (docs/protocol.md §7.2), after RFC 4303 §3.4.3 (IPsec ESP).

A pure value: `check_and_mark` returns a new window and never changes the old one. The receiver keeps
one window per meter and direction (the meter keeps one for head-end counters and one for top-up
transfer ids); it accepts each counter at most once, in any order, as long as it is not `size` or more
below the highest counter accepted so far.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from meter_protocol.errors import MalformedField, OutsideWindow, Replayed

DEFAULT_WINDOW = 32  # the bitmap then fits a signed 64-bit database column
MAX_WINDOW = 1024
_HEAD = struct.Struct(">QH")


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """`highest`: the highest counter accepted (0: none yet). Bit i of `bitmap` is set when counter
    `highest - i` was accepted. Counters start at 1."""

    highest: int = 0
    bitmap: int = 0
    size: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if type(self.size) is not int or not 1 <= self.size <= MAX_WINDOW:
            raise MalformedField("window size", f"{self.size!r} outside 1..{MAX_WINDOW}")
        if type(self.highest) is not int or self.highest < 0:
            raise MalformedField("window highest", f"{self.highest!r}")
        if type(self.bitmap) is not int or not 0 <= self.bitmap < (1 << self.size):
            raise MalformedField("window bitmap", "does not fit the window size")
        if self.highest == 0 and self.bitmap:
            raise MalformedField("window bitmap", "set bits in an empty window")
        if self.highest < self.size and self.bitmap >> self.highest:
            raise MalformedField("window bitmap", "marks counters below 1")

    @property
    def lowest(self) -> int:
        """The lowest counter the window can still accept (if not seen)."""
        return max(1, self.highest - self.size + 1)

    def seen(self, counter: int) -> bool:
        if counter > self.highest:
            return False
        if counter < self.lowest:
            return True  # below the window counts as seen: it can never be accepted
        return bool(self.bitmap >> (self.highest - counter) & 1)

    def check(self, counter: int) -> None:
        """Raise Replayed or OutsideWindow if `counter` must be refused; otherwise return."""
        if counter < 1:
            raise OutsideWindow(counter, self.lowest)
        if counter > self.highest:
            return
        offset = self.highest - counter
        if offset >= self.size:
            raise OutsideWindow(counter, self.lowest)
        if self.bitmap >> offset & 1:
            raise Replayed(counter)

    def check_and_mark(self, counter: int) -> ReplayWindow:
        """The window with `counter` accepted. Raises Replayed or OutsideWindow (self is unchanged)."""
        highest, size = self.highest, self.size
        if counter > highest:
            shift = counter - highest
            bitmap = 1 if shift >= size else ((self.bitmap << shift) | 1) & ((1 << size) - 1)
            return _window(counter, bitmap, size)
        self.check(counter)
        return _window(highest, self.bitmap | 1 << (highest - counter), size)

    def to_bytes(self) -> bytes:
        """A storable form: highest (8 bytes), size (2 bytes), bitmap (size/8 bytes, rounded up)."""
        return _HEAD.pack(self.highest, self.size) + self.bitmap.to_bytes((self.size + 7) // 8, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> ReplayWindow:
        if len(data) < _HEAD.size:
            raise MalformedField("window", "too short")
        highest, size = _HEAD.unpack_from(data)
        if len(data) != _HEAD.size + (size + 7) // 8:
            raise MalformedField("window", "length does not match its size")
        return cls(highest, int.from_bytes(data[_HEAD.size :], "big"), size)


_new = object.__new__
_set_highest = vars(ReplayWindow)["highest"].__set__
_set_bitmap = vars(ReplayWindow)["bitmap"].__set__
_set_size = vars(ReplayWindow)["size"].__set__


def _window(highest: int, bitmap: int, size: int) -> ReplayWindow:
    """A window from values `check_and_mark` already knows to be consistent (skips the validation of
    `__post_init__`; this is the hot path of every frame received)."""
    window: ReplayWindow = _new(ReplayWindow)
    _set_highest(window, highest)
    _set_bitmap(window, bitmap)
    _set_size(window, size)
    return window
