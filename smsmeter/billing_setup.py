"""Wiring billing into the running service: its policies from the settings, its senders (SMTP e-mail,
text SMS through the transport when the gateway hands one over) and its scheduled jobs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
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

log = logging.getLogger("smsmeter.billing")

BILLING = web.AppKey("billing", BillingService)
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def build_billing(settings: Settings, uow: UnitOfWork, keys: KeyRing) -> BillingService:
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
    )


async def _every(name: str, interval_s: float, job: Callable[[datetime], Awaitable[Any]]) -> None:
    while True:
        try:
            await job(datetime.now(UTC))
        except Exception:  # a failed run is logged; the next one comes at its time
            log.exception("scheduled job %s failed", name)
        await asyncio.sleep(interval_s)


def start_billing_jobs(
    settings: Settings, billing: BillingService, *, schedule: bool = True, notices: bool = True
) -> list[asyncio.Task[None]]:
    """The scheduled jobs as tasks; the caller (the app's cleanup context) owns and cancels them.
    `schedule`: the arrears sweep and the monthly invoices; `notices`: sending queued notices."""
    b = settings.billing
    tasks = []
    if schedule:
        tasks.append(
            asyncio.create_task(_every("arrears sweep", b.sweep_interval_s, billing.sweep), name="billing-sweep")
        )
        tasks.append(asyncio.create_task(_every("monthly invoices", 3600.0, billing.monthly), name="billing-monthly"))
    if notices:
        tasks.append(
            asyncio.create_task(_every("notices", b.notice_interval_s, billing.send_notices), name="billing-notices")
        )
    return tasks


async def stop_jobs(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
