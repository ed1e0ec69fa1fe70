"""The database package's errors. One root, `StoreError`."""

from __future__ import annotations


class StoreError(Exception):
    """Root of every error the store raises."""


class KeyUnwrapError(StoreError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
