"""Printable receipts for cashier top-ups and for STS tokens: text (for a receipt printer) and PDF. A top-up
delivered by token prints its 20 digits (a token for a non-cash top-up prints as a token slip, "T-<id>")."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import meter_registry, registry, topup
from billing.errors import NotFound
from billing.pdf import render_receipt
from billing.sts import grouped
from store.schema import ledger as L  # noqa: N812


async def _lines(conn: AsyncConnection, topup_id: int) -> tuple[str, list[tuple[str, str]]]:
    result = await topup.get_top_up(conn, topup_id)
    if result.receipt_number is None and result.sts_token is None:
        raise NotFound("cash receipt for top-up", topup_id)
    row = (
        await conn.execute(select(L.topups.c.created_at, L.topups.c.created_by).where(L.topups.c.id == topup_id))
    ).one()
    subscriber = await registry.get_subscriber(conn, result.subscriber_id)
    meter = await meter_registry.get_meter(conn, result.meter_id) if result.meter_id else None
    lines = [
        ("Date (UTC)", row.created_at.strftime("%Y-%m-%d %H:%M")),
        ("Cashier", row.created_by),
        ("Account", subscriber.code),
        ("Name", subscriber.name),
        ("Address", subscriber.address),
        ("Meter", meter.code if meter else "-"),
        ("Paid", result.amount.format()),
        ("Debt repaid", result.recovered.format()),
        ("Credit to the meter", result.vended.format()),
        ("Transfer", str(result.transfer_id or "-")),
    ]
    if result.sts_token is not None:
        lines.append(("STS token", grouped(result.sts_token)))
    return result.receipt_number or f"T-{topup_id:08d}", lines


async def receipt_text(conn: AsyncConnection, topup_id: int, *, utility: str) -> str:
    number, lines = await _lines(conn, topup_id)
    width = 40
    out = [utility.center(width), f"Receipt {number}".center(width), "-" * width]
    out += [f"{label}:".ljust(20) + value.rjust(width - 20) for label, value in lines]
    out.append("-" * width)
    return "\n".join(out) + "\n"


async def render_receipt_pdf(conn: AsyncConnection, topup_id: int, *, utility: str) -> bytes:
    number, lines = await _lines(conn, topup_id)
    return render_receipt(f"{utility} — receipt {number}", lines)
