"""Wiring billing into the running service: its policies from the settings, its senders (SMTP e-mail,
text SMS through the transport when the gateway hands one over) and its scheduled jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from billing import self_service, sts
from billing.errors import BillingError
from billing.event_delivery import DeliveryPolicy
from billing.mdm_export import export_finished_days
from billing.notices import SmtpEmailSender
from billing.rules.arrears import ArrearsPolicy, FriendlyCalendar, PenaltyRule
from billing.rules.invoice import Party
from billing.rules.reading_plans import reading_budget_per_s
from billing.service import BillingService
from billing.sts_vending import TokenGenerator
from billing.topup import TopUpPolicy
from config import Settings
from gateway import watch
from gateway.keys import KeyRing
from gateway.ports import InboundSms
from smsmeter.retention_cli import keep_tables
from store.audit import Actor
from store.uow import UnitOfWork
from telemetry import NO_METRICS, JobProgress, Observer
from web.queries.operators import OPERATORS
from web.scheduled_reports import send_due_reports

log = logging.getLogger("smsmeter.billing")

BILLING = web.AppKey("billing", BillingService)
_NOTICE_CHANNELS = {"none": (), "sms": ("sms",), "email": ("email",), "both": ("sms", "email")}
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
            recovery_bp=b.debt_recovery_percent * 100,
            min_debt_minor=b.min_debt_minor,
            utility=settings.utility.name,
            payment_notice=_NOTICE_CHANNELS[b.payment_notice],
        ),
        arrears_policy=arrears_policy,
        calendar=calendar,
        low_credit_minor=b.low_credit_minor,
        operators=OPERATORS,
        vat_bp=b.vat_bp,
        invoice_series=b.invoice_series,
        tz=tz,
        heat_in_gcal=settings.utility.heat_unit == "Gcal",
        email_sender=email,
        observer=observer,
        time_sync_every=timedelta(days=b.time_sync_days) if b.time_sync_days else None,
        alarm_actions=b.alarm_actions,
        reading_budget_per_s=reading_budget_per_s(settings.smpp.rate_per_s, b.reading_share_percent),
        delivery_policy=DeliveryPolicy(
            max_attempts=b.event_max_attempts,
            retry_base_s=b.event_retry_base_s,
            retry_max_s=b.event_retry_max_s,
            timeout_s=b.event_timeout_s,
            keep_days=b.event_keep_days,
        ),
    )


def mdm_export_dir(settings: Settings) -> Path:
    folder = Path(settings.billing.mdm_export_dir)
    return folder if folder.is_absolute() else Path(settings.data_dir) / folder


JOB_STALL_S = 10.0  # a job that is stopping and commits nothing for this long is cancelled
PROGRESS_LOG_S = 30.0  # a long run logs how far it is at most this often

Job = Callable[[datetime, JobProgress], Awaitable[Any]]


class JobRun:
    """What a running job reports to (telemetry.JobProgress): its committed items go to the log (at most every
    PROGRESS_LOG_S) and to /metrics; `stop_requested` is the service stopping."""

    def __init__(self, name: str, stopping: asyncio.Event, observer: Observer, clock: Callable[[], float]) -> None:
        self.name, self._stopping, self._observer, self._clock = name, stopping, observer, clock
        self.items = 0  # committed in this run
        self.started = self._logged = clock()

    def advanced(self, items: int) -> None:
        self.items += items
        self._observer.job_advanced(self.name, items)
        now = self._clock()
        if now - self._logged >= PROGRESS_LOG_S:
            self._logged = now
            rate = self.items / max(now - self.started, 1e-9)
            log.info("scheduled job %s: %s done so far (%.0f/s)", self.name, self.items, rate)

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()


@dataclass
class _Scheduled:
    name: str
    interval_s: float
    job: Job
    run: JobRun | None = None  # the run under way

    @property
    def progress_mark(self) -> tuple[int, int]:
        return (id(self.run), self.run.items if self.run else 0)


async def _every(
    scheduled: _Scheduled,
    stopping: asyncio.Event,
    observer: Observer,
    clock: Callable[[], float],
) -> None:
    """Run the job now and every `interval_s` until `stopping` is set. A run is never cut off halfway (a
    transaction cancelled in its middle on SQLite could keep the write lock of a connection nobody closes):
    stopping ends the wait between runs, and a job in progress returns after the batch in hand."""
    while not stopping.is_set():
        scheduled.run = JobRun(scheduled.name, stopping, observer, clock)
        observer.job_running(scheduled.name, True)
        try:
            await scheduled.job(datetime.now(UTC), scheduled.run)
        except Exception:  # a failed run is logged; the next one comes at its time
            log.exception("scheduled job %s failed", scheduled.name)
        finally:
            observer.job_running(scheduled.name, False)
            scheduled.run = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), scheduled.interval_s)


@dataclass
class BillingJobs:
    """The scheduled jobs as tasks; the caller (the app's cleanup context) owns them and stops them."""

    tasks: list[asyncio.Task[None]]
    stopping: asyncio.Event
    scheduled: list[_Scheduled]

    async def stop(self, stall_s: float = JOB_STALL_S) -> None:
        """Start no new run; let a run in progress finish its batch and return. A job is cancelled only when it
        commits nothing for `stall_s`: one that is making progress is never cut off by a fixed timeout."""
        self.stopping.set()
        pending = {t for t in self.tasks if not t.done()}
        while pending:
            marks = {s.name: s.progress_mark for s in self.scheduled}
            _, pending = await asyncio.wait(pending, timeout=stall_s)
            stalled = [s for s in self.scheduled if s.run is not None and s.progress_mark == marks[s.name]]
            for task in pending:
                job = next((s for s in stalled if task.get_name() == f"billing {s.name}"), None)
                if job is not None:
                    log.warning(
                        "scheduled job %s committed nothing in %.0f s while stopping; cancelled", job.name, stall_s
                    )
                    task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def start_billing_jobs(
    settings: Settings,
    billing: BillingService,
    *,
    schedule: bool = True,
    notices: bool = True,
    observer: Observer = NO_METRICS,
    clock: Callable[[], float] = time.monotonic,
) -> BillingJobs:
    """The scheduled jobs. `schedule`: the arrears sweep and the monthly invoices; `notices`: sending queued
    notices."""
    b = settings.billing
    jobs: list[tuple[str, float, Job]] = []
    if schedule:
        jobs.append(("arrears sweep", b.sweep_interval_s, billing.sweep))
        jobs.append(("monthly invoices", 3600.0, billing.monthly))
        jobs.append(("key changes", 60.0, billing.settle_key_changes))
        jobs.append(("time sync", 3600.0, billing.sync_clocks))
        jobs.append(("consumption", b.consumption_interval_s, billing.aggregate_consumption))
        jobs.append(("reading plans", b.reading_interval_s, billing.run_reading_plans))
        jobs.append(("event webhooks", b.event_interval_s, billing.deliver_events))

        async def scheduled_reports(now: datetime, progress: JobProgress) -> object:
            return await send_due_reports(billing.uow, billing.email_sender, now, billing.currency)

        jobs.append(("reports by e-mail", b.report_interval_s, scheduled_reports))
        if b.mdm_export:
            export_dir = mdm_export_dir(settings)

            async def mdm_export(now: datetime, progress: JobProgress) -> object:
                return await export_finished_days(billing.uow, billing.tz, export_dir, now, progress)

            jobs.append(("mdm export", 3600.0, mdm_export))
        stuck_after = timedelta(minutes=settings.gateway.stuck_after_min)

        async def stuck_commands(now: datetime, progress: JobProgress) -> object:
            return await watch.check_stuck_commands(billing.uow, now, older_than=stuck_after)

        jobs.append(("stuck commands", b.alarm_interval_s, stuck_commands))
        jobs.append(("alarm rules", b.alarm_interval_s, billing.notify_alarms))

        async def growing_tables(now: datetime, progress: JobProgress) -> object:
            return await keep_tables(billing.uow.engine, settings, now, progress)

        jobs.append(("partitions and retention", settings.retention.interval_s, growing_tables))
    if notices:
        jobs.append(("notices", b.notice_interval_s, billing.send_notices))
    return run_jobs(jobs, observer=observer, clock=clock)


def run_jobs(
    jobs: list[tuple[str, float, Job]],
    *,
    observer: Observer = NO_METRICS,
    clock: Callable[[], float] = time.monotonic,
) -> BillingJobs:
    """Start each (name, interval_s, job) as a task that runs it now and then every interval."""
    stopping = asyncio.Event()
    scheduled = [_Scheduled(name, interval_s, job) for name, interval_s, job in jobs]
    tasks = [
        asyncio.create_task(_every(job, stopping, observer, clock), name=f"billing {job.name}") for job in scheduled
    ]
    return BillingJobs(tasks, stopping, scheduled)


def self_service_answerer(
    settings: Settings, billing: BillingService, generator: TokenGenerator | None
) -> Callable[[InboundSms, datetime, int], Awaitable[self_service.Answered]]:
    """The keyword answerer of the short number, with the policies the settings give."""
    b = settings.billing
    policy = self_service.SelfServicePolicy(
        utility=settings.utility.name,
        answers_per_window=b.sms_answers_per_window,
        window=timedelta(seconds=b.sms_answer_window_s),
        wrong_codes_per_day=b.voucher_wrong_codes_per_day,
    )
    actor = Actor("system", "self-service")

    async def answer(sms: InboundSms, now: datetime, text_id: int) -> self_service.Answered:
        async def token_of(topup_id: int) -> str | None:
            if generator is None:
                return None
            try:
                issued = await sts.issue_credit_token(billing.uow, actor, topup_id, now, generator=generator)
            except BillingError as exc:
                log.info("self-service: no token for top-up %s: %s", topup_id, exc)
                return None
            return issued.token

        return await self_service.answer_text_sms(
            billing.uow,
            sms,
            now,
            keys=billing.keys,
            topup_policy=billing.topup_policy,
            arrears_policy=billing.arrears_policy,
            policy=policy,
            tokens=token_of,
            text_id=text_id,
        )

    return answer
