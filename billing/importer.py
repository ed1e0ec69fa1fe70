"""`smsmeter import`: subscribers (and their meters) from CSV or XLSX (openpyxl).

The first row names the columns (any order, case-insensitive): code and name are required; the others
are the subscriber fields (father_name, phone, email, language, contract_number, identity_document,
family_size, rooms, registered_on, ended_on, status, old_code, normative_wh_month, tariff_code), the
address names (region_name, settlement_name, street_name: created when missing), and a meter (meter_code,
msisdn, meter_make, meter_model, meter_kind, phases, transformer_code).

Two modes: all-or-nothing (one bad row and nothing is imported; every bad row is reported) or partial
(good rows are imported, each bad row is reported with its reason). Existing codes are rejected, so a
file imported twice imports nothing twice.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import meter_registry, places, registry
from billing.errors import BillingError, ImportRejected, InvalidField
from billing.rules.codes import parse_subscriber_code
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.uow import UnitOfWork

INT_FIELDS = ("family_size", "rooms", "normative_wh_month")
DATE_FIELDS = ("registered_on", "ended_on")
SUBSCRIBER_FIELDS = tuple(f for f in registry.EDITABLE if f != "tariff_id")
KNOWN = {
    "code",
    *SUBSCRIBER_FIELDS,
    "tariff_code",
    "region_name",
    "settlement_name",
    "street_name",
    "meter_code",
    "msisdn",
    "meter_make",
    "meter_model",
    "meter_kind",
    "phases",
    "transformer_code",
}


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    meters: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: text}) for each data row of a .csv or .xlsx file."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            rows = sheet.iter_rows(values_only=True)
            header = [str(h or "").strip().lower() for h in next(rows, ())]
            for number, values in enumerate(rows, start=2):
                cells = {h: _cell(v) for h, v in zip(header, values, strict=False) if h}
                if any(cells.values()):
                    yield number, cells
        finally:
            workbook.close()
        return
    with path.open(encoding="utf-8-sig", newline="") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(fh, dialect)
        header = [h.strip().lower() for h in next(reader, [])]
        for number, values in enumerate(reader, start=2):
            cells = {h: v.strip() for h, v in zip(header, values, strict=False) if h}
            if any(cells.values()):
                yield number, cells


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _fields(cells: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in SUBSCRIBER_FIELDS:
        text = cells.get(name, "")
        if not text:
            continue
        if name in INT_FIELDS:
            try:
                out[name] = int(text)
            except ValueError:
                raise InvalidField(name, f"{text!r} is not a whole number") from None
        elif name in DATE_FIELDS:
            try:
                out[name] = date.fromisoformat(text)
            except ValueError:
                raise InvalidField(name, f"{text!r} is not a date (YYYY-MM-DD)") from None
        else:
            out[name] = text
    return out


async def _ensure_address(conn: AsyncConnection, actor: Actor, code: str, cells: dict[str, str], now: datetime) -> None:
    parsed = parse_subscriber_code(code)
    if await conn.scalar(select(R.regions.c.code).where(R.regions.c.code == parsed.region)) is None:
        if not cells.get("region_name"):
            raise InvalidField("region_name", f"region {parsed.region} is unknown and the row does not name it")
        await places.add_region(conn, actor, parsed.region, cells["region_name"], now)
    st = R.settlements.c
    if await conn.scalar(select(st.code).where(st.region_code == parsed.region, st.code == parsed.settlement)) is None:
        if not cells.get("settlement_name"):
            raise InvalidField("settlement_name", f"settlement {parsed.region}{parsed.settlement} is unknown")
        await places.add_settlement(conn, actor, parsed.region, parsed.settlement, cells["settlement_name"], now)
    s = R.streets.c
    found = await conn.scalar(
        select(s.code).where(
            s.region_code == parsed.region, s.settlement_code == parsed.settlement, s.code == parsed.street
        )
    )
    if found is None:
        if not cells.get("street_name"):
            raise InvalidField("street_name", f"street {parsed.region}{parsed.settlement}{parsed.street} is unknown")
        await places.add_street(conn, actor, parsed.region, parsed.settlement, parsed.street, cells["street_name"], now)


async def _import_row(
    conn: AsyncConnection, actor: Actor, cells: dict[str, str], *, currency: str, master_key: bytes, now: datetime
) -> bool:
    unknown = set(cells) - KNOWN
    if unknown:
        raise InvalidField(sorted(unknown)[0], "unknown column")
    code = cells.get("code", "")
    if not code:
        raise InvalidField("code", "missing")
    fields = _fields(cells)
    if cells.get("tariff_code"):
        tariff_id = await conn.scalar(select(L.tariffs.c.id).where(L.tariffs.c.code == cells["tariff_code"]))
        if tariff_id is None:
            raise InvalidField("tariff_code", f"no tariff {cells['tariff_code']}")
        fields["tariff_id"] = int(tariff_id)
    await _ensure_address(conn, actor, code, cells, now)
    subscriber = await registry.create_subscriber(conn, actor, code, fields, currency=currency, now=now)
    if not cells.get("meter_code"):
        return False
    transformer_id = None
    if cells.get("transformer_code"):
        transformer_id = await conn.scalar(
            select(R.transformers.c.id).where(R.transformers.c.code == cells["transformer_code"])
        )
        if transformer_id is None:
            raise InvalidField("transformer_code", f"no transformer {cells['transformer_code']}")
    try:
        phases = int(cells.get("phases") or 1)
    except ValueError:
        raise InvalidField("phases", "1 or 3") from None
    await meter_registry.install_meter(
        conn,
        actor,
        subscriber.id,
        meter_registry.NewMeter(
            code=cells["meter_code"],
            msisdn=cells.get("msisdn", ""),
            make=cells.get("meter_make") or None,
            model=cells.get("meter_model") or None,
            kind=cells.get("meter_kind") or "electricity",
            phases=phases,
            transformer_id=transformer_id,
        ),
        master_key=master_key,
        now=now,
    )
    return True


async def import_file(
    uow: UnitOfWork,
    actor: Actor,
    path: Path,
    *,
    currency: str,
    master_key: bytes,
    now: datetime,
    all_or_nothing: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the file in one transaction (each row in a savepoint). All-or-nothing raises ImportRejected
    (with every bad row) and imports nothing; partial imports the good rows and reports the bad ones."""
    report = ImportReport()
    try:
        rows = await asyncio.to_thread(lambda: list(_read_rows(path)))
        async with uow.begin() as conn:
            for number, cells in rows:
                report.rows += 1
                try:
                    async with conn.begin_nested():
                        if await _import_row(conn, actor, cells, currency=currency, master_key=master_key, now=now):
                            report.meters += 1
                    report.imported += 1
                except BillingError as exc:
                    report.rejected.append((number, exc.reason))
                except IntegrityError as exc:
                    report.rejected.append((number, f"conflicts with stored data: {str(exc.orig).splitlines()[0]}"))
                if progress is not None:
                    progress(report.rows)
            if all_or_nothing and report.rejected:
                raise ImportRejected(report.rejected)
    except UnicodeDecodeError as exc:
        raise InvalidField("file", f"not UTF-8 text: {exc}") from exc
    return report


def count_rows(path: Path) -> int:
    return sum(1 for _ in _read_rows(path))
