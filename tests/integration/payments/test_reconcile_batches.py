"""Reconciliation in batches (both databases): each batch commits its findings and the run's position as it
goes, with progress reported; a run stopped or cancelled between batches is carried on by the next one
(`unfinished_runs`, `reconcile(resume=...)`) without redoing or missing anything; every kind of finding is
still found when its rows fall on either side of a batch border."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from config.settings import load_settings
from gateway.keys import KeyRing
from gateway.progress import CommandProgress
from payments import reconcile as reconciliation
from payments.reconcile import reconcile
from payments.reconcile_runs import unfinished_runs
from payments.stripe_api import BalanceTransaction, ProviderPayment
from smsmeter.payments_wiring import RECONCILE_LOOKBACK, DailyReconciliation
from store.schema.payments import payments, reconciliation_findings
from store.uow import UnitOfWork
from tests.integration.payments.conftest import MASTER_KEY, NOW, Subscriber, add_subscribers, net_received
from tests.integration.payments.helpers import pending_topup
from web.webhooks import BillingApplier

START, END = NOW - timedelta(hours=1), NOW + timedelta(hours=1)
LATER = NOW + timedelta(minutes=30)  # the runs' now: a payment paid at NOW - 7 h is past the 6 h delivery check
EXPECTED = {
    "matched": 5,
    "applied": 1,
    "missing_here": 1,
    "missing_there": 1,
    "amount_mismatch": 1,
    "not_delivered": 1,
}
ITEMS = 8 + 8 + 1  # the listing, our paid payments in the window, our payments past the delivery check


class Listing:
    """The provider's side (`PaymentLister`): succeeded PaymentIntents with a fee each."""

    def __init__(self) -> None:
        self.intents: list[ProviderPayment] = []

    def add(self, pi: str, amount_minor: int, reference: str | None = None) -> None:
        meta = {"reference": reference} if reference else {}
        self.intents.append(ProviderPayment(pi, amount_minor, "USD", NOW, "succeeded", f"ch_{pi}", meta))

    async def list_payment_intents(self, start: datetime, end: datetime) -> list[ProviderPayment]:
        return list(reversed(self.intents))  # in no particular order: the run orders them itself

    async def list_balance_transactions(self, start: datetime, end: datetime) -> list[BalanceTransaction]:
        return [
            BalanceTransaction(
                f"txn_{pi.payment_intent_id}", pi.charge_id or "", "charge", pi.amount_minor, 30, 0, "USD", NOW
            )
            for pi in self.intents
        ]


async def _paid(uow: UnitOfWork, who: Subscriber, pi: str, amount_minor: int, paid_at: datetime) -> None:
    async with uow.begin() as conn:
        await conn.execute(
            insert(payments).values(
                provider="stripe",
                provider_ref=pi,
                payment_intent_id=pi,
                subscriber_id=who.id,
                meter_id=who.meter_id,
                amount_minor=amount_minor,
                currency="USD",
                status="paid",
                created_at=NOW,
                paid_at=paid_at,
                updated_at=paid_at,
            )
        )


async def _utility(uow: UnitOfWork) -> tuple[Listing, Subscriber]:
    """Every kind of finding, spread over the listing's order so that batches of 3 cut between them."""
    alice, bob = await add_subscribers(uow, 2)
    listing = Listing()
    for n in range(4):
        await _paid(uow, alice, f"pi_m{n}", 1000, NOW)
        listing.add(f"pi_m{n}", 1000)
    await _paid(uow, alice, "pi_m9_late", 800, NOW - timedelta(hours=7))  # matched, and its credit never sent
    listing.add("pi_m9_late", 800)
    ref, _ = await pending_topup(uow, bob, 1500)  # paid there, its webhook never came
    listing.add("pi_a_applied", 1500, ref)
    listing.add("pi_h_unknown", 700, "tp_" + "f" * 32)  # paid there for a top-up never started here
    await _paid(uow, alice, "pi_x_amount", 1000, NOW)
    listing.add("pi_x_amount", 1200)
    await _paid(uow, alice, "pi_z_not_there", 900, NOW)  # credited here only
    return listing, bob


class Progress:
    """A JobRun stand-in: records each committed batch; asks to stop (or is cancelled) after `after` batches."""

    def __init__(self, after: int | None = None, *, cancel: bool = False) -> None:
        self.batches: list[int] = []
        self.after, self.cancel = after, cancel

    def advanced(self, items: int) -> None:
        self.batches.append(items)
        if self.cancel and self.after is not None and len(self.batches) >= self.after:
            raise asyncio.CancelledError  # the task cancelled at the await after the batch's commit

    @property
    def stop_requested(self) -> bool:
        return not self.cancel and self.after is not None and len(self.batches) >= self.after


