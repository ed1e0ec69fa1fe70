"""MISTY1 against the test vector published in RFC 2994 (appendix: key, two plaintext blocks)."""

from __future__ import annotations

import pytest

from meter_protocol.sts import StsError, misty1_decrypt, misty1_encrypt

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
