"""Master-key rotation: re-wrap every stored meter key (and every STS vending key) under a new master key,
in one transaction.

Meter keys themselves do not change (the meters never notice); only their wrapping at rest does. All or
nothing: if any stored key does not unwrap under the current master key, nothing is written. Keys already
wrapped under the new master key are left as they are, so running the rotation again is harmless.
Stop the gateway processes first, rotate, put the new key in their configuration, start them again.
The rotation is in the audit log (`masterkey.rotate`), in the same transaction, with the fingerprints (the
first 16 hex digits of SHA-256) of the key replaced and of the new one — never the keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from store import audit
from store.audit import SYSTEM, Actor
from store.crypto import (
    unwrap_from_storage,
    unwrap_padded_from_storage,
    wrap_for_storage,
    wrap_padded_for_storage,
)
from store.errors import KeyUnwrapError
from store.schema.registry import meter_keys
from store.schema.sts import sts_vending_keys


@dataclass(frozen=True, slots=True)
class RotationResult:
    rewrapped: int
    already_new: int


class RotationError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def key_fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


async def rotate_master_key(
    engine: AsyncEngine, old_key: bytes, new_key: bytes, *, actor: Actor = SYSTEM
) -> RotationResult:
    if old_key == new_key:
        raise RotationError("the new master key is the current one")
    rewrapped = already = 0
    async with engine.begin() as conn:
        rows = (await conn.execute(select(meter_keys.c.id, meter_keys.c.wrapped_key).with_for_update())).all()
        for row_id, wrapped in rows:
            try:
                key = unwrap_from_storage(old_key, wrapped)
            except KeyUnwrapError:
                try:
                    unwrap_from_storage(new_key, wrapped)
                except KeyUnwrapError:
                    raise RotationError(
                        f"meter key {row_id} unwraps under neither the current nor the new master key"
                    ) from None
                already += 1
                continue
            await conn.execute(
                update(meter_keys).where(meter_keys.c.id == row_id).values(wrapped_key=wrap_for_storage(new_key, key))
            )
            rewrapped += 1
        vending = (
            await conn.execute(select(sts_vending_keys.c.id, sts_vending_keys.c.wrapped_key).with_for_update())
        ).all()
        for row_id, wrapped in vending:
            try:
                key = unwrap_padded_from_storage(old_key, wrapped)
            except KeyUnwrapError:
                try:
                    unwrap_padded_from_storage(new_key, wrapped)
                except KeyUnwrapError:
                    raise RotationError(
                        f"STS vending key {row_id} unwraps under neither the current nor the new master key"
                    ) from None
                already += 1
                continue
            await conn.execute(
                update(sts_vending_keys)
                .where(sts_vending_keys.c.id == row_id)
                .values(wrapped_key=wrap_padded_for_storage(new_key, key))
            )
            rewrapped += 1
        await audit.record(
            conn,
            actor,
            "masterkey.rotate",
            datetime.now(UTC),
            target="masterkey",
            before={"key": key_fingerprint(old_key)},
            after={"key": key_fingerprint(new_key), "rewrapped": rewrapped, "already_new": already},
        )
    return RotationResult(rewrapped, already)
