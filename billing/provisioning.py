"""Meters as the utility receives them: the manufacturer's key file imported, and the reverse for the
factory (docs/operations.md §7b).

Import (`import_key_file`), in one transaction: the file is read and every key unwrapped under the
transport key (`billing.rules.key_file`); each row is checked against the registry (a meter code
registered already is refused unless it is a meter in stock with the same key — the file coming back
from the factory with its SIM numbers; a SIM number another meter has is refused); then the meters are
registered *in stock* (status `stock`: no subscriber, sent no command) with their profile, firmware and
kind, and each key is re-wrapped under the master key into `meter_keys`. One bad row and nothing is
imported: every problem is reported (line, field, reason). One audit row per import, with the counts
and the file's SHA-256, never a key.

Export (`export_key_file`): fresh random keys for a batch of meter codes, the meters registered in
stock with their keys wrapped under the master key, and the key file for the factory with each key
wrapped under the transport key. A meter in stock is installed like any new meter (`meter_registry.install_meter`
with its code): it keeps the key and profile its file gave it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import InvalidField
from billing.rules.key_file import (
    KINDS,
    PROFILES,
    ExportRow,
    KeyFileRejected,
    KeyFileRow,
    KeyFileUnreadable,
    Reject,
    read_key_file,
    write_key_file,
)
from gateway.keys import KeyRing
from meter_protocol.errors import InvalidMeterCode
from meter_protocol.meter_code import validate_meter_code
from store import audit
from store.audit import Actor
from store.bulk import select_among
from store.crypto import unwrap_from_storage, wrap_for_storage
from store.errors import KeyUnwrapError
from store.schema.registry import meter_history, meter_keys, meters
from store.uow import UnitOfWork

STOCK = "stock"
MAX_BATCH = 10_000

_BY_CODE = (meters.c.code, meters.c.id, meters.c.status, meters.c.key_id)
_BY_NUMBER = (meters.c.msisdn, meters.c.code)
_NOT_ARCHIVED = (meters.c.status != "archived",)
_KEYS = (meter_keys.c.meter_id, meter_keys.c.key_id, meter_keys.c.wrapped_key)

NewKey = Callable[[], bytes]


@dataclass(frozen=True, slots=True)
class KeyImport:
    rows: int
    created: int  # meters registered in stock
    updated: int  # meters in stock already (with the same key), their SIM number, profile and firmware set


@dataclass(frozen=True, slots=True)
class BatchMeter:
    """A meter code the factory will make, with what is known of it yet."""

    meter_code: str
    msisdn: str = ""
    profile: str = "binary"
    firmware: str = ""
    kind: str = "electricity"


def wrap_key(master_key: bytes | KeyRing, key: bytes) -> bytes:
    return master_key.wrap(key) if isinstance(master_key, KeyRing) else wrap_for_storage(master_key, key)


def unwrap_key(master_key: bytes | KeyRing, wrapped: bytes) -> bytes | None:
    try:
        if isinstance(master_key, KeyRing):
            return master_key.unwrap(wrapped)
        return unwrap_from_storage(master_key, wrapped)
    except KeyUnwrapError:
        return None


async def _check_against_registry(
    conn: AsyncConnection, rows: Sequence[KeyFileRow], master_key: bytes | KeyRing
) -> tuple[list[Reject], set[str]]:
    """(what the registry refuses, the codes of meters in stock the file updates)."""
    rejects: list[Reject] = []
    by_code = {r.code: r for r in await select_among(conn, _BY_CODE, meters.c.code, {row.meter_code for row in rows})}
    stock_ids = {r.id: r for r in by_code.values() if r.status == STOCK}
    stored = {
        (k.meter_id, k.key_id): k.wrapped_key
        for k in await select_among(conn, _KEYS, meter_keys.c.meter_id, set(stock_ids))
    }
    updates: set[str] = set()
    for row in rows:
        found = by_code.get(row.meter_code)
        if found is None:
            continue
        if found.status != STOCK:
            reason = f"registered and {found.status}: an installed meter's key changes over the air (key change)"
            rejects.append(Reject(row.line, "meter_code", reason))
            continue
        wrapped = stored.get((found.id, row.key_id))
        if row.key_id != found.key_id or wrapped is None or unwrap_key(master_key, wrapped) != row.key:
            rejects.append(Reject(row.line, "wrapped_key", "the meter is in stock with another key or key id"))
            continue
        updates.add(row.meter_code)
    numbers = await select_among(conn, _BY_NUMBER, meters.c.msisdn, {row.msisdn for row in rows}, where=_NOT_ARCHIVED)
    holders: dict[str, set[str]] = {}
    for number, code in numbers:
        holders.setdefault(number, set()).add(code)
    for row in rows:
        others = holders.get(row.msisdn, set()) - {row.meter_code}
        if others:
            rejects.append(Reject(row.line, "msisdn", f"the SIM number of meter {sorted(others)[0]}"))
    return sorted(rejects, key=lambda r: (r.line, r.field)), updates


async def _register_stock(
    conn: AsyncConnection,
    actor: Actor,
    rows: Sequence[ExportRow | KeyFileRow],
    master_key: bytes | KeyRing,
    now: datetime,
    *,
    event: str,
    source: str,
) -> None:
    """New meters in stock, their keys wrapped under the master key, a history row each."""
    await conn.execute(
        insert(meters),
        [
            {
                "code": r.meter_code,
                "msisdn": r.msisdn,
                "profile": r.profile,
                "firmware": r.firmware or None,
                "kind": r.kind,
                "status": STOCK,
                "key_id": r.key_id,
                "installed_at": now,
            }
            for r in rows
        ],
    )
    ids = dict(await select_among(conn, (meters.c.code, meters.c.id), meters.c.code, {r.meter_code for r in rows}))
    await conn.execute(
        insert(meter_keys),
        [
            {
                "meter_id": ids[r.meter_code],
                "key_id": r.key_id,
                "wrapped_key": wrap_key(master_key, r.key),
                "status": "active",
                "created_at": now,
            }
            for r in rows
        ],
    )
    await _history(conn, actor, [(ids[r.meter_code], r) for r in rows], now, event=event, source=source)


async def _history(
    conn: AsyncConnection,
    actor: Actor,
    rows: Sequence[tuple[int, ExportRow | KeyFileRow]],
    now: datetime,
    *,
    event: str,
    source: str,
) -> None:
    await conn.execute(
        insert(meter_history),
        [
            {
                "meter_id": meter_id,
                "at": now,
                "by": str(actor),
                "event": event,
                "detail": {
                    "source": source,
                    "key_id": r.key_id,
                    "msisdn": r.msisdn,
                    "profile": r.profile,
                    "firmware": r.firmware,
                    "kind": r.kind,
                },
            }
            for meter_id, r in rows
        ],
    )


async def import_key_file(
    uow: UnitOfWork,
    actor: Actor,
    data: bytes,
    transport_key: bytes,
    *,
    file_name: str,
    master_key: bytes | KeyRing,
    now: datetime,
) -> KeyImport:
    """Import a manufacturer's key file, all or nothing. Raises KeyFileUnreadable, TransportKeyRefused
    or KeyFileRejected (every problem: line, field, reason); on success one audit row `meter.keys_import`."""
    rows = read_key_file(data, transport_key)
    async with uow.begin() as conn:
        rejects, updates = await _check_against_registry(conn, rows, master_key)
        if rejects:
            raise KeyFileRejected(rejects, len(rows))
        fresh = [r for r in rows if r.meter_code not in updates]
        if fresh:
            await _register_stock(conn, actor, fresh, master_key, now, event="received", source=file_name)
        changed = [r for r in rows if r.meter_code in updates]
        if changed:
            ids = dict(await select_among(conn, (meters.c.code, meters.c.id), meters.c.code, updates))
            for r in changed:
                await conn.execute(
                    update(meters)
                    .where(meters.c.id == ids[r.meter_code])
                    .values(msisdn=r.msisdn, profile=r.profile, firmware=r.firmware, kind=r.kind)
                )
            pairs = [(ids[r.meter_code], r) for r in changed]
            await _history(conn, actor, pairs, now, event="received", source=file_name)
        result = KeyImport(len(rows), len(fresh), len(changed))
        await audit.record(
            conn,
            actor,
            "meter.keys_import",
            now,
            target=f"key_file:{file_name}",
            after={
                "rows": result.rows,
                "created": result.created,
                "updated": result.updated,
                "key_ids": sorted({r.key_id for r in rows}),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
        )
    return result


def read_batch(data: bytes) -> list[BatchMeter]:
    """The meters of a batch file: one meter code a line, or CSV whose header names meter_code (and
    optionally msisdn, profile, firmware, kind). Raises KeyFileUnreadable or KeyFileRejected."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KeyFileUnreadable(f"the file is not UTF-8 text: {exc}") from None
    lines = text.splitlines()
    if lines and "meter_code" in lines[0].lower():
        reader = csv.DictReader(io.StringIO(text, newline=""))
        entries = [
            (reader.line_num, {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}) for row in reader
        ]
    else:
        entries = [(n, {"meter_code": line.strip()}) for n, line in enumerate(lines, start=1)]
    return check_batch([(n, cells) for n, cells in entries if any(cells.values())])


