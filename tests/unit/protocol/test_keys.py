"""Per-meter keys: derivation (SP 800-108 with AES-CMAC) and wrapping (RFC 3394) (docs/protocol.md §3)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from meter_protocol import BadKey, KeyUnwrapFailed, MalformedField, derive_meter_key, unwrap_key, wrap_key
from tests.unit.protocol.samples import KEY, METER_CODE, NEW_KEY, OTHER_METER_CODE


def test_rfc3394_vector_4_1() -> None:
    kek = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
    key = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    wrapped = bytes.fromhex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
    assert wrap_key(kek, key) == wrapped
    assert unwrap_key(kek, wrapped) == key


def test_a_tampered_or_misdirected_wrapped_key_is_refused() -> None:
    wrapped = bytearray(wrap_key(KEY, NEW_KEY))
    wrapped[5] ^= 1
    with pytest.raises(KeyUnwrapFailed):
        unwrap_key(KEY, bytes(wrapped))
    with pytest.raises(KeyUnwrapFailed):
        unwrap_key(NEW_KEY, wrap_key(KEY, NEW_KEY))
    with pytest.raises(MalformedField):
        unwrap_key(KEY, b"short")
    with pytest.raises(BadKey):
        wrap_key(KEY[:8], NEW_KEY)


def test_derivation_is_the_documented_cmac_construction() -> None:
    master = bytes(range(16))
    expected_input = (
        (1).to_bytes(4, "big")
        + b"smsmeter meter key"
        + b"\x00"
        + METER_CODE.encode()
        + bytes([3])
        + (128).to_bytes(4, "big")
    )
    mac = CMAC(algorithms.AES(master))
    mac.update(expected_input)
    assert derive_meter_key(master, METER_CODE, 3) == mac.finalize()


def test_derived_keys_differ_per_meter_and_key_id() -> None:
    master = bytes(range(16))
    keys = {derive_meter_key(master, m, k) for m in (METER_CODE, OTHER_METER_CODE) for k in (0, 1, 255)}
    assert len(keys) == 6
    with pytest.raises(MalformedField):
        derive_meter_key(master, METER_CODE, 256)
