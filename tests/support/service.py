"""Running `smsmeter` as a real process for end-to-end tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port

ROOT = Path(__file__).parents[2]


def smsmeter_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without any SMSMETER_* settings, plus `extra`, with our sources importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSMETER_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_cli(
    args: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smsmeter", *args],
        cwd=cwd,
        env=smsmeter_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@dataclass
class RunningService:
    process: subprocess.Popen[str]
    base_url: str
    log_path: Path

    def get_json(self, path: str, timeout_s: float = 5) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout_s) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


_LISTENING = re.compile(r"listening on http://[^\s\",]+?:(\d+)")


def _bound_port(log_path: Path) -> int | None:
    match = _LISTENING.search(log_path.read_text(errors="replace"))
    return int(match.group(1)) if match else None


def _wait_started(process: subprocess.Popen[str], service: RunningService, port: int, deadline: float) -> bool:
    """True once the child's own log says it listens on `port` (port 0: on whichever port it was given, which
    then becomes `service.base_url`) and /healthz answers; False if it could not bind the port (another process
    took it); raises if it exits otherwise or is not ready by `deadline`."""
    while True:
        if process.poll() is not None:
            if "address already in use" in service.log().lower():
                return False
            raise RuntimeError(f"smsmeter exited with {process.returncode}:\n{service.log()}")
        bound = _bound_port(service.log_path)
        if port == 0 and bound:
            service.base_url = f"http://127.0.0.1:{bound}"
        if bound is not None and bound == (port or bound):
            try:
                status, _ = service.get_json("/healthz", timeout_s=2)
                if status == 200:
                    return True
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"smsmeter not ready:\n{service.log()}")
        time.sleep(0.1)


@contextmanager
def running_service(
    cwd: Path, env: Mapping[str, str] | None = None, args: tuple[str, ...] = (), ready_timeout_s: float = 40
) -> Iterator[RunningService]:
    """`smsmeter serve` as a process, yielded once /healthz answers.

    With `SMSMETER_HTTP_PORT=0` the service binds a free port itself and the log says which (no race; its public
    URL, e.g. Checkout's return address, is then not the bound one: fine where no payment provider is used).
    Otherwise the port is chosen here (the service builds its public URL from it), so
    another process may take it before the child binds it: the child then fails to bind and is started again on
    another port. The service counts as started only when its own log says it listens on that port, so the
    health check never reaches someone else's server."""
    log_path = cwd / "service.log"
    fixed_port = (env or {}).get("SMSMETER_HTTP_PORT")
    deadline = time.monotonic() + ready_timeout_s
    for attempt in range(1, 6):
        port = int(fixed_port) if fixed_port else free_port()
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "smsmeter", "serve", *args],
                cwd=cwd,
                env=smsmeter_env({**(env or {}), "SMSMETER_HTTP_PORT": str(port)}),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                text=True,
            )
        service = RunningService(process, f"http://127.0.0.1:{port}", log_path)
        try:
            if _wait_started(process, service, port, deadline):
                break
        except BaseException:
            stop_process(process)
            raise
        if fixed_port or attempt == 5:
            raise RuntimeError(f"smsmeter could not bind port {port}:\n{service.log()}")
    try:
        yield service
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[str]) -> None:
    """Stop a started `smsmeter` as an operator would: SIGTERM, and SIGKILL if it is not gone in 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
