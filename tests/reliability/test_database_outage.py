"""The database unreachable for longer than the send lease in the middle of a run (its server stopped, then
started again), with part of the fleet never answering: the service stays up, says it is not ready while the
database is away, recovers by itself, and loses nothing. Commands sent again because their lease ran out
while their first send could not be recorded are new attempts; every command that reached its meter shows
the attempt and the SMSC message id that carried it; the meters that never answer end timed out after their
last attempt, each attempt recorded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from sqlalchemy import select

from store import migrate
from store.engine import create_engine
from store.schema.commands import command_parts, commands
from store.schema.registry import meters
from tests.peers.smsc import NodeSmsc
from tests.reliability import harness
from tests.reliability.conftest import PrivateCluster

LEASE_S = 3.0
OUTAGE_S = harness.size(10.0, 20.0)  # longer than the lease, either way
MAX_ATTEMPTS = 4
SILENT_EVERY = 8  # one meter in eight never answers


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with http.get(url) as resp:
            return resp.status
    except (TimeoutError, aiohttp.ClientError, OSError):
        return 0


async def test_the_database_away_longer_than_the_lease_with_meters_that_do_not_answer(
    tmp_path: Path, private_postgres: PrivateCluster, smsc: NodeSmsc
) -> None:
    url = private_postgres.url
    n_top_ups = harness.top_ups(120)
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        customers = await harness.make_utility(engine, harness.size(40, harness.meters_for(n_top_ups)))
        silent = frozenset(c.msisdn for c in customers[::SILENT_EVERY])
        fleet = harness.Fleet(customers, silent=silent)
        burst = harness.plan_burst(customers, n_top_ups, "outage")
        first, rest = harness.Burst(burst.payments[: n_top_ups // 2]), harness.Burst(burst.payments[n_top_ups // 2 :])
        env = harness.service_env(
            url, smsc, {"SMSMETER_GATEWAY_LEASE_S": str(LEASE_S), "SMSMETER_GATEWAY_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
        )
        service = harness.ServiceProcess(tmp_path, env)
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
                    states = await harness.wait_all_final(engine, n_top_ups, timeout_s=harness.size(180, 1200))
                    await asyncio.sleep(1.0)
                submits = len(await smsc.submits())
                assert service.process is not None
                assert service.process.poll() is None  # it rode the outage out; nobody restarted it
        sends = await harness.recorded_sends(engine)
        async with engine.connect() as conn:
            c, p, m = commands.c, command_parts.c, meters.c
            silent_rows = (
                await conn.execute(
                    select(c.id, c.state, c.attempts).join(meters, m.id == c.meter_id).where(m.msisdn.in_(silent))
                )
            ).all()
            recorded_attempts = {
                (i, a)
                for i, a in (
                    await conn.execute(select(p.command_id, p.attempt).where(p.message_id.is_not(None)).distinct())
                ).all()
            }
        jammed = service.log().count("recording a batch")
        figures = harness.count(
            "database away longer than the lease, silent meters",
            burst,
            fleet,
            submits,
            time.monotonic() - started,
            f"database stopped {outage_s:.1f} s (lease {LEASE_S:.0f} s), ready again {recovered_s:.1f} s after it "
            f"came back; {len(silent_rows)} commands to {len(silent)} silent meters; {sends.line()}; "
            f"{jammed} failed recording batches; final states {states}",
        )
        assert ready_during == 503
        assert alive_during == 200
        assert figures.lost == 0
        assert figures.applied_twice == 0
        assert figures.applied == n_top_ups  # the silent meters credit too; only their answers are lost
        assert sends.stuck == 0
        assert sends.without_attempt == 0
        assert sends.without_message_id == 0
        assert set(states) <= {"1:1", "timed_out"}, states
        assert states.get("timed_out", 0) == len(silent_rows)
        for command_id, state, attempts in silent_rows:
            assert state == "timed_out"
            assert attempts == MAX_ATTEMPTS  # each resend used an attempt ...
            assert all((command_id, a) in recorded_attempts for a in range(1, attempts + 1))  # ... each recorded
    finally:
        await engine.dispose()
