"""Receiving meters at size: a manufacturer's key file of N meters (default 10,000) read and checked (every key
unwrapped under the transport key), then imported (re-wrapped under the master key, registered in stock) on
SQLite, or on a throwaway PostgreSQL database.

    python -m bench.key_files [--meters 10000] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing import provisioning
from billing.rules.key_file import ExportRow, read_key_file, write_key_file
from meter_protocol import meter_code_with_check_digit
from store import migrate
from store.audit import Actor
from store.engine import create_engine
from store.uow import UnitOfWork
from tests.support import databases

TRANSPORT_KEY = secrets.token_bytes(32)
MASTER_KEY = secrets.token_bytes(32)


def key_file(count: int) -> bytes:
    rows = [
        ExportRow(
            meter_code_with_check_digit(f"8855{n:015d}"),
            f"3736{n:07d}",
            0,
            secrets.token_bytes(16),
            "binary",
            "1.0",
            "electricity",
        )
        for n in range(count)
    ]
    return write_key_file(rows, TRANSPORT_KEY)


async def run(url: str, data: bytes, count: int) -> float:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        start = time.perf_counter()
        result = await provisioning.import_key_file(
            UnitOfWork(engine),
            Actor("operator", "bench"),
            data,
            TRANSPORT_KEY,
            file_name="bench.csv",
            master_key=MASTER_KEY,
            now=datetime.now(UTC),
        )
        elapsed = time.perf_counter() - start
        assert result.created == count
        return elapsed
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL database (127.0.0.1:5432)")
    args = parser.parse_args()
    data = key_file(args.meters)
    start = time.perf_counter()
    read_key_file(data, TRANSPORT_KEY)
    read_s = time.perf_counter() - start
    print(f"key file of {args.meters} meters, {len(data)} bytes")
    print(f"read and checked (keys unwrapped): {read_s:.2f} s, {args.meters / read_s:,.0f} meters/s")
    if args.postgres:
        admin = databases.postgres_admin_url()
        url = databases.create_postgres_database(admin)
        try:
            elapsed = asyncio.run(run(url, data, args.meters))
        finally:
            databases.drop_postgres_database(admin, url)
        where = "PostgreSQL"
    else:
        with tempfile.TemporaryDirectory() as folder:
            elapsed = asyncio.run(run(databases.sqlite_url(Path(folder)), data, args.meters))
        where = "SQLite"
    print(
        f"imported on {where} (read, checked, registered, re-wrapped): {elapsed:.2f} s, "
        f"{args.meters / elapsed:,.0f} meters/s"
    )


if __name__ == "__main__":
    main()
