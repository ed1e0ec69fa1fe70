"""Reconciliation: what the provider says was paid, matched with what smsmeter recorded.

For a window [start, end) it lists the provider's PaymentIntents and balance transactions and finds:
- `matched`: paid there and credited here, same amount (the provider's fee is noted and stored);
- `applied`: paid there, never credited here (a webhook that never came): applied now, through the same
  `process_event` path as a webhook (event id "reconcile:<PaymentIntent>"), so a late webhook changes nothing;
- `missing_here`: paid there, and no top-up here to credit (a person decides);
- `missing_there`: credited here, not paid there;
- `amount_mismatch`: both sides, different amounts (or the payment is held as a conflict);
- `not_delivered`: paid (any provider) more than N hours ago, but its credit command is not at 1:1 (the
  command's state as the gateway tells it, through `CommandBook`).
The report goes to the console and to CSV and XLSX files; a row in `reconciliation_runs` keeps the counts.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import insert, or_, select, update

from payments.errors import PaymentsError
from payments.events import PaymentLocator, PaymentSucceeded
from payments.ports import CommandBook, PaymentApplier
from payments.processing import Outcome, process_event
from payments.stripe_api import BalanceTransaction, ProviderPayment
from store.schema.payments import payments, reconciliation_runs
from store.uow import UnitOfWork

log = logging.getLogger("smsmeter.payments")

KINDS = ("matched", "applied", "missing_here", "missing_there", "amount_mismatch", "not_delivered")


class PaymentLister(Protocol):
    async def list_payment_intents(self, start: datetime, end: datetime) -> list[ProviderPayment]: ...

    async def list_balance_transactions(self, start: datetime, end: datetime) -> list[BalanceTransaction]: ...


@dataclass(frozen=True, slots=True)
class ReportLine:
    kind: str
    provider: str
    provider_ref: str
    reference: str
    currency: str
    our_amount_minor: int | None
    their_amount_minor: int | None
    fee_minor: int | None
    command_state: str
    detail: str


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    provider: str
    window_start: datetime
    window_end: datetime
    generated_at: datetime
    lines: tuple[ReportLine, ...] = field(default_factory=tuple)
    run_id: int | None = None  # the reconciliation_runs row

    def counts(self) -> dict[str, int]:
        counted = Counter(line.kind for line in self.lines)
        return {kind: counted.get(kind, 0) for kind in KINDS}

    def of_kind(self, kind: str) -> list[ReportLine]:
        return [line for line in self.lines if line.kind == kind]

    @property
    def fees_minor(self) -> int:
        return sum(line.fee_minor or 0 for line in self.lines)


async def reconcile(
    uow: UnitOfWork,
    lister: PaymentLister,
    applier: PaymentApplier,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    commands: CommandBook,
    delivery_after: timedelta = timedelta(hours=6),
    provider: str = "stripe",
    triggered_by: str = "system:reconcile",
) -> ReconciliationReport:
    async with uow.begin() as conn:
        run_id = (
            await conn.execute(
                insert(reconciliation_runs)
                .values(
                    provider=provider, window_start=start, window_end=end, started_at=now, triggered_by=triggered_by
                )
                .returning(reconciliation_runs.c.id)
            )
        ).scalar_one()
    intents = [pi for pi in await lister.list_payment_intents(start, end) if pi.status == "succeeded"]
    fees = {
        bt.source: bt.fee_minor
        for bt in await lister.list_balance_transactions(start, end)
        if bt.type in ("charge", "payment") and bt.source
    }
    lines: list[ReportLine] = []
    seen_payment_ids: set[int] = set()
    for pi in intents:
        lines.append(
            await _match_intent(uow, applier, pi, fees.get(pi.charge_id or ""), now, provider, seen_payment_ids)
        )
    lines.extend(await _missing_there(uow, provider, start, end, seen_payment_ids))
    lines.extend(await _not_delivered(uow, commands, now - delivery_after))
    report = ReconciliationReport(provider, start, end, now, tuple(lines), run_id)
    async with uow.begin() as conn:
        await conn.execute(
            update(reconciliation_runs)
            .where(reconciliation_runs.c.id == run_id)
            .values(finished_at=now, counts=report.counts())
        )
    log.info("reconciliation %s %s..%s: %s", provider, start.isoformat(), end.isoformat(), report.counts())
    return report


async def _match_intent(
    uow: UnitOfWork,
    applier: PaymentApplier,
    pi: ProviderPayment,
    fee: int | None,
    now: datetime,
    provider: str,
    seen: set[int],
) -> ReportLine:
    reference = pi.metadata.get("reference")
    async with uow.begin() as conn:
        conditions = [payments.c.payment_intent_id == pi.payment_intent_id]
        if reference:
            conditions.append(payments.c.reference == reference)
        row = (await conn.execute(select(payments).where(or_(*conditions)))).first()
        if row is not None and fee is not None and row.fee_minor != fee:
            await conn.execute(update(payments).where(payments.c.id == row.id).values(fee_minor=fee))

    def line(kind: str, detail: str, ours: int | None, state: str = "") -> ReportLine:
        return ReportLine(
            kind,
            provider,
            pi.payment_intent_id,
            reference or "",
            pi.currency,
            ours,
            pi.amount_minor,
            fee,
            state,
            detail,
        )

    if row is None:
        return line("missing_here", "paid at the provider; no top-up here to credit", None)
    seen.add(row.id)
    if row.paid_at is not None:
        if row.amount_minor != pi.amount_minor or row.currency != pi.currency:
            return line("amount_mismatch", f"credited {row.amount_minor} {row.currency}", row.amount_minor)
        return line("matched", row.status, row.amount_minor)
    event = PaymentSucceeded(
        event_id=f"reconcile:{pi.payment_intent_id}",
        event_type="reconciliation.payment_found",
        occurred_at=pi.created,
        payment=PaymentLocator(
            provider=provider,
            provider_ref=pi.payment_intent_id,
            reference=reference,
            payment_intent_id=pi.payment_intent_id,
            charge_id=pi.charge_id,
        ),
        amount_minor=pi.amount_minor,
        currency=pi.currency,
        subscriber_code=pi.metadata.get("subscriber"),
        meter_code=pi.metadata.get("meter"),
    )
    try:
        result = await process_event(uow, event, applier, now)
    except PaymentsError as exc:
        return line("missing_here", f"could not apply: {exc}", row.amount_minor)
    if result.outcome is Outcome.APPLIED:
        return line("applied", "webhook never arrived: credited now", row.amount_minor)
    if result.outcome is Outcome.CONFLICT:
        return line("amount_mismatch", f"held as a conflict: {result.detail}", row.amount_minor)
    return line("matched", f"{result.outcome.value}: {result.detail}", row.amount_minor)


async def _missing_there(
    uow: UnitOfWork, provider: str, start: datetime, end: datetime, seen: set[int]
) -> list[ReportLine]:
    async with uow.connect() as conn:
        rows = (
            await conn.execute(
                select(payments).where(
                    payments.c.provider == provider,
                    payments.c.paid_at.is_not(None),
                    payments.c.created_at >= start,
                    payments.c.created_at < end,
                )
            )
        ).all()
    return [
        ReportLine(
            "missing_there",
            provider,
            row.payment_intent_id or row.provider_ref,
            row.reference or "",
            row.currency,
            row.amount_minor,
            None,
            None,
            "",
            "credited here; the provider lists no such succeeded payment",
        )
        for row in rows
        if row.id not in seen
    ]


_UNDELIVERED_CHUNK = 5_000  # paid payments read a chunk at a time, their commands' states asked per chunk


async def _not_delivered(uow: UnitOfWork, commands: CommandBook, paid_before: datetime) -> list[ReportLine]:
    p = payments.c
    paid = (
        select(payments)
        .where(p.paid_at.is_not(None), p.paid_at < paid_before, p.status.in_(("paid", "partially_refunded")))
        .order_by(p.id)
        .limit(_UNDELIVERED_CHUNK)
    )
    lines: list[ReportLine] = []
    after = 0
    async with uow.connect() as conn:
        while rows := (await conn.execute(paid.where(p.id > after))).all():
            after = rows[-1].id
            states = await commands.states(conn, {r.credit_command_id for r in rows if r.credit_command_id is not None})
            for row in rows:
                state = states.get(row.credit_command_id) if row.credit_command_id is not None else None
                if state != "1:1":
                    lines.append(_not_delivered_line(row, state))
    return lines


def _not_delivered_line(row: Any, command_state: str | None) -> ReportLine:
    return ReportLine(
        "not_delivered",
        row.provider,
        row.payment_intent_id or row.provider_ref,
        row.reference or "",
        row.currency,
        row.amount_minor,
        None,
        None,
        command_state or "",
        f"paid {row.paid_at.isoformat()}; credit command "
        + (f"in state {command_state}" if command_state else "not recorded"),
    )


async def record_report_path(uow: UnitOfWork, run_id: int, path: Path) -> None:
    async with uow.begin() as conn:
        await conn.execute(
            update(reconciliation_runs).where(reconciliation_runs.c.id == run_id).values(report_path=str(path))
        )


HEADER = tuple(f.name for f in fields(ReportLine))


def write_csv(report: ReconciliationReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(astuple(line) for line in report.lines)
    return path


def write_xlsx(report: ReconciliationReport, path: Path) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "Summary"
    summary.append(["Provider", report.provider])
    summary.append(["Window start (UTC)", report.window_start.replace(tzinfo=None)])
    summary.append(["Window end (UTC)", report.window_end.replace(tzinfo=None)])
    summary.append(["Generated (UTC)", report.generated_at.replace(tzinfo=None)])
    summary.append(["Fees (minor units)", report.fees_minor])
    for kind, count in report.counts().items():
        summary.append([kind, count])
    sheet = book.create_sheet("Lines")
    sheet.append(list(HEADER))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for line in report.lines:
        sheet.append(list(astuple(line)))
    sheet.freeze_panes = "A2"
    book.save(path)
    return path


def format_console(report: ReconciliationReport, lines: Sequence[ReportLine] | None = None) -> str:
    counts = report.counts()
    out = [
        f"Reconciliation {report.provider} {report.window_start.isoformat()} .. {report.window_end.isoformat()}",
        "  " + "  ".join(f"{kind}={count}" for kind, count in counts.items()) + f"  fees={report.fees_minor}",
    ]
    for line in lines if lines is not None else report.lines:
        if line.kind == "matched":
            continue
        out.append(
            f"  {line.kind:<16} {line.provider_ref:<30} ours={line.our_amount_minor} theirs={line.their_amount_minor}"
            f" {line.currency} {line.command_state} {line.detail}"
        )
    return "\n".join(out)
