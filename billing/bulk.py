"""Bulk command jobs with visible progress: a tariff change for 100,000 meters, a group disconnect.

A job is a row (`bulk_jobs`: total, done, skipped, status). Its commands are queued through the outbox in
chunks of 1,000, each chunk in its own transaction that also advances `done`, so progress is visible
while it runs and a crash keeps what was queued. Every command carries an idempotency key derived from
the job's cause, so running a job again queues nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import NotFound
from gateway.errors import GatewayError
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_commands
from store import audit
from store.audit import Actor
from store.schema.ledger import bulk_jobs as J  # noqa: N812
from store.uow import UnitOfWork

log = logging.getLogger("smsmeter.billing.bulk")

CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    description: str
    params: dict[str, Any]
    total: int
    done: int
    skipped: int
    status: str
    error: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else (self.done + self.skipped) * 100 // self.total


async def create_job(
    conn: AsyncConnection, actor: Actor, kind: str, description: str, params: dict[str, Any], total: int, now: datetime
) -> int:
    job_id = await conn.scalar(
        insert(J)
        .values(
            kind=kind,
            description=description,
            params=params,
            total=total,
            done=0,
            skipped=0,
            status="running",
            created_by=str(actor),
            created_at=now,
        )
        .returning(J.c.id)
    )
    assert job_id is not None
    await audit.record(conn, actor, f"bulk.{kind}", now, target=f"job:{job_id}", after={**params, "total": total})
    return int(job_id)


async def get_job(conn: AsyncConnection, job_id: int) -> Job:
    row = (await conn.execute(select(J).where(J.c.id == job_id))).first()
    if row is None:
        raise NotFound("job", job_id)
    return Job(**dict(row._mapping))


async def recent_jobs(conn: AsyncConnection, limit: int = 20) -> list[Job]:
    return [Job(**dict(r._mapping)) for r in await conn.execute(select(J).order_by(J.c.id.desc()).limit(limit))]


async def finish_job(conn: AsyncConnection, job_id: int, now: datetime) -> None:
    """The job is done; its total becomes what it queued and skipped (a group that grew or shrank meanwhile)."""
    await conn.execute(
        update(J).where(J.c.id == job_id).values(status="done", finished_at=now, total=J.c.done + J.c.skipped)
    )


async def run_job(
    uow: UnitOfWork,
    job_id: int,
    meter_ids: Sequence[int],
    build: Callable[[int], CommandRequest],
    now: datetime,
    *,
    keys: KeyRing,
    finish: bool = True,
) -> Job:
    """Queue one command per meter, a chunk per transaction, advancing the job's progress. A chunk the
    outbox refuses (e.g. a meter without a key) is retried meter by meter and the bad ones are skipped.
    `finish=False`: the job stays running, more meters come later (a reading plan's run queues a slice at a
    time; `finish_job` ends it)."""
    try:
        for start in range(0, len(meter_ids), CHUNK):
            chunk = meter_ids[start : start + CHUNK]
            requests = [build(m) for m in chunk]
            skipped = 0
            try:
                async with uow.begin() as conn:
                    await enqueue_commands(conn, keys, requests, now)
                    await conn.execute(update(J).where(J.c.id == job_id).values(done=J.c.done + len(chunk)))
            except GatewayError:
                for request in requests:
                    try:
                        async with uow.begin() as conn:
                            await enqueue_commands(conn, keys, [request], now)
                            await conn.execute(update(J).where(J.c.id == job_id).values(done=J.c.done + 1))
                    except GatewayError as exc:
                        skipped += 1
                        log.warning("job %s: meter %s skipped: %s", job_id, request.meter_id, exc)
                if skipped:
                    async with uow.begin() as conn:
                        await conn.execute(update(J).where(J.c.id == job_id).values(skipped=J.c.skipped + skipped))
        if finish:
            async with uow.begin() as conn:
                await finish_job(conn, job_id, now)
    except Exception as exc:
        async with uow.begin() as conn:
            await conn.execute(
                update(J)
                .where(J.c.id == job_id)
                .values(status="failed", finished_at=now, error=f"{type(exc).__name__}: {exc}"[:500])
            )
        raise
    async with uow.connect() as conn:
        return await get_job(conn, job_id)
