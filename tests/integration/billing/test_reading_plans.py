"""Scheduled reading (`billing.reading_plans`, run by the scheduler as `reading plans`): a plan's run starts
when its window opens, queues its meters' read requests through the bulk job of the remote-control read at
its pace (evenly over the window, never above the reading budget, runs sharing one budget), keeps its
progress, and reports the meters that did not answer (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from billing import reading_plans
from billing.errors import InvalidField
from billing.reading_plans import PlanFields
from gateway.keys import KeyRing
from store.schema.commands import commands
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, OPERATOR, new_subscriber

KEYS = KeyRing(MASTER_KEY)
NIGHT = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)  # a Tuesday, 01:00 in the utility's zone (UTC here)

pytestmark = pytest.mark.usefixtures("streets")


async def _meters(uow: UnitOfWork, n: int) -> list[int]:
    ids = []
    for i in range(1, n + 1):
        _, meter = await new_subscriber(uow, f"6401001000100{i:02d}", meter=i)
        assert meter is not None
        ids.append(meter.id)
    return ids


async def _read_requests(uow: UnitOfWork) -> list[tuple[int, str, datetime]]:
    async with uow.connect() as conn:
        rows = await conn.execute(
            select(commands.c.meter_id, commands.c.kind, commands.c.created_at).order_by(commands.c.id)
        )
        return [(r.meter_id, r.kind, r.created_at) for r in rows]


def _daily(**changes: object) -> PlanFields:
    fields: dict[str, object] = {
        "name": "Balti nightly registers",
        "items": "registers",
        "every": "daily",
        "group_kind": "settlement",
        "group_code": "6401",
        "window_start_min": 60,
        "window_end_min": 300,
    }
    return PlanFields(**{**fields, **changes})  # type: ignore[arg-type]


async def test_a_daily_run_spreads_its_read_requests_over_the_window(uow: UnitOfWork) -> None:
    meter_ids = await _meters(uow, 4)
    plan = await reading_plans.create_plan(uow, OPERATOR, _daily(), NIGHT - timedelta(days=1))
    assert plan["meters"] == 4

    before = await reading_plans.run_plans(uow, NIGHT - timedelta(minutes=1), keys=KEYS, tz=UTC, budget_per_s=0)
    assert before.started == 0  # the window has not opened

    first = await reading_plans.run_plans(uow, NIGHT, keys=KEYS, tz=UTC, budget_per_s=0)
    assert (first.started, first.queued) == (1, 1)  # four meters over four hours: one an hour
    again = await reading_plans.run_plans(uow, NIGHT + timedelta(minutes=30), keys=KEYS, tz=UTC, budget_per_s=0)
    assert (again.started, again.queued) == (0, 0)  # one run a night; nothing more due yet
    later = await reading_plans.run_plans(uow, NIGHT + timedelta(hours=3), keys=KEYS, tz=UTC, budget_per_s=0)
    assert (later.queued, later.finished) == (3, 1)
    sent = await _read_requests(uow)
    assert [m for m, _, _ in sent] == meter_ids
    assert {k for _, k, _ in sent} == {"read_request"}

    async with uow.connect() as conn:
        (run,) = await reading_plans.list_runs(conn)
    assert (run["status"], run["queued"], run["meters"], run["percent"]) == ("done", 4, 4, 100)
    assert run["occasion"] == "2026-03-03"


async def test_runs_never_queue_above_the_reading_budget(uow: UnitOfWork) -> None:
    await _meters(uow, 12)
    # a one-minute window is too short for 12 meters at 0.1 a second: the run stretches, the rate holds
    await reading_plans.create_plan(uow, OPERATOR, _daily(window_end_min=61), NIGHT - timedelta(days=1))
    await reading_plans.create_plan(
        uow, OPERATOR, _daily(name="All meters", group_kind="all", window_end_min=61), NIGHT - timedelta(days=1)
    )
    budget = 0.1
    t = NIGHT
    for _ in range(12):
        await reading_plans.run_plans(uow, t, keys=KEYS, tz=UTC, budget_per_s=budget)
        t += timedelta(seconds=30)
    sent = sorted(at for _, _, at in await _read_requests(uow))
    assert 0 < len(sent) <= 24
    for i, at in enumerate(sent):  # in any 30 s, at most budget × 30 s of them (both runs together)
        assert sum(1 for other in sent[i:] if other < at + timedelta(seconds=30)) <= budget * 30
    async with uow.connect() as conn:
        runs = await reading_plans.list_runs(conn)
    assert all(r["rate_per_s"] <= budget for r in runs)


async def test_the_report_names_the_meters_that_did_not_answer(uow: UnitOfWork) -> None:
    meter_ids = await _meters(uow, 3)
    plan = await reading_plans.create_plan(
        uow, OPERATOR, _daily(name="Weekly profile", items="load_profile", every="weekly", weekday=1), NIGHT
    )
    run_id = await reading_plans.start_run_now(uow, OPERATOR, plan["id"], NIGHT, keys=KEYS, budget_per_s=0)
    async with uow.connect() as conn:
        rows = list(await conn.execute(select(commands).order_by(commands.c.id)))
    assert [r.meter_id for r in rows] == meter_ids  # no budget: every meter in the first pass
    assert all(r.created_by == "operator:alice" for r in rows)
    assert rows[0].kind == "read_request"
    assert rows[0].payload == {"items": "LOAD_PROFILE", "profile_since": int((NIGHT - timedelta(days=7)).timestamp())}
    async with uow.begin() as conn:
        await conn.execute(update(commands).where(commands.c.id == rows[0].id).values(state="1:1"))
        await conn.execute(
            update(commands)
            .where(commands.c.id == rows[1].id)
            .values(state="timed_out", result_reason="no acknowledgement", final_at=NIGHT + timedelta(hours=1))
        )
    async with uow.connect() as conn:
        report = await reading_plans.run_report(conn, run_id)
    assert (report["answered"], report["not_answered"], report["waiting"]) == (1, 1, 1)
    assert [(u["meter_id"], u["waiting"], u["reason"]) for u in report["unanswered"]] == [
        (meter_ids[1], False, "no acknowledgement"),
        (meter_ids[2], True, None),
    ]
    assert report["unanswered"][0]["subscriber_name"] == "Ana Popescu"


async def test_a_paused_plan_starts_no_run_and_a_bad_plan_is_refused(uow: UnitOfWork) -> None:
    await _meters(uow, 1)
    plan = await reading_plans.create_plan(uow, OPERATOR, _daily(), NIGHT - timedelta(days=1))
    paused = await reading_plans.set_plan_enabled(uow, OPERATOR, plan["id"], False, NIGHT - timedelta(hours=1))
    assert paused["enabled"] is False
    report = await reading_plans.run_plans(uow, NIGHT, keys=KEYS, tz=UTC, budget_per_s=0)
    assert report.started == 0
    with pytest.raises(InvalidField) as bad:
        await reading_plans.create_plan(uow, OPERATOR, _daily(group_kind="transformer", group_code="999"), NIGHT)
    assert bad.value.field == "group_code"
    with pytest.raises(InvalidField):
        await reading_plans.create_plan(uow, OPERATOR, _daily(every="weekly"), NIGHT)
    async with uow.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(commands)) == 0
