"""Meter keys changed over the air (docs/protocol.md §3.3), for one meter or a group.

Starting a change, in one transaction: a new random key is stored wrapped under the master key as
*pending* (`meter_keys.status`), with the next key id of the meter; the `key_change` command carries it
wrapped (RFC 3394) under the key in force and is sealed under that same key; the audit row says which key
id was in force and which is pending. Until the meter answers, every command is still sealed under the key
in force (`meters.key_id`); the meter's replies are opened by the key id in their header, so the
acknowledgement of the change — the first frame under the new key — opens with the pending key.

Settling (`settle_key_changes`, run when the gateway reports a key change final, and on a timer so that
nothing depends on that one notification): the meter acknowledged (1:1) → the pending key becomes the key
in force and the old one is retired; the change failed (the meter did not answer, refused it, the network
could not deliver it) → the pending key is marked `failed` and the meter keeps its old key. Each is
audited. A failed key's row is kept: a meter whose acknowledgement was lost may still speak under it.

A group's change is a bulk job (`billing.bulk`): meters a chunk per transaction, and throttled — at most
`per_minute` key changes become due each minute (their `next_attempt_at` spread over the minutes), so a
street's meters do not all change keys at once. A meter with a change under way is skipped.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from billing import bulk, meter_registry
from billing.control import Group
from billing.errors import Conflict, InvalidField
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_commands, hold_commands
from gateway.states import CommandState
from store import audit
from store.audit import SYSTEM, Actor
from store.schema.commands import commands
from store.schema.ledger import bulk_jobs
from store.schema.registry import meter_keys, meters
from store.uow import UnitOfWork

KIND = "key_change"  # the command kind (meter_protocol's KeyChange)
MAX_KEY_ID = 255  # the header's key id is one byte
CHUNK = 500

NewKey = Callable[[], bytes]


def random_key() -> bytes:
    return secrets.token_bytes(16)


@dataclass(frozen=True, slots=True)
class KeyChangeStarted:
    meter_id: int
    command_id: int
    key_id: int  # in force until the meter acknowledges
    pending_key_id: int


@dataclass(frozen=True, slots=True)
class KeySettlement:
    activated: int
    failed: int


async def _latest_changes(conn: AsyncConnection, meter_ids: Sequence[int]) -> dict[int, tuple[int, str, int]]:
    """meter → (command id, state, new key id) of its latest key-change command."""
    c = commands.c
    rows = await conn.execute(
        select(c.id, c.meter_id, c.state, c.payload)
        .where(c.kind == KIND, c.meter_id.in_(list(meter_ids)))
        .order_by(c.id)
    )
    return {r.meter_id: (r.id, r.state, int(r.payload["new_key_id"])) for r in rows}


async def _settle(conn: AsyncConnection, now: datetime, meter_ids: Sequence[int] | None) -> KeySettlement:
    k = meter_keys.c
    query = select(k.id, k.meter_id, k.key_id).where(k.status == "pending")
    if meter_ids is not None:
        query = query.where(k.meter_id.in_(list(meter_ids)))
    pending = (await conn.execute(query.order_by(k.meter_id))).all()
    if not pending:
        return KeySettlement(0, 0)
    latest = await _latest_changes(conn, [p.meter_id for p in pending])
    activated = failed = 0
    for row in pending:
        change = latest.get(row.meter_id)
        if change is None or change[2] != row.key_id:
            continue
        command_id, state = change[0], CommandState(change[1])
        if not state.is_final:
            continue
        meter = (await conn.execute(select(meters.c.key_id, meters.c.code).where(meters.c.id == row.meter_id))).one()
        old = meter.key_id
        if state is CommandState.PROCESSED:
            await conn.execute(
                update(meter_keys)
                .where(k.meter_id == row.meter_id, k.status == "active")
                .values(status="retired", retired_at=now)
            )
            await conn.execute(update(meter_keys).where(k.id == row.id).values(status="active"))
            await conn.execute(update(meters).where(meters.c.id == row.meter_id).values(key_id=row.key_id))
            action = "meter.key_activated"
            after = {"key_id": row.key_id, "retired_key_id": old}
            activated += 1
        else:
            await conn.execute(update(meter_keys).where(k.id == row.id).values(status="failed", retired_at=now))
            action = "meter.key_change_failed"
            after = {"key_id": old, "failed_key_id": row.key_id, "state": state.value}
            failed += 1
        await audit.record(
            conn,
            SYSTEM,
            action,
            now,
            target=f"meter:{meter.code}",
            before={"key_id": old, "pending_key_id": row.key_id, "command_id": command_id},
            after=after,
        )
    return KeySettlement(activated, failed)


async def settle_key_changes(
    uow: UnitOfWork, now: datetime, *, meter_ids: Sequence[int] | None = None
) -> KeySettlement:
    """Finish the key changes whose command is final (of these meters, or all): 1:1 → the new key is in
    force and the old one retired; a failure → the meter keeps its key. Running it again changes nothing."""
    async with uow.begin() as conn:
        return await _settle(conn, now, meter_ids)


async def _start(
    conn: AsyncConnection,
    keys: KeyRing,
    actor: Actor,
    meter_ids: Sequence[int],
    now: datetime,
    *,
    new_key: NewKey,
    idempotency_key: Callable[[int], str | None],
) -> tuple[list[KeyChangeStarted], dict[int, str]]:
    """Start a key change on each meter: (started, refused meter → why)."""
    await _settle(conn, now, meter_ids)  # a change that finished meanwhile is settled first
    k = meter_keys.c
    refused: dict[int, str] = {}
    under_way = set(
        (await conn.scalars(select(k.meter_id).where(k.status == "pending", k.meter_id.in_(list(meter_ids))))).all()
    )
    for meter_id in under_way:
        refused[meter_id] = "a key change is under way: the meter has not answered the last one yet"
    in_force = await keys.keys_for(conn, [m for m in meter_ids if m not in under_way])
    used = dict(
        (
            await conn.execute(
                select(k.meter_id, func.max(k.key_id)).where(k.meter_id.in_(list(in_force))).group_by(k.meter_id)
            )
        ).all()
    )
    started: list[KeyChangeStarted] = []
    rows: list[dict[str, object]] = []
    requests: list[CommandRequest] = []
    for meter_id in meter_ids:
        if meter_id in refused:
            continue
        if meter_id not in in_force:
            refused[meter_id] = "no usable key in force"
            continue
        key_id, key = in_force[meter_id]
        new_id = int(used.get(meter_id, key_id)) + 1
        if new_id > MAX_KEY_ID:
            refused[meter_id] = f"every key id up to {MAX_KEY_ID} has been used"
            continue
        fresh = new_key()
        rows.append(
            {
                "meter_id": meter_id,
                "key_id": new_id,
                "wrapped_key": keys.wrap(fresh),
                "status": "pending",
                "created_at": now,
            }
        )
        requests.append(
            CommandRequest(
                meter_id,
                mp.KeyChange(new_key_id=new_id, wrapped_key=mp.wrap_key(key, fresh)),
                str(actor),
                idempotency_key=idempotency_key(meter_id),
            )
        )
        started.append(KeyChangeStarted(meter_id, 0, key_id, new_id))
    if not rows:
        return [], refused
    await conn.execute(insert(meter_keys), rows)
    codes = dict((await conn.execute(select(meters.c.id, meters.c.code).where(meters.c.id.in_(list(in_force))))).all())
    command_ids = await enqueue_commands(conn, keys, requests, now)
    started = [
        KeyChangeStarted(s.meter_id, command_id, s.key_id, s.pending_key_id)
        for s, command_id in zip(started, command_ids, strict=True)
    ]
    await audit.record_many(
        conn,
        [
            audit.Entry(
                actor,
                "meter.key_change",
                now,
                target=f"meter:{codes[s.meter_id]}",
                before={"key_id": s.key_id},
                after={"key_id": s.key_id, "pending_key_id": s.pending_key_id, "command_id": s.command_id},
            )
            for s in started
        ],
    )
    return started, refused


async def change_meter_key(
    uow: UnitOfWork,
    actor: Actor,
    meter_id: int,
    now: datetime,
    *,
    keys: KeyRing,
    new_key: NewKey = random_key,
    idempotency_key: str | None = None,
) -> KeyChangeStarted:
    """Start a key change on one meter. A second call with the same `idempotency_key` answers the first
    change. Raises NotFound, InvalidField (the meter is not active) or Conflict (a change under way, no key)."""
    async with uow.begin() as conn:
        if idempotency_key is not None:
            c = commands.c
            done = (await conn.execute(select(c.id, c.payload).where(c.idempotency_key == idempotency_key))).first()
            if done is not None:
                current = await conn.scalar(select(meters.c.key_id).where(meters.c.id == meter_id))
                return KeyChangeStarted(meter_id, done.id, int(current or 0), int(done.payload["new_key_id"]))
        meter = await meter_registry.get_meter(conn, meter_id)
        if meter.status != "active":
            raise InvalidField("meter", f"{meter.code} is {meter.status}")
        started, refused = await _start(
            conn, keys, actor, [meter_id], now, new_key=new_key, idempotency_key=lambda _m: idempotency_key
        )
        if refused:
            raise Conflict("key change", refused[meter_id])
        return started[0]


async def change_group_keys(
    uow: UnitOfWork,
    actor: Actor,
    group: Group,
    now: datetime,
    *,
    keys: KeyRing,
    per_minute: int = 60,
    new_key: NewKey = random_key,
) -> bulk.Job:
    """A key change for every active meter of the group, as a bulk job with progress: a chunk of meters
    per transaction; at most `per_minute` of the changes become due each minute."""
    if not 1 <= per_minute <= 100_000:
        raise InvalidField("per_minute", "1 to 100000 key changes a minute")
    async with uow.begin() as conn:
        meter_ids = await meter_registry.meters_in_group(
            conn,
            transformer_id=group.transformer_id,
            street=group.street,
            building=group.building,
            meter_ids=group.meter_ids,
        )
        job_id = await bulk.create_job(
            conn,
            actor,
            KIND,
            f"{KIND} for {group.describe()}",
            {"group": group.describe(), "per_minute": per_minute},
            len(meter_ids),
            now,
        )
    queued = 0
    j = bulk_jobs.c
    for start in range(0, len(meter_ids), CHUNK):
        chunk = meter_ids[start : start + CHUNK]
        async with uow.begin() as conn:
            started, refused = await _start(
                conn, keys, actor, chunk, now, new_key=new_key, idempotency_key=lambda m: f"job:{job_id}:meter:{m}"
            )
            slots: dict[int, list[int]] = defaultdict(list)
            for n, s in enumerate(started, start=queued):
                slots[n // per_minute].append(s.command_id)
            for slot, ids in slots.items():
                if slot:
                    await hold_commands(conn, ids, now + timedelta(minutes=slot))
            queued += len(started)
            await conn.execute(
                update(bulk_jobs)
                .where(j.id == job_id)
                .values(done=j.done + len(started), skipped=j.skipped + len(refused))
            )
    async with uow.begin() as conn:
        await conn.execute(update(bulk_jobs).where(j.id == job_id).values(status="done", finished_at=now))
        return await bulk.get_job(conn, job_id)
