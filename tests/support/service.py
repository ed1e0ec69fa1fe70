"""Running `smsmeter` as a real process for end-to-end tests."""

from __future__ import annotations

import json
import os
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


@contextmanager
def running_service(
    cwd: Path, env: Mapping[str, str] | None = None, args: tuple[str, ...] = (), ready_timeout_s: float = 40
) -> Iterator[RunningService]:
    port = free_port()
    log_path = cwd / "service.log"
    settings = {"SMSMETER_HTTP_PORT": str(port), **(env or {})}
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "smsmeter", "serve", *args],
            cwd=cwd,
            env=smsmeter_env(settings),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        service = RunningService(process, f"http://127.0.0.1:{port}", log_path)
        try:
            deadline = time.monotonic() + ready_timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"smsmeter exited with {process.returncode}:\n{service.log()}")
                try:
                    status, _ = service.get_json("/healthz", timeout_s=2)
                    if status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"smsmeter not ready in {ready_timeout_s} s:\n{service.log()}")
                time.sleep(0.1)
            yield service
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
