"""Billing's errors: one root, `BillingError`; every subclass carries its reason on named attributes."""

from __future__ import annotations


class BillingError(Exception):
    """The root of every error billing raises on purpose. `reason` is a short human sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidMoney(BillingError):
    pass


class CurrencyMismatch(BillingError):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"currency {got} where {expected} was expected")
        self.expected = expected
        self.got = got


class InvalidSubscriberCode(BillingError):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"subscriber code {code!r}: {reason}")
        self.code = code
        self.detail = reason


class InvalidTariff(BillingError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"tariff {field}: {reason}")
        self.field = field
        self.detail = reason


class InvalidPosting(BillingError):
    pass


class InsufficientFunds(BillingError):
    def __init__(self, available_minor: int, wanted_minor: int) -> None:
        super().__init__(f"{wanted_minor} wanted, only {available_minor} available")
        self.available_minor = available_minor
        self.wanted_minor = wanted_minor


class NotFound(BillingError):
    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"no {what} {key!r}")
        self.what = what
        self.key = key


class Conflict(BillingError):
    """The request contradicts what is stored (a duplicate code, a meter already installed, ...)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.detail = reason


class InvalidField(BillingError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.detail = reason


class ImportRejected(BillingError):
    """An all-or-nothing import stopped: `rejects` lists (row number, reason) for every bad row."""

    def __init__(self, rejects: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(rejects)} rows rejected; nothing was imported")
        self.rejects = rejects
