"""Wiring the payments area: the webhook and top-up services for the web shell, the Stripe client, and the
daily reconciliation job. Part of the composition root; `running_payments` owns the Stripe client and the
job's task for as long as the service runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from billing.topup import TopUpPolicy
from config import Settings
from config.settings import TransportKind
from gateway.keys import KeyRing
from gateway.progress import CommandProgress
from payments.checkout import CheckoutGateway, TopUpLimits, TopUpService
from payments.checkout_simulator import CheckoutSimulator, new_webhook_secret
from payments.errors import RunBusy
from payments.ports import CommandBook
from payments.reconcile import (
    PaymentLister,
    ReconciliationReport,
    format_console,
    reconcile,
    write_csv,
    write_xlsx,
)
from payments.reconcile_runs import open_run, record_report_path, unfinished_runs
from payments.service import WebhookSecrets, WebhookService
from payments.stripe_api import StripeApi
from smsmeter.billing_setup import BillingJobs, run_jobs
from store.audit import Actor
from store.uow import UnitOfWork
from telemetry import NO_METRICS, UNWATCHED, JobProgress, Observer
from web.webhooks import BillingApplier, PaymentServices

log = logging.getLogger("smsmeter.payments")

RECONCILE_LOOKBACK = timedelta(hours=48)  # the daily job looks two days back: late webhooks, late payouts


def top_up_policy(settings: Settings) -> TopUpPolicy:
    return TopUpPolicy(
        recovery_bp=settings.billing.debt_recovery_percent * 100,
        min_debt_minor=settings.billing.min_debt_minor,
        utility=settings.utility.name,
    )


def webhook_secrets(settings: Settings, *, stripe_secret: str | None = None) -> WebhookSecrets:
    """The webhook verifiers' secrets; `stripe_secret` (the payment simulator's) when no Stripe one is set."""
    stripe = settings.stripe
    return WebhookSecrets(
        stripe_secret=stripe.webhook_secret.reveal() if stripe.webhook_secret else stripe_secret,
        stripe_tolerance_s=stripe.webhook_tolerance_s,
        provider_secrets={name: secret.reveal() for name, secret in settings.payments.providers.items()},
        replay_window_s=settings.payments.replay_window_s,
        future_skew_s=settings.payments.future_skew_s,
    )


def public_url(settings: Settings) -> str:
    return (settings.http.public_url or f"http://{settings.http.host}:{settings.http.port}").rstrip("/")


def payment_simulator_on(settings: Settings) -> bool:
    """The built-in payment simulator stands in for Stripe Checkout on the embedded default only: the simulated
    SMS network and no Stripe key (`payments.simulator = "auto"`), or wherever it is asked for ("on")."""
    mode = settings.payments.simulator
    if mode == "auto":
        return settings.transport is TransportKind.SIMULATOR and settings.stripe.api_key is None
    return mode == "on"


def simulator_book(settings: Settings) -> Path:
    """Where the payment simulator keeps the payments it took, as a provider would: across restarts."""
    return Path(settings.data_dir) / "payment-simulator.jsonl"


def stripe_api(settings: Settings) -> StripeApi | None:
    if settings.stripe.api_key is None:
        return None
    return StripeApi(settings.stripe.api_key.reveal(), api_base=settings.stripe.api_base or None)


def reports_dir(settings: Settings) -> Path:
    folder = Path(settings.payments.reports_dir)
    return folder if folder.is_absolute() else Path(settings.data_dir) / folder


@dataclass(frozen=True)
class ReconciliationFiles:
    csv: Path
    xlsx: Path


async def run_reconciliation(
    settings: Settings,
    uow: UnitOfWork,
    api: PaymentLister,
    keys: KeyRing,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    triggered_by: str,
    out_dir: Path | None = None,
    progress: JobProgress = UNWATCHED,
    resume: int | None = None,
    clock: Callable[[], datetime] | None = None,
    actor: Actor | None = None,
) -> tuple[ReconciliationReport, ReconciliationFiles | None]:
    """Reconcile Stripe (`api`: its listing, a `StripeApi`) for [start, end) (or carry on the unfinished run
    `resume`), apply what a webhook missed, and write the CSV and XLSX report once the run has finished (None
    when it stopped before its end: it resumes later)."""
    applier = BillingApplier(keys, top_up_policy(settings))
    report = await reconcile(
        uow,
        api,
        applier,
        start,
        end,
        now,
        commands=CommandProgress(),
        delivery_after=timedelta(hours=settings.payments.delivery_check_h),
        triggered_by=triggered_by,
        progress=progress,
        resume=resume,
        clock=clock,
        actor=actor,
    )
    if not report.finished:
        return report, None
    folder = out_dir or reports_dir(settings)
    stem = f"reconciliation-stripe-{report.window_start:%Y%m%dT%H%M}-{report.window_end:%Y%m%dT%H%M}"
    files = ReconciliationFiles(
        await asyncio.to_thread(write_csv, report, folder / f"{stem}.csv"),
        await asyncio.to_thread(write_xlsx, report, folder / f"{stem}.xlsx"),
    )
    if report.run_id is not None:
        await record_report_path(uow, report.run_id, files.xlsx)
    return report, files


def next_run(now: datetime, at: time) -> datetime:
    """The next moment at HH:MM UTC strictly after `now`."""
    candidate = datetime.combine(now.date(), at, UTC)
    return candidate if candidate > now else candidate + timedelta(days=1)


class DailyReconciliation:
    """The daily reconciliation as a scheduled job (`smsmeter.billing_setup.run_jobs`): each pass first carries
    on the runs a restart or a cancel left unfinished, then, once a day at `at` (UTC), reconciles the last
    RECONCILE_LOOKBACK. It reports its batches through the JobRun, so the scheduler's stall time, not a
    fixed timeout, decides when a stop cuts it off."""

    def __init__(
        self,
        settings: Settings,
        uow: UnitOfWork,
        api: PaymentLister,
        keys: KeyRing,
        at: time,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings, self._uow, self._api, self._keys, self._at, self._clock = settings, uow, api, keys, at, clock
        self.due = next_run(clock(), at)

    async def __call__(self, now: datetime, progress: JobProgress) -> None:
        now = self._clock()
        for run in await unfinished_runs(self._uow, now=now):  # those another process works on are left to it
            if progress.stop_requested:
                return
            log.info("daily reconciliation: carrying on run %s (%s, %s done)", run.run_id, run.phase, run.items)
            if not await self._run(now, progress, resume=run.run_id):
                return
        if now >= self.due and not progress.stop_requested:
            self.due = next_run(now, self._at)  # a run stopped halfway is carried on above, not started again
            await self._run(now, progress, resume=None)

    async def _run(self, now: datetime, progress: JobProgress, *, resume: int | None) -> bool:
        try:
            report, files = await run_reconciliation(
                self._settings,
                self._uow,
                self._api,
                self._keys,
                now - RECONCILE_LOOKBACK,
                now,
                now,
                triggered_by="system:daily",
                progress=progress,
                resume=resume,
                clock=self._clock,
            )
        except RunBusy as exc:
            log.info("daily reconciliation: %s; left to it", exc)
            return True
        if files is None:
            log.info("daily reconciliation: run %s stopped; it carries on at the next start", report.run_id)
            return False
        log.info("%s\nreport: %s", format_console(report), files.xlsx)
        return True


RECONCILE_CHECK_S = 60.0  # how often the scheduled job looks whether the day's run is due


class ReconcileDoor:
    """`web.webhooks.Reconciler` for the console and the API: opens a run of a window, and works on a run (a new
    one, or one a restart or a stop left unfinished) under its lease, writing its report files at the end.
    `lister` is Stripe's API, or the payment simulator's own listing on the embedded default."""

    provider = "stripe"

    def __init__(
        self,
        settings: Settings,
        uow: UnitOfWork,
        lister: PaymentLister,
        keys: KeyRing,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings, self._uow, self._lister, self._keys, self._clock = settings, uow, lister, keys, clock
        self.commands: CommandBook = CommandProgress()

    async def open(self, start: datetime, end: datetime, *, actor: Actor) -> int:
        return await open_run(self._uow, self.provider, start, end, self._clock(), triggered_by=str(actor), actor=actor)

    async def carry_on(self, run_id: int, *, actor: Actor | None = None) -> ReconciliationReport:
        now = self._clock()
        report, files = await run_reconciliation(
            self._settings,
            self._uow,
            self._lister,
            self._keys,
            now,
            now,
            now,
            triggered_by="",
            resume=run_id,
            clock=self._clock,
            actor=actor,
        )
        if files is not None:
            log.info("%s\nreport: %s", format_console(report), files.xlsx)
        return report


def _utc_now() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def running_payments(
    settings: Settings,
    uow: UnitOfWork,
    keys: KeyRing,
    services: PaymentServices,
    *,
    web_role: bool = True,
    scheduler_role: bool = True,
    wake_dispatcher: Callable[[], None] | None = None,
    clock: Callable[[], datetime] = _utc_now,
    observer: Observer = NO_METRICS,
) -> AsyncIterator[None]:
    """In a web process, fill `services` for the shell; in a scheduler process, run the daily reconciliation.
    `wake_dispatcher` (when this process runs the gateway) is called after a credit command commits, so the
    SMS leaves at once instead of at the dispatcher's next poll. `observer` counts the webhooks answered."""
    if not web_role and not scheduler_role:
        yield
        return
    api = stripe_api(settings)
    p = settings.payments
    resources = AsyncExitStack()
    simulator: CheckoutSimulator | None = None
    if web_role and payment_simulator_on(settings):  # its webhooks are signed under a per-process secret
        secret = settings.stripe.webhook_secret.reveal() if settings.stripe.webhook_secret else new_webhook_secret()
        simulator = await resources.enter_async_context(
            CheckoutSimulator(secret, clock=clock, book=simulator_book(settings))
        )
    services.simulator = simulator
    checkout: CheckoutGateway | None = simulator or api
    applier = BillingApplier(keys, top_up_policy(settings))
    services.webhooks = WebhookService(
        uow,
        applier,
        webhook_secrets(settings, stripe_secret=simulator.webhook_secret if simulator else None),
        clock=clock,
        on_credit=(lambda _command_id: wake_dispatcher()) if wake_dispatcher else None,
        observer=observer,
    )
    services.topups = TopUpService(
        uow,
        checkout,
        TopUpLimits(p.topup_min_minor, p.topup_max_minor, settings.utility.currency),
        payers=applier,
        commands=CommandProgress(),
        return_url=public_url(settings) + "/topup",
        amounts_minor=p.topup_amounts,
        clock=clock,
    )
    lister: PaymentLister | None = api or simulator
    services.reconciler = ReconcileDoor(settings, uow, lister, keys, clock) if lister is not None else None
    jobs: BillingJobs | None = None
    if api is not None and p.reconcile_enabled and scheduler_role:
        hour, minute = (int(x) for x in p.reconcile_at.split(":"))
        daily = DailyReconciliation(settings, uow, api, keys, time(hour, minute), clock)
        jobs = run_jobs([("daily reconciliation", RECONCILE_CHECK_S, daily)], observer=observer)
    log.info(
        "payments: Stripe %s, webhook secret %s, providers %s, reconciliation %s",
        "Checkout replaced by the built-in payment simulator"
        if simulator
        else ("on" if api else "off (no stripe.api_key)"),
        "set"
        if settings.stripe.webhook_secret
        else ("the simulator's, made for this process" if simulator else "NOT set: Stripe webhooks are refused"),
        ", ".join(sorted(p.providers)) or "none",
        f"daily at {p.reconcile_at} UTC" if jobs else "off",
    )
    try:
        yield
    finally:
        if jobs is not None:
            await jobs.stop()
        services.webhooks = None
        services.topups = None
        services.simulator = None
        services.reconciler = None
        await resources.aclose()
        if api is not None:
            await api.close()
