"""Readings entered by people: a reading typed in on the meter card or through the API, and CSV files of
readings taken by hand or with an optical probe. Each reading is validated against the meter's history
(`billing.rules.readings`), stored with its source, status and who entered it, and audited in the same
transaction. The readings meters send are validated the same way once stored (`validate_reported`, from the
consumption job's pass over new readings). Also the readings and load profile of a meter or a group, page by
page, for the doors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import Conflict, InvalidField, NotFound
from billing.rules.readings import (
    ReadingRow,
    Source,
    Status,
    ValidationPolicy,
    check_register,
    parse_readings_csv,
    status_counts,
    validate_series,
)
from store import audit
from store.audit import Actor
from store.schema import commands as C  # noqa: N812
from store.schema import registry as R  # noqa: N812

MAX_IMPORT_ROWS = 100_000
DEFAULT_POLICY = ValidationPolicy()


@dataclass(frozen=True, slots=True)
class EnteredReading:
    id: int
    meter_id: int
    register: str
    read_at: datetime
    value: int
    source: str
    status: str
    entered_by: str | None


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "rejected": [{"line": line, "reason": reason} for line, reason in self.rejected],
            "statuses": self.statuses,
        }


async def _history(
    conn: AsyncConnection, meter_id: int, register: str, before: datetime, policy: ValidationPolicy
) -> list[tuple[datetime, int]]:
    r = C.readings.c
    rows = await conn.execute(
        select(r.read_at, r.value)
        .where(r.meter_id == meter_id, r.register == register, r.read_at < before)
        .order_by(r.read_at.desc())
        .limit(policy.history)
    )
    return sorted((row.read_at, int(row.value)) for row in rows)


_SENT_BY_METERS = (Source.METER_REPORT.value, Source.READ_REQUEST.value)


async def validate_reported(
    conn: AsyncConnection, meter_id: int, register: str, since: datetime, policy: ValidationPolicy = DEFAULT_POLICY
) -> dict[str, int]:
    """Validate the register's readings from `since` on against the history before them, and mark those the
    meter sent (a report, an answer to a read request) that are not `ok`: `gap`, `backwards`, `spike`. A
    reading entered by a person keeps the status it was stored with. Returns the statuses given, counted."""
    r = C.readings.c
    history = await _history(conn, meter_id, register, since, policy)
    rows = list(
        await conn.execute(
            select(r.id, r.read_at, r.value, r.source, r.status)
            .where(r.meter_id == meter_id, r.register == register, r.read_at >= since)
            .order_by(r.read_at)
        )
    )
    statuses = validate_series(history, [(row.read_at, int(row.value)) for row in rows], register, policy)
    flagged: dict[str, list[int]] = {}
    for row, status in zip(rows, statuses, strict=True):
        if row.source in _SENT_BY_METERS and row.status == Status.OK.value and status is not Status.OK:
            flagged.setdefault(status.value, []).append(int(row.id))
    for status_value, ids in flagged.items():
        await conn.execute(update(C.readings).where(r.id.in_(ids)).values(status=status_value))
    return {status_value: len(ids) for status_value, ids in flagged.items()}


async def _existing(conn: AsyncConnection, keys: Sequence[tuple[int, str, datetime]]) -> set[tuple[int, str, datetime]]:
    r = C.readings.c
    found: set[tuple[int, str, datetime]] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        rows = await conn.execute(
            select(r.meter_id, r.register, r.read_at).where(
                or_(*(and_(r.meter_id == m, r.register == g, r.read_at == t) for m, g, t in chunk))
            )
        )
        found.update((row.meter_id, row.register, row.read_at) for row in rows)
    return found


async def _store(
    conn: AsyncConnection,
    readings: Sequence[tuple[int, ReadingRow]],
    source: Source,
    entered_by: str,
    now: datetime,
    policy: ValidationPolicy,
) -> list[dict[str, Any]]:
    """Validate (meter_id, row) pairs per meter and register against the stored history and insert them;
    the rows written, in the order given."""
    groups: dict[tuple[int, str], list[int]] = {}
    for i, (meter_id, row) in enumerate(readings):
        groups.setdefault((meter_id, row.register), []).append(i)
    statuses: dict[int, Status] = {}
    for (meter_id, register), indexes in groups.items():
        new = [(readings[i][1].read_at, readings[i][1].value) for i in indexes]
        latest = max(at for at, _ in new)
        history = await _history(conn, meter_id, register, latest, policy)
        history = [h for h in history if h[0] not in {at for at, _ in new}]
        for i, status in zip(indexes, validate_series(history, new, register, policy), strict=True):
            statuses[i] = status
    values = [
        {
            "meter_id": meter_id,
            "register": row.register,
            "read_at": row.read_at,
            "value": row.value,
            "received_at": now,
            "source": source.value,
            "status": statuses[i].value,
            "entered_by": entered_by,
        }
        for i, (meter_id, row) in enumerate(readings)
    ]
    for start in range(0, len(values), 1000):
        await conn.execute(insert(C.readings), values[start : start + 1000])
    return values


async def enter_reading(
    conn: AsyncConnection,
    actor: Actor,
    meter_id: int,
    register: str,
    read_at: datetime,
    value: int,
    now: datetime,
    *,
    policy: ValidationPolicy = DEFAULT_POLICY,
) -> EnteredReading:
    """A reading typed in by a person (a batch of one of `import_readings`' path). Raises NotFound, Conflict
    (the meter has a reading of that register at that time already), InvalidField."""
    meter = (await conn.execute(select(R.meters.c.code).where(R.meters.c.id == meter_id))).first()
    if meter is None:
        raise NotFound("meter", meter_id)
    register = check_register(register)
    if read_at > now:
        raise InvalidField("read_at", "is in the future")
    if value < 0:
        raise InvalidField("value", "must be zero or more")
    row = ReadingRow(meter.code, register, read_at, value)
    if await _existing(conn, [(meter_id, register, read_at)]):
        raise Conflict("reading", f"meter {meter.code} has a {register} reading at {read_at.isoformat()} already")
    (written,) = await _store(conn, [(meter_id, row)], Source.MANUAL, str(actor), now, policy)
    await audit.record(
        conn,
        actor,
        "reading.enter",
        now,
        target=f"meter:{meter.code}",
        after={"register": register, "read_at": read_at.isoformat(), "value": value, "status": written["status"]},
    )
    stored = await _get_reading(conn, meter_id, register, read_at)
    assert stored is not None
    return stored


async def _get_reading(conn: AsyncConnection, meter_id: int, register: str, read_at: datetime) -> EnteredReading | None:
    r = C.readings.c
    row = (
        await conn.execute(
            select(*_COLUMNS).where(r.meter_id == meter_id, r.register == register, r.read_at == read_at)
        )
    ).first()
    return EnteredReading(**row._mapping) if row else None


async def import_readings(
    conn: AsyncConnection,
    actor: Actor,
    text: str,
    now: datetime,
    tz: tzinfo,
    *,
    file_name: str = "readings.csv",
    policy: ValidationPolicy = DEFAULT_POLICY,
) -> ImportReport:
    """Readings from a CSV file (`billing.rules.readings.parse_readings_csv`). The good rows are stored,
    each validated; a bad row (unparsable, unknown or archived meter, a time in the future, a reading that
    is there already, the same reading twice in the file) is reported with its line and changes nothing."""
    rows, rejects = parse_readings_csv(text, tz)
    report = ImportReport(rows=len(rows) + len(rejects))
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidField("file", f"at most {MAX_IMPORT_ROWS} readings in one file")
    m = R.meters.c
    codes = sorted({row.meter_code for row in rows})
    meters: dict[str, tuple[int, str]] = {}
    for start in range(0, len(codes), 500):
        found = await conn.execute(select(m.code, m.id, m.status).where(m.code.in_(codes[start : start + 500])))
        meters.update({f.code: (f.id, f.status) for f in found})
    accepted: list[tuple[int, ReadingRow]] = []
    seen: set[tuple[int, str, datetime]] = set()
    for row in rows:
        meter = meters.get(row.meter_code)
        if meter is None:
            rejects.append((row.line, f"no meter {row.meter_code}"))
        elif meter[1] != "active":
            rejects.append((row.line, f"meter {row.meter_code} is {meter[1]}"))
        elif row.read_at > now:
            rejects.append((row.line, "read_at is in the future"))
        elif (meter[0], row.register, row.read_at) in seen:
            rejects.append((row.line, "the same reading is in the file twice"))
        else:
            seen.add((meter[0], row.register, row.read_at))
            accepted.append((meter[0], row))
    there = await _existing(conn, [(mid, row.register, row.read_at) for mid, row in accepted])
    fresh = []
    for mid, row in accepted:
        if (mid, row.register, row.read_at) in there:
            rejects.append((row.line, "the meter has this reading already"))
        else:
            fresh.append((mid, row))
    written = await _store(conn, fresh, Source.IMPORT, f"{actor} ({file_name[:60]})", now, policy)
    report.imported = len(written)
    report.rejected = sorted(rejects)
    report.statuses = status_counts(w["status"] for w in written)
    await audit.record(
        conn,
        actor,
        "readings.import",
        now,
        target=f"file:{file_name[:100]}",
        after={"rows": report.rows, "imported": report.imported, "rejected": len(rejects), **report.statuses},
    )
    return report


# --- reading them back ---------------------------------------------------------------------------------

_r = C.readings.c
_COLUMNS = (_r.id, _r.meter_id, _r.register, _r.read_at, _r.value, _r.source, _r.status, _r.entered_by)


@dataclass(frozen=True, slots=True)
class Group:
    """A part of the network: any of region, settlement, street, building (of the subscribers' addresses),
    a transformer, or one meter. Unset fields do not filter."""

    region: str | None = None
    settlement: str | None = None
    street: str | None = None
    building: str | None = None
    transformer_id: int | None = None
    meter_id: int | None = None

    def where(self) -> list[Any]:
        m, s = R.meters.c, R.subscribers.c
        out: list[Any] = []
        if self.meter_id is not None:
            out.append(m.id == self.meter_id)
        if self.transformer_id is not None:
            out.append(m.transformer_id == self.transformer_id)
        address = [
            (s.region_code, self.region),
            (s.settlement_code, self.settlement),
            (s.street_code, self.street),
            (s.building, self.building),
        ]
        wanted = [column == value for column, value in address if value is not None]
        if wanted:
            out.append(m.subscriber_id.in_(select(s.id).where(*wanted)))
        return out


async def list_readings(
    conn: AsyncConnection,
    group: Group,
    start: datetime | None,
    end: datetime | None,
    *,
    registers: Sequence[str] = (),
    exclude_registers: Sequence[str] = (),
    limit: int = 100,
    offset: int = 0,
    newest_first: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Readings in [start, end) of the group's meters, with the meter's code; and how many there are."""
    m = R.meters.c
    conditions = [*group.where()]
    if start is not None:
        conditions.append(_r.read_at >= start)
    if end is not None:
        conditions.append(_r.read_at < end)
    if registers:
        conditions.append(_r.register.in_(list(registers)))
    if exclude_registers:
        conditions.append(_r.register.not_in(list(exclude_registers)))
    base = select(*_COLUMNS, m.code.label("meter_code")).join(R.meters, m.id == _r.meter_id).where(*conditions)
    total = await conn.scalar(select(func.count()).select_from(base.subquery())) or 0
    order = (_r.read_at.desc(), _r.id.desc()) if newest_first else (_r.read_at, _r.id)
    rows = await conn.execute(base.order_by(*order).limit(limit).offset(offset))
    return [dict(row._mapping) for row in rows], int(total)
