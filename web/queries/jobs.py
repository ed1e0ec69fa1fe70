"""Bulk jobs as the console and the API show them (read-only): how far the job has queued its commands, and
where those commands are now (their states, counted), so a group's progress is visible to 1:1."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema.commands import commands
from store.schema.ledger import bulk_jobs


async def job(conn: AsyncConnection, job_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(bulk_jobs).where(bulk_jobs.c.id == job_id))).first()
    if row is None:
        return None
    c = commands.c
    states: dict[str, int] = dict(
        (
            await conn.execute(
                select(c.state, func.count()).where(c.idempotency_key.like(f"job:{job_id}:%")).group_by(c.state)
            )
        ).all()
    )
    out = dict(row._mapping)
    total = int(out["total"])
    out["percent"] = 100 if total == 0 else (int(out["done"]) + int(out["skipped"])) * 100 // total
    out["commands"] = {state: int(n) for state, n in sorted(states.items())}
    out["processed"] = int(states.get("1:1", 0))
    return out


async def recent_jobs(conn: AsyncConnection, limit: int = 20) -> list[dict[str, Any]]:
    rows = await conn.execute(select(bulk_jobs).order_by(bulk_jobs.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]
