"""The 20-digit meter code and its check digit (docs/protocol.md §4).

A meter code is 19 digits chosen by the utility (maker, batch and serial, as it likes) followed by one
Luhn check digit (ISO/IEC 7812-1, the algorithm of STS meter numbers and IMEIs): it catches every single
wrong digit and every swap of two adjacent digits except 09 <-> 90.
"""

from __future__ import annotations

from meter_protocol.errors import InvalidMeterCode

METER_CODE_DIGITS = 20
_SEPARATORS = str.maketrans("", "", " -")


def luhn_check_digit(body: str) -> int:
    """The Luhn check digit for the decimal string `body` (docs/protocol.md §4)."""
    total = 0
    # the rightmost body digit is doubled (it sits next to the check digit)
    for position, char in enumerate(reversed(body)):
        digit = ord(char) - 48
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def meter_code_with_check_digit(body: str) -> str:
    """The 20-digit meter code for a 19-digit `body`. Raises InvalidMeterCode."""
    if len(body) != METER_CODE_DIGITS - 1 or not body.isascii() or not body.isdigit():
        raise InvalidMeterCode(body, f"the body must be {METER_CODE_DIGITS - 1} digits")
    return body + str(luhn_check_digit(body))


def validate_meter_code(code: str) -> str:
    """The canonical 20-digit form of `code` (spaces and hyphens between digit groups are dropped).

    Raises InvalidMeterCode with the reason: wrong length, a non-digit, or a wrong check digit.
    """
    if not isinstance(code, str):
        raise InvalidMeterCode(repr(code), "a meter code is a string of digits")
    digits = code.translate(_SEPARATORS)
    if not digits.isascii() or not digits.isdigit():
        raise InvalidMeterCode(code, "a meter code has only digits (spaces and hyphens may group them)")
    if len(digits) != METER_CODE_DIGITS:
        raise InvalidMeterCode(code, f"a meter code has {METER_CODE_DIGITS} digits, this has {len(digits)}")
    expected = luhn_check_digit(digits[:-1])
    if int(digits[-1]) != expected:
        raise InvalidMeterCode(code, f"check digit is {digits[-1]}, expected {expected}")
    return digits


def is_valid_meter_code(code: str) -> bool:
    try:
        validate_meter_code(code)
    except InvalidMeterCode:
        return False
    return True
