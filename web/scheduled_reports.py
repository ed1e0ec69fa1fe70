"""Reports sent by e-mail on a schedule: any of the console's reports (`web.queries.reports`), as the same CSV,
XLSX or PDF file its download gives (`web.exports.export`), to a list of addresses, daily (yesterday), weekly
(the last 7 days) or monthly (the last 30 days), through the e-mail port the notices use
(`billing.notices.EmailSender`, SMTP). The scheduler's job (`send_due_reports`) claims each due schedule by moving
its `next_run_at` on to the next midnight (UTC) of its period in one transaction, then builds and sends it: a
report goes at most once per period, and a failure is shown on the schedule (`last_status`, `last_error`) rather
than retried in a loop. Managing schedules is audited."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.notices import EmailSender
from billing.rules.alarms import is_email
from store import audit
from store.audit import SYSTEM, Actor
from store.schema.notices import report_schedules
from store.uow import UnitOfWork
from web.errors import InvalidInput, NotFound
from web.exports import CONTENT_TYPES, FORMATS, export
from web.i18n import gettext
from web.queries import reports

log = logging.getLogger("smsmeter.web.reports")

PERIODS = {"daily": 1, "weekly": 7, "monthly": 30}  # days of data each report covers, and how often it goes
R = report_schedules.c


def _midnight(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _row(row: Any) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "report": row.report,
        "period": row.period,
        "format": row.format,
        "recipients": list(row.recipients or []),
        "active": bool(row.active),
        "next_run_at": row.next_run_at,
        "last_run_at": row.last_run_at,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


async def list_schedules(conn: AsyncConnection) -> list[dict[str, Any]]:
    return [_row(r) for r in await conn.execute(select(report_schedules).order_by(R.id))]


def _checked(report: str, period: str, fmt: str, recipients: Sequence[str]) -> list[str]:
    if report not in reports.BUILDERS:
        raise InvalidInput("report", f"one of {', '.join(reports.BUILDERS)}")
    if period not in PERIODS:
        raise InvalidInput("period", f"one of {', '.join(PERIODS)}")
    if fmt not in FORMATS:
        raise InvalidInput("format", f"one of {', '.join(FORMATS)}")
    addresses = [a.strip() for a in recipients if a.strip()]
    if not addresses or len(addresses) > 20 or not all(is_email(a) for a in addresses):
        raise InvalidInput("recipients", "one to twenty e-mail addresses")
    return addresses


async def create_schedule(
    uow: UnitOfWork,
    actor: Actor,
    report: str,
    period: str,
    recipients: Sequence[str],
    now: datetime,
    *,
    fmt: str = "csv",
) -> dict[str, Any]:
    """A schedule whose first report goes at the next midnight (UTC), as a file of `fmt` (csv, xlsx or pdf).
    Audited. Raises InvalidInput."""
    addresses = _checked(report, period, fmt, recipients)
    async with uow.begin() as conn:
        schedule_id = await conn.scalar(
            insert(report_schedules)
            .values(
                report=report,
                period=period,
                format=fmt,
                recipients=addresses,
                next_run_at=_midnight(now) + timedelta(days=1),
                created_by=str(actor),
                created_at=now,
                updated_at=now,
            )
            .returning(R.id)
        )
        after = {"report": report, "period": period, "format": fmt, "recipients": addresses}
        await audit.record(
            conn, actor, "report_schedule.create", now, target=f"report_schedule:{schedule_id}", after=after
        )
        row = (await conn.execute(select(report_schedules).where(R.id == schedule_id))).one()
    return _row(row)


async def delete_schedule(uow: UnitOfWork, actor: Actor, schedule_id: int, now: datetime) -> None:
    """Raises NotFound."""
    async with uow.begin() as conn:
        row = (await conn.execute(select(report_schedules).where(R.id == schedule_id))).first()
        if row is None:
            raise NotFound("report schedule", schedule_id)
        await conn.execute(delete(report_schedules).where(R.id == schedule_id))
        before = {"report": row.report, "period": row.period, "recipients": list(row.recipients)}
        await audit.record(
            conn, actor, "report_schedule.delete", now, target=f"report_schedule:{schedule_id}", before=before
        )


async def send_now(uow: UnitOfWork, actor: Actor, schedule_id: int, now: datetime) -> None:
    """Make a schedule due now (the job sends it on its next run; its period starts again from then). Audited.
    Raises NotFound."""
    async with uow.begin() as conn:
        moved = await conn.execute(
            update(report_schedules).where(R.id == schedule_id).values(next_run_at=now, updated_at=now)
        )
        if not moved.rowcount:
            raise NotFound("report schedule", schedule_id)
        await audit.record(conn, actor, "report_schedule.send_now", now, target=f"report_schedule:{schedule_id}")


async def _claim(uow: UnitOfWork, now: datetime) -> list[Any]:
    async with uow.begin() as conn:
        due = (
            await conn.execute(
                select(report_schedules)
                .where(R.active == 1, R.next_run_at <= now)
                .order_by(R.id)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in due:
            following = _midnight(now) + timedelta(days=PERIODS[row.period])
            await conn.execute(
                update(report_schedules).where(R.id == row.id).values(next_run_at=following, updated_at=now)
            )
    return list(due)


async def _send(conn: AsyncConnection, sender: EmailSender, row: Any, now: datetime, currency: str) -> int:
    until = _midnight(now)
    since = until - timedelta(days=PERIODS[row.period])
    result = await reports.BUILDERS[row.report](conn, since, until)
    title, days = gettext(reports.REPORTS[row.report]), reports.period_text(since, until)
    attached = export(
        row.format,
        title,
        days,
        [gettext(c.title) for c in result.columns],
        [c.key for c in result.columns],
        [c.kind for c in result.columns],
        result.rows,
        currency,
    )
    name = f"{row.report}-{since:%Y%m%d}-{until:%Y%m%d}.{row.format}"
    subject = f"{title} {days}"
    body = f"{title}: {len(result.rows)} rows, {days}, attached as {name}."
    for address in row.recipients:
        await sender.send_email(address, subject, body, [(name, attached, CONTENT_TYPES[row.format])])
    return len(result.rows)


async def send_due_reports(uow: UnitOfWork, sender: EmailSender | None, now: datetime, currency: str) -> int:
    """Send every due scheduled report; how many went. Without an e-mail sender nothing is claimed."""
    if sender is None:
        return 0
    sent = 0
    for row in await _claim(uow, now):
        status, error = "sent", None
        try:
            async with uow.connect() as conn:
                rows = await _send(conn, sender, row, now, currency)
            sent += 1
            log.info("report %s (%s, %d rows) sent to %d addresses", row.report, row.period, rows, len(row.recipients))
        except Exception as exc:  # an SMTP failure of any kind is shown on the schedule
            status, error = "failed", f"{type(exc).__name__}: {exc}"[:300]
            log.warning("report %s to %s not sent: %s", row.report, row.recipients, error)
        async with uow.begin() as conn:
            await conn.execute(
                update(report_schedules)
                .where(R.id == row.id)
                .values(last_run_at=now, last_status=status, last_error=error, updated_at=now)
            )
            await audit.record(
                conn, SYSTEM, "report_schedule.run", now, target=f"report_schedule:{row.id}", after={"status": status}
            )
    return sent
