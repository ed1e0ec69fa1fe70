"""kill -9 the service in the middle of a burst of top-ups, restart it: every top-up is credited exactly once at
the reference meters and every command ends final (here: processed, 1:1)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from store.engine import create_engine
from tests.peers.smsc import NodeSmsc
from tests.reliability import harness


async def test_kill_9_during_a_burst_then_restart(tmp_path: Path, postgres_url: str, smsc: NodeSmsc) -> None:
    n_meters = harness.size(40, 1000)
    n_top_ups = harness.size(150, 10_000)
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
                # Kill it once a third of the burst has gone out: sends, receipts and replies are in flight.
                await harness.wait_submitted(smsc, n_top_ups // 3)
                service.kill()
                killed_at = len(await smsc.submits())
                await asyncio.sleep(1.0)
                service.start()
                await service.wait_ready()
                await paying
                states = await harness.wait_all_final(engine, n_top_ups, timeout_s=harness.size(120, 900))
                await asyncio.sleep(1.0)  # replies to resent frames still on their way are counted too
            submits = len(await smsc.submits())
        figures = harness.count(
            "kill -9 and restart",
            burst,
            fleet,
            submits,
            time.monotonic() - started,
            f"killed after {killed_at} SMS; final states {states}",
        )
        assert figures.lost == 0
        assert figures.applied_twice == 0
        assert figures.applied == n_top_ups
        assert harness.final_states_are_processed(states), states
    finally:
        await engine.dispose()