async def _findings(uow: UnitOfWork) -> list[tuple[str, str]]:
    f = reconciliation_findings.c
    async with uow.connect() as conn:
        return [(row.kind, row.provider_ref) for row in await conn.execute(select(f.kind, f.provider_ref))]


async def _reports(folder: Path) -> int:
    return await asyncio.to_thread(lambda: len(list(folder.rglob("*.xlsx"))))


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconciliation, "BATCH", 3)


async def test_each_batch_commits_its_findings_and_reports_its_progress(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    listing, _ = await _utility(uow)
    progress = Progress()
    report = await reconcile(uow, listing, applier, START, END, LATER, commands=CommandProgress(), progress=progress)
    assert report.finished
    assert report.counts() == EXPECTED
    assert progress.batches == [3, 3, 2, 3, 3, 2, 1]  # the listing, our payments, the delivery check
    assert sum(progress.batches) == ITEMS
    assert sorted(await _findings(uow)) == sorted((line.kind, line.provider_ref) for line in report.lines)
    assert await unfinished_runs(uow) == []


async def test_a_stopped_run_has_committed_its_batches_and_the_next_run_carries_it_on(
    uow: UnitOfWork, applier: BillingApplier
) -> None:
    listing, _ = await _utility(uow)
    stopped = await reconcile(
        uow, listing, applier, START, END, LATER, commands=CommandProgress(), progress=Progress(after=1)
    )
    assert not stopped.finished
    assert len(await _findings(uow)) == 3  # the first batch, committed
    (run,) = await unfinished_runs(uow)
    assert (run.run_id, run.phase, run.items) == (stopped.run_id, "intents", 3)


@pytest.mark.parametrize("cancel", [False, True], ids=["stopped", "cancelled"])
@pytest.mark.parametrize("after", [1, 2, 3, 4, 6])
async def test_a_run_stopped_anywhere_resumes_without_redoing_or_missing_anything(
    uow: UnitOfWork, applier: BillingApplier, after: int, cancel: bool
) -> None:
    listing, bob = await _utility(uow)
    first = Progress(after=after, cancel=cancel)
    try:
        await reconcile(uow, listing, applier, START, END, LATER, commands=CommandProgress(), progress=first)
    except asyncio.CancelledError:
        assert cancel
    (run,) = await unfinished_runs(uow)
    rest = Progress()
    report = await reconcile(
        uow, listing, applier, START, END, LATER, commands=CommandProgress(), progress=rest, resume=run.run_id
    )
    assert report.finished
    assert report.run_id == run.run_id
    assert report.counts() == EXPECTED  # nothing missed, nothing found twice
    found = await _findings(uow)
    assert max(Counter(found).values()) == 1
    assert sum(first.batches) + sum(rest.batches) == ITEMS  # nothing looked at twice
    assert await net_received(uow, bob.account_id) == 1500  # the missed payment credited once
    assert await unfinished_runs(uow) == []
    async with uow.connect() as conn:
        fees = await conn.scalar(select(func.count()).where(payments.c.fee_minor == 30))
    assert fees == 7  # every payment listed and found here has its fee


async def test_the_daily_job_carries_on_a_stopped_run_before_its_next_day_and_writes_the_report(
    uow: UnitOfWork, applier: BillingApplier, tmp_path: Path
) -> None:
    """The scheduled job (`DailyReconciliation`, run by the scheduler with its JobRun): a run stopped by the
    service stopping is carried on at the next start; the report files come when it has finished."""
    listing, bob = await _utility(uow)
    settings = load_settings(None, {"SMSMETER_DATA_DIR": str(tmp_path)})
    job = DailyReconciliation(
        settings, uow, listing, KeyRing(MASTER_KEY), time(0, 0), lambda: NOW + RECONCILE_LOOKBACK / 2
    )
    job.due = NOW  # the day's run is due
    await job(NOW, Progress(after=2))
    assert len(await unfinished_runs(uow)) == 1
    assert await _reports(tmp_path) == 0
    restarted = DailyReconciliation(settings, uow, listing, KeyRing(MASTER_KEY), time(0, 0), lambda: NOW)
    progress = Progress()
    await restarted(NOW, progress)
    assert await unfinished_runs(uow) == []
    assert sum(progress.batches) > 0
    assert await _reports(tmp_path) == 1
    assert max(Counter(await _findings(uow)).values()) == 1
    assert await net_received(uow, bob.account_id) == 1500
