"""The 20-digit meter code and its Luhn check digit (docs/protocol.md §4)."""

from __future__ import annotations

import pytest

from meter_protocol import InvalidMeterCode, is_valid_meter_code, meter_code_with_check_digit, validate_meter_code
from meter_protocol.meter_code import luhn_check_digit


def test_the_check_digit_is_luhn() -> None:
    assert luhn_check_digit("7992739871") == 3  # the classic Luhn example
    assert luhn_check_digit("49015420323751") == 8  # an IMEI
    assert meter_code_with_check_digit("4100000000000012345") == "41000000000000123456"


def test_validation_normalises_groups_and_explains_failures() -> None:
    code = meter_code_with_check_digit("1234567890123456789")
    assert validate_meter_code(f"{code[:4]} {code[4:8]}-{code[8:12]} {code[12:16]} {code[16:]}") == code
    with pytest.raises(InvalidMeterCode, match="20 digits"):
        validate_meter_code(code[:-1])
    with pytest.raises(InvalidMeterCode, match="only digits"):
        validate_meter_code(code[:-1] + "x")
    with pytest.raises(InvalidMeterCode, match="check digit"):
        validate_meter_code(code[:-1] + str((int(code[-1]) + 1) % 10))
    with pytest.raises(InvalidMeterCode):
        validate_meter_code("١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠")  # non-ASCII digits
    with pytest.raises(InvalidMeterCode):
        meter_code_with_check_digit("12")


def test_every_single_digit_error_and_most_adjacent_swaps_are_caught() -> None:
    code = meter_code_with_check_digit("9081726354453627180")
    for position in range(20):
        for digit in "0123456789":
            if digit != code[position]:
                assert not is_valid_meter_code(code[:position] + digit + code[position + 1 :])
    for position in range(19):
        a, b = code[position], code[position + 1]
        if a != b and {a, b} != {"0", "9"}:
            assert not is_valid_meter_code(code[:position] + b + a + code[position + 2 :])
