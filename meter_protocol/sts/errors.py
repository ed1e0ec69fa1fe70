"""The STS codec's errors: one root, `StsError`, with the reason as a short text."""

from __future__ import annotations


class StsError(Exception):
    """Root of the STS codec's errors; `reason` is a short text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenRejected(StsError):
    """A typed token that does not decode: wrong digits, wrong key or a failed CRC."""
