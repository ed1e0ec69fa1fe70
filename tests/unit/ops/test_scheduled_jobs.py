"""The service's scheduled jobs stop between batches: a run in progress when the service stops finishes the
batch in hand and returns (the next run resumes); a job that keeps committing is never cut off by a fixed
timeout; only a job that commits nothing for the stall time is cancelled."""

from __future__ import annotations

import asyncio
from datetime import datetime

from smsmeter.billing_setup import BillingJobs, run_jobs
from telemetry import JobProgress


class _BatchedJob:
    """`batches` batches of `seconds` each, reporting each one, stopping between batches when asked."""

    def __init__(self, batches: int, seconds: float) -> None:
        self.batches, self.seconds = batches, seconds
        self.started = asyncio.Event()
        self.runs = self.done = 0

    async def __call__(self, now: datetime, progress: JobProgress) -> None:
        self.runs += 1
        self.started.set()
        for _ in range(self.batches):
            if progress.stop_requested:
                return
            await asyncio.sleep(self.seconds)
            self.done += 1
            progress.advanced(1)


def _jobs(job: _BatchedJob, interval_s: float) -> BillingJobs:
    return run_jobs([("slow", interval_s, job)])


async def test_a_run_in_progress_finishes_its_batch_and_returns_when_the_jobs_stop() -> None:
    job = _BatchedJob(batches=100, seconds=0.05)
    jobs = _jobs(job, interval_s=3600)
    await job.started.wait()
    await jobs.stop(stall_s=5)
    assert job.runs == 1
    assert job.done == 1  # the batch in hand finished; the next 99 are left to the next run
    assert all(task.done() and not task.cancelled() for task in jobs.tasks)


async def test_stopping_ends_the_wait_between_runs_at_once() -> None:
    job = _BatchedJob(batches=0, seconds=0)
    jobs = _jobs(job, interval_s=3600)
    await job.started.wait()
    await asyncio.sleep(0)
    await asyncio.wait_for(jobs.stop(stall_s=5), 1)  # not an hour
    assert job.runs == 1


async def test_a_job_that_keeps_committing_is_not_cut_off_by_the_stall_time() -> None:
    class _Stubborn(_BatchedJob):  # ignores stop_requested, but commits a batch every 20 ms
        async def __call__(self, now: datetime, progress: JobProgress) -> None:
            self.runs += 1
            self.started.set()
            for _ in range(self.batches):
                await asyncio.sleep(self.seconds)
                self.done += 1
                progress.advanced(1)

    job = _Stubborn(batches=15, seconds=0.02)
    jobs = _jobs(job, interval_s=3600)
    await job.started.wait()
    await jobs.stop(stall_s=0.1)  # the run takes 0.3 s: three stall times, with progress in each
    assert job.done == 15
    assert all(not task.cancelled() for task in jobs.tasks)


async def test_a_run_that_commits_nothing_is_cancelled_after_the_stall_time() -> None:
    job = _BatchedJob(batches=1, seconds=3600)
    jobs = _jobs(job, interval_s=3600)
    await job.started.wait()
    await jobs.stop(stall_s=0.05)
    assert job.done == 0
    assert all(task.cancelled() for task in jobs.tasks)
