"""Reliability runs: PostgreSQL, the node-smpp SMSC, the service as processes. Reduced sizes by default; full
sizes (10,000 top-ups, a long drop run) with SMSMETER_RELIABILITY_FULL=1. Each run's figures are printed and
repeated at the end of the pytest run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.bounds import bounded_test
from tests.peers.smsc import smsc, smsc_factory
from tests.reliability import harness
from tests.support.net import free_port

__all__ = ["bounded", "private_postgres", "smsc", "smsc_factory"]


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    yield from bounded_test(1800.0 if harness.FULL else 240.0)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if harness.REPORT:
        terminalreporter.section("reliability figures")
        for line in harness.REPORT:
            terminalreporter.write_line(line)


def _pg_bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not found (PostgreSQL server binaries)")
    return found


class PrivateCluster:
    """A throwaway PostgreSQL cluster on a free port that a test may stop and start (FIELD-NOTES recipe)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = free_port()
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout_s: float = 60) -> None:
        subprocess.run([*self._as_postgres, *argv], check=True, capture_output=True, timeout=timeout_s)

    def init(self) -> None:
        self.sockets.mkdir(parents=True)
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sockets, "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l", str(self.root / "pg.log"), "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        result = subprocess.run(
            [*self._as_postgres, _pg_bin("pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return result.returncode == 0


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    # Not under pytest's temp folder: its parents are private to this user, and the cluster runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="smsmeter-pg-"))
    root.chmod(0o755)
    cluster = PrivateCluster(root)
    started = time.monotonic()
    cluster.init()
    cluster.start()
    print(f"private PostgreSQL cluster on port {cluster.port} ready in {time.monotonic() - started:.1f} s")
    try:
        yield cluster
    finally:
        if cluster.running():
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
