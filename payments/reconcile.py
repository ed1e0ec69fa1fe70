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
A run works in batches of BATCH (the listing in payment-intent order, then our payments in id order), each
batch one transaction with its findings (`reconciliation_findings`) and the run's position, reporting progress
to the scheduler's JobRun; a run stopped halfway resumes there (`payments.reconcile_runs.unfinished_runs`,
`reconcile(resume=...)`), and one process at a time works on a run (its lease, in `payments.reconcile_runs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
from bisect import bisect_right
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, astuple, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import PaymentsError
from payments.events import PaymentLocator, PaymentSucceeded
from payments.ports import CommandBook, PaymentApplier
from payments.processing import Outcome, process_event
from payments.reconcile_runs import LEASE, claim_run, open_run
from payments.stripe_api import BalanceTransaction, ProviderPayment
from store.audit import Actor
from store.schema.payments import payments, reconciliation_findings, reconciliation_runs
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress

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
    finished: bool = True  # False: the run stopped before its end (it resumes from its recorded position)

    def counts(self) -> dict[str, int]:
        counted = Counter(line.kind for line in self.lines)
        return {kind: counted.get(kind, 0) for kind in KINDS}

    def of_kind(self, kind: str) -> list[ReportLine]:
        return [line for line in self.lines if line.kind == kind]

    @property
    def fees_minor(self) -> int:
        return sum(line.fee_minor or 0 for line in self.lines)


BATCH = 1_000  # listed payments, our payments or credit commands looked at per transaction


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
    progress: JobProgress = UNWATCHED,
    resume: int | None = None,
    clock: Callable[[], datetime] | None = None,
    actor: Actor | None = None,
) -> ReconciliationReport:
    """Reconcile [start, end) in batches of BATCH, each batch one transaction with its findings and the run's
    position, so a run stopped halfway (`progress.stop_requested`, a restart, a cancel) resumes where it
    stopped when `resume` names it (its window is the run's own; `payments.reconcile_runs.open_run` opens one
    to carry on later). The run is worked on under its lease (`payments.reconcile_runs`), moved on by `clock`
    at every batch: raises RunBusy when another process holds it. Returns the report; its `finished` is False
    when the run stopped before its end (a finished run named by `resume` answers its report again). `actor`:
    the person or key who started or resumed it, for the audit log."""
    r = reconciliation_runs.c
    clock = clock or (lambda: now)
    if resume is None:
        resume = await open_run(uow, provider, start, end, now, triggered_by=triggered_by, actor=actor)
        actor = None  # its start is in the audit log; working on it is not a resume
    async with uow.begin() as conn:
        if not await claim_run(conn, resume, clock(), actor):
            row = (await conn.execute(select(reconciliation_runs).where(r.id == resume))).one()
            return await _report(uow, resume, row.provider, row.window_start, row.window_end, now, finished=True)
        row = (await conn.execute(select(reconciliation_runs).where(r.id == resume))).one()
        run_id, provider, phase, position = resume, row.provider, row.phase, row.position
        start, end = row.window_start, row.window_end
    run = _Run(uow, run_id, provider, progress, clock)
    try:
        return await _work(run, lister, applier, start, end, now, commands, delivery_after, phase, position)
    finally:
        with contextlib.suppress(Exception):  # a lease not given back lapses after LEASE
            await asyncio.shield(run.release())


async def _work(
    run: _Run,
    lister: PaymentLister,
    applier: PaymentApplier,
    start: datetime,
    end: datetime,
    now: datetime,
    commands: CommandBook,
    delivery_after: timedelta,
    phase: str,
    position: str,
) -> ReconciliationReport:
    uow, run_id, provider, progress = run.uow, run.run_id, run.provider, run.progress
    r = reconciliation_runs.c
    intents = sorted(
        (pi for pi in await lister.list_payment_intents(start, end) if pi.status == "succeeded"),
        key=lambda pi: pi.payment_intent_id,
    )
    fees = {
        bt.source: bt.fee_minor
        for bt in await lister.list_balance_transactions(start, end)
        if bt.type in ("charge", "payment") and bt.source
    }
    if phase == "intents":
        todo = intents[bisect_right([pi.payment_intent_id for pi in intents], position) :] if position else intents
        for at in range(0, len(todo), BATCH):
            if progress.stop_requested:
                return await _report(uow, run_id, provider, start, end, now, finished=False)
            batch = todo[at : at + BATCH]
            lines, fee_updates = await _match_batch(uow, applier, batch, fees, now, provider)
            await run.commit(lines, len(batch), "intents", batch[-1].payment_intent_id, fee_updates)
        phase, position = "ours", ""
    if phase == "ours":
        listed_ids = {pi.payment_intent_id for pi in intents}
        listed_refs = {pi.metadata["reference"] for pi in intents if pi.metadata.get("reference")}
        p = payments.c
        ours = select(payments).where(
            p.provider == provider, p.paid_at.is_not(None), p.created_at >= start, p.created_at < end
        )

        async def missing_there(rows: Sequence[Any], conn: AsyncConnection) -> list[ReportLine]:
            return _missing_there(rows, listed_ids, listed_refs)

        if not await _pages(run, ours, position, "ours", missing_there):
            return await _report(uow, run_id, provider, start, end, now, finished=False)
        phase, position = "delivery", ""
    if phase == "delivery":
        p = payments.c
        paid = select(payments).where(
            p.paid_at.is_not(None), p.paid_at < now - delivery_after, p.status.in_(("paid", "partially_refunded"))
        )

        async def undelivered(rows: Sequence[Any], conn: AsyncConnection) -> list[ReportLine]:
            states = await commands.states(conn, {r.credit_command_id for r in rows if r.credit_command_id is not None})
            found = []
            for row in rows:
                state = states.get(row.credit_command_id) if row.credit_command_id is not None else None
                if state != "1:1":
                    found.append(_not_delivered_line(row, state))
            return found

        if not await _pages(run, paid, position, "delivery", undelivered):
            return await _report(uow, run_id, provider, start, end, now, finished=False)
    report = await _report(uow, run_id, provider, start, end, now, finished=True)
    async with uow.begin() as conn:
        await conn.execute(
            update(reconciliation_runs)
            .where(r.id == run_id)
            .values(finished_at=now, counts=report.counts(), phase="done", position="", lease_until=None)
        )
    log.info("reconciliation %s %s..%s: %s", provider, start.isoformat(), end.isoformat(), report.counts())
    return report


@dataclass(slots=True)
class _Run:
    """One run's batch commits: its findings, its position and its counts in one transaction, then progress."""

    uow: UnitOfWork
    run_id: int
    provider: str
    progress: JobProgress
    clock: Callable[[], datetime]

    async def release(self) -> None:
        async with self.uow.begin() as conn:
            await conn.execute(
                update(reconciliation_runs).where(reconciliation_runs.c.id == self.run_id).values(lease_until=None)
            )

    async def commit(
        self,
        lines: Sequence[ReportLine],
        items: int,
        phase: str,
        position: str,
        fee_updates: Sequence[dict[str, int]] = (),
    ) -> None:
        async with self.uow.begin() as conn:
            await self.write(conn, lines, items, phase, position, fee_updates)
        self.progress.advanced(items)

    async def write(
        self,
        conn: AsyncConnection,
        lines: Sequence[ReportLine],
        items: int,
        phase: str,
        position: str,
        fee_updates: Sequence[dict[str, int]] = (),
    ) -> None:
        if fee_updates:
            await conn.execute(
                update(payments).where(payments.c.id == bindparam("row_id")).values(fee_minor=bindparam("fee")),
                list(fee_updates),
            )
        if lines:
            await conn.execute(
                insert(reconciliation_findings), [{"run_id": self.run_id, **asdict(line)} for line in lines]
            )
        r = reconciliation_runs.c
        await conn.execute(
            update(reconciliation_runs)
            .where(r.id == self.run_id)
            .values(phase=phase, position=position, items=r["items"] + items, lease_until=self.clock() + LEASE)
        )


async def _pages(
    run: _Run,
    stmt: Select[Any],
    position: str,
    phase: str,
    found: Callable[[Sequence[Any], AsyncConnection], Awaitable[list[ReportLine]]],
) -> bool:
    """Our payments `stmt` selects, BATCH at a time in id order after `position`, each page's findings
    committed with the page. False when the run was asked to stop before the last page."""
    after = int(position or 0)
    page = stmt.order_by(payments.c.id).limit(BATCH)
    while True:
        if run.progress.stop_requested:
            return False
        async with run.uow.begin() as conn:
            rows = (await conn.execute(page.where(payments.c.id > after))).all()
            if not rows:
                return True
            after = rows[-1].id
            await run.write(conn, await found(rows, conn), len(rows), phase, str(after))
        run.progress.advanced(len(rows))


async def _report(
    uow: UnitOfWork, run_id: int, provider: str, start: datetime, end: datetime, now: datetime, *, finished: bool
) -> ReconciliationReport:
    f = reconciliation_findings.c
    names = [c.name for c in fields(ReportLine)]
    async with uow.connect() as conn:
        rows = await conn.execute(select(*(f[name] for name in names)).where(f.run_id == run_id).order_by(f.id))
        lines = tuple(ReportLine(*row) for row in rows)
    return ReconciliationReport(provider, start, end, now, lines, run_id, finished)


async def _match_batch(
    uow: UnitOfWork,
    applier: PaymentApplier,
    batch: Sequence[ProviderPayment],
    fees: dict[str, int],
    now: datetime,
    provider: str,
) -> tuple[list[ReportLine], list[dict[str, int]]]:
    """The findings of one batch of the provider's listing, and the fees to store: our payments read in one
    query; a payment paid there and not here applied through `process_event` (its own transaction, idempotent
    by its event id, so a batch redone after a crash applies nothing twice)."""
    p = payments.c
    ids = [pi.payment_intent_id for pi in batch]
    refs = [ref for pi in batch if (ref := pi.metadata.get("reference"))]
    async with uow.connect() as conn:
        rows = (
            await conn.execute(select(payments).where(or_(p.payment_intent_id.in_(ids), p.reference.in_(refs))))
        ).all()
    by_intent = {row.payment_intent_id: row for row in rows if row.payment_intent_id}
    by_reference = {row.reference: row for row in rows if row.reference}
    lines: list[ReportLine] = []
    fee_updates: list[dict[str, int]] = []
    for pi in batch:
        reference = pi.metadata.get("reference")
        row = by_intent.get(pi.payment_intent_id) or (by_reference.get(reference) if reference else None)
        fee = fees.get(pi.charge_id or "")
        if row is not None and fee is not None and row.fee_minor != fee:
            fee_updates.append({"row_id": row.id, "fee": fee})
        lines.append(await _match_intent(uow, applier, pi, row, fee, now, provider))
    return lines, fee_updates


async def _match_intent(
    uow: UnitOfWork,
    applier: PaymentApplier,
    pi: ProviderPayment,
    row: Any,
    fee: int | None,
    now: datetime,
    provider: str,
) -> ReportLine:
    reference = pi.metadata.get("reference")

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


def _missing_there(rows: Sequence[Any], listed_ids: set[str], listed_refs: set[str]) -> list[ReportLine]:
    return [
        ReportLine(
            "missing_there",
            row.provider,
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
        if row.payment_intent_id not in listed_ids and (row.reference is None or row.reference not in listed_refs)
    ]


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
