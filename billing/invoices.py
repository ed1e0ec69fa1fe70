"""Monthly tax invoices: content from the ledger and the readings (`billing.rules.invoice`), a PDF
(reportlab), a number from a gapless series taken in the invoice's own transaction, e-mail to the
subscriber (at most once) and download."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import ledger, numbers, readings, registry
from billing.errors import NotFound
from billing.notices import EmailSender
from billing.pdf import render_invoice
from billing.rules.consumption import Granularity
from billing.rules.invoice import InvoiceContent, Party, build_invoice, format_number
from billing.rules.money import Money
from billing.rules.tariffs import cost_of, version_at
from billing.tariffs import get_tariff
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress

log = logging.getLogger("smsmeter.billing.invoices")


def _jsonable(content: InvoiceContent) -> dict[str, Any]:
    def conv(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"minor", "currency"}:
                return value["minor"]
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [conv(v) for v in value]
        if isinstance(value, date):
            return value.isoformat()
        return value

    return conv(asdict(content))  # type: ignore[no-any-return]


def previous_month(today: date) -> tuple[date, date]:
    first = today.replace(day=1)
    end = first - timedelta(days=1)
    return end.replace(day=1), end


async def _issue_one(
    conn: AsyncConnection,
    subscriber_id: int,
    period_start: date,
    period_end: date,
    now: datetime,
    *,
    utility: Party,
    vat_bp: int,
    series: str,
    tz: tzinfo,
) -> int | None:
    i = L.invoices.c
    if (
        await conn.scalar(select(i.id).where(i.subscriber_id == subscriber_id, i.period_start == period_start))
        is not None
    ):
        return None
    sub = await registry.get_subscriber(conn, subscriber_id)
    start = datetime.combine(period_start, time(), tz).astimezone(UTC)
    end = datetime.combine(period_end + timedelta(days=1), time(), tz).astimezone(UTC)
    opening = await ledger.balances(conn, sub.account_id, before=start)
    postings = [e.posting() for e in await ledger.entries(conn, sub.account_id, since=start, until=end)]
    meters = await readings.scope_meters(conn, subscriber_id=subscriber_id)
    hourly = await readings.meters_consumption(conn, meters, start, end, Granularity.HOUR, tz)
    consumption_wh = sum(hourly.values())
    energy = Money.zero(sub.currency)
    if sub.tariff_id is not None:
        tariff = await get_tariff(conn, sub.tariff_id)
        version = version_at(tariff.versions, start) or (tariff.versions[0] if tariff.versions else None)
        if version is not None:
            energy = cost_of(version.body, sorted(hourly.items()), sub.currency, tz=tz)
    number = format_number(series, await numbers.take(conn, f"invoice:{series}"))
    content = build_invoice(
        number=number,
        issued_on=now.astimezone(tz).date(),
        period_start=period_start,
        period_end=period_end,
        utility=utility,
        subscriber=Party(sub.name, sub.code, sub.address),
        opening=opening,
        postings=postings,
        consumption_wh=consumption_wh,
        energy_value=energy,
        vat_bp=vat_bp,
    )
    invoice_id = await conn.scalar(
        insert(L.invoices)
        .values(
            number=number,
            subscriber_id=subscriber_id,
            account_id=sub.account_id,
            period_start=period_start,
            period_end=period_end,
            issued_at=now,
            content=_jsonable(content),
            pdf=render_invoice(content),
        )
        .returning(i.id)
    )
    return int(invoice_id) if invoice_id is not None else None


async def issue_invoices(
    uow: UnitOfWork,
    period_start: date,
    period_end: date,
    now: datetime,
    *,
    utility: Party,
    vat_bp: int = 0,
    series: str = "INV",
    tz: tzinfo = UTC,
    subscriber_ids: list[int] | None = None,
    page_size: int = 500,
    progress: JobProgress = UNWATCHED,
) -> list[int]:
    """One invoice per subscriber (closed ones aside) for the period; re-running issues only the missing
    ones. Each invoice in its own transaction with its number, so the series has no gaps. Subscribers are read
    a page at a time (those without an invoice for the period, in id order), so memory does not grow with the
    utility; a stop between invoices leaves the rest to the next run."""
    s, i = R.subscribers.c, L.invoices.c
    issued: list[int] = []
    after = 0
    while not progress.stop_requested:
        async with uow.connect() as conn:
            stmt = (
                select(s.id)
                .where(
                    s.status != "closed",
                    s.id > after,
                    ~exists().where(i.subscriber_id == s.id, i.period_start == period_start),
                )
                .order_by(s.id)
                .limit(page_size)
            )
            if subscriber_ids is not None:
                stmt = stmt.where(s.id.in_(subscriber_ids))
            ids = list((await conn.scalars(stmt)).all())
        if not ids:
            break
        for sid in ids:
            if progress.stop_requested:
                break
            async with uow.begin() as conn:
                invoice_id = await _issue_one(
                    conn, sid, period_start, period_end, now, utility=utility, vat_bp=vat_bp, series=series, tz=tz
                )
            if invoice_id is not None:
                issued.append(invoice_id)
            progress.advanced(1)
        after = ids[-1]
    log.info("issued %s invoices for %s - %s", len(issued), period_start, period_end)
    return issued


async def invoice_pdf(conn: AsyncConnection, number: str) -> bytes:
    pdf = await conn.scalar(select(L.invoices.c.pdf).where(L.invoices.c.number == number))
    if pdf is None:
        raise NotFound("invoice", number)
    return bytes(pdf)


async def invoices_of(conn: AsyncConnection, subscriber_id: int) -> list[dict[str, Any]]:
    i = L.invoices.c
    rows = await conn.execute(
        select(i.id, i.number, i.period_start, i.period_end, i.issued_at, i.emailed_at, i.content)
        .where(i.subscriber_id == subscriber_id)
        .order_by(i.period_start.desc())
    )
    return [dict(r._mapping) for r in rows]


async def email_invoices(
    uow: UnitOfWork, sender: EmailSender, now: datetime, *, batch: int = 100, progress: JobProgress = UNWATCHED
) -> int:
    """E-mail invoices not yet sent to subscribers with an address, a batch at a time until none is left or the
    service stops. Returns how many were sent."""
    sent = 0
    while not progress.stop_requested:
        done, claimed = await _email_batch(uow, sender, now, batch)
        sent += done
        progress.advanced(done)
        if claimed < batch or done == 0:  # all left, or the mail server refuses: the next run tries again
            break
    return sent


async def _email_batch(uow: UnitOfWork, sender: EmailSender, now: datetime, batch: int) -> tuple[int, int]:
    """One batch: claimed (emailed_at set) before the send, so an invoice is never mailed twice; a failed send
    is released for the next run. Returns (sent, claimed)."""
    i, s = L.invoices.c, R.subscribers.c
    async with uow.begin() as conn:
        rows = (
            await conn.execute(
                select(i.id, i.number, i.pdf, i.period_start, i.period_end, s.email, s.name)
                .join(R.subscribers, s.id == i.subscriber_id)
                .where(i.emailed_at.is_(None), s.email.is_not(None))
                .order_by(i.id)
                .limit(batch)
            )
        ).all()
        if rows:
            await conn.execute(update(L.invoices).where(i.id.in_([r.id for r in rows])).values(emailed_at=now))
    sent = 0
    for r in rows:
        try:
            await sender.send_email(
                r.email,
                f"Invoice {r.number}",
                f"Dear {r.name},\n\nyour invoice {r.number} for {r.period_start} - {r.period_end} is attached.\n",
                [(f"{r.number}.pdf", bytes(r.pdf), "application/pdf")],
            )
            sent += 1
        except Exception as exc:  # released for the next run; the reason is logged
            log.warning("invoice %s to %s not sent: %s", r.number, r.email, exc)
            async with uow.begin() as conn:
                await conn.execute(update(L.invoices).where(i.id == r.id).values(emailed_at=None))
    return sent, len(rows)
