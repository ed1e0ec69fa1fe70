"""Monthly tax invoices: content from the ledger and the readings (`billing.rules.invoice`), a PDF
(reportlab), a number from a gapless series taken in the invoice's own transaction, e-mail to the
subscriber (at most once) and download."""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
from billing.rules.invoice import InvoiceContent, InvoiceLine, Party, build_invoice, format_number
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


def _content_of(stored: Mapping[str, Any]) -> InvoiceContent:
    """The invoice content `_jsonable` stored (amounts in minor units of the invoice's currency)."""
    currency = str(stored["currency"])

    def money(minor: Any) -> Money:
        return Money(int(minor), currency)

    return InvoiceContent(
        number=stored["number"],
        issued_on=date.fromisoformat(stored["issued_on"]),
        period_start=date.fromisoformat(stored["period_start"]),
        period_end=date.fromisoformat(stored["period_end"]),
        utility=Party(**stored["utility"]),
        subscriber=Party(**stored["subscriber"]),
        consumption_wh=int(stored["consumption_wh"]),
        energy_value=money(stored["energy_value"]),
        vat_included=money(stored["vat_included"]),
        lines=tuple(
            InvoiceLine(ln["description"], money(ln["amount"]), ln.get("quantity", "")) for ln in stored["lines"]
        ),
        payments=money(stored["payments"]),
        charges=money(stored["charges"]),
        opening_debt=money(stored["opening_debt"]),
        closing_debt=money(stored["closing_debt"]),
        currency=currency,
    )


def _pdf(pdf: bytes | None, content: Mapping[str, Any]) -> bytes:
    """The invoice's PDF: the one drawn at issue (invoices issued before PDFs were drawn on demand), or drawn
    now from its content."""
    return bytes(pdf) if pdf else render_invoice(_content_of(content), str(content.get("language", "en")))


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
            content={**_jsonable(content), "language": sub.language},
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
    i = L.invoices.c
    row = (await conn.execute(select(i.pdf, i.content).where(i.number == number))).first()
    if row is None:
        raise NotFound("invoice", number)
    return _pdf(row.pdf, row.content)


async def invoice_document(
    conn: AsyncConnection, invoice_id: int, *, subscriber_id: int | None = None
) -> tuple[str, bytes] | None:
    """(number, PDF) of an invoice — only of `subscriber_id`'s own when given (the portal)."""
    i = L.invoices.c
    query = select(i.number, i.pdf, i.content).where(i.id == invoice_id)
    if subscriber_id is not None:
        query = query.where(i.subscriber_id == subscriber_id)
    row = (await conn.execute(query)).first()
    return None if row is None else (row.number, _pdf(row.pdf, row.content))


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
                select(i.id, i.number, i.pdf, i.content, i.period_start, i.period_end, s.email, s.name)
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
                [(f"{r.number}.pdf", _pdf(r.pdf, r.content), "application/pdf")],
            )
            sent += 1
        except Exception as exc:  # released for the next run; the reason is logged
            log.warning("invoice %s to %s not sent: %s", r.number, r.email, exc)
            async with uow.begin() as conn:
                await conn.execute(update(L.invoices).where(i.id == r.id).values(emailed_at=None))
    return sent, len(rows)
