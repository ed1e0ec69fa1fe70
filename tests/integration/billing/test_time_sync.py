"""The scheduled time sync (`billing.control.sync_clocks`, run hourly by the scheduler as `time sync`): one
time_sync to every active meter whose clock was not set within `every`, as one bulk job; run again, it sends
nothing twice; once `every` has passed, the meters get the next one; archived meters get none; the meters are
read a page at a time, and a run stopped between pages leaves the rest to the next run (both databases)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from billing import control, meter_registry
from config import load_settings
from gateway.keys import KeyRing
from smsmeter.billing_setup import build_billing
from store.schema.commands import commands
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, new_subscriber

KEYS = KeyRing(MASTER_KEY)
WEEK = timedelta(days=7)

pytestmark = pytest.mark.usefixtures("streets")


async def _time_syncs(uow: UnitOfWork) -> list[tuple[int, str]]:
    async with uow.connect() as conn:
        rows = await conn.execute(
            select(commands.c.meter_id, commands.c.created_by)
            .where(commands.c.kind == "time_sync")
            .order_by(commands.c.id)
        )
        return [(r.meter_id, r.created_by) for r in rows]


async def test_every_active_meter_gets_one_time_sync_per_period(uow: UnitOfWork) -> None:
    _, first = await new_subscriber(uow, "640100100010001", meter=1)
    _, second = await new_subscriber(uow, "640100100010002", meter=2)
    _, gone = await new_subscriber(uow, "640100100010003", meter=3)
    assert first is not None
    assert second is not None
    assert gone is not None
    async with uow.begin() as conn:
        await meter_registry.archive_meter(conn, OPERATOR, gone.id, "removed", NOW)

    job = await control.sync_clocks(uow, NOW, keys=KEYS, every=WEEK)
    assert job is not None
    assert job.total == 2
    assert job.status == "done"
    assert await _time_syncs(uow) == [(first.id, "system:smsmeter"), (second.id, "system:smsmeter")]

    assert await control.sync_clocks(uow, NOW + timedelta(hours=1), keys=KEYS, every=WEEK) is None
    assert len(await _time_syncs(uow)) == 2

    later = await control.sync_clocks(uow, NOW + WEEK + timedelta(hours=1), keys=KEYS, every=WEEK)
    assert later is not None
    assert later.total == 2
    assert len(await _time_syncs(uow)) == 4


async def test_the_service_runs_it_as_the_settings_say(uow: UnitOfWork) -> None:
    _, meter = await new_subscriber(uow, meter=1)
    assert meter is not None
    off = build_billing(load_settings(None, {"SMSMETER_BILLING_TIME_SYNC_DAYS": "0"}), uow, KEYS)
    assert await off.sync_clocks(NOW) is None
    assert await _time_syncs(uow) == []
    on = build_billing(load_settings(None, {"SMSMETER_BILLING_TIME_SYNC_DAYS": "3"}), uow, KEYS)
    assert on.time_sync_every == timedelta(days=3)
    job = await on.sync_clocks(NOW)
    assert job is not None
    assert await _time_syncs(uow) == [(meter.id, "system:smsmeter")]


class _Stopping:
    """The service is stopping: the job is told so before its first page."""

    def advanced(self, items: int) -> None:
        pass

    @property
    def stop_requested(self) -> bool:
        return True


async def test_a_run_stopped_before_its_pages_queues_nothing_and_the_next_run_queues_them(uow: UnitOfWork) -> None:
    _, first = await new_subscriber(uow, "640100100010001", meter=1)
    _, second = await new_subscriber(uow, "640100100010002", meter=2)
    assert first is not None
    assert second is not None

    stopped = await control.sync_clocks(uow, NOW, keys=KEYS, every=WEEK, progress=_Stopping())
    assert stopped is not None
    assert (stopped.status, stopped.done, stopped.total) == ("done", 0, 0)
    assert await _time_syncs(uow) == []

    resumed = await control.sync_clocks(uow, NOW + timedelta(minutes=1), keys=KEYS, every=WEEK)
    assert resumed is not None
    assert (resumed.done, resumed.total) == (2, 2)
    assert [meter_id for meter_id, _ in await _time_syncs(uow)] == [first.id, second.id]
