"""Keys: per-meter key derivation, key wrapping and the cached AEAD objects (docs/protocol.md §3).

Every meter has its own AES-128 key per key id. The head end may store each key (wrapped under a
key-encryption key with RFC 3394) or derive it from a master key with the NIST SP 800-108 KDF in counter
mode with AES-CMAC: K = CMAC(master, 00000001 || "smsmeter meter key" || 00 || meter code (20 ASCII
digits) || key id (1 byte) || 00000080).
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from meter_protocol.errors import BadKey, KeyUnwrapFailed, MalformedField
from meter_protocol.meter_code import validate_meter_code

KEY_BYTES = 16
TAG_BYTES = 8
WRAPPED_KEY_BYTES = 24
KDF_LABEL = b"smsmeter meter key"


def check_key(key: object, what: str = "key") -> bytes:
    if type(key) is not bytes or len(key) != KEY_BYTES:
        raise BadKey(f"{what} must be {KEY_BYTES} bytes")
    return key


def aead_for(key: bytes) -> AESCCM:
    """The AES-128-CCM object (8-byte tag) for `key`: created once per key and reused for every frame."""
    return _aead(check_key(key))


@lru_cache(maxsize=8192)
def _aead(key: bytes) -> AESCCM:
    return AESCCM(key, tag_length=TAG_BYTES)


def derive_meter_key(master_key: bytes, meter_code: str, key_id: int) -> bytes:
    """The 16-byte key of meter `meter_code` for `key_id` (0..255), derived from `master_key`."""
    if type(key_id) is not int or not 0 <= key_id <= 0xFF:
        raise MalformedField("key_id", f"{key_id!r} outside 0..255")
    code = validate_meter_code(meter_code)
    kdf = KBKDFCMAC(
        algorithm=algorithms.AES,
        mode=Mode.CounterMode,
        length=KEY_BYTES,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=KDF_LABEL,
        context=code.encode("ascii") + bytes([key_id]),
        fixed=None,
    )
    return kdf.derive(check_key(master_key, "master key"))


def wrap_key(kek: bytes, key: bytes) -> bytes:
    """`key` wrapped under `kek` with the AES key wrap of RFC 3394 (24 bytes for a 16-byte key)."""
    return aes_key_wrap(check_key(kek, "key-encryption key"), check_key(key))


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes:
    """The key inside `wrapped` (RFC 3394). Raises KeyUnwrapFailed if its integrity check fails."""
    if type(wrapped) is not bytes or len(wrapped) != WRAPPED_KEY_BYTES:
        raise MalformedField("wrapped key", f"expected {WRAPPED_KEY_BYTES} bytes")
    try:
        return aes_key_unwrap(check_key(kek, "key-encryption key"), wrapped)
    except InvalidUnwrap:
        raise KeyUnwrapFailed() from None