def check_batch(entries: Sequence[tuple[int, dict[str, str]]]) -> list[BatchMeter]:
    """Batch meters from (line, fields); every bad one reported (KeyFileRejected)."""
    batch: list[BatchMeter] = []
    rejects: list[Reject] = []
    seen: dict[str, int] = {}
    for number, cells in entries:
        problems = len(rejects)
        code = ""
        try:
            code = validate_meter_code(cells.get("meter_code", ""))
        except InvalidMeterCode as exc:
            rejects.append(Reject(number, "meter_code", exc.problem))
        msisdn = re.sub(r"[\s\-+]", "", cells.get("msisdn", ""))
        if msisdn and not re.fullmatch(r"\d{5,15}", msisdn):
            rejects.append(Reject(number, "msisdn", "the SIM's number: 5 to 15 digits"))
        profile = (cells.get("profile") or "binary").lower()
        if profile not in PROFILES:
            rejects.append(Reject(number, "profile", f"one of {', '.join(PROFILES)}"))
        kind = (cells.get("kind") or "electricity").lower()
        if kind not in KINDS:
            rejects.append(Reject(number, "kind", f"one of {', '.join(KINDS)}"))
        firmware = cells.get("firmware", "")
        if len(firmware) > 50:
            rejects.append(Reject(number, "firmware", "at most 50 characters"))
        if code and code in seen:
            rejects.append(Reject(number, "meter_code", f"also on line {seen[code]}"))
        if len(rejects) == problems:
            seen[code] = number
            batch.append(BatchMeter(code, msisdn, profile, firmware, kind))
    if not entries:
        raise KeyFileUnreadable("the batch names no meter")
    if len(entries) > MAX_BATCH:
        raise KeyFileUnreadable(f"at most {MAX_BATCH} meters a batch")
    if rejects:
        raise KeyFileRejected(rejects, len(entries))
    return batch


