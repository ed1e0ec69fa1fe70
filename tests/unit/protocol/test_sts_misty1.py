"""MISTY1 against the test vector published in RFC 2994 (key, two plaintext blocks); DKGA04 against
the published STS6 case (MISTY1, 160-bit VUDK) and the compliance suite's DKGA04 + STA credit tokens (CTSA25)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from meter_protocol.sts import (
    BASE_DATE_1993,
    BASE_DATE_2014,
    CreditKind,
    DecoderKeyParameters,
    StsError,
    decode_token,
    decoder_key_dkga04,
    encode_credit_token,
    misty1_decrypt,
    misty1_encrypt,
    token_identifier,
)

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.mark.parametrize(
    ("plaintext", "ciphertext"),
    [("0123456789abcdef", "8b1da5f56ab3d07c"), ("fedcba9876543210", "04b68240b13be95d")],
)
def test_rfc_2994_vector_both_ways(plaintext: str, ciphertext: str) -> None:
    assert misty1_encrypt(KEY, bytes.fromhex(plaintext)).hex() == ciphertext
    assert misty1_decrypt(KEY, bytes.fromhex(ciphertext)).hex() == plaintext


def test_round_trip_under_other_keys_and_a_wrong_key_does_not_decrypt() -> None:
    for key in (bytes(16), bytes(range(16)), b"\xff" * 16):
        for block in (bytes(8), b"\xff" * 8, bytes.fromhex("0001020304050607")):
            assert misty1_decrypt(key, misty1_encrypt(key, block)) == block
    sealed = misty1_encrypt(KEY, b"12345678")
    assert misty1_decrypt(bytes(16), sealed) != b"12345678"


def test_sizes_are_checked() -> None:
    with pytest.raises(StsError):
        misty1_encrypt(KEY[:8], bytes(8))
    with pytest.raises(StsError):
        misty1_encrypt(KEY, bytes(7))


VUDK_160 = bytes.fromhex("abababababababab949494949494949401234567")
METER_STS6 = DecoderKeyParameters("600727", "00000000000", 2, "123457", "01", 1)


def test_dkga04_derives_a_misty1_key_that_depends_on_every_parameter() -> None:
    key = decoder_key_dkga04(VUDK_160, METER_STS6, base_date=BASE_DATE_1993)
    assert len(key) == 16
    assert len(decoder_key_dkga04(VUDK_160, METER_STS6, base_date=BASE_DATE_1993, key_bits=64)) == 8
    others = [
        decoder_key_dkga04(VUDK_160, METER_STS6, base_date=BASE_DATE_2014),
        decoder_key_dkga04(VUDK_160, replace(METER_STS6, key_revision=2), base_date=BASE_DATE_1993),
        decoder_key_dkga04(VUDK_160, replace(METER_STS6, tariff_index="02"), base_date=BASE_DATE_1993),
        decoder_key_dkga04(VUDK_160, replace(METER_STS6, drn="00000000008"), base_date=BASE_DATE_1993),
        decoder_key_dkga04(VUDK_160[:-1] + b"\x00", METER_STS6, base_date=BASE_DATE_1993),
    ]
    assert key not in others
    assert len(set(others)) == len(others)
    token = encode_credit_token(CreditKind.ELECTRICITY, 1, 5871715, 5, key)
    assert decode_token(token, key).tid == 5871715
    with pytest.raises(StsError):
        decoder_key_dkga04(VUDK_160[:8], METER_STS6, base_date=BASE_DATE_1993)


def test_dkga04_misty1_sts6_credit_token_is_the_published_one() -> None:
    key = decoder_key_dkga04(VUDK_160, METER_STS6, base_date=BASE_DATE_1993)
    tid = token_identifier(datetime(2004, 3, 1, 13, 0, tzinfo=UTC))
    token = encode_credit_token(CreditKind.ELECTRICITY, 1, tid, 5, key)
    assert token == "59386323472137426967"
    assert decode_token(token, key).tid == tid


@pytest.mark.parametrize(
    ("base_date", "krn", "issued_at", "token"),
    [
        (BASE_DATE_1993, 1, datetime(2009, 1, 1, 8, 0, tzinfo=UTC), "15697331168573253829"),  # CTSA25 step 1
        (BASE_DATE_2014, 4, datetime(2014, 1, 1, 8, 0, tzinfo=UTC), "20324881626382980759"),  # CTSA25 step 5
    ],
)
def test_dkga04_with_sta_gives_the_published_credit_tokens(
    base_date: datetime, krn: int, issued_at: datetime, token: str
) -> None:
    key = decoder_key_dkga04(VUDK_160, replace(METER_STS6, key_revision=krn), base_date=base_date, key_bits=64)
    tid = token_identifier(issued_at, base_date)
    assert encode_credit_token(CreditKind.ELECTRICITY, 1, tid, 5, key) == token
