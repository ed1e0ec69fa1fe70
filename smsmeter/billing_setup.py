"""Wiring billing into the running service: its policies from the settings, its senders (SMTP e-mail,
text SMS through the transport when the gateway hands one over) and its scheduled jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from billing.notices import SmtpEmailSender
from billing.rules.arrears import ArrearsPolicy, FriendlyCalendar, PenaltyRule
from billing.rules.invoice import Party
from billing.service import BillingService
from billing.topup import TopUpPolicy
from config import Settings
from gateway.keys import KeyRing
from store.uow import UnitOfWork
from telemetry import NO_METRICS, Observer

log = logging.getLogger("smsmeter.billing")

BILLING = web.AppKey("billing", BillingService)
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def build_billing(
    settings: Settings, uow: UnitOfWork, keys: KeyRing, observer: Observer = NO_METRICS
) -> BillingService:
    b = settings.billing
    tz = ZoneInfo(settings.utility.timezone)
    arrears_policy = ArrearsPolicy(
        min_debt_minor=b.min_debt_minor,
        reminder_after_days=b.reminder_after_days,
        final_after_days=b.final_after_days,
        disconnect_after_days=b.disconnect_after_days,
        penalty=PenaltyRule(b.penalty_percent_bp, b.penalty_fixed_minor, b.penalty_period_days, b.penalty_max_periods),
        emergency_credit_minor=b.emergency_credit_minor,
        emergency_grace_days=b.emergency_grace_days,
    )
    calendar = FriendlyCalendar(
        tz=tz,
        night_start_min=_minutes(b.night_start),
        night_end_min=_minutes(b.night_end),
        weekend_days=frozenset(_DAYS[d.strip().lower()] for d in b.weekend_days.split(",") if d.strip()),
    )
    smtp = settings.smtp
    email = None
    if smtp.host:
        email = SmtpEmailSender(
            smtp.host,
            smtp.port,
            smtp.sender,
            username=smtp.username or None,
            password=smtp.password.reveal() if smtp.password else None,
            starttls=smtp.starttls,
            timeout_s=smtp.timeout_s,
        )
    return BillingService(
        uow=uow,
        keys=keys,
        currency=settings.utility.currency,
        utility=Party(settings.utility.name, "", b.utility_address, b.utility_tax_id),
        topup_policy=TopUpPolicy(
            recovery_bp=b.debt_recovery_percent * 100, min_debt_minor=b.min_debt_minor, utility=settings.utility.name
        ),
        arrears_policy=arrears_policy,
        calendar=calendar,
        low_credit_minor=b.low_credit_minor,
        vat_bp=b.vat_bp,
        invoice_series=b.invoice_series,
        tz=tz,
        email_sender=email,
        observer=observer,
        time_sync_every=timedelta(days=b.time_sync_days) if b.time_sync_days else None,
    )


JOB_STOP_TIMEOUT_S = 10.0  # a run in progress gets this long to finish when the service stops


async def _every(
    name: str, interval_s: float, job: Callable[[datetime], Awaitable[Any]], stopping: asyncio.Event
) -> None:
    """Run `job(now)` now and every `interval_s` until `stopping` is set. A run is never cut off halfway
    (a transaction cancelled in its middle on SQLite could keep the write lock of a connection nobody
    closes): stopping ends the wait between runs."""
    while not stopping.is_set():
        try:
            await job(datetime.now(UTC))
        except Exception:  # a failed run is logged; the next one comes at its time
            log.exception("scheduled job %s failed", name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)


@dataclass
class BillingJobs:
    """The scheduled jobs as tasks; the caller (the app's cleanup context) owns them and stops them."""

    tasks: list[asyncio.Task[None]]
    stopping: asyncio.Event

    async def stop(self, timeout_s: float = JOB_STOP_TIMEOUT_S) -> None:
        """Let a run in progress finish (up to `timeout_s`, then it is cancelled); start no new one."""
        self.stopping.set()
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=timeout_s)
        for task in pending:
            log.warning("scheduled job %s did not finish in %.0f s; cancelled", task.get_name(), timeout_s)
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def start_billing_jobs(
    settings: Settings, billing: BillingService, *, schedule: bool = True, notices: bool = True
) -> BillingJobs:
    """The scheduled jobs. `schedule`: the arrears sweep and the monthly invoices; `notices`: sending queued
    notices."""
    b = settings.billing
    stopping = asyncio.Event()
    jobs: list[tuple[str, float, Callable[[datetime], Awaitable[Any]]]] = []
    if schedule:
        jobs.append(("arrears sweep", b.sweep_interval_s, billing.sweep))
        jobs.append(("monthly invoices", 3600.0, billing.monthly))
        jobs.append(("key changes", 60.0, billing.settle_key_changes))
        jobs.append(("time sync", 3600.0, billing.sync_clocks))
    if notices:
        jobs.append(("notices", b.notice_interval_s, billing.send_notices))
    tasks = [
        asyncio.create_task(_every(name, interval_s, job, stopping), name=f"billing {name}")
        for name, interval_s, job in jobs
    ]
    return BillingJobs(tasks, stopping)
