"""CSV and XLSX downloads of a table (reports, the audit log). Money is written as a decimal of the
currency's units computed from integer minor units (never through a float); times as ISO 8601 UTC."""

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


def download(body: bytes, filename: str, fmt: str) -> web.Response:
    content_type = "text/csv" if fmt == "csv" else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return web.Response(
        body=body,
        content_type=content_type,
        charset="utf-8" if fmt == "csv" else None,
        headers={"Content-Disposition": f'attachment; filename="{filename}.{fmt}"', "Cache-Control": "no-store"},
    )
