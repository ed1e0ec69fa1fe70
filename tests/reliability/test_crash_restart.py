"""kill -9 the service in the middle of a burst of top-ups, restart it: every top-up is credited exactly once at
the reference meters, every command ends final (here: processed, 1:1), and every command shows the attempt that
carried it — with the SMSC's message id, unless its only send was cut off by the kill (the submit_sm_resp died
with the process; its attempt still shows). Killed at a third of the burst; at full size at 10, 50 and 90 %."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from store.engine import create_engine
from tests.peers.smsc import NodeSmsc
from tests.reliability import harness

KILL_AT = harness.size((1 / 3,), (0.1, 0.5, 0.9))


@pytest.mark.parametrize("kill_at", KILL_AT, ids=lambda f: f"{round(f * 100)}%")
async def test_kill_9_during_a_burst_then_restart(
    tmp_path: Path, postgres_url: str, smsc: NodeSmsc, kill_at: float
) -> None:
    n_top_ups = harness.top_ups(150)
    n_meters = harness.size(40, harness.meters_for(n_top_ups))
    engine: AsyncEngine = create_engine(postgres_url)
    try:
        customers = await harness.make_utility(engine, n_meters)
        fleet = harness.Fleet(customers)
        burst = harness.plan_burst(customers, n_top_ups, "crash")
        service = harness.ServiceProcess(tmp_path, harness.service_env(postgres_url, smsc))
        started = time.monotonic()
        with harness.service_processes(service):
            async with harness.fleet_answering(smsc, fleet):
                service.start()
                await service.wait_ready()
                paying = asyncio.create_task(harness.apply_burst(engine, burst))
                # Kill it once that share of the burst has gone out: sends, receipts and replies are in flight.
                await harness.wait_submitted(smsc, max(1, int(n_top_ups * kill_at)))
                service.kill()
                killed_time = datetime.now(UTC)
                killed_at = len(await smsc.submits())
                await asyncio.sleep(1.0)
                service.start()
                await service.wait_ready()
                await paying
                states = await harness.wait_all_final(engine, n_top_ups, timeout_s=harness.size(120, 900))
                await asyncio.sleep(1.0)  # replies to resent frames still on their way are counted too
            submits = len(await smsc.submits())
        sends = await harness.recorded_sends(engine, killed_at=killed_time)
        figures = harness.count(
            f"kill -9 at {round(kill_at * 100)} % and restart",
            burst,
            fleet,
            submits,
            time.monotonic() - started,
            f"killed after {killed_at} SMS; {sends.line()}; final states {states}",
        )
        assert sends.stuck == 0
        assert sends.without_attempt == 0
        assert sends.without_message_id == sends.cut_off  # only sends the kill cut off lack their message id
        assert figures.lost == 0
        assert figures.applied_twice == 0
        assert figures.applied == n_top_ups
        assert harness.final_states_are_processed(states), states
    finally:
        await engine.dispose()
