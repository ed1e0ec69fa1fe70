"""Billing as the running service uses it: the policies built from the settings, the handler for what
the gateway reports (credit settled, balance reported), and the scheduled jobs (arrears sweep, notices,
monthly invoices, transformer balances). The composition root builds one `BillingService` and owns the
tasks that run its jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from sqlalchemy import func, select

import meter_protocol as mp
from billing import (
    alarm_rules,
    arrears,
    bulk,
    consumption_daily,
    control,
    event_delivery,
    event_feed,
    invoices,
    losses,
    meter_keys,
    notices,
    reading_plans,
    topup,
)
from billing.errors import InvalidField
from billing.notices import EmailSender, Recipient, TextSender, queue_notice
from billing.ports import OperatorBook
from billing.rules.arrears import ArrearsPolicy, FriendlyCalendar, low_credit
from billing.rules.invoice import Party
from billing.rules.money import Money
from billing.rules.notices import NoticeKind
from gateway.events import AlarmRaised, BalanceReported, CommandSettled, GatewayEvent
from gateway.keys import KeyRing
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.uow import UnitOfWork
from telemetry import NO_METRICS, UNWATCHED, JobProgress, Observer

log = logging.getLogger("smsmeter.billing")


@dataclass
class BillingService:
    uow: UnitOfWork
    keys: KeyRing
    currency: str
    utility: Party
    topup_policy: topup.TopUpPolicy
    arrears_policy: ArrearsPolicy
    calendar: FriendlyCalendar
    low_credit_minor: int
    operators: OperatorBook  # who works the head end: alarm rules notify the operators of a role
    vat_bp: int = 0
    invoice_series: str = "INV"
    tz: tzinfo = UTC
    heat_in_gcal: bool = False  # heat shown, invoiced and priced per Gcal (utility.heat_unit), else per kWh
    text_sender: TextSender | None = None
    email_sender: EmailSender | None = None
    observer: Observer = NO_METRICS  # notices sent and failed, by channel
    time_sync_every: timedelta | None = None  # the scheduled time sync; None: none
    alarm_actions: bool = False  # alarm rules may act on their own (relay off), in friendly hours
    reading_budget_per_s: float = 0.0  # read requests a second reading plans may queue (0: the window paces them)
    poster: event_delivery.Poster | None = None  # outbound event webhooks; None: events wait in the outbox
    delivery_policy: event_delivery.DeliveryPolicy = field(default_factory=event_delivery.DeliveryPolicy)
    last_invoice_month: date | None = field(default=None)
    _alarms_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _alarms_again: bool = field(default=False, repr=False)

    # --- what the gateway reports -------------------------------------------------------------------

    async def on_gateway_event(self, event: GatewayEvent) -> None:
        now = datetime.now(UTC)
        if isinstance(event, CommandSettled):
            if event.kind == meter_keys.KIND:
                await meter_keys.settle_key_changes(self.uow, now, meter_ids=[event.meter_id])
            await topup.on_command_settled(self.uow, event, now)
        elif isinstance(event, BalanceReported):
            await self.on_balance_reported(event, now)
        if isinstance(event, AlarmRaised):
            await self.notify_alarms(now)

    async def notify_alarms(self, now: datetime, progress: JobProgress = UNWATCHED) -> alarm_rules.AlarmReport:
        """Apply the alarm rules to the alarms not yet notified. Calls that come while a run is under way (a
        burst of alarms) add up to one more run, not one each."""
        if self._alarms_lock.locked():
            self._alarms_again = True
            return alarm_rules.AlarmReport()
        total = alarm_rules.AlarmReport()
        async with self._alarms_lock:
            self._alarms_again = True
            while self._alarms_again:
                self._alarms_again = False
                report = await alarm_rules.notify_alarms(
                    self.uow,
                    now,
                    keys=self.keys,
                    calendar=self.calendar,
                    actions_enabled=self.alarm_actions,
                    utility=self.utility.name,
                    operators=self.operators,
                )
                progress.advanced(report.alarms)
                total = alarm_rules.AlarmReport(
                    total.alarms + report.alarms,
                    total.notices + report.notices,
                    total.actions + report.actions,
                    total.pending + report.pending,
                )
        return total

    async def on_balance_reported(self, event: BalanceReported, now: datetime) -> None:
        """A low-credit alert once per top-up cycle: the cause is the meter and its last credit transfer."""
        if not low_credit(event.credit_minor, self.low_credit_minor):
            return
        async with self.uow.begin() as conn:
            s, m = R.subscribers.c, R.meters.c
            row = (
                await conn.execute(
                    select(s.id, s.code, s.language, s.phone, s.email)
                    .join(R.meters, m.subscriber_id == s.id)
                    .where(m.id == event.meter_id, m.status == "active")
                )
            ).first()
            if row is None:
                return
            cycle = event.last_transfer_id
            if cycle is None:
                t = L.topups.c
                cycle = await conn.scalar(select(func.max(t.transfer_id)).where(t.meter_id == event.meter_id)) or 0
            await queue_notice(
                conn,
                Recipient(row.id, row.code, row.language, row.phone, row.email),
                NoticeKind.LOW_CREDIT,
                f"low_credit:{event.meter_id}:{cycle}",
                utility=self.utility.name,
                amount=Money(max(event.credit_minor, 0), self.currency).format(),
                now=now,
            )

    # --- the utility's policies, as the doors need them -----------------------------------------------

    def meter_settings(
        self,
        now: datetime,
        *,
        low_credit_minor: int | None = None,
        emergency_credit_minor: int | None = None,
        friendly_start_min: int | None = None,
        friendly_end_min: int | None = None,
    ) -> mp.Configure:
        """The Configure message of the utility's policy, with an operator's changes. Raises InvalidField."""
        base = control.meter_settings(
            low_credit_minor=self.low_credit_minor,
            emergency_credit_minor=self.arrears_policy.emergency_credit_minor,
            friendly=self.calendar,
            now=now,
        )
        changes = {
            name: value
            for name, value in (
                ("low_credit_minor", low_credit_minor),
                ("emergency_credit_minor", emergency_credit_minor),
                ("friendly_start_min", friendly_start_min),
                ("friendly_end_min", friendly_end_min),
            )
            if value is not None
        }
        try:
            return dataclasses.replace(base, **changes)
        except mp.ProtocolError as exc:
            raise InvalidField("settings", str(exc)) from None

    # --- scheduled jobs ---------------------------------------------------------------------------------

    async def sync_clocks(self, now: datetime, progress: JobProgress = UNWATCHED) -> bulk.Job | None:
        if self.time_sync_every is None:
            return None
        return await control.sync_clocks(self.uow, now, keys=self.keys, every=self.time_sync_every, progress=progress)

    async def run_reading_plans(self, now: datetime, progress: JobProgress = UNWATCHED) -> reading_plans.PassReport:
        """The reading plans' pass: the runs that fall due start, every run queues its due meters."""
        return await reading_plans.run_plans(
            self.uow, now, keys=self.keys, tz=self.tz, budget_per_s=self.reading_budget_per_s, progress=progress
        )

    async def aggregate_consumption(
        self, now: datetime, progress: JobProgress = UNWATCHED
    ) -> consumption_daily.AggregationReport:
        """The daily consumption pre-aggregate, from the readings stored since its last run."""
        return await consumption_daily.aggregate_consumption(self.uow, self.tz, now, progress)

    async def deliver_events(
        self, now: datetime, progress: JobProgress = UNWATCHED
    ) -> event_delivery.DeliveryReport | None:
        """Outbound event webhooks: the events of new readings, alarms and command outcomes, then every due
        delivery posted."""
        await event_feed.feed_events(self.uow, now, progress)
        if self.poster is None:
            return None
        return await event_delivery.deliver_events(
            self.uow, self.poster, now, self.keys, self.delivery_policy, progress
        )

    async def sweep(self, now: datetime, progress: JobProgress = UNWATCHED) -> arrears.SweepReport:
        return await arrears.run_arrears_sweep(
            self.uow,
            self.arrears_policy,
            self.calendar,
            now,
            keys=self.keys,
            utility=self.utility.name,
            progress=progress,
        )

    async def settle_key_changes(self, now: datetime, progress: JobProgress = UNWATCHED) -> meter_keys.KeySettlement:
        """Key changes whose command is final (should a notification have been missed)."""
        return await meter_keys.settle_key_changes(self.uow, now)

    async def send_notices(self, now: datetime, progress: JobProgress = UNWATCHED) -> notices.SendReport:
        return await notices.send_due_notices(
            self.uow, now, sms=self.text_sender, email=self.email_sender, observer=self.observer, progress=progress
        )

    async def monthly(self, now: datetime, progress: JobProgress = UNWATCHED) -> int:
        """On the first run in a new month: last month's invoices (then e-mailed) and transformer balances."""
        local = now.astimezone(self.tz).date()
        month = local.replace(day=1)
        if self.last_invoice_month == month:
            if self.email_sender is not None:
                await invoices.email_invoices(self.uow, self.email_sender, now, progress=progress)
            return 0
        start, end = invoices.previous_month(local)
        issued = await invoices.issue_invoices(
            self.uow,
            start,
            end,
            now,
            utility=self.utility,
            vat_bp=self.vat_bp,
            series=self.invoice_series,
            tz=self.tz,
            heat_in_gcal=self.heat_in_gcal,
            progress=progress,
        )
        if progress.stop_requested:  # stopped between batches: the next run issues the rest
            return issued
        period_start = datetime.combine(start, datetime.min.time(), self.tz).astimezone(UTC)
        period_end = datetime.combine(end + timedelta(days=1), datetime.min.time(), self.tz).astimezone(UTC)
        await losses.record_transformer_balances(self.uow, period_start, period_end, now)
        if self.email_sender is not None:
            await invoices.email_invoices(self.uow, self.email_sender, now, progress=progress)
        self.last_invoice_month = month
        return issued
