"""`smsmeter import`: CSV and XLSX, all-or-nothing or with a report of rejected rows (both databases),
and the command itself as a process."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from billing import registry
from billing.errors import ImportRejected
from billing.importer import import_file
from store.schema import registry as R  # noqa: N812
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, meter_code
from tests.support.service import run_cli

HEADER = (
    "code,name,phone,email,language,family_size,registered_on,region_name,settlement_name,street_name,meter_code,msisdn"
)


def _csv(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "subscribers.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


GOOD = [
    "640100100010001,Ana Popescu,37360000001,ana@example.org,ro,3,2020-01-01,Nord,Balti,Independentei,"
    f"{meter_code(1)},37369000001",
    "640100100010002,Ivan Petrov,37360000002,,ru,,,Nord,Balti,Independentei,,",
]
BAD = [
    "6401001000100,Short Code,,,,,,Nord,Balti,Independentei,,",
    "640100100010003,Bad Meter,,,,,,Nord,Balti,Independentei,12345678901234567890,37369000003",
    "640100100010004,Bad Size,,,,many,,Nord,Balti,Independentei,,",
]


async def _count(uow: UnitOfWork) -> int:
    async with uow.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(R.subscribers)) or 0)


async def test_all_or_nothing_reports_every_bad_row_and_imports_nothing(uow: UnitOfWork, tmp_path: Path) -> None:
    path = _csv(tmp_path, *GOOD, *BAD)
    with pytest.raises(ImportRejected) as err:
        await import_file(uow, OPERATOR, path, currency="USD", master_key=MASTER_KEY, now=NOW)
    assert [row for row, _ in err.value.rejects] == [4, 5, 6]
    reasons = dict(err.value.rejects)
    assert "15 digits" in reasons[4]
    assert "check digit" in reasons[5]
    assert "whole number" in reasons[6]
    assert await _count(uow) == 0


async def test_partial_imports_the_good_rows_and_creates_the_address_book(uow: UnitOfWork, tmp_path: Path) -> None:
    path = _csv(tmp_path, *GOOD, *BAD)
    seen: list[int] = []
    report = await import_file(
        uow, OPERATOR, path, currency="USD", master_key=MASTER_KEY, now=NOW, all_or_nothing=False, progress=seen.append
    )
    assert (report.rows, report.imported, report.meters, len(report.rejected)) == (5, 2, 1, 3)
    assert seen == [1, 2, 3, 4, 5]
    async with uow.connect() as conn:
        ana = await registry.get_subscriber_by_code(conn, "640100100010001")
        meters = (await conn.scalars(select(R.meters.c.id).where(R.meters.c.subscriber_id == ana.id))).all()
    assert ana.family_size == 3
    assert ana.address == "Balti, Independentei 1, ap. 1"
    assert len(meters) == 1
    again = await import_file(uow, OPERATOR, path, currency="USD", master_key=MASTER_KEY, now=NOW, all_or_nothing=False)
    assert again.imported == 0
    assert await _count(uow) == 2


async def test_xlsx(uow: UnitOfWork, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER.split(","))
    for line in GOOD:
        cells: list[object] = line.split(",")
        cells[5] = int(cells[5]) if cells[5] else None  # numbers as numbers, the way spreadsheets keep them
        sheet.append(cells)
    path = tmp_path / "subscribers.xlsx"
    book.save(path)
    report = await import_file(uow, OPERATOR, path, currency="USD", master_key=MASTER_KEY, now=NOW)
    assert (report.imported, report.meters) == (2, 1)


def test_the_import_command(tmp_path: Path) -> None:
    env = {"SMSMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", "SMSMETER_DATA_DIR": str(tmp_path)}
    path = _csv(tmp_path, *GOOD, *BAD)
    strict = run_cli(["import", str(path)], tmp_path, env, timeout_s=120)
    assert strict.returncode == 1
    assert "nothing imported: 3 rows rejected" in strict.stdout
    partial = run_cli(
        ["import", "--partial", "--report", str(tmp_path / "rejects.csv"), str(path)], tmp_path, env, timeout_s=120
    )
    assert partial.returncode == 1
    assert "imported 2 of 5 rows (1 meters); 3 rejected" in partial.stdout
    assert "5/5" in partial.stderr
    assert (tmp_path / "rejects.csv").read_text().splitlines()[0] == "row,reason"
    missing = run_cli(["import", str(tmp_path / "nope.csv")], tmp_path, env)
    assert missing.returncode == 1
    assert "no such file" in missing.stderr
