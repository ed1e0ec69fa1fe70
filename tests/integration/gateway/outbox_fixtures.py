"""Meters with keys for the gateway's tests: inserted straight into the registry tables, fast in bulk."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from meter_protocol import meter_code_with_check_digit
from store.crypto import wrap_for_storage
from store.schema.commands import meter_counters
from store.schema.registry import meter_keys, meters

MASTER_KEY = bytes(range(32))


@dataclass(frozen=True, slots=True)
class SeededMeter:
    id: int
    code: str
    msisdn: str
    key: bytes
    key_id: int = 0


def meter_key(serial: int, key_id: int = 0) -> bytes:
    return hashlib.sha256(f"meter {serial} key {key_id}".encode()).digest()[:16]


def meter_code(serial: int) -> str:
    return meter_code_with_check_digit(f"7700{serial:015d}")


def msisdn(serial: int) -> str:
    return f"37369{serial:07d}"


async def add_meters(
    conn: AsyncConnection,
    count: int,
    now: datetime,
    *,
    first_serial: int = 1,
    profile: str = "binary",
    app_port: int | None = None,
    master_key: bytes = MASTER_KEY,
) -> list[SeededMeter]:
    """`count` active meters, each with key id 0 stored wrapped under `master_key`."""
    serials = list(range(first_serial, first_serial + count))
    rows = [
        {
            "code": meter_code(s),
            "msisdn": msisdn(s),
            "installed_at": now,
            "profile": profile,
            "app_port": app_port,
            "make": "Test",
            "model": "REF-1",
        }
        for s in serials
    ]
    ids: list[int] = []
    for start in range(0, len(rows), 1000):
        result = await conn.execute(
            insert(meters).returning(meters.c.id, sort_by_parameter_order=True), rows[start : start + 1000]
        )
        ids.extend(result.scalars())
    await conn.execute(
        insert(meter_keys),
        [
            {
                "meter_id": i,
                "key_id": 0,
                "wrapped_key": wrap_for_storage(master_key, meter_key(s)),
                "status": "active",
                "created_at": now,
            }
            for i, s in zip(ids, serials, strict=True)
        ],
    )
    # the gateway's counters of each, as a migrated fleet has them (a meter without a row counts from the start)
    await conn.execute(insert(meter_counters), [{"meter_id": i} for i in ids])
    return [SeededMeter(i, meter_code(s), msisdn(s), meter_key(s)) for i, s in zip(ids, serials, strict=True)]


async def next_counters(conn: AsyncConnection, meter_ids: Sequence[int]) -> dict[int, int]:
    c = meter_counters.c
    rows = await conn.execute(select(c.meter_id, c.next_counter).where(c.meter_id.in_(meter_ids)))
    return {i: 1 for i in meter_ids} | {r[0]: r[1] for r in rows}
