"""Meter keys at rest: wrapped under the master key with AES key wrap (RFC 3394, via `cryptography`).

A wrapped key is useless without the master key, and unwrapping checks its integrity.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap,
    aes_key_wrap_with_padding,
)

from store.errors import KeyUnwrapError


def wrap_for_storage(master_key: bytes, key: bytes) -> bytes:
    return aes_key_wrap(master_key, key)


def unwrap_from_storage(master_key: bytes, wrapped: bytes) -> bytes:
    """Raises `KeyUnwrapError` when the master key is wrong or the stored bytes were altered."""
    try:
        return aes_key_unwrap(master_key, wrapped)
    except (InvalidUnwrap, ValueError) as exc:
        raise KeyUnwrapError("the stored meter key does not unwrap under this master key") from exc


def wrap_padded_for_storage(master_key: bytes, key: bytes) -> bytes:
    """AES key wrap with padding (RFC 5649), for keys that are not a multiple of 8 bytes or under 16
    (an STS vending key is 8 or 20 bytes)."""
    return aes_key_wrap_with_padding(master_key, key)


def unwrap_padded_from_storage(master_key: bytes, wrapped: bytes) -> bytes:
    """Raises `KeyUnwrapError` when the master key is wrong or the stored bytes were altered."""
    try:
        return aes_key_unwrap_with_padding(master_key, wrapped)
    except (InvalidUnwrap, ValueError) as exc:
        raise KeyUnwrapError("the stored key does not unwrap under this master key") from exc
