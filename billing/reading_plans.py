"""Scheduled reading: reading plans per group of meters and their runs, with progress and the meters that did
not answer. The rules (what is due, how fast) are `billing.rules.reading_plans`; this module keeps the rows.

A run's read requests are the remote-control read (`billing.control.Control(Action.READ)`) queued through a
bulk job (`billing.bulk.run_job`), a slice at a time: each pass of the scheduled job (`run_plans`) starts the
runs that fall due and queues, for every running run, the meters due at its pace, within the pass's share of
the reading budget. Meters go in id order from the run's cursor, so a pass after a crash carries on where the
last one committed, and every command is keyed `job:<job id>:meter:<meter id>` so nothing is queued twice.
A meter has answered when its read request is processed (1:1); one whose command ended otherwise did not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import bulk
from billing.control import Action, Control
from billing.errors import InvalidField, NotFound
from billing.rules import reading_plans as rules
from billing.rules.reading_plans import GroupKind, Items, Plan
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest
from gateway.states import FINAL_STATES, CommandState
from store import audit
from store.audit import SYSTEM, Actor
from store.schema.commands import commands
from store.schema.ledger import bulk_jobs, tariffs
from store.schema.reading_plans import reading_plan_runs, reading_plans
from store.schema.registry import meters, subscribers, transformers
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress

log = logging.getLogger("smsmeter.billing.reading_plans")

P, RUN = reading_plans.c, reading_plan_runs.c
KIND = "reading_plan"  # the bulk job's kind
UNANSWERED_SHOWN = 500  # the report lists at most this many meters that did not answer


@dataclass(frozen=True, slots=True)
class PlanFields:
    name: str
    items: str
    every: str
    group_kind: str
    group_code: str | None = None
    weekday: int | None = None
    window_start_min: int = 60  # 01:00 local
    window_end_min: int = 300  # 05:00 local
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class PassReport:
    started: int  # runs that fell due in this pass
    queued: int  # read requests queued in this pass
    finished: int  # runs that queued their last meter


def _plan(row: Any) -> Plan:
    return Plan(
        row.name,
        Items(row.items),
        rules.Every(row.every),
        row.weekday,
        GroupKind(row.group_kind),
        row.group_code,
        row.window_start_min,
        row.window_end_min,
    )


def _plan_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "items": row.items,
        "every": row.every,
        "weekday": row.weekday,
        "group_kind": row.group_kind,
        "group_code": row.group_code,
        "window_start": f"{row.window_start_min // 60:02d}:{row.window_start_min % 60:02d}",
        "window_end": f"{row.window_end_min // 60:02d}:{row.window_end_min % 60:02d}",
        "enabled": bool(row.enabled),
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


def _group_query(plan: Plan, stmt: Select[Any]) -> Select[Any]:
    m, s = meters.c, subscribers.c
    stmt = stmt.where(m.status == "active")
    code = plan.group_code or ""
    if plan.group_kind is GroupKind.TRANSFORMER:
        return stmt.where(m.transformer_id == int(code))
    if plan.group_kind is GroupKind.SETTLEMENT:
        stmt = stmt.join(subscribers, s.id == m.subscriber_id)
        return stmt.where(s.region_code == code[:2], s.settlement_code == code[2:])
    if plan.group_kind is GroupKind.TARIFF:
        return stmt.join(subscribers, s.id == m.subscriber_id).where(s.tariff_id == int(code))
    return stmt


async def _group_size(conn: AsyncConnection, plan: Plan) -> int:
    return int(await conn.scalar(_group_query(plan, select(func.count()).select_from(meters))) or 0)


async def _group_meters(conn: AsyncConnection, plan: Plan, after_id: int, limit: int) -> list[int]:
    stmt = _group_query(plan, select(meters.c.id)).where(meters.c.id > after_id)
    return [int(i) for i in (await conn.scalars(stmt.order_by(meters.c.id).limit(limit))).all()]


async def _check_group(conn: AsyncConnection, plan: Plan) -> None:
    code = plan.group_code
    if plan.group_kind is GroupKind.TRANSFORMER:
        found = await conn.scalar(select(transformers.c.id).where(transformers.c.id == int(code or 0)))
    elif plan.group_kind is GroupKind.TARIFF:
        found = await conn.scalar(select(tariffs.c.id).where(tariffs.c.id == int(code or 0)))
    else:
        return
    if found is None:
        raise InvalidField("group_code", f"no {plan.group_kind.value} {code}")


async def list_plans(conn: AsyncConnection) -> list[dict[str, Any]]:
    plans = [_plan_json(r) for r in await conn.execute(select(reading_plans).order_by(P.id))]
    last = {
        int(r.plan_id): int(r.id)
        for r in await conn.execute(select(RUN.plan_id, func.max(RUN.id).label("id")).group_by(RUN.plan_id))
    }
    for plan in plans:
        plan["last_run_id"] = last.get(plan["id"])
    return plans


async def get_plan(conn: AsyncConnection, plan_id: int) -> dict[str, Any]:
    row = (await conn.execute(select(reading_plans).where(P.id == plan_id))).first()
    if row is None:
        raise NotFound("reading plan", plan_id)
    out = _plan_json(row)
    out["meters"] = await _group_size(conn, _plan(row))
    return out


async def create_plan(uow: UnitOfWork, actor: Actor, fields: PlanFields, now: datetime) -> dict[str, Any]:
    """A reading plan (audited `reading_plan.create`). Raises InvalidField."""
    plan = rules.check_plan(
        name=fields.name,
        items=fields.items,
        every=fields.every,
        weekday=fields.weekday,
        group_kind=fields.group_kind,
        group_code=fields.group_code,
        window_start_min=fields.window_start_min,
        window_end_min=fields.window_end_min,
    )
    values = {
        "name": plan.name,
        "items": plan.items.value,
        "every": plan.every.value,
        "weekday": plan.weekday,
        "group_kind": plan.group_kind.value,
        "group_code": plan.group_code,
        "window_start_min": plan.window_start_min,
        "window_end_min": plan.window_end_min,
        "enabled": int(fields.enabled),
    }
    async with uow.begin() as conn:
        await _check_group(conn, plan)
        plan_id = await conn.scalar(
            insert(reading_plans)
            .values(**values, created_by=str(actor), created_at=now, updated_at=now)
            .returning(P.id)
        )
        assert plan_id is not None
        await audit.record(conn, actor, "reading_plan.create", now, target=f"reading_plan:{plan_id}", after=values)
        return await get_plan(conn, int(plan_id))


async def set_plan_enabled(uow: UnitOfWork, actor: Actor, plan_id: int, enabled: bool, now: datetime) -> dict[str, Any]:
    """Pause or resume a plan's scheduled runs (audited); a run under way carries on."""
    async with uow.begin() as conn:
        before = await get_plan(conn, plan_id)
        await conn.execute(update(reading_plans).where(P.id == plan_id).values(enabled=int(enabled), updated_at=now))
        await audit.record(
            conn,
            actor,
            "reading_plan.enable" if enabled else "reading_plan.pause",
            now,
            target=f"reading_plan:{plan_id}",
            before={"enabled": before["enabled"]},
            after={"enabled": enabled},
        )
        return await get_plan(conn, plan_id)


