"""Run the `localstripe` emulator for the tests: on 127.0.0.1 only, on a free port, its state in a folder
of its own.

localstripe 1.15 keeps its state in a fixed file (/tmp/localstripe.pickle) and listens on every interface;
two test runs at once would share that file. This launcher (`python -m tests.support.stripe_emulator
--port N --state-dir DIR`) runs the same aiohttp application with the pickle moved into DIR and the socket
bound to loopback. `localstripe_server()` starts it as a process and waits until it answers.
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port


def _serve(port: int, state_dir: Path) -> None:
    from aiohttp import web
    from localstripe import resources, server

    state_file = state_dir / "localstripe.pickle"

    def dump_to_disk(self: resources.Store) -> None:
        with state_file.open("wb") as fh:
            pickle.dump(dict(self), fh, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump_to_disk  # type: ignore[method-assign]
    web.run_app(server.app, host="127.0.0.1", port=port, print=None, access_log=None)


@dataclass(frozen=True)
class LocalStripe:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def register_webhook(self, url: str, secret: str, name: str = "smsmeter") -> None:
        """Make localstripe deliver its (signed) events to `url`."""
        data = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
        req = urllib.request.Request(f"{self.base_url}/_config/webhooks/{name}", data=data, method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200


@contextmanager
def localstripe_server(state_dir: Path, ready_timeout_s: float = 15) -> Iterator[LocalStripe]:
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stripe_emulator", "--port", str(port), "--state-dir", str(state_dir)],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = LocalStripe(port, process)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"localstripe exited: {process.stderr.read().decode() if process.stderr else ''}")
            try:
                urllib.request.urlopen(f"{server.base_url}/v1/balance", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers (401 without a key): ready
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("localstripe did not start") from None
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    _serve(args.port, args.state_dir)
