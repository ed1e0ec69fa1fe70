"""The 15-digit subscriber code: region (2) · settlement (2) · street (3) · building (4) · apartment (4),
e.g. 640100100010001. Spaces, hyphens and dots between groups are accepted and dropped."""

from __future__ import annotations

from dataclasses import dataclass

from billing.errors import InvalidSubscriberCode

CODE_DIGITS = 15
_SEPARATORS = str.maketrans("", "", " -./")


@dataclass(frozen=True, slots=True)
class SubscriberCode:
    region: str
    settlement: str
    street: str
    building: str
    apartment: str

    def __str__(self) -> str:
        return f"{self.region}{self.settlement}{self.street}{self.building}{self.apartment}"

    def grouped(self) -> str:
        return f"{self.region}-{self.settlement}-{self.street}-{self.building}-{self.apartment}"


def parse_subscriber_code(code: str) -> SubscriberCode:
    """Raises InvalidSubscriberCode with the reason."""
    if not isinstance(code, str):
        raise InvalidSubscriberCode(repr(code), "a code is a string of digits")
    digits = code.translate(_SEPARATORS)
    if not digits.isascii() or not digits.isdigit():
        raise InvalidSubscriberCode(code, "only digits (spaces, hyphens or dots may group them)")
    if len(digits) != CODE_DIGITS:
        raise InvalidSubscriberCode(code, f"{CODE_DIGITS} digits expected, got {len(digits)}")
    if digits[:2] == "00":
        raise InvalidSubscriberCode(code, "region 00 does not exist")
    return SubscriberCode(digits[0:2], digits[2:4], digits[4:7], digits[7:11], digits[11:15])


def validate_subscriber_code(code: str) -> str:
    """The canonical 15-digit form of `code`."""
    return str(parse_subscriber_code(code))


def make_subscriber_code(region: str, settlement: str, street: str, building: str, apartment: str) -> str:
    """Zero-pads each group: make_subscriber_code('64', '1', '1', '1', '1') == '640100100010001'."""
    parts = [
        (region, 2, "region"),
        (settlement, 2, "settlement"),
        (street, 3, "street"),
        (building, 4, "building"),
        (apartment, 4, "apartment"),
    ]
    out = []
    for value, width, name in parts:
        text = str(value).strip()
        if not text.isascii() or not text.isdigit() or len(text) > width:
            raise InvalidSubscriberCode(text, f"{name} is at most {width} digits")
        out.append(text.zfill(width))
    return validate_subscriber_code("".join(out))


def is_code_prefix(text: str) -> bool:
    """True when `text` could start a code (1..15 digits after dropping separators)."""
    digits = text.translate(_SEPARATORS)
    return 0 < len(digits) <= CODE_DIGITS and digits.isascii() and digits.isdigit()


def code_prefix(text: str) -> str:
    return text.translate(_SEPARATORS)