async def _start(
    conn: AsyncConnection,
    actor: Actor,
    plan_id: int,
    plan: Plan,
    occasion: str,
    starts_at: datetime,
    window: timedelta | None,
    budget_per_s: float,
    now: datetime,
) -> int:
    """The run's row and its bulk job. `window` None: a run by hand, paced by the budget alone."""
    total = await _group_size(conn, plan)
    rate = budget_per_s if window is None else rules.run_rate_per_s(total, window, budget_per_s)
    job_id = await bulk.create_job(
        conn,
        actor,
        KIND,
        f"{plan.name}: {plan.items.value} of {total} meters",
        {"plan_id": plan_id, "occasion": occasion, "items": plan.items.value, "rate_per_s": rate},
        total,
        now,
    )
    run_id = await conn.scalar(
        insert(reading_plan_runs)
        .values(
            plan_id=plan_id,
            occasion=occasion,
            job_id=job_id,
            status="running",
            started_at=starts_at,
            window_ends_at=rules.run_ends(total, starts_at, rate),
            rate_per_s=rate,
        )
        .returning(RUN.id)
    )
    assert run_id is not None
    return int(run_id)


async def start_run_now(
    uow: UnitOfWork, actor: Actor, plan_id: int, now: datetime, *, keys: KeyRing, budget_per_s: float
) -> int:
    """A run of the plan outside its schedule, at once: as fast as the reading budget allows (no budget: every
    meter in the first pass). Returns the run's id; its first slice is queued before it returns."""
    async with uow.begin() as conn:
        row = (await conn.execute(select(reading_plans).where(P.id == plan_id))).first()
        if row is None:
            raise NotFound("reading plan", plan_id)
        run_id = await _start(
            conn, actor, plan_id, _plan(row), f"manual:{now.isoformat()}", now, None, budget_per_s, now
        )
    await _advance_runs(uow, now, keys=keys, budget_per_s=budget_per_s)
    return run_id


