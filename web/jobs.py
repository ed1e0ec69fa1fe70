"""Work a request starts and does not wait for — the second half of a bulk job (queuing a tariff version
for every meter on it, a chunk a transaction) — run as tasks the application owns: each is tracked, its
failure logged (the job row says `failed`), and on shutdown the running ones are cancelled and awaited."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

log = logging.getLogger("smsmeter.web.jobs")


class JobRunner:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, name: str, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def wait_idle(self) -> None:
        """Until every started job has ended (tests, and a graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


JOBS = web.AppKey("jobs", JobRunner)


def setup_jobs(app: web.Application) -> None:
    app[JOBS] = JobRunner()

    async def close(app: web.Application) -> None:
        await app[JOBS].close()

    app.on_shutdown.append(close)
