"""CSV, XLSX and PDF files of a table (reports, the audit log), downloaded or sent by e-mail. Money is written as
a decimal of the currency's units computed from integer minor units (never through a float); times as ISO 8601
UTC."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from babel.numbers import get_currency_precision
from openpyxl import Workbook

from billing.pdf import render_table

FORMATS = ("csv", "xlsx", "pdf")
CONTENT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def _cell(value: Any, kind: str, currency: str) -> Any:
    if value is None:
        return ""
    if kind == "money":
        return Decimal(int(value)).scaleb(-get_currency_precision(currency))
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def to_csv(
    headers: Sequence[str], keys: Sequence[str], kinds: Sequence[str], rows: Sequence[dict[str, Any]], currency: str
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_cell(row.get(k), kind, currency) for k, kind in zip(keys, kinds, strict=True)])
    return ("\ufeff" + out.getvalue()).encode()  # a BOM, so spreadsheet programs read UTF-8


def to_xlsx(
    title: str,
    headers: Sequence[str],
    keys: Sequence[str],
    kinds: Sequence[str],
    rows: Sequence[dict[str, Any]],
    currency: str,
) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title[:31]
    sheet.append(list(headers))
    digits = get_currency_precision(currency)
    money_format = "#,##0" + ("." + "0" * digits if digits else "")
    for row in rows:
        sheet.append([_cell(row.get(k), kind, currency) for k, kind in zip(keys, kinds, strict=True)])
    for index, kind in enumerate(kinds, start=1):
        if kind == "money":
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = money_format
    for column in sheet.columns:
        width = max(len(str(c.value or "")) for c in column)
        sheet.column_dimensions[column[0].column_letter].width = min(60, max(10, width + 2))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _to_pdf(
    title: str,
    subtitle: str,
    headers: Sequence[str],
    keys: Sequence[str],
    kinds: Sequence[str],
    rows: Sequence[dict[str, Any]],
    currency: str,
) -> bytes:
    cells = [[str(_cell(row.get(k), kind, currency)) for k, kind in zip(keys, kinds, strict=True)] for row in rows]
    right = [kind in ("money", "number", "percent") for kind in kinds]
    return render_table(title, subtitle, headers, cells, right)


def export(
    fmt: str,
    title: str,
    subtitle: str,
    headers: Sequence[str],
    keys: Sequence[str],
    kinds: Sequence[str],
    rows: Sequence[dict[str, Any]],
    currency: str,
) -> bytes:
    """The table as a file of `fmt` (one of FORMATS): what a download and a report sent by e-mail both give."""
    if fmt == "csv":
        return to_csv(headers, keys, kinds, rows, currency)
    if fmt == "xlsx":
        return to_xlsx(title, headers, keys, kinds, rows, currency)
    return _to_pdf(title, subtitle, headers, keys, kinds, rows, currency)


def download(body: bytes, filename: str, fmt: str) -> web.Response:
    return web.Response(
        body=body,
        content_type=CONTENT_TYPES[fmt],
        charset="utf-8" if fmt == "csv" else None,
        headers={"Content-Disposition": f'attachment; filename="{filename}.{fmt}"', "Cache-Control": "no-store"},
    )
