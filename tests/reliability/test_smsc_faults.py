"""The SMSC misbehaving through a run: it drops the connection every few seconds; it sends receipts before its
submit responses, twice, or not at all, and receipts for ids it never gave. All top-ups are delivered, none is
applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from store.engine import create_engine
from tests.peers.smsc import NodeSmsc
from tests.reliability import harness


async def _paced(engine: AsyncEngine, burst: harness.Burst, per_second: float) -> None:
    """Pay the burst at a steady rate, so the run lasts and the faults land in the middle of it."""
    step = 20
    for i in range(0, len(burst.payments), step):
        started = time.monotonic()
        await harness.apply_burst(engine, harness.Burst(burst.payments[i : i + step]), concurrency=4)
        await asyncio.sleep(max(0.0, step / per_second - (time.monotonic() - started)))


async def test_the_smsc_drops_the_connection_every_few_seconds(
    tmp_path: Path, postgres_url: str, smsc: NodeSmsc
) -> None:
    n_top_ups = harness.top_ups(100)
    rate = harness.size(25, 100)  # top-ups a second: a reduced run lasts ~4 s or more, a full one ~100 s
    drop_every_s = harness.size(1.5, 5.0)
    engine = create_engine(postgres_url)
    try:
        customers = await harness.make_utility(engine, harness.size(40, harness.meters_for(n_top_ups)))
        fleet = harness.Fleet(customers)
        burst = harness.plan_burst(customers, n_top_ups, "drop")
        service = harness.ServiceProcess(tmp_path, harness.service_env(postgres_url, smsc))
        drops = 0
        started = time.monotonic()
        with harness.service_processes(service):
            async with harness.fleet_answering(smsc, fleet):
                service.start()
                await service.wait_ready()
                paying = asyncio.create_task(_paced(engine, burst, rate))
                while not paying.done():
                    await asyncio.sleep(drop_every_s)
                    drops += 1 if await smsc.drop() else 0
                await paying
                for _ in range(2):  # and while the last of them are in flight
                    await asyncio.sleep(drop_every_s)
                    drops += 1 if await smsc.drop() else 0
                states = await harness.wait_all_final(engine, n_top_ups, timeout_s=harness.size(120, 900))
                await asyncio.sleep(1.0)
            submits = len(await smsc.submits())
            binds = sum(1 for e in await smsc.events() if e["command"] == "bind_transceiver")
        sends = await harness.recorded_sends(engine)
        figures = harness.count(
            f"SMSC drops every {drop_every_s:g} s",
            burst,
            fleet,
            submits,
            time.monotonic() - started,
            f"{drops} connection drops, {binds} binds; {sends.line()}; final states {states}",
        )
        assert sends.stuck == 0
        assert sends.without_attempt == 0
        assert sends.without_message_id == 0
        assert drops >= 3
        assert figures.lost == 0
        assert figures.applied_twice == 0
        assert figures.applied == n_top_ups
        assert harness.final_states_are_processed(states), states
    finally:
        await engine.dispose()


async def test_receipts_early_twice_missing_and_unknown(tmp_path: Path, postgres_url: str, smsc: NodeSmsc) -> None:
    n_top_ups = harness.top_ups(120, 6_000)
    engine = create_engine(postgres_url)
    try:
        customers = await harness.make_utility(engine, harness.size(40, harness.meters_for(n_top_ups)))
        fleet = harness.Fleet(customers)
        thirds = [
            harness.plan_burst(customers, n_top_ups // 3, f"receipts-{phase}") for phase in ("early", "lost", "twice")
        ]
        burst = harness.Burst([p for third in thirds for p in third.payments])
        service = harness.ServiceProcess(tmp_path, harness.service_env(postgres_url, smsc))
        started = time.monotonic()
        with harness.service_processes(service):
            async with harness.fleet_answering(smsc, fleet):
                service.start()
                await service.wait_ready()
                phases = [
                    {"receipt_before_resp": True},  # receipts overtake their submit_sm_resp
                    {"receipt_before_resp": False, "receipts": False},  # receipts lost: the meters' acks decide
                    {"receipts": True, "duplicate_receipts": True, "id_format": "hex"},  # twice, hex ids
                ]
                for options, third in zip(phases, thirds, strict=True):
                    await smsc.configure(**options)
                    before = len(await smsc.submits())
                    await harness.apply_burst(engine, third)
                    await harness.wait_submitted(smsc, before + len(third.payments))
                for n in range(5):  # receipts for message ids the SMSC never gave out
                    with contextlib.suppress(Exception):
                        await smsc.send_receipt(f"99999{n}")
                states = await harness.wait_all_final(engine, len(burst.payments), timeout_s=harness.size(120, 900))
                await asyncio.sleep(1.0)
                assert service.process is not None
                assert service.process.poll() is None  # nothing crashed it
            submits = len(await smsc.submits())
        sends = await harness.recorded_sends(engine)
        figures = harness.count(
            "receipts early / lost / twice / unknown",
            burst,
            fleet,
            submits,
            time.monotonic() - started,
            f"{sends.line()}; final states {states}",
        )
        assert sends.stuck == 0
        assert sends.without_attempt == 0
        assert sends.without_message_id == 0
        assert figures.lost == 0
        assert figures.applied_twice == 0
        assert figures.applied == len(burst.payments)
        assert harness.final_states_are_processed(states), states
    finally:
        await engine.dispose()