def random_key() -> bytes:
    return secrets.token_bytes(16)


async def export_key_file(
    uow: UnitOfWork,
    actor: Actor,
    batch: Sequence[BatchMeter],
    transport_key: bytes,
    *,
    master_key: bytes | KeyRing,
    now: datetime,
    key_id: int = 0,
    new_key: NewKey = random_key,
    as_json: bool = False,
    name: str = "batch",
) -> bytes:
    """Fresh keys for the batch's meters, registered in stock (keys under the master key), and the key
    file with each key wrapped under `transport_key`. A code registered already refuses the whole batch
    (KeyFileRejected); one audit row `meter.keys_export`."""
    if not 0 <= key_id <= 255:
        raise InvalidField("key_id", "0 to 255")
    rows = [ExportRow(b.meter_code, b.msisdn, key_id, new_key(), b.profile, b.firmware, b.kind) for b in batch]
    data = write_key_file(rows, transport_key, as_json=as_json)  # checks the transport key before any write
    async with uow.begin() as conn:
        registered = {r.code for r in await select_among(conn, _BY_CODE, meters.c.code, {b.meter_code for b in batch})}
        if registered:
            rejects = [
                Reject(n, "meter_code", "registered already")
                for n, b in enumerate(batch, start=1)
                if b.meter_code in registered
            ]
            raise KeyFileRejected(rejects, len(batch))
        await _register_stock(conn, actor, rows, master_key, now, event="key_issued", source=name)
        await audit.record(
            conn,
            actor,
            "meter.keys_export",
            now,
            target=f"key_file:{name}",
            after={"rows": len(rows), "key_id": key_id, "first": rows[0].meter_code, "last": rows[-1].meter_code},
        )
    return data
