"""End-to-end gateway throughput on PostgreSQL, timed from the enqueue: counter → seal → write 0:0 → submit →
receipt → ack → 1:1.

In one run, against the node-smpp SMSC (tests/peers/smsc.js) on loopback:
- the bare smpplib ceiling: submit + receipt, no persistence (bench.gateway_transport);
- commands/s end to end: top-ups enqueued (counters taken, frames sealed, rows written at 0:0), then drained
  by the dispatcher over `gateway.smpp.SmppTransport`; every submit is handed to a fleet of reference meters
  (in a process of their own, fed through the SMSC's control API) whose signed acknowledgements come back as
  MO deliver_sm and are verified by the inbound path. The clock runs from the first enqueue to the last
  command at 1:1: the sealing and the first write are inside the figure (the enqueue and the drain run one
  after the other, so the figure is commands / (enqueue time + drain time)); it is printed with its ratio
  to the ceiling, and the drain alone (first claim to the last 1:1) beside it. The end is seen from the
  inbound's settled events, not by polling the database (a poll is a query of the bench's own in the load
  it measures). After the timing, what went unmatched: receipts for unknown message ids, parts left without
  their receipt, submit_sm_resp after the submit timeout and for unknown sequences. Beside it, where the
  CPU went per 1,000 commands: this (gateway) process, PostgreSQL's backends, the SMSC and the meters'
  process, and the same for the ceiling's messages (smpplib, SMSC), and the SQL statements per command;
- the same loop against the simulated SMSC behind a real SMPP port (gateway.smpp_server, what
  `smsmeter simulate` serves), where the meters answer in process;
- the enqueue rate (bulk outbox: counters, sealing, rows) and receipts ingested/s (the dispatcher's
  batched receipt path alone).

    python -m bench.gateway [--commands 20000] [--meters 5000] [--window 64] [--node-only]

(`--node-only`: only the ceiling and the run over the node-smpp SMSC.)

Needs PostgreSQL (SMSMETER_TEST_POSTGRES_URL or 127.0.0.1:5432) and node. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from bench.gateway_transport import bare_smpplib_ceiling
from gateway.dispatcher import DispatchConfig, Dispatcher
from gateway.events import CommandSettled, GatewayEvent
from gateway.fleet import Fleet, fleet_responder
from gateway.inbound import Inbound
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_commands
from gateway.ports import InboundHandler, Receipt, ReceiptHandler, ReceiptState, Transport
from gateway.simulator import SimulatedSmsc, SimulatorConfig
from gateway.smpp import SmppConfig, SmppTransport
from gateway.smpp_server import SmppServerConfig, SmppSimulatorServer
from gateway.states import RetryPolicy
from gateway.writegate import WriteGate
from smsmeter.app import settle_heap
from store import migrate
from store.engine import create_engine
from store.schema.commands import command_parts, commands
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, SeededMeter, add_meters
from tests.peers.smsc import NodeSmsc
from tests.support import databases

SHORT_NUMBER = "7220"
KEYS = KeyRing(MASTER_KEY)


async def fresh_database() -> tuple[str, Callable[[], None]]:
    admin = databases.postgres_admin_url()
    url = await asyncio.to_thread(databases.create_postgres_database, admin)
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return url, lambda: databases.drop_postgres_database(admin, url)


async def empty(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE commands, command_parts, command_history, wrong_sms, readings, "
                "balance_reports, alarms, meter_keys, meters RESTART IDENTITY CASCADE"
            )
        )


async def seed(engine: AsyncEngine, meters: int, commands_n: int) -> tuple[list[SeededMeter], float, float]:
    """Meters, then `commands_n` top-ups spread over them; returns the meters, the wall and CPU seconds the
    enqueue took (counters, sealing, rows at 0:0)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        fleet = await add_meters(conn, meters, now)
    requests = [
        CommandRequest(fleet[i % meters].id, mp.TopUp(1 + i // meters, 100), "bench:topup") for i in range(commands_n)
    ]
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(requests), 10_000):
        async with engine.begin() as conn:
            await enqueue_commands(conn, KEYS, requests[start : start + 10_000], now)
    return fleet, time.perf_counter() - started, time.process_time() - cpu_started


def fleet_of(meters: list[SeededMeter]) -> Fleet:
    fleet = Fleet()
    for m in meters:
        fleet.add(m.msisdn, m.code, m.key)
    return fleet


async def parts_without_receipt(engine: AsyncEngine) -> int:
    """Parts the SMSC took (message id known) whose delivery receipt was not matched: still at 0:1."""
    p = command_parts.c
    stmt = select(func.count()).select_from(command_parts).where(p.message_id.is_not(None), p.state == "0:1")
    async with engine.connect() as conn:
        return int(await conn.scalar(stmt) or 0)


async def count_processed(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(commands).where(commands.c.state == "1:1")) or 0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_pids(engine: AsyncEngine) -> set[int]:
    """The PostgreSQL server processes serving this run's database (the pool's connections)."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
        return {int(r[0]) for r in rows}


class CpuMeter:
    """CPU seconds spent by named processes between `start()` and `stop()`; the PostgreSQL backends are the
    pids seen at either end (a backend that started and ended in between is missed)."""

    def __init__(self) -> None:
        self._start: dict[str, dict[int, float]] = {}
        self.spent: dict[str, float] = {}

    def start(self, groups: dict[str, set[int]]) -> None:
        self._start = {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()}

    def stop(self, groups: dict[str, set[int]]) -> None:
        for name, pids in groups.items():
            before = self._start.get(name, {})
            end = {pid: cpu_seconds(pid) for pid in pids | set(before)}
            self.spent[name] = sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in end.items())


class SqlCounter:
    """Statements this process sends through the engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        self._engine = engine
        event.listen(engine.sync_engine, "before_cursor_execute", self._one)

    def close(self) -> None:
        event.remove(self._engine.sync_engine, "before_cursor_execute", self._one)

    def _one(self, *_args: object) -> None:
        self.count += 1


def _meters_process(control_port: int, meters: list[tuple[str, str, bytes]], ready: Any) -> None:
    """The reference meters in a process of their own (they are not the gateway's work): long-poll the
    SMSC's submits, let the meters answer, inject each poll's replies as MO in one request (/mo/batch)
    while the next poll runs."""
    import aiohttp

    fleet = Fleet()
    for msisdn, code, key in meters:
        fleet.add(msisdn, code, key)

    async def run() -> None:
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        async with aiohttp.ClientSession(f"http://127.0.0.1:{control_port}") as http:

            async def pump() -> None:
                since = 0
                while True:
                    async with http.get("/submits", params={"since": str(since), "wait_ms": "1000"}) as resp:
                        batch = (await resp.json())["submits"]
                    replies = []
                    for d in batch:
                        body = bytes.fromhex(d["body_hex"])
                        for r in fleet.answer(d["destination"], body, bool((d["esm_class"] or 0) & 0x40)):
                            replies.append(
                                {
                                    "source": r.source,
                                    "destination": SHORT_NUMBER,
                                    "body_hex": r.body.hex(),
                                    "esm_class": 0x40 if r.has_udh else 0,
                                    "data_coding": 4,
                                }
                            )
                    if replies:
                        queue.put_nowait(replies)
                    since += len(batch)

            async def inject() -> None:
                while True:
                    replies = await queue.get()
                    while True:
                        async with http.post("/mo/batch", json={"messages": replies, "wait_ms": 0}) as resp:
                            if resp.status == 200:
                                break
                        await asyncio.sleep(0.05)

            ready.set()
            await asyncio.gather(pump(), inject())

    asyncio.run(run())


@contextlib.contextmanager
def node_meters(smsc: NodeSmsc, meters: list[SeededMeter]) -> Iterator[int | None]:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    process = ctx.Process(
        target=_meters_process,
        args=(smsc.control_port, [(m.msisdn, m.code, m.key) for m in meters], ready),
        daemon=True,
    )
    process.start()
    ready.wait(30)
    try:
        yield process.pid
    finally:
        process.terminate()
        process.join(10)


@dataclass(slots=True)
class Drained:
    """One drain: wall and this process's CPU seconds from the first claim, the CPU of the other processes
    named (`CpuMeter.spent`, PostgreSQL's backends under "postgresql") and this process's SQL statements."""

    wall_s: float
    cpu_s: float
    dispatcher: Dispatcher
    inbound: Inbound
    others: dict[str, float]
    statements: int
    unmatched: str  # receipts and responses nothing matched, in words


async def drain(
    engine: AsyncEngine,
    total: int,
    make_transport: Callable[[ReceiptHandler, InboundHandler], Transport],
    timeout_s: float,
    processes: dict[str, set[int]] | None = None,
) -> Drained:
    """Run dispatcher + inbound over a transport until `total` commands are 1:1. The end is seen from the
    inbound's CommandSettled events (told after each commit), not by polling the database, so the bench
    adds no queries of its own to the load it measures; the count is checked in the database after."""
    gate = WriteGate.for_engine(engine)
    config = DispatchConfig(
        policy=RetryPolicy(max_attempts=5, retry_base_s=5, ack_timeout_s=600),
        poll_s=0.05,  # claim_batch and max_in_flight as configured by default
    )
    settled = 0
    all_settled = asyncio.Event()

    async def count_settled(e: GatewayEvent) -> None:
        nonlocal settled
        if isinstance(e, CommandSettled) and e.state == "1:1":
            settled += 1
            if settled >= total:
                all_settled.set()

    dispatcher = Dispatcher(engine, None, config=config, gate=gate)
    inbound = Inbound(engine, KEYS, SHORT_NUMBER, gate=gate, on_event=count_settled)
    transport = make_transport(dispatcher.on_receipt, inbound.on_sms)
    sql = SqlCounter(engine)
    settle_heap()
    dispatcher.transport = transport
    groups = dict(processes or {})
    async with transport:
        groups["postgresql"] = await backend_pids(engine)
        cpu = CpuMeter()
        cpu.start(groups)
        statements_before = sql.count
        started = time.perf_counter()
        cpu_started = time.process_time()
        tasks = [asyncio.create_task(dispatcher.run()), asyncio.create_task(inbound.run())]
        try:
            async with asyncio.timeout(timeout_s):
                await all_settled.wait()
            elapsed = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_started
            statements = sql.count - statements_before
            groups["postgresql"] |= await backend_pids(engine)
            cpu.stop(groups)
            # timing done: give the last receipts a moment to come and be matched before counting what was not
            for _ in range(60):
                if await parts_without_receipt(engine) == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            dispatcher.stop()
            inbound.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            sql.close()
    done = await count_processed(engine)
    if done != total:
        print(f"warning: {done} commands at 1:1 in the database, {total} expected", file=sys.stderr)
    d = dispatcher.stats
    smpp_stats = getattr(transport, "stats", None)
    unmatched = (
        f"{d.receipts_unknown} receipts for unknown message ids, {await parts_without_receipt(engine)} parts "
        f"without their receipt; submit_sm_resp after the timeout {getattr(smpp_stats, 'late_responses', 0)}, "
        f"for unknown sequences {getattr(smpp_stats, 'unknown_responses', 0)}"
    )
    return Drained(elapsed, cpu_s, dispatcher, inbound, cpu.spent, statements, unmatched)


async def receipts_ingested(engine: AsyncEngine, count: int) -> float:
    """Receipts/s through the dispatcher's receipt path: parts at 0:1, their receipts arriving together."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        ids = (await conn.execute(select(commands.c.id).order_by(commands.c.id).limit(count))).scalars().all()
        await conn.execute(commands.update().values(state="0:1", next_attempt_at=None))
        await conn.execute(command_parts.delete())
        await conn.execute(
            command_parts.insert(),
            [
                {
                    "command_id": i,
                    "seq": 1,
                    "body": b"x",
                    "attempt": 1,
                    "message_id": f"r{i}",
                    "state": "0:1",
                    "submitted_at": now,
                }
                for i in ids
            ],
        )
    dispatcher = Dispatcher(engine, None, gate=WriteGate.for_engine(engine))
    settle_heap()
    task = asyncio.create_task(dispatcher.run())
    started = time.perf_counter()
    await asyncio.gather(*(dispatcher.on_receipt(Receipt(f"r{i}", ReceiptState.DELIVERED, 0, now)) for i in ids))
    elapsed = time.perf_counter() - started
    dispatcher.stop()
    await task
    return len(ids) / elapsed


def report(
    args: argparse.Namespace,
    bare: float,
    ceiling_cpu: dict[str, float],
    enqueue_s: float,
    enqueue_cpu_s: float,
    over: Drained,
    dispatcher_batches: int,
    inbound_batches: int,
) -> None:
    """The run over the node-smpp SMSC, with where its CPU went: per 1,000 commands, the gateway process,
    PostgreSQL's backends, the SMSC and the meters' process; and the same for the ceiling's messages."""
    n = args.commands
    print(
        f"{n} top-ups to {args.meters} meters, PostgreSQL, window {args.window}, loopback, "
        f"{dispatcher_batches} dispatcher batches, {inbound_batches} inbound batches"
    )
    e2e = n / (enqueue_s + over.wall_s)
    print("end to end is timed from the enqueue: counter, sealing and the first write (0:0) are inside it")
    print(f"enqueue alone (counter, seal, write 0:0)   : {n / enqueue_s:9.0f} commands/s")
    print(f"bare smpplib ceiling (submit + receipt)    : {bare:9.0f} messages/s")
    print(f"end to end over node-smpp SMSC (from enqueue): {e2e:6.0f} commands/s  ({e2e / bare:.2f} of the ceiling)")
    print(f"  drain alone (first claim → last 1:1)     : {n / over.wall_s:9.0f} commands/s")
    gateway_cpu = (enqueue_cpu_s + over.cpu_s) * 1000 / n
    print(f"  gateway process CPU, from enqueue        : {gateway_cpu:9.3f} s per 1,000 commands")
    print(f"  SQL statements in the drain              : {over.statements / n:9.3f} per command")
    print(f"  unmatched                                : {over.unmatched}")
    spent = {"gateway": over.cpu_s, **over.others}
    print(
        "  CPU s per 1,000 commands in the drain    : "
        + ", ".join(f"{k} {v * 1000 / n:.3f}" for k, v in spent.items())
        + f"; total {sum(spent.values()) * 1000 / n:.3f}"
    )
    print(
        "  CPU s per 1,000 ceiling messages         : "
        + ", ".join(f"{k} {v * 1000 / n:.3f}" for k, v in ceiling_cpu.items())
        + f"; total {sum(ceiling_cpu.values()) * 1000 / n:.3f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--meters", type=int, default=5_000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--node-only", action="store_true", help="skip the run over gateway.smpp_server")
    args = parser.parse_args()
    logging.getLogger("smpp").setLevel(logging.CRITICAL)
    logging.basicConfig(level=logging.WARNING)
    url, drop = await fresh_database()
    engine = create_engine(url, pool_size=10)
    try:
        async with NodeSmsc() as smsc:
            smsc_pids = {smsc.pid} if smsc.pid is not None else set()
            ceiling_cpu = CpuMeter()
            ceiling_cpu.start({"smsc": smsc_pids})
            ceiling_started = time.process_time()
            bare = await asyncio.to_thread(
                bare_smpplib_ceiling,
                smsc.host,
                smsc.smpp_port,
                smsc.system_id,
                smsc.password,
                args.commands,
                args.window,
                41,
            )
            ceiling_cpu.stop({"smsc": smsc_pids})
            ceiling_cpu.spent["smpplib"] = time.process_time() - ceiling_started
            await smsc.reset()
            meters, enqueue_s, enqueue_cpu_s = await seed(engine, args.meters, args.commands)

            def over_node(on_receipt: ReceiptHandler, on_inbound: InboundHandler) -> Transport:
                cfg = SmppConfig(
                    host=smsc.host,
                    port=smsc.smpp_port,
                    system_id=smsc.system_id,
                    password=smsc.password,
                    source_addr=SHORT_NUMBER,
                    window=args.window,
                )
                return SmppTransport(cfg, on_receipt, on_inbound)

            with node_meters(smsc, meters) as meters_pid:
                over = await drain(
                    engine,
                    args.commands,
                    over_node,
                    args.timeout,
                    {"smsc": smsc_pids, "meters": {meters_pid} if meters_pid is not None else set()},
                )
        d, i = over.dispatcher.stats, over.inbound.stats
        report(args, bare, ceiling_cpu.spent, enqueue_s, enqueue_cpu_s, over, d.batches, i.batches)
        if args.node_only:
            print("load average (1, 5, 15 min) at the end     : " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
            return
        receipts_rate = await receipts_ingested(engine, min(args.commands, 20_000))

        await empty(engine)
        meters, sim_enqueue_s, sim_enqueue_cpu_s = await seed(engine, args.meters, args.commands)
        fleet = fleet_of(meters)
        simulator = SimulatedSmsc(SimulatorConfig(short_number=SHORT_NUMBER), random.Random(1), fleet_responder(fleet))
        async with SmppSimulatorServer(SmppServerConfig(), simulator) as server:

            def over_simulator(on_receipt: ReceiptHandler, on_inbound: InboundHandler) -> Transport:
                cfg = SmppConfig(
                    host="127.0.0.1",
                    port=server.port,
                    system_id="bench",
                    password="bench",
                    source_addr=SHORT_NUMBER,
                    window=args.window,
                )
                return SmppTransport(cfg, on_receipt, on_inbound)

            simulated = await drain(engine, args.commands, over_simulator, args.timeout)
            sim_drain_s, sim_drain_cpu_s = simulated.wall_s, simulated.cpu_s
    finally:
        await engine.dispose()
        await asyncio.to_thread(drop)

    n = args.commands
    print(f"end to end over gateway.smpp_server (from enqueue): {n / (sim_enqueue_s + sim_drain_s):1.0f} commands/s")
    print(f"  drain alone (first claim → last 1:1)     : {n / sim_drain_s:9.0f} commands/s")
    cpu_per_1000 = (sim_enqueue_cpu_s + sim_drain_cpu_s) * 1000 / n
    print(f"  this process CPU (gateway + simulator)   : {cpu_per_1000:9.3f} s per 1,000 commands")
    print(f"  unmatched                                : {simulated.unmatched}")
    print(f"receipts ingested                          : {receipts_rate:9.0f} receipts/s")
    print("load average (1, 5, 15 min) at the end     : " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    asyncio.run(main())
