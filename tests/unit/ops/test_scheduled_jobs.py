"""The service's scheduled jobs stop between runs: a run in progress when the service stops is finished,
not cut off in the middle of its transaction; a run that will not finish is cancelled after the timeout."""

from __future__ import annotations

import asyncio
from datetime import datetime

from smsmeter.billing_setup import BillingJobs, _every


class _SlowJob:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = asyncio.Event()
        self.runs = 0
        self.finished = 0

    async def __call__(self, now: datetime) -> None:
        self.runs += 1
        self.started.set()
        await asyncio.sleep(self.seconds)
        self.finished += 1


def _jobs(job: _SlowJob, interval_s: float) -> BillingJobs:
    stopping = asyncio.Event()
    return BillingJobs([asyncio.create_task(_every("slow", interval_s, job, stopping))], stopping)


async def test_a_run_in_progress_finishes_before_the_jobs_stop() -> None:
    job = _SlowJob(0.2)
    jobs = _jobs(job, interval_s=3600)
    await job.started.wait()
    await jobs.stop(timeout_s=5)
    assert (job.runs, job.finished) == (1, 1)
    assert all(task.done() and not task.cancelled() for task in jobs.tasks)


async def test_stopping_ends_the_wait_between_runs_at_once() -> None:
    job = _SlowJob(0)
    jobs = _jobs(job, interval_s=3600)
    await job.started.wait()
    await asyncio.sleep(0)
    await asyncio.wait_for(jobs.stop(timeout_s=5), 1)  # not an hour
    assert job.runs == 1


async def test_a_run_that_does_not_finish_is_cancelled_after_the_timeout() -> None:
    job = _SlowJob(3600)
    jobs = _jobs(job, interval_s=3600)
    await job.started.wait()
    await jobs.stop(timeout_s=0.05)
    assert job.finished == 0
    assert all(task.cancelled() for task in jobs.tasks)
