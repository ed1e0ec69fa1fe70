"""Reconciliation runs as rows: opening one, the lease that lets one process at a time work on it, the runs a
restart or a cancel left unfinished, and the runs and findings as the console, the API and the CLI show them.

A run is worked on under a lease (`lease_until`): `claim_run` takes it when the run is unfinished and nobody
holds it (or the holder's lease has lapsed: its process stopped), every batch moves it on by LEASE, and the end
or a stop gives it back. So the scheduler's daily job, a console or API request and `smsmeter reconcile` never
work on one run at once, and a run whose process died is carried on by the next that asks, LEASE later at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import RunBusy, RunNotFound, WindowInvalid
from payments.ports import CommandBook
from store import audit
from store.audit import Actor
from store.schema.payments import payments, reconciliation_findings, reconciliation_runs
from store.uow import UnitOfWork

LEASE = timedelta(minutes=5)  # a batch takes well under a second; a holder silent this long has stopped


MAX_WINDOW = timedelta(days=92)  # a quarter; the provider's listing of a longer window is read in several runs


def window_of(start_text: str, end_text: str) -> tuple[datetime, datetime]:
    """[start, end) from what a person types: YYYY-MM-DD (an end date includes that whole day) or an ISO time
    (UTC when it names no offset). Raises WindowInvalid with the field at fault."""

    def when(field: str, text: str, *, end: bool) -> datetime:
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            raise WindowInvalid(field, "a date (YYYY-MM-DD) or an ISO time") from None
        if len(text.strip()) == 10 and end:  # a date: the whole day
            value += timedelta(days=1)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    start, end = when("from", start_text, end=False), when("to", end_text, end=True)
    if end <= start:
        raise WindowInvalid("to", "must be after from")
    if end - start > MAX_WINDOW:
        raise WindowInvalid("to", f"a window of at most {MAX_WINDOW.days} days")
    return start, end


@dataclass(frozen=True, slots=True)
class UnfinishedRun:
    run_id: int
    provider: str
    window_start: datetime
    window_end: datetime
    phase: str
    items: int


async def open_run(
    uow: UnitOfWork,
    provider: str,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    triggered_by: str,
    actor: Actor | None = None,
) -> int:
    """A new run of [start, end), not yet worked on (its phase `intents`, nobody holding it); in the audit log
    when a person or a key (`actor`) started it."""
    r = reconciliation_runs.c
    async with uow.begin() as conn:
        run_id: int = (
            await conn.execute(
                insert(reconciliation_runs)
                .values(
                    provider=provider, window_start=start, window_end=end, started_at=now, triggered_by=triggered_by
                )
                .returning(r.id)
            )
        ).scalar_one()
        if actor is not None:
            window = {"provider": provider, "from": start.isoformat(), "to": end.isoformat()}
            await audit.record(
                conn, actor, "reconciliation.start", now, target=f"reconciliation:{run_id}", after=window
            )
    return run_id


async def claim_run(conn: AsyncConnection, run_id: int, now: datetime, actor: Actor | None = None) -> bool:
    """Take the lease of an unfinished run nobody holds (in the audit log as `reconciliation.resume` when
    `actor` asks). False when the run has finished; raises RunBusy when another process holds it,
    RunNotFound when there is no such run."""
    r = reconciliation_runs.c
    taken = await conn.execute(
        update(reconciliation_runs)
        .where(r.id == run_id, r.finished_at.is_(None), or_(r.lease_until.is_(None), r.lease_until < now))
        .values(lease_until=now + LEASE)
    )
    if taken.rowcount:
        if actor is not None:
            await audit.record(conn, actor, "reconciliation.resume", now, target=f"reconciliation:{run_id}")
        return True
    row = (await conn.execute(select(r.finished_at, r.lease_until).where(r.id == run_id))).first()
    if row is None:
        raise RunNotFound(run_id)
    if row.finished_at is not None:
        return False
    raise RunBusy(run_id, row.lease_until)


async def unfinished_runs(
    uow: UnitOfWork, provider: str = "stripe", now: datetime | None = None
) -> list[UnfinishedRun]:
    """The runs that stopped before their end (a restart, a cancel), oldest first: `reconcile(resume=...)`
    carries each on from where it stopped. With `now`, only those nobody holds at `now`."""
    r = reconciliation_runs.c
    query = select(r.id, r.provider, r.window_start, r.window_end, r.phase, r["items"]).where(
        r.provider == provider, r.finished_at.is_(None)
    )
    if now is not None:
        query = query.where(or_(r.lease_until.is_(None), r.lease_until < now))
    async with uow.connect() as conn:
        return [UnfinishedRun(*row) for row in await conn.execute(query.order_by(r.id))]


async def record_report_path(uow: UnitOfWork, run_id: int, path: Path) -> None:
    async with uow.begin() as conn:
        await conn.execute(
            update(reconciliation_runs).where(reconciliation_runs.c.id == run_id).values(report_path=str(path))
        )


# --- as the doors show them -------------------------------------------------------------------------------------


def _run_view(row: Any, now: datetime) -> dict[str, Any]:
    out = dict(row._mapping)
    out["status"] = (
        "finished"
        if out["finished_at"] is not None
        else ("running" if out["lease_until"] is not None and out["lease_until"] >= now else "stopped")
    )
    out["counts"] = dict(out["counts"] or {})
    return out


async def recent_runs(
    conn: AsyncConnection, now: datetime, *, limit: int = 25, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """The newest runs first, each with its status (running | stopped | finished) and counts; and how many
    there are."""
    r = reconciliation_runs.c
    rows = await conn.execute(select(reconciliation_runs).order_by(r.id.desc()).limit(limit).offset(offset))
    total = (await conn.execute(select(func.count()).select_from(reconciliation_runs))).scalar_one()
    return [_run_view(row, now) for row in rows], int(total)


async def run_with_findings(
    conn: AsyncConnection,
    run_id: int,
    now: datetime,
    *,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
    commands: CommandBook | None = None,
) -> dict[str, Any] | None:
    """One run and a page of its findings (of one `kind`, or every kind but `matched` when None), with the
    number of findings found so far by kind (an unfinished run's counts are not written yet). With `commands`,
    each finding of a top-up here carries `command_now`: its credit command's state as the gateway tells it now
    (a payment the run applied has a command on its way that the finding, written at the time, cannot show)."""
    r, f = reconciliation_runs.c, reconciliation_findings.c
    row = (await conn.execute(select(reconciliation_runs).where(r.id == run_id))).first()
    if row is None:
        return None
    out = _run_view(row, now)
    counted = await conn.execute(select(f.kind, func.count()).where(f.run_id == run_id).group_by(f.kind))
    found: dict[str, int] = {str(k): int(n) for k, n in counted.all()}
    out["found"] = found
    which = f.kind == kind if kind is not None else f.kind != "matched"
    lines = await conn.execute(
        select(reconciliation_findings).where(f.run_id == run_id, which).order_by(f.id).limit(limit).offset(offset)
    )
    out["findings"] = [dict(line._mapping) for line in lines]
    if commands is not None:
        await _with_commands_now(conn, out["findings"], commands)
    out["findings_total"] = (
        int(found.get(kind, 0)) if kind is not None else sum(n for k, n in out["found"].items() if k != "matched")
    )
    return out


async def _with_commands_now(conn: AsyncConnection, findings: list[dict[str, Any]], commands: CommandBook) -> None:
    references = {f["reference"] for f in findings if f["reference"]}
    if not references:
        return
    p = payments.c
    rows = await conn.execute(
        select(p.reference, p.credit_command_id).where(p.reference.in_(references), p.credit_command_id.is_not(None))
    )
    command_of = {str(reference): int(command_id) for reference, command_id in rows.all()}
    states = await commands.states(conn, set(command_of.values()))
    for finding in findings:
        command_id = command_of.get(finding["reference"])
        finding["command_now"] = states.get(command_id) if command_id is not None else None
