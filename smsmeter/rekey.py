"""Master-key rotation: re-wrap every stored meter key (and every STS vending key and event webhook signing
secret) under a new master key, in one transaction.

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

from sqlalchemy import BindParameter, Column, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store import audit
from store.audit import SYSTEM, Actor
from store.crypto import (
    unwrap_from_storage,
    unwrap_padded_from_storage,
    wrap_for_storage,
    wrap_padded_for_storage,
)
from store.errors import KeyUnwrapError
from store.schema.events import event_subscriptions
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


async def _rewrapped_padded(
    conn: AsyncConnection, what: str, table: Table, column: Column[bytes], old_key: bytes, new_key: bytes
) -> tuple[list[dict[str, object]], int]:
    """The values of one column wrapped with padding (RFC 5649) re-wrapped under the new key, as update
    parameters (`row_id`, `wrapped`) for the caller to write, and how many already were under it. Raises
    RotationError for a value under neither key."""
    changed: list[dict[str, object]] = []
    already = 0
    rows = (await conn.execute(select(table.c.id, column).where(column.is_not(None)).with_for_update())).all()
    for row_id, wrapped in rows:
        try:
            key = unwrap_padded_from_storage(old_key, wrapped)
        except KeyUnwrapError:
            try:
                unwrap_padded_from_storage(new_key, wrapped)
            except KeyUnwrapError:
                raise RotationError(
                    f"{what} {row_id} unwraps under neither the current nor the new master key"
                ) from None
            already += 1
            continue
        changed.append({"row_id": row_id, "wrapped": wrap_padded_for_storage(new_key, key)})
    return changed, already


_W: BindParameter[bytes] = bindparam("wrapped")


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
        v, e = sts_vending_keys.c, event_subscriptions.c
        for what, table, column, write in (
            ("STS vending key", sts_vending_keys, v.wrapped_key, update(sts_vending_keys).values(wrapped_key=_W)),
            (
                "webhook secret",
                event_subscriptions,
                e.secret_sealed,
                update(event_subscriptions).values(secret_sealed=_W),
            ),
            (
                "webhook secret",
                event_subscriptions,
                e.previous_secret_sealed,
                update(event_subscriptions).values(previous_secret_sealed=_W),
            ),
        ):
            changed, kept = await _rewrapped_padded(conn, what, table, column, old_key, new_key)
            if changed:
                await conn.execute(write.where(table.c.id == bindparam("row_id")), changed)
            rewrapped, already = rewrapped + len(changed), already + kept
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
