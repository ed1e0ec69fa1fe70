"""`smsmeter simulate`: the simulated SMSC and a fleet of reference meters behind a real SMPP port.

The fleet is the registry's meters (with their keys, unwrapped under the master key), reloaded when a
submit goes to a number it does not know yet. Point a `transport = "smpp"` service at it for demos and
load tests of the SMPP path. Stops on SIGINT / SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal

from config import Settings
from gateway.fleet import Fleet, fleet_responder, load_fleet, load_meter
from gateway.keys import KeyRing
from gateway.simulator import SimulatedSmsc, SimulatorConfig
from gateway.smpp_server import SmppServerConfig, SmppSimulatorServer
from smsmeter.masterkey import load_master_key
from store import migrate
from store.engine import create_engine

log = logging.getLogger("smsmeter")


async def run_simulator(settings: Settings, *, host: str, port: int) -> None:
    engine = create_engine(settings.database.url)
    keys = KeyRing(load_master_key(settings))
    fleet = Fleet(capacity=settings.simulator.fleet_capacity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await migrate.upgrade(engine)

        async def refresh(number: str) -> None:
            async with engine.connect() as conn:
                await load_meter(conn, keys, fleet, number)

        async with engine.connect() as conn:
            await load_fleet(conn, keys, fleet)
        sim = settings.simulator
        smsc = SimulatedSmsc(
            SimulatorConfig(
                short_number=settings.short_number, receipt_delay_s=sim.receipt_delay_s, loss_rate=sim.loss_rate
            ),
            random.Random(sim.seed),
            fleet_responder(fleet, reply_delay_s=sim.ack_delay_s, refresh=refresh),
        )
        password = settings.smpp.password.reveal() if settings.smpp.password is not None else None
        config = SmppServerConfig(host=host, port=port, system_id=settings.smpp.system_id or None, password=password)
        async with SmppSimulatorServer(config, smsc) as server:
            print(f"simulated SMSC on {host}:{server.port} with {len(fleet)} reference meters", flush=True)
            serving = asyncio.create_task(server.serve_forever())
            await stop.wait()
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await engine.dispose()
        log.info("simulated SMSC stopped")
