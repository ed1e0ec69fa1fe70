"""Meter keys for sealing commands and opening replies: read from meter_keys, unwrapped under the master key.

Built once by the composition root from the master key. Unwrapped keys are kept in a bounded
in-process cache keyed by (meter id, key id): a key id names one key forever (a key change makes a new
id), so a cached key is never stale.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from sqlalchemy import and_
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import MeterKeyMissing
from store.bulk import select_among
from store.crypto import unwrap_from_storage, unwrap_padded_from_storage, wrap_for_storage, wrap_padded_for_storage
from store.errors import KeyUnwrapError
from store.schema.registry import meter_keys, meters

# each meter with its key id in force and that key, wrapped (None when it is missing)
_IN_FORCE = (meters.c.id, meters.c.key_id, meter_keys.c.wrapped_key)
_WITH_KEY = meters.outerjoin(
    meter_keys, and_(meter_keys.c.meter_id == meters.c.id, meter_keys.c.key_id == meters.c.key_id)
)

_STORED = (meter_keys.c.meter_id, meter_keys.c.key_id, meter_keys.c.wrapped_key)


class KeyRing:
    def __init__(self, master_key: bytes, *, cache_size: int = 200_000) -> None:
        self._master_key = master_key
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._cache_size = cache_size

    def wrap(self, key: bytes) -> bytes:
        """A new meter key wrapped under the master key, as `meter_keys.wrapped_key` stores it."""
        return wrap_for_storage(self._master_key, key)

    def unwrap(self, wrapped: bytes) -> bytes:
        """A stored key unwrapped under the master key. Raises store's KeyUnwrapError."""
        return unwrap_from_storage(self._master_key, wrapped)

    def seal(self, secret: bytes) -> bytes:
        """A secret of any length (a webhook signing secret) wrapped under the master key for storage (AES key
        wrap with padding, RFC 5649), as the master-key rotation re-wraps it."""
        return wrap_padded_for_storage(self._master_key, secret)

    def unseal(self, sealed: bytes) -> bytes:
        """A stored secret unwrapped. Raises store's KeyUnwrapError (another master key, or altered bytes)."""
        return unwrap_padded_from_storage(self._master_key, sealed)

    def _remember(self, meter_id: int, key_id: int, key: bytes) -> None:
        self._cache[(meter_id, key_id)] = key
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _unwrap(self, meter_id: int, key_id: int, wrapped: bytes) -> bytes:
        try:
            key = unwrap_from_storage(self._master_key, wrapped)
        except KeyUnwrapError:
            raise MeterKeyMissing(meter_id, key_id, "the stored key does not unwrap under the master key") from None
        self._remember(meter_id, key_id, key)
        return key

    async def key_for(self, conn: AsyncConnection, meter_id: int) -> tuple[int, bytes]:
        """(key id, key) in force for the meter (meters.key_id). Raises MeterKeyMissing."""
        found = await self.keys_for(conn, [meter_id])
        if meter_id not in found:
            raise MeterKeyMissing(meter_id, -1, "no key in force")
        return found[meter_id]

    async def keys_for(self, conn: AsyncConnection, meter_ids: Iterable[int]) -> dict[int, tuple[int, bytes]]:
        """The keys in force for many meters at once; meters without a usable key are left out."""
        result: dict[int, tuple[int, bytes]] = {}
        rows = await select_among(conn, _IN_FORCE, meters.c.id, set(meter_ids), from_=_WITH_KEY)
        for meter_id, key_id, wrapped in rows:
            cached = self._cache.get((meter_id, key_id))
            if cached is not None:
                result[meter_id] = (key_id, cached)
            elif wrapped is not None:
                try:
                    result[meter_id] = (key_id, self._unwrap(meter_id, key_id, wrapped))
                except MeterKeyMissing:
                    continue
        return result

    async def key_by_id(self, conn: AsyncConnection, meter_id: int, key_id: int) -> bytes:
        """The meter's key with this id (a reply may still use the previous key during a key change).
        Raises MeterKeyMissing."""
        cached = self._cache.get((meter_id, key_id))
        if cached is not None:
            return cached
        found = await self.keys_by_id(conn, [(meter_id, key_id)])
        if (meter_id, key_id) not in found:
            raise MeterKeyMissing(meter_id, key_id)
        return found[(meter_id, key_id)]

    async def keys_by_id(
        self, conn: AsyncConnection, wanted: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        pairs = sorted(set(wanted))
        result = {p: self._cache[p] for p in pairs if p in self._cache}
        missing = {p for p in pairs if p not in result}
        for meter_id, key_id, wrapped in await select_among(conn, _STORED, _STORED[:2], missing):
            try:
                result[(meter_id, key_id)] = self._unwrap(meter_id, key_id, wrapped)
            except MeterKeyMissing:
                continue
        return result
