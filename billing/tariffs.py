"""Tariffs in the database: tariffs and their versions (effective dates), assignment to subscribers, and
queuing the tariff command to every affected meter in bulk with visible progress (`billing.bulk`).

On the wire a tariff version is identified by `tariff_versions.id` (one series for the whole utility),
because a meter accepts only a version newer than the one it holds — also when its subscriber moves to
another tariff.
"""

from __future__ import annotations

import calendar as _calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from billing import bulk, meter_registry
from billing.errors import Conflict, InvalidField, InvalidTariff, NotFound
from billing.rules.tariffs import TariffBody, TariffKind, TariffVersion, meter_price, version_at
from billing.rules.units import KWH, Unit, unit_of
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, message_payload
from meter_protocol.codec import encode_payload
from meter_protocol.explain import summarize
from store import audit
from store.audit import Actor
from store.schema import commands as C  # noqa: N812
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.uow import UnitOfWork

MAX_WIRE_VERSION = 0xFFFF
_WIRE_KIND = {
    TariffKind.FLAT: mp.TariffKind.FLAT,
    TariffKind.BLOCK: mp.TariffKind.BLOCK,
    TariffKind.TOU: mp.TariffKind.TIME_OF_USE,
}


@dataclass(frozen=True, slots=True)
class Tariff:
    id: int
    code: str
    name: str
    kind: TariffKind
    versions: tuple[TariffVersion, ...]
    version_ids: tuple[int, ...]  # tariff_versions.id of each version (the wire version)

    def in_force(self, at: datetime) -> TariffVersion | None:
        return version_at(self.versions, at)


async def create_tariff(
    conn: AsyncConnection, actor: Actor, code: str, name: str, kind: TariffKind, now: datetime
) -> int:
    t = L.tariffs.c
    code, name = code.strip(), name.strip()
    if not code or len(code) > 30:
        raise InvalidField("code", "1 to 30 characters")
    if not name or len(name) > 200:
        raise InvalidField("name", "1 to 200 characters")
    if await conn.scalar(select(t.id).where(t.code == code)) is not None:
        raise Conflict("tariff", f"{code} exists")
    tid = await conn.scalar(
        insert(L.tariffs).values(code=code, name=name, kind=kind.value, created_at=now).returning(t.id)
    )
    assert tid is not None
    await audit.record(
        conn, actor, "tariff.create", now, target=f"tariff:{code}", after={"name": name, "kind": kind.value}
    )
    return int(tid)


async def add_version(
    conn: AsyncConnection, actor: Actor, tariff_id: int, body: TariffBody, effective_from: datetime, now: datetime
) -> int:
    """A new version (prices) from `effective_from`. Returns its version number within the tariff."""
    tariff = await get_tariff(conn, tariff_id)
    if body.kind is not tariff.kind:
        raise InvalidTariff("kind", f"{tariff.code} is a {tariff.kind.value} tariff")
    v = L.tariff_versions.c
    number = (
        int(await conn.scalar(select(func.coalesce(func.max(v.version), 0)).where(v.tariff_id == tariff_id)) or 0) + 1
    )
    vid = await conn.scalar(
        insert(L.tariff_versions)
        .values(
            tariff_id=tariff_id,
            version=number,
            effective_from=effective_from,
            body=body.to_json(),
            created_at=now,
            created_by=str(actor),
        )
        .returning(v.id)
    )
    if vid is None or int(vid) > MAX_WIRE_VERSION:
        raise InvalidTariff("version", "the utility has used every tariff version number the meters accept")
    await audit.record(
        conn,
        actor,
        "tariff.version",
        now,
        target=f"tariff:{tariff.code}",
        after={"version": number, "effective_from": effective_from.isoformat(), "body": body.to_json()},
    )
    return number


async def get_tariff(conn: AsyncConnection, tariff_id: int) -> Tariff:
    row = (await conn.execute(select(L.tariffs).where(L.tariffs.c.id == tariff_id))).first()
    if row is None:
        raise NotFound("tariff", tariff_id)
    v = L.tariff_versions.c
    versions = (await conn.execute(select(L.tariff_versions).where(v.tariff_id == tariff_id).order_by(v.version))).all()
    return Tariff(
        row.id,
        row.code,
        row.name,
        TariffKind(row.kind),
        tuple(TariffVersion(r.version, r.effective_from, TariffBody.from_json(r.body)) for r in versions),
        tuple(r.id for r in versions),
    )


