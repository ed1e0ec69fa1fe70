"""Meter keys at rest: wrapped under the master key with AES key wrap (RFC 3394, via `cryptography`).

A wrapped key is useless without the master key, and unwrapping checks its integrity.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from store.errors import KeyUnwrapError


def wrap_for_storage(master_key: bytes, key: bytes) -> bytes:
    return aes_key_wrap(master_key, key)


def unwrap_from_storage(master_key: bytes, wrapped: bytes) -> bytes:
    """Raises `KeyUnwrapError` when the master key is wrong or the stored bytes were altered."""
    try:
        return aes_key_unwrap(master_key, wrapped)
    except (InvalidUnwrap, ValueError) as exc:
        raise KeyUnwrapError("the stored meter key does not unwrap under this master key") from exc
