"""`smsmeter serve` with no configuration: commands to the demo meters walk 0:0 → 1:1 through the
simulated network and its reference meters; /healthz reports the real transport's state."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import meter_protocol as mp
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_commands, get_command
from gateway.states import CommandState
from store.engine import create_engine
from store.schema.registry import meters
from tests.support.service import running_service


async def _enqueue(db: Path, master_key: bytes) -> list[int]:
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.begin() as conn:
            installed = meters.select().with_only_columns(meters.c.id, meters.c.next_transfer_id)
            rows = (await conn.execute(installed.where(meters.c.status == "active"))).all()  # not those in stock
            meter_ids = [m for m, _ in rows]
            # transfer ids after those of the demo's own top-ups
            requests = [CommandRequest(m, mp.TopUp(t + 100, 1500), "operator:e2e") for m, t in rows]
            requests.append(CommandRequest(meter_ids[0], mp.ReadRequest(mp.ReadItems.REGISTERS), "operator:e2e"))
            return await enqueue_commands(conn, KeyRing(master_key), requests, datetime.now(UTC))
    finally:
        await engine.dispose()


async def _states(db: Path, ids: list[int]) -> list[tuple[CommandState, list[str]]]:
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            views = [await get_command(conn, i) for i in ids]
        return [(v.state, [h.to_state for h in v.history]) for v in views]
    finally:
        await engine.dispose()


def test_serve_walks_commands_to_1_1_on_the_simulated_network(tmp_path: Path) -> None:
    with running_service(tmp_path, {"SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.05"}, args=("--demo",)) as service:
        status, body = service.get_json("/healthz")
        assert status == 200
        assert body["transport"] == {"state": "bound", "detail": "simulator"}
        db = tmp_path / "var" / "smsmeter.db"
        master_key = bytes.fromhex((tmp_path / "var" / "master.key").read_text().strip())
        ids = asyncio.run(_enqueue(db, master_key))
        deadline = time.monotonic() + 30
        while True:
            states = asyncio.run(_states(db, ids))
            if all(state.is_final for state, _ in states) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [s for s, _ in states] == [CommandState.PROCESSED] * len(ids), service.log()
        assert all(walk[0] == "0:0" and walk[1] == "0:1" and walk[-1] == "1:1" for _, walk in states)
    assert "simulated network: 64 reference meters answer" in service.log()  # 60 subscribers, 2 balance, water, solar