async def _start_due(uow: UnitOfWork, now: datetime, tz: tzinfo, budget_per_s: float) -> int:
    started = 0
    async with uow.connect() as conn:
        rows = list(await conn.execute(select(reading_plans).where(P.enabled == 1).order_by(P.id)))
        done = {(int(r.plan_id), r.occasion) for r in await conn.execute(select(RUN.plan_id, RUN.occasion))}
    for row in rows:
        plan = _plan(row)
        occasion = rules.due_occasion(plan, now, tz)
        if occasion is None or (int(row.id), occasion.key) in done:
            continue
        async with uow.begin() as conn:
            await _start(conn, SYSTEM, int(row.id), plan, occasion.key, now, occasion.ends_at - now, budget_per_s, now)
        started += 1
    return started


async def _advance_runs(uow: UnitOfWork, now: datetime, *, keys: KeyRing, budget_per_s: float) -> tuple[int, int]:
    """Queue every running run's meters that are due by `now` at its pace, all runs together within the
    pass's share of the budget. Returns (read requests queued, runs finished)."""
    async with uow.connect() as conn:
        runs = list(
            await conn.execute(
                select(
                    reading_plan_runs,
                    reading_plans,
                    bulk_jobs.c.done,
                    bulk_jobs.c.skipped,
                    bulk_jobs.c.created_by.label("job_by"),
                )
                .join(reading_plans, P.id == RUN.plan_id)
                .join(bulk_jobs, bulk_jobs.c.id == RUN.job_id)
                .where(RUN.status == "running")
                .order_by(RUN.id)
            )
        )
        last_pass = await conn.scalar(select(func.max(RUN.last_tick_at)).where(RUN.status == "running"))
    allowance = rules.pass_allowance(budget_per_s, now - last_pass if last_pass is not None else None)
    queued = finished = 0
    for run in runs:
        m = run._mapping
        plan = _plan(run)
        due = rules.due_count(
            queued=int(m["done"]) + int(m["skipped"]), rate_per_s=m["rate_per_s"], started_at=m["started_at"], now=now
        )
        if allowance is not None:
            due = min(due, allowance - queued)
        due = min(due, bulk.CHUNK * 50)
        async with uow.connect() as conn:  # one more than due: whether any meter is left after these
            ahead = await _group_meters(conn, plan, int(m["cursor_meter_id"]), max(due, 0) + 1)
        meter_ids = ahead[: max(due, 0)]
        job_id, run_id = int(m["job_id"]), int(m[RUN.id])
        if meter_ids:
            build = _builder(plan, job_id, m["job_by"], now)
            await bulk.run_job(uow, job_id, meter_ids, build, now, keys=keys, finish=False)
            queued += len(meter_ids)
        exhausted = len(ahead) <= len(meter_ids)
        async with uow.begin() as conn:
            values: dict[str, Any] = {"last_tick_at": now}
            if meter_ids:
                values["cursor_meter_id"] = meter_ids[-1]
            if exhausted:
                values.update(status="done", finished_at=now)
                await bulk.finish_job(conn, job_id, now)
                finished += 1
            await conn.execute(update(reading_plan_runs).where(RUN.id == run_id).values(**values))
    return queued, finished


def _builder(plan: Plan, job_id: int, created_by: str, now: datetime) -> Any:
    since = int(now.timestamp()) - rules.PROFILE_DAYS * 86400 if plan.items is Items.LOAD_PROFILE else 0
    message = Control(Action.READ, read_items=plan.items.read_items(), profile_since_s=max(since, 0)).message(now)

    def build(meter_id: int) -> CommandRequest:
        return CommandRequest(meter_id, message, created_by, idempotency_key=f"job:{job_id}:meter:{meter_id}")

    return build


