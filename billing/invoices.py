"""Monthly tax invoices: content from the ledger and the readings (`billing.rules.invoice`), a PDF
(reportlab), a number from a gapless series taken in the invoice's own transaction, e-mail to the
subscriber (at most once) and download."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import ledger, numbers, readings, registry
from billing.errors import NotFound
from billing.notices import EmailSender
from billing.pdf import render_invoice
from billing.rules.consumption import Granularity
from billing.rules.invoice import InvoiceContent, InvoiceLine, Party, build_invoice, format_number
from billing.rules.money import Money
from billing.rules.tariffs import cost_of, version_at
from billing.rules.units import KWH, Unit, unit_of
from billing.tariffs import Tariff, get_tariff
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.sql import among
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress

log = logging.getLogger("smsmeter.billing.invoices")


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _plain(value: Any) -> Any:
    """Amounts as their minor units, dates as ISO text, values as dicts of their fields (`dataclasses.asdict`
    without its deep copies: a tenth of the cost, which counts at a million invoices)."""
    if isinstance(value, Money):
        return value.minor
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    return value


def _jsonable(content: InvoiceContent) -> dict[str, Any]:
    return _plain(content)  # type: ignore[no-any-return]


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


@dataclass(frozen=True, slots=True)
class _Run:
    """What every page of one invoicing run shares."""

    period_start: date
    period_end: date
    now: datetime
    utility: Party
    vat_bp: int
    series: str
    tz: tzinfo
    subscriber_ids: list[int] | None
    heat_in_gcal: bool = False  # heat invoiced and priced per Gcal
    tariffs: dict[int, Tariff] = field(default_factory=dict)  # read once a run

    @property
    def span(self) -> tuple[datetime, datetime]:
        start = datetime.combine(self.period_start, time(), self.tz).astimezone(UTC)
        return start, datetime.combine(self.period_end + timedelta(days=1), time(), self.tz).astimezone(UTC)


async def _units(conn: AsyncConnection, subscriber_ids: list[int], heat_in_gcal: bool = False) -> dict[int, Unit]:
    """Each subscriber's unit: that of its meters' kind (a water subscriber is billed in m³ from its volume
    register, a heat subscriber in kWh or Gcal from its heat register); a subscriber without a meter reads in
    kWh."""
    m = R.meters.c
    rows = await conn.execute(
        select(m.subscriber_id, m.kind).where(m.subscriber_id.in_(subscriber_ids)).order_by(m.subscriber_id, m.id)
    )
    out: dict[int, Unit] = {}
    for subscriber_id, kind in rows:
        out.setdefault(int(subscriber_id), unit_of(kind, heat_in_gcal=heat_in_gcal))
    return out


async def _issue_page(conn: AsyncConnection, run: _Run, after: int, page_size: int) -> tuple[list[int], int | None]:
    """The invoices of the next `page_size` subscribers after id `after` (closed ones and those invoiced for the
    period aside), in one transaction with their numbers: the series is held first, so no other run issues for
    the same subscribers meanwhile and the numbers have no gaps. Returns (invoice ids, the last subscriber id
    looked at; None when there are no more)."""
    s, i = R.subscribers.c, L.invoices.c
    first_number = await numbers.take(conn, f"invoice:{run.series}", 0)
    stmt = select(s.id).where(s.status != "closed", s.id > after).order_by(s.id).limit(page_size)
    if run.subscriber_ids is not None:
        stmt = stmt.where(s.id.in_(run.subscriber_ids))
    page = list((await conn.scalars(stmt)).all())
    if not page:
        return [], None
    invoiced = await conn.scalars(
        select(i.subscriber_id).where(among(i.subscriber_id, page, conn), i.period_start == run.period_start)
    )
    done = set(invoiced)
    ids = [sid for sid in page if sid not in done]
    if not ids:  # all invoiced already (a run resumed): on to the next page
        return [], page[-1]
    subscribers = await registry.get_subscribers(conn, ids)
    currencies = {sub.account_id: sub.currency for sub in subscribers}
    start, end = run.span
    opening = await ledger.balances_many(conn, currencies, before=start)
    postings = await ledger.postings_many(conn, currencies, start, end)
    meters = await readings.subscribers_meters(conn, ids)
    units = await _units(conn, ids, run.heat_in_gcal)
    hourly: dict[int, dict[datetime, int]] = {}
    for register in sorted({u.register for u in units.values()} | {KWH.register}):
        of_register = {s: m for s, m in meters.items() if units.get(s, KWH).register == register}
        hourly.update(
            await readings.groups_consumption(
                conn, of_register, start, end, Granularity.HOUR, run.tz, register=register
            )
        )
    rows = []
    for n, sub in enumerate(subscribers):
        energy = Money.zero(sub.currency)
        if sub.tariff_id is not None:
            if sub.tariff_id not in run.tariffs:
                run.tariffs[sub.tariff_id] = await get_tariff(conn, sub.tariff_id)
            versions = run.tariffs[sub.tariff_id].versions
            version = version_at(versions, start) or (versions[0] if versions else None)
            if version is not None:
                energy = cost_of(
                    version.body,
                    sorted(hourly[sub.id].items()),
                    sub.currency,
                    tz=run.tz,
                    base_per_unit=units.get(sub.id, KWH).base_per_unit,
                )
        number = format_number(run.series, first_number + n)
        content = build_invoice(
            number=number,
            issued_on=run.now.astimezone(run.tz).date(),
            period_start=run.period_start,
            period_end=run.period_end,
            utility=run.utility,
            subscriber=Party(sub.name, sub.code, sub.address),
            opening=opening[sub.account_id],
            postings=postings[sub.account_id],
            consumption_wh=sum(hourly[sub.id].values()),
            energy_value=energy,
            vat_bp=run.vat_bp,
            unit=units.get(sub.id, KWH),
        )
        rows.append(
            {
                "number": number,
                "subscriber_id": sub.id,
                "account_id": sub.account_id,
                "period_start": run.period_start,
                "period_end": run.period_end,
                "issued_at": run.now,
                "content": {**_jsonable(content), "language": sub.language},
            }
        )
    await numbers.take(conn, f"invoice:{run.series}", len(rows))
    issued = await conn.execute(_INSERT_INVOICES, rows) if rows else []
    return [int(r.id) for r in issued], page[-1]


_INSERT_INVOICES = insert(L.invoices).returning(L.invoices.c.id, sort_by_parameter_order=True)


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
    heat_in_gcal: bool = False,
) -> int:
    """One invoice per subscriber (closed ones aside) for the period; re-running issues only the missing ones;
    returns how many were issued. A page of subscribers (in id order) at a time, each page in one transaction
    with its numbers, read with a statement or two per page rather than per subscriber; memory does not grow
    with the utility, and a stop between pages leaves the rest to the next run."""
    run = _Run(period_start, period_end, now, utility, vat_bp, series, tz, subscriber_ids, heat_in_gcal)
    issued = 0  # a count, not the ids: a million of them would be the one thing that grows with the utility
    after: int | None = 0
    while after is not None and not progress.stop_requested:
        async with uow.begin() as conn:
            page, after = await _issue_page(conn, run, after, page_size)
        issued += len(page)
        progress.advanced(len(page))
    log.info("issued %s invoices for %s - %s", issued, period_start, period_end)
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
