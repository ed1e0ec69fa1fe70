"""A meter model's conformance run on a sample from stock (docs/protocol.md §14; `smsmeter conformance`): the
meter as the head end knows it (its key in force and its counters), and what the run left it with, kept —
the counters moved on and every key it was given stored, under the master key, by its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from billing.errors import Conflict, InvalidField, NotFound
from billing.provisioning import STOCK, unwrap_key, wrap_key
from gateway.counters import MeterCounters, counters_of, move_counters_on
from gateway.keys import KeyRing
from store import audit
from store.audit import Actor
from store.schema.registry import meter_keys, meters
from store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class SampleMeter:
    """A meter in stock that the conformance checklist runs on (docs/protocol.md §14), as the head end
    knows it: its key in force and its counters."""

    id: int
    code: str
    msisdn: str
    profile: str
    app_port: int | None
    key_id: int
    key: bytes
    next_counter: int
    in_highest: int
    in_bitmap: int

    def __repr__(self) -> str:
        return f"SampleMeter(code={self.code!r}, key_id={self.key_id})"


KEY_IDS_A_RUN_USES = 3  # the checklist's key changes give the meter the next three key ids


async def sample_meter(uow: UnitOfWork, code: str, master_key: bytes | KeyRing) -> SampleMeter:
    """The meter in stock with this code, for a conformance run. Raises NotFound, InvalidField (not in
    stock: the checklist credits the meter, opens its relay and changes its key) or Conflict (a key id
    the run would give it was used before)."""
    m = meters.c
    async with uow.connect() as conn:
        row = (await conn.execute(select(meters).where(m.code == code.replace(" ", "")))).first()
        if row is None:
            raise NotFound("meter", code)
        if row.status != STOCK:
            raise InvalidField(
                "meter",
                f"{row.code} is {row.status}: the checklist runs on a meter in stock (it credits the meter, "
                "opens its relay and changes its key)",
            )
        if not row.msisdn:
            raise InvalidField("meter", f"{row.code} has no SIM number yet: import its key file")
        used = {k for (k,) in await conn.execute(select(meter_keys.c.key_id).where(meter_keys.c.meter_id == row.id))}
        wrapped = await conn.scalar(
            select(meter_keys.c.wrapped_key).where(meter_keys.c.meter_id == row.id, meter_keys.c.key_id == row.key_id)
        )
        counters = await counters_of(conn, int(row.id))
    ahead = {(row.key_id + n) % 256 for n in range(1, KEY_IDS_A_RUN_USES + 1)}
    if used & ahead:
        raise Conflict("meter", f"key ids {sorted(used & ahead)} were used before; the run would give them again")
    key = None if wrapped is None else unwrap_key(master_key, wrapped)
    if key is None:
        raise Conflict("meter", f"{row.code} has no usable key {row.key_id}")
    return SampleMeter(
        int(row.id),
        row.code,
        row.msisdn,
        row.profile,
        row.app_port,
        int(row.key_id),
        key,
        counters.next_counter,
        counters.in_highest,
        counters.in_bitmap,
    )


@dataclass(frozen=True, slots=True)
class ConformanceOutcome:
    """What a run left the meter with: `keys` every key id it was given (the first the one it had),
    `key_id` the one in force at the end, the counters the run used."""

    passed: bool
    failed_lines: tuple[str, ...]
    key_id: int
    keys: dict[int, bytes]
    next_counter: int
    in_highest: int
    in_bitmap: int

    def __repr__(self) -> str:
        return f"ConformanceOutcome(passed={self.passed}, failed_lines={self.failed_lines}, key_id={self.key_id})"


async def record_conformance(
    uow: UnitOfWork,
    actor: Actor,
    sample: SampleMeter,
    outcome: ConformanceOutcome,
    *,
    master_key: bytes | KeyRing,
    now: datetime,
) -> None:
    """Keep what the run did to the meter: its counters move on; every key it was given is stored
    (wrapped under the master key) by its id. A run that passed leaves the meter under its last key (the
    old ones retired); one that failed keeps the key in force, the others kept as `failed` (the meter may
    hold one of them). One audit row `meter.conformance`."""
    m, k = meters.c, meter_keys.c
    async with uow.begin() as conn:
        reached = MeterCounters(outcome.next_counter, outcome.in_highest, outcome.in_bitmap)
        kept = await move_counters_on(conn, sample.id, reached)  # the gateway's counters: through its door
        values: dict[str, int] = {}
        stored = {kid for (kid,) in await conn.execute(select(k.key_id).where(k.meter_id == sample.id))}
        fresh = {kid: key for kid, key in outcome.keys.items() if kid not in stored}
        final = outcome.key_id if outcome.passed and outcome.key_id in fresh else None
        if final is not None:
            await conn.execute(
                update(meter_keys)
                .where(k.meter_id == sample.id, k.status == "active")
                .values(status="retired", retired_at=now)
            )
            values["key_id"] = final
        if fresh:
            await conn.execute(
                insert(meter_keys),
                [
                    {
                        "meter_id": sample.id,
                        "key_id": kid,
                        "wrapped_key": wrap_key(master_key, key),
                        "status": "active" if kid == final else ("retired" if outcome.passed else "failed"),
                        "created_at": now,
                        "retired_at": None if kid == final else now,
                    }
                    for kid, key in sorted(fresh.items())
                ],
            )
        if values:
            await conn.execute(update(meters).where(m.id == sample.id).values(**values))
        await audit.record(
            conn,
            actor,
            "meter.conformance",
            now,
            target=f"meter:{sample.code}",
            before={"key_id": sample.key_id, "next_counter": sample.next_counter},
            after={
                "passed": outcome.passed,
                "failed_lines": list(outcome.failed_lines),
                "key_id": values.get("key_id", sample.key_id),
                "key_ids_given": sorted(fresh),
                "next_counter": kept.next_counter,
            },
        )