async def run_plans(
    uow: UnitOfWork,
    now: datetime,
    *,
    keys: KeyRing,
    tz: tzinfo,
    budget_per_s: float,
    progress: JobProgress = UNWATCHED,
) -> PassReport:
    """The scheduled pass: start the runs that fall due, then queue what is due of every run."""
    started = await _start_due(uow, now, tz, budget_per_s)
    queued, finished = await _advance_runs(uow, now, keys=keys, budget_per_s=budget_per_s)
    progress.advanced(queued)
    return PassReport(started, queued, finished)


_OPEN = tuple(s.value for s in CommandState if s not in FINAL_STATES)


def _run_json(row: Any, states: dict[str, int]) -> dict[str, Any]:
    m = row._mapping
    total, done, skipped = int(m["total"]), int(m["done"]), int(m["skipped"])
    answered = states.get(CommandState.PROCESSED.value, 0)
    waiting = sum(n for s, n in states.items() if s in _OPEN)
    return {
        "id": m[RUN.id],
        "plan_id": m["plan_id"],
        "plan": m["name"],
        "occasion": m["occasion"],
        "job_id": m["job_id"],
        "status": m[RUN.status],
        "started_at": m["started_at"],
        "window_ends_at": m["window_ends_at"],
        "rate_per_s": round(float(m["rate_per_s"]), 3),
        "meters": total,
        "queued": done,
        "skipped": skipped,
        "percent": 100 if total == 0 else min(100, (done + skipped) * 100 // total),
        "answered": answered,
        "waiting": waiting,
        "not_answered": done - answered - waiting,
        "states": dict(sorted(states.items())),
    }


def _runs_query() -> Select[Any]:
    return (
        select(reading_plan_runs, reading_plans.c.name, bulk_jobs.c.total, bulk_jobs.c.done, bulk_jobs.c.skipped)
        .join(reading_plans, P.id == RUN.plan_id)
        .join(bulk_jobs, bulk_jobs.c.id == RUN.job_id)
    )


async def _states(conn: AsyncConnection, job_id: int) -> dict[str, int]:
    c = commands.c
    rows = await conn.execute(
        select(c.state, func.count()).where(c.idempotency_key.like(f"job:{job_id}:%")).group_by(c.state)
    )
    return {str(s): int(n) for s, n in rows}


async def list_runs(conn: AsyncConnection, plan_id: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
    stmt = _runs_query().order_by(RUN.id.desc()).limit(limit)
    if plan_id is not None:
        stmt = stmt.where(RUN.plan_id == plan_id)
    return [_run_json(r, await _states(conn, int(r.job_id))) for r in await conn.execute(stmt)]


async def run_report(conn: AsyncConnection, run_id: int) -> dict[str, Any]:
    """The run's progress and the meters that have not answered: `waiting` (on their way) or `not answered`
    (the read request ended without the meter's answer: timed out, undeliverable …), with the reason."""
    row = (await conn.execute(_runs_query().where(RUN.id == run_id))).first()
    if row is None:
        raise NotFound("reading plan run", run_id)
    out = _run_json(row, await _states(conn, int(row.job_id)))
    c, m, s = commands.c, meters.c, subscribers.c
    rows = await conn.execute(
        select(c.id, c.meter_id, c.state, c.result_reason, c.final_at, m.code, s.code.label("subscriber"), s.name)
        .join(meters, m.id == c.meter_id)
        .outerjoin(subscribers, s.id == m.subscriber_id)
        .where(c.idempotency_key.like(f"job:{int(row.job_id)}:%"), c.state != CommandState.PROCESSED.value)
        .order_by(c.state.in_(_OPEN), m.code)
        .limit(UNANSWERED_SHOWN)
    )
    out["unanswered"] = [
        {
            "command_id": r.id,
            "meter_id": r.meter_id,
            "meter_code": r.code,
            "subscriber_code": r.subscriber,
            "subscriber_name": r.name,
            "state": r.state,
            "waiting": r.state in _OPEN,
            "reason": r.result_reason,
            "final_at": r.final_at,
        }
        for r in rows
    ]
    return out
