"""Crash safety: `smsmeter serve` (dispatcher + inbound over SMPP) is killed with SIGKILL in the middle
of a burst and started again. Afterwards every command is final (1:1) and every top-up was credited
exactly once at the reference meters — which live in this test process, behind the simulated SMSC on a
real SMPP port, so they remember every frame across the crash."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from gateway.fleet import fleet_responder
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_commands
from gateway.simulator import SimulatedSmsc, SimulatorConfig
from gateway.smpp_server import SmppServerConfig, SmppSimulatorServer
from gateway.states import CommandState
from store.schema.commands import commands
from tests.integration.gateway.gateway_harness import fleet_of
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, add_meters
from tests.peers.bounds import until
from tests.support.net import free_port
from tests.support.service import smsmeter_env, stop_process

SHORT_NUMBER = "7220"
COMMANDS = 150


@contextmanager
def service(tmp_path: Path, db_url: str, smpp_port: int, name: str) -> Iterator[subprocess.Popen[str]]:
    env = smsmeter_env(
        {
            "SMSMETER_DATABASE_URL": db_url,
            "SMSMETER_DATA_DIR": str(tmp_path / "var"),
            "SMSMETER_MASTER_KEY": MASTER_KEY.hex(),
            "SMSMETER_SHORT_NUMBER": SHORT_NUMBER,
            "SMSMETER_HTTP_PORT": str(free_port()),
            "SMSMETER_TRANSPORT": "smpp",
            "SMSMETER_SMPP_PORT": str(smpp_port),
            "SMSMETER_SMPP_SYSTEM_ID": "smsmeter",
            "SMSMETER_SMPP_RATE_PER_S": "60",  # a burst of 2.5 s: long enough to be cut in the middle
            "SMSMETER_GATEWAY_LEASE_S": "1",
            "SMSMETER_GATEWAY_ACK_TIMEOUT_S": "3",
            "SMSMETER_GATEWAY_RETRY_BASE_S": "0.5",
            "SMSMETER_BILLING_TIME_SYNC_DAYS": "0",  # only the burst of top-ups goes through the SMSC
        }
    )
    with (tmp_path / f"{name}.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "smsmeter", "serve"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield process  # type: ignore[misc]
        finally:
            stop_process(process)


async def count(engine: AsyncEngine, *states: CommandState) -> int:
    async with engine.connect() as conn:
        stmt = select(func.count()).select_from(commands).where(commands.c.state.in_([s.value for s in states]))
        return int(await conn.scalar(stmt) or 0)


async def test_kill_9_mid_burst_then_restart_loses_nothing_and_credits_once(
    engine: AsyncEngine, migrated_db_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        meters = await add_meters(conn, COMMANDS, now)
        await enqueue_commands(
            conn,
            KeyRing(MASTER_KEY),
            [CommandRequest(m.id, mp.TopUp(1, 100 + i), "system:topup") for i, m in enumerate(meters)],
            now,
        )
    fleet = fleet_of(meters)
    smsc = SimulatedSmsc(
        SimulatorConfig(short_number=SHORT_NUMBER), random.Random(4), fleet_responder(fleet, reply_delay_s=0.05)
    )
    async with SmppSimulatorServer(SmppServerConfig(), smsc) as server:
        with service(tmp_path, migrated_db_url, server.port, "first") as first:

            async def some_settled() -> bool:
                return await count(engine, CommandState.PROCESSED) >= 10

            await until(some_settled, timeout_s=40, poll_s=0.05)
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 10)
        settled_before = await count(engine, CommandState.PROCESSED)
        assert settled_before < COMMANDS, "the burst was over before the crash"
        await server.drop_connections()
        with service(tmp_path, migrated_db_url, server.port, "second"):

            async def all_final() -> bool:
                return await count(engine, CommandState.PROCESSED) == COMMANDS

            await until(all_final, timeout_s=40, poll_s=0.1)
    for i, m in enumerate(meters):
        state = fleet.meter(m.msisdn)
        assert state.credit_minor == 100 + i, f"meter {m.msisdn} credited {state.credit_minor}"
        assert state.last_transfer_id == 1
