"""The database unreachable for 10 seconds in the middle of a run (its server stopped, then started again): the
service stays up, says it is not ready while the database is away, recovers by itself, and loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from store import migrate
from store.engine import create_engine
from tests.peers.smsc import NodeSmsc
from tests.reliability import harness
from tests.reliability.conftest import PrivateCluster

OUTAGE_S = 10.0


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with http.get(url) as resp:
            return resp.status
    except (TimeoutError, aiohttp.ClientError, OSError):
        return 0


async def test_the_database_away_for_10_seconds(
    tmp_path: Path, private_postgres: PrivateCluster, smsc: NodeSmsc
) -> None:
    url = private_postgres.url
    n_top_ups = harness.size(120, 5_000)
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        customers = await harness.make_utility(engine, harness.size(40, 800))
        fleet = harness.Fleet(customers)
        burst = harness.plan_burst(customers, n_top_ups, "outage")
        first, rest = harness.Burst(burst.payments[: n_top_ups // 2]), harness.Burst(burst.payments[n_top_ups // 2 :])
        service = harness.ServiceProcess(tmp_path, harness.service_env(url, smsc))
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            with harness.service_processes(service):
                async with harness.fleet_answering(smsc, fleet):
                    service.start()
                    await service.wait_ready()
                    await harness.apply_burst(engine, first)
                    await harness.wait_submitted(smsc, len(first.payments) // 2)
                    # Half the first wave is out, the rest and its receipts and replies in flight: cut.
                    private_postgres.stop("immediate")
                    down_at = time.monotonic()
                    paying = asyncio.create_task(harness.apply_burst(engine, rest))  # retried until it lands
                    await asyncio.sleep(2.0)
                    ready_during = await _status(http, service.base_url + "/readyz")
                    alive_during = await _status(http, service.base_url + "/healthz")
                    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
                    private_postgres.start()
                    outage_s = time.monotonic() - down_at
                    await service.wait_ready(timeout_s=60)
                    recovered_s = time.monotonic() - down_at - outage_s
                    await paying
                    states = await harness.wait_all_final(engine, n_top_ups, timeout_s=harness.size(120, 900))
                    await asyncio.sleep(1.0)
                submits = len(await smsc.submits())
                assert service.process is not None
                assert service.process.poll() is None  # it rode the outage out; nobody restarted it
        figures = harness.count(
            "database away",
            burst,
            fleet,
            submits,
            time.monotonic() - started,
            f"database stopped {outage_s:.1f} s, ready again {recovered_s:.1f} s after it came back; "
            f"final states {states}",
        )
        assert ready_during == 503
        assert alive_during == 200
        assert figures.lost == 0
        assert figures.applied_twice == 0
        assert figures.applied == n_top_ups
        assert harness.final_states_are_processed(states), states
    finally:
        await engine.dispose()