async def list_tariffs(conn: AsyncConnection) -> list[Tariff]:
    ids = (await conn.scalars(select(L.tariffs.c.id).order_by(L.tariffs.c.code))).all()
    return [await get_tariff(conn, i) for i in ids]


async def tariff_unit(conn: AsyncConnection, tariff_id: int, *, heat_in_gcal: bool = False) -> Unit:
    """The unit the tariff's prices are per: that of the kind of its subscribers' meters when they all read
    in one (a water tariff is per m³, its blocks start at m³ of the month; a heat tariff per kWh or, where the
    utility says so, per Gcal); kWh otherwise (no meter yet, or kinds that read in different units)."""
    m, s = R.meters.c, R.subscribers.c
    kinds = await conn.scalars(
        select(m.kind)
        .distinct()
        .join_from(R.meters, R.subscribers, m.subscriber_id == s.id)
        .where(s.tariff_id == tariff_id, m.status != "archived")
    )
    units = {unit_of(kind, heat_in_gcal=heat_in_gcal) for kind in kinds}
    return units.pop() if len(units) == 1 else KWH


def _epoch(at: datetime) -> int:
    return _calendar.timegm(at.utctimetuple())


def _tariff_message(
    tariff: Tariff, version: TariffVersion, wire_version: int, now: datetime, base_per_unit: int = 1000
) -> mp.SetTariff:
    """The meter's message: prices per 1000 of its register's base units (a price per Gcal becomes one per
    kWh, `meter_price`), block starts in base units as stored."""
    body = version.body
    return mp.SetTariff(
        version=wire_version,
        effective_at=0 if version.effective_from <= now else _epoch(version.effective_from),
        kind=_WIRE_KIND[body.kind],
        standing_charge_minor_per_day=body.standing_charge_minor_per_day,
        steps=tuple(
            mp.TariffStep(s.start, meter_price(s.price_milli_minor_per_kwh, base_per_unit)) for s in body.steps
        ),
    )


@dataclass(frozen=True, slots=True)
class TariffPreview:
    """What a version sends to a meter: the SetTariff message, in words, as fields, as the payload bytes the
    frame seals (docs/protocol.md §6) and as the protocol's XML document."""

    tariff_code: str
    version: int
    wire_version: int
    effective_from: datetime
    summary: str
    fields: dict[str, object]
    payload_hex: str
    payload_bytes: int
    xml: str


def preview_version(tariff: Tariff, version: int, now: datetime, *, base_per_unit: int = 1000) -> TariffPreview:
    """The message version `version` of `tariff` would send now (prices per display unit of `base_per_unit`
    base units, `tariff_unit`). Raises NotFound."""
    for v, wire in zip(tariff.versions, tariff.version_ids, strict=True):
        if v.version == version:
            message = _tariff_message(tariff, v, wire, now, base_per_unit)
            payload = encode_payload(message)
            return TariffPreview(
                tariff.code,
                version,
                wire,
                v.effective_from,
                summarize(message),
                message_payload(message),
                payload.hex(),
                len(payload),
                mp.message_to_xml(message).decode(),
            )
    raise NotFound("tariff version", f"{tariff.code} v{version}")


def _latest(tariff: Tariff, now: datetime) -> tuple[TariffVersion, int]:
    """The version to load into meters: the newest one (a future one carries its effective time)."""
    if not tariff.versions:
        raise InvalidTariff("versions", f"{tariff.code} has no prices yet")
    return tariff.versions[-1], tariff.version_ids[-1]


