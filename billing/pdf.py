"""PDF rendering with reportlab: invoices and cash receipts (A4, Unicode through a TrueType font when the
system has DejaVu Sans; else reportlab's Helvetica, Latin-1)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from reportlab.lib.pagesizes import A4, A6, landscape
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from billing.rules.invoice import InvoiceContent
from billing.rules.invoice_text import say

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
)
_font_name: str | None = None


def _font() -> str:
    global _font_name
    if _font_name is None:
        _font_name = "Helvetica"
        for candidate in _FONT_CANDIDATES:
            if Path(candidate).exists():
                pdfmetrics.registerFont(TTFont("DejaVuSans", candidate))
                _font_name = "DejaVuSans"
                break
    return _font_name


def _safe(text: str) -> str:
    if _font() == "Helvetica":
        return text.encode("latin-1", "replace").decode("latin-1")
    return text


def render_invoice(content: InvoiceContent, language: str = "en") -> bytes:
    """The invoice as an A4 PDF, its labels and lines in `language` (billing.rules.invoice_text)."""

    def t(text: str) -> str:
        return say(text, language)

    font = _font()
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=True)
    pdf.setTitle(f"{t('Invoice')} {content.number}")
    width, height = A4
    y = height - 20 * mm
    pdf.setFont(font, 16)
    pdf.drawString(20 * mm, y, _safe(f"{t('Tax invoice')} {content.number}"))
    pdf.setFont(font, 10)
    y -= 8 * mm
    pdf.drawString(20 * mm, y, _safe(f"{t('Issued')} {content.issued_on.isoformat()}"))
    pdf.drawString(
        110 * mm, y, _safe(f"{t('Period')} {content.period_start.isoformat()} – {content.period_end.isoformat()}")
    )
    y -= 10 * mm
    for title, party in ((t("From"), content.utility), (t("To"), content.subscriber)):
        pdf.setFont(font, 11)
        pdf.drawString(20 * mm, y, _safe(f"{title}: {party.name}"))
        pdf.setFont(font, 9)
        details = [party.address]
        if party.code:
            details.append(f"{t('Account')} {party.code}")
        if party.tax_id:
            details.append(f"{t('Tax id')} {party.tax_id}")
        for detail in details:
            y -= 5 * mm
            pdf.drawString(28 * mm, y, _safe(detail))
        y -= 8 * mm
    y -= 4 * mm
    pdf.setFont(font, 10)
    pdf.drawString(20 * mm, y, _safe(t("Description")))
    pdf.drawString(120 * mm, y, _safe(t("Quantity")))
    pdf.drawRightString(width - 20 * mm, y, _safe(t("Amount")))
    y -= 2 * mm
    pdf.line(20 * mm, y, width - 20 * mm, y)
    for line in content.lines:
        y -= 6 * mm
        pdf.drawString(20 * mm, y, _safe(t(line.description)))
        pdf.drawString(120 * mm, y, _safe(line.quantity))
        pdf.drawRightString(width - 20 * mm, y, line.amount.format())
    y -= 4 * mm
    pdf.line(20 * mm, y, width - 20 * mm, y)
    y -= 8 * mm
    pdf.setFont(font, 11)
    pdf.drawString(20 * mm, y, _safe(f"{t('Debt at the end of the period')}: {content.closing_debt.format()}"))
    y -= 6 * mm
    pdf.setFont(font, 9)
    pdf.drawString(20 * mm, y, _safe(f"{t('VAT included')}: {content.vat_included.format()}"))
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def render_receipt(title: str, lines: Sequence[tuple[str, str]]) -> bytes:
    font = _font()
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A6, invariant=True)
    width, height = A6
    y = height - 12 * mm
    pdf.setFont(font, 12)
    pdf.drawString(8 * mm, y, _safe(title))
    pdf.setFont(font, 9)
    for label, value in lines:
        y -= 6 * mm
        pdf.drawString(8 * mm, y, _safe(label))
        pdf.drawRightString(width - 8 * mm, y, _safe(value))
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def render_table(
    title: str, subtitle: str, headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]
) -> bytes:
    """A table as a landscape A4 PDF (a report sent or downloaded as PDF): the title and subtitle on the first
    page, the column headers on every page, a column `right`-aligned where it holds numbers or money, a cell
    cut with "…" where it is wider than its column, and the page number in the footer."""
    font = _font()
    page_size = landscape(A4)
    width, height = page_size
    margin: float = 12 * mm
    column: float = (width - 2 * margin) / max(1, len(headers))
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=page_size, invariant=True)
    pdf.setTitle(_safe(title))

    def fit(text: str, size: float) -> str:
        text = _safe(text)
        if pdfmetrics.stringWidth(text, font, size) <= column - 2 * mm:
            return text
        while text and pdfmetrics.stringWidth(text + "…", font, size) > column - 2 * mm:
            text = text[:-1]
        return _safe(text + "…")

    def cells(y: float, values: Sequence[str], size: float) -> None:
        pdf.setFont(font, size)
        for index, value in enumerate(values):
            x = margin + index * column
            if right[index]:
                pdf.drawRightString(x + column - 1 * mm, y, fit(value, size))
            else:
                pdf.drawString(x + 1 * mm, y, fit(value, size))

    def head(page: int) -> float:
        y = height - margin
        if page == 1:
            pdf.setFont(font, 14)
            pdf.drawString(margin, y - 4 * mm, _safe(title))
            pdf.setFont(font, 9)
            pdf.drawString(margin, y - 10 * mm, _safe(subtitle))
            y -= 18 * mm
        cells(y, headers, 8)
        pdf.line(margin, y - 1.5 * mm, width - margin, y - 1.5 * mm)
        pdf.setFont(font, 7)
        pdf.drawRightString(width - margin, margin / 2, str(page))
        return float(y - 6 * mm)

    page = 1
    y = head(page)
    for row in rows:
        if y < margin:
            pdf.showPage()
            page += 1
            y = head(page)
        cells(y, row, 8)
        y -= 5 * mm
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
