"""STS tokens against the published conformance numbers (STS 531-1-0 CTSA01, DKGA02 + EA07)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meter_protocol.sts import (
    BASE_DATE_2014,
    CreditKind,
    DecoderKeyParameters,
    ManagementKind,
    StsError,
    TokenRejected,
    decode_amount,
    decode_token,
    decoder_key_dkga02,
    encode_amount,
    encode_credit_token,
    encode_management_token,
    largest_amount_at_most,
    sta_decrypt,
    sta_encrypt,
    token_crc,
    token_identifier,
)

VUDK = bytes.fromhex("abababababababab")
METER_A = DecoderKeyParameters("600727", "00000000000", 2, "123456", "01", 1)  # PAN 600727000000000009
METER_B = DecoderKeyParameters("000001", "00000000008", 2, "123456", "01", 1)  # PAN 000001000000000082


def test_dkga02_gives_the_published_decoder_key() -> None:
    assert decoder_key_dkga02(VUDK, METER_A).hex() == "6ff35b9d1f3453e6"


@pytest.mark.parametrize(
    ("meter", "minute", "kind", "expected"),
    [
        (METER_A, (13, 55), CreditKind.ELECTRICITY, "23716100501183194197"),
        (METER_B, (14, 0), CreditKind.ELECTRICITY, "67206107716095682372"),
        (METER_A, (14, 5), CreditKind.WATER, "42502136492215507402"),
        (METER_B, (14, 10), CreditKind.WATER, "09109691696351271646"),
        (METER_A, (14, 15), CreditKind.GAS, "67586531586639825066"),
        (METER_B, (14, 20), CreditKind.GAS, "35758660990071466853"),
    ],
)
def test_ctsa01_credit_tokens(
    meter: DecoderKeyParameters, minute: tuple[int, int], kind: CreditKind, expected: str
) -> None:
    key = decoder_key_dkga02(VUDK, meter)
    tid = token_identifier(datetime(2004, 3, 1, *minute, tzinfo=UTC))
    token = encode_credit_token(kind, 1, tid, 5, key)
    assert token == expected
    decoded = decode_token(token, key)
    assert (decoded.token_class, decoded.subclass, decoded.random, decoded.tid) == (0, kind, 5, tid)
    assert decode_amount(decoded.field) == 1


def test_the_crc_matches_the_standards_example() -> None:
    upper48 = 12205947027712
    assert token_crc(0, upper48) == 49671


def test_sta_round_trips_and_a_wrong_key_fails() -> None:
    key = decoder_key_dkga02(VUDK, METER_A)
    for block in (0, 1, 0x0123456789ABCDEF, (1 << 64) - 1):
        assert sta_decrypt(key, sta_encrypt(key, block)) == block
    token = encode_credit_token(CreditKind.ELECTRICITY, 125, 1000, 3, key)
    with pytest.raises(TokenRejected):
        decode_token(token, decoder_key_dkga02(VUDK, METER_B))


def test_a_mistyped_digit_is_rejected() -> None:
    key = decoder_key_dkga02(VUDK, METER_A)
    token = encode_credit_token(CreditKind.ELECTRICITY, 1, 5871715, 5, key)
    typo = token[:7] + str((int(token[7]) + 1) % 10) + token[8:]
    with pytest.raises(TokenRejected):
        decode_token(typo, key)
    with pytest.raises(TokenRejected):
        decode_token("1234", key)


@pytest.mark.parametrize(
    ("kind", "value"),
    [(ManagementKind.SET_MAXIMUM_POWER, 1000), (ManagementKind.CLEAR_CREDIT, 0), (ManagementKind.CLEAR_TAMPER, 0)],
)
def test_management_tokens_round_trip(kind: ManagementKind, value: int) -> None:
    key = decoder_key_dkga02(VUDK, METER_A)
    decoded = decode_token(encode_management_token(kind, value, 6000000, 9, key), key)
    assert (decoded.token_class, decoded.subclass, decoded.field, decoded.tid) == (2, kind, value, 6000000)


def test_amounts_use_the_exponent_and_refuse_what_they_cannot_carry() -> None:
    for units in (0, 1, 16383, 16384, 16394, 17384, 180_724):
        assert decode_amount(encode_amount(units)) == units
    assert encode_amount(16383) == 0x3FFF
    with pytest.raises(StsError):
        encode_amount(16385)
    for units in (0, 16383, 16384, 16385, 20000, 180_223, 180_224, 180_250, 1_818_623, 18_201_624, 10**9):
        carried = largest_amount_at_most(units)
        assert carried <= units
        assert decode_amount(encode_amount(carried)) == carried
    assert (largest_amount_at_most(20000), largest_amount_at_most(180_250)) == (19994, 180_224)


def test_the_1993_tid_rolls_over_in_2024_and_the_2014_base_date_carries_on() -> None:
    late = datetime(2024, 12, 1, tzinfo=UTC)
    with pytest.raises(StsError):
        token_identifier(late)
    assert token_identifier(late, BASE_DATE_2014) == int((late - BASE_DATE_2014).total_seconds()) // 60


@pytest.mark.parametrize(
    ("kind", "value", "minute", "expected"),
    [
        (ManagementKind.SET_MAXIMUM_POWER, 1000, (9, 1), "50901894209860263092"),  # CTSA03, 1000 W
        (ManagementKind.CLEAR_CREDIT, 0xFFFF, (9, 15), "29511990995826640868"),  # CTSA04, all registers
        (ManagementKind.CLEAR_TAMPER, 0, (10, 0), "37037300014464855694"),  # CTSA06
    ],
)
def test_ctsa03_ctsa04_ctsa06_management_tokens(
    kind: ManagementKind, value: int, minute: tuple[int, int], expected: str
) -> None:
    key = decoder_key_dkga02(VUDK, METER_A)
    tid = token_identifier(datetime(2004, 3, 28, *minute, tzinfo=UTC))
    assert encode_management_token(kind, value, tid, 5, key) == expected