async def _start_assignment(
    uow: UnitOfWork,
    actor: Actor,
    tariff_id: int,
    now: datetime,
    *,
    subscriber_ids: Sequence[int] | None = None,
    transformer_id: int | None = None,
    street: tuple[str, str, str] | None = None,
    building: tuple[str, str, str, str] | None = None,
) -> tuple[int, list[int]]:
    """Assign the tariff to the chosen subscribers (history + audit) — or, with no choice given, resend it
    to every subscriber already on it (after a new version) — and create the job. Returns (job id, meter ids);
    `run_assignment` then queues the commands."""
    async with uow.begin() as conn:
        tariff = await get_tariff(conn, tariff_id)
        _latest(tariff, now)
        s, m = R.subscribers.c, R.meters.c
        if subscriber_ids is None and transformer_id is None and street is None and building is None:
            chosen = list(
                (await conn.scalars(select(s.id).where(s.tariff_id == tariff_id, s.status != "closed"))).all()
            )
        elif subscriber_ids is not None:
            chosen = list(subscriber_ids)
        else:
            group = await meter_registry.meters_in_group(
                conn, transformer_id=transformer_id, street=street, building=building
            )
            chosen = sorted(
                {sid for sid in (await conn.scalars(select(m.subscriber_id).where(m.id.in_(group)))).all() if sid}
            )
        changing = (
            await conn.execute(
                select(s.id, s.tariff_id).where(s.id.in_(chosen), (s.tariff_id != tariff_id) | s.tariff_id.is_(None))
            )
        ).all()
        for start in range(0, len(changing), 1000):
            part = changing[start : start + 1000]
            await conn.execute(
                update(R.subscribers).where(s.id.in_([r.id for r in part])).values(tariff_id=tariff_id, updated_at=now)
            )
            await conn.execute(
                insert(R.subscriber_history),
                [
                    {
                        "subscriber_id": r.id,
                        "changed_at": now,
                        "changed_by": str(actor),
                        "changes": {"tariff_id": [r.tariff_id, tariff_id]},
                    }
                    for r in part
                ],
            )
        meter_ids = (
            list(
                (
                    await conn.scalars(
                        select(m.id)
                        .where(m.subscriber_id.in_(chosen), m.status == "active", m.is_balance_meter == 0)
                        .order_by(m.id)
                    )
                ).all()
            )
            if chosen
            else []
        )
        job_id = await bulk.create_job(
            conn,
            actor,
            "tariff",
            f"tariff {tariff.code} version {tariff.versions[-1].version} to {len(meter_ids)} meters",
            {
                "tariff_id": tariff_id,
                "version_id": tariff.version_ids[-1],
                "subscribers": len(chosen),
                "changed": len(changing),
            },
            len(meter_ids),
            now,
        )
    return job_id, meter_ids


async def run_assignment(
    uow: UnitOfWork,
    actor: Actor,
    job_id: int,
    tariff_id: int,
    meter_ids: Sequence[int],
    now: datetime,
    *,
    keys: KeyRing,
    heat_in_gcal: bool = False,
) -> bulk.Job:
    async with uow.connect() as conn:
        tariff = await get_tariff(conn, tariff_id)
        unit = await tariff_unit(conn, tariff_id, heat_in_gcal=heat_in_gcal)
    version, wire = _latest(tariff, now)
    message = _tariff_message(tariff, version, wire, now, unit.base_per_unit)

    def build(meter_id: int) -> CommandRequest:
        return CommandRequest(meter_id, message, str(actor), idempotency_key=f"tariff:{wire}:meter:{meter_id}")

    return await bulk.run_job(uow, job_id, meter_ids, build, now, keys=keys)


async def start_push(uow: UnitOfWork, actor: Actor, tariff_id: int, now: datetime) -> tuple[int, list[int]]:
    """Send the tariff's newest version to every meter of every subscriber on it: the job and its meters
    (`run_assignment` queues the commands; a meter that has the version already is not sent it twice —
    the commands are keyed by version and meter)."""
    return await _start_assignment(uow, actor, tariff_id, now)


async def push_progress(conn: AsyncConnection, wire_version: int) -> dict[str, int]:
    """How many meters' commands of one tariff version are in each state (1:1: the meter runs it)."""
    c = C.commands.c
    rows = await conn.execute(
        select(c.state, func.count())
        .where(c.kind == "set_tariff", c.idempotency_key.like(f"tariff:{wire_version}:meter:%"))
        .group_by(c.state)
    )
    return {str(state): int(n) for state, n in rows}


async def assign_tariff(
    uow: UnitOfWork,
    actor: Actor,
    tariff_id: int,
    now: datetime,
    *,
    keys: KeyRing,
    heat_in_gcal: bool = False,
    **choice: object,
) -> bulk.Job:
    """`_start_assignment` then `run_assignment` (the web runs the second part in the background and shows
    the job's progress)."""
    job_id, meter_ids = await _start_assignment(uow, actor, tariff_id, now, **choice)  # type: ignore[arg-type]
    return await run_assignment(uow, actor, job_id, tariff_id, meter_ids, now, keys=keys, heat_in_gcal=heat_in_gcal)
