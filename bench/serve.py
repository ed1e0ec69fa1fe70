"""`smsmeter serve` on the simulated network with a large registry on PostgreSQL: start time and memory.

    .venv/bin/python bench/serve.py [--meters 1000000] [--commands 20000] [--url postgresql://...]

Makes a throwaway database (dropped at the end), generates subscribers and meters with keys as
bench/billing.py does, then starts `smsmeter serve` as its own process on the default transport (the
simulated network with its fleet of reference meters) and prints:
- the time from the process start to the first answer of /healthz;
- its resident memory (VmRSS) idle, 10 s after it answered;
- its peak resident memory (VmHWM) while `--commands` pings to meters spread over the whole registry are
  enqueued (by this process, as a second node would) and walk to 1:1, and how long they took.
Scheduled time sync and the simulated meters' own reports are off, so that the load is the pings alone.
Targets (docs/operations.md): < 10 s to answer, < 300 MB idle and under load at 1,000,000 meters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import meter_protocol as mp  # noqa: E402
from bench import generated as bench_billing  # noqa: E402
from gateway.keys import KeyRing  # noqa: E402
from gateway.outbox import CommandRequest, enqueue_commands  # noqa: E402
from store import migrate  # noqa: E402
from store.engine import create_engine  # noqa: E402


def _status(pid: int, field: str) -> float:
    """A /proc/<pid>/status memory field (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _start(folder: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (Path(folder) / "serve.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "smsmeter", "serve"], cwd=folder, env=env, stdout=log, stderr=log)


async def _processed(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM commands WHERE state = '1:1'"))
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1_000_000)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    name = f"smsmeter_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{args.url.rsplit('/', 1)[0]}/{name}"
    url = dsn.replace("postgresql://", "postgresql+asyncpg://")
    engine = create_engine(url, pool_size=2)
    process: subprocess.Popen[bytes] | None = None
    try:
        await migrate.upgrade(engine)
        started = time.perf_counter()
        await bench_billing.generate(dsn, args.meters, 0.0, False)
        print(f"generated {args.meters:,} subscribers and meters in {time.perf_counter() - started:.1f} s")
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSMETER_")}
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "SMSMETER_DATABASE_URL": url,
                "SMSMETER_MASTER_KEY": bench_billing.MASTER.hex(),
                "SMSMETER_HTTP_PORT": str(port),
                "SMSMETER_BILLING_TIME_SYNC_DAYS": "0",
                "SMSMETER_SIMULATOR_REPORT_INTERVAL_S": "0",
                "SMSMETER_SIMULATOR_ACK_DELAY_S": "0.05",
                "SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.05",
            }
        )
        with tempfile.TemporaryDirectory() as folder:
            env["SMSMETER_DATA_DIR"] = folder
            t0 = time.perf_counter()
            process = _start(folder, env)
            while not _healthy(port):
                if process.poll() is not None or time.perf_counter() - t0 > 300:
                    raise SystemExit((Path(folder) / "serve.log").read_text()[-3000:])
                await asyncio.sleep(0.1)
            start_s = time.perf_counter() - t0
            await asyncio.sleep(10)
            idle = _status(process.pid, "VmRSS")
            print(f"serve answered /healthz after {start_s:.1f} s; idle RSS {idle:.0f} MB")
            keys = KeyRing(bench_billing.MASTER)
            picks = random.Random(7).sample(range(1, args.meters + 1), min(args.commands, args.meters))
            t1 = time.perf_counter()
            for start in range(0, len(picks), 1000):
                async with engine.begin() as conn:
                    requests = [CommandRequest(m, mp.Ping(), "bench:serve") for m in picks[start : start + 1000]]
                    await enqueue_commands(conn, keys, requests, datetime.now(UTC))
            done, peak = 0, 0.0
            while done < len(picks) and time.perf_counter() - t1 < 600:
                await asyncio.sleep(1)
                done = await _processed(dsn)
                peak = max(peak, _status(process.pid, "VmRSS"))
            elapsed = time.perf_counter() - t1
            hwm = _status(process.pid, "VmHWM")
            print(
                f"{done:,} of {len(picks):,} pings to meters across the registry at 1:1 in {elapsed:.1f} s "
                f"({done / elapsed:,.0f}/s); RSS under load peak {peak:.0f} MB (VmHWM {hwm:.0f} MB)"
            )
            verdict = "met" if start_s < 10 and max(idle, hwm) < 300 else "MISSED"
            print(f"targets (< 10 s to answer, < 300 MB idle and under load): {verdict}")
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
