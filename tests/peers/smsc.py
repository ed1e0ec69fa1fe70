"""A real SMSC for the tests: tests/peers/smsc.js (node-smpp 0.5.1) in a child process on free ports.

`NodeSmsc` starts it, and wraps its HTTP control API: list the submits it received (long-polling),
inject mobile-originated SMS, reject the next submits with a status, drop the connections, change the
receipt behaviour (delay, status, hex vs decimal ids, before the submit_sm_resp, duplicates), send a
receipt for any id. `NodeSmsc.responder(fn)` hands every submit to `fn` and injects the SMS it returns as
MO, so a fleet of reference meters can answer over real SMPP.

Fixtures (import them into a conftest.py): `smsc` — one started SMSC per test; `smsc_factory` — start
several, or with other credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

PEERS_DIR = Path(__file__).resolve().parent
SCRIPT = PEERS_DIR / "smsc.js"
NODE_MODULES = PEERS_DIR / "node_modules"

SYSTEM_ID = "smsmeter"
PASSWORD = "secret"


def ensure_node_modules() -> None:
    """Install the SMSC's npm dependencies from package-lock.json (npm ci) when they are missing."""
    if (NODE_MODULES / "smpp" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PEERS_DIR, check=True, timeout=180, capture_output=True)


@dataclass(frozen=True, slots=True)
class Submit:
    """One submit_sm as the SMSC received it."""

    index: int
    session: int
    sequence: int
    source: str
    source_addr_ton: int
    source_addr_npi: int
    destination: str
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    protocol_id: int
    validity_period: str
    body: bytes
    status: int
    message_id: str | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Submit:
        return cls(
            index=d["index"],
            session=d["session"],
            sequence=d["sequence"],
            source=d["source"] or "",
            source_addr_ton=d["source_addr_ton"] or 0,
            source_addr_npi=d["source_addr_npi"] or 0,
            destination=d["destination"] or "",
            dest_addr_ton=d["dest_addr_ton"] or 0,
            dest_addr_npi=d["dest_addr_npi"] or 0,
            esm_class=d["esm_class"] or 0,
            data_coding=d["data_coding"] or 0,
            registered_delivery=d["registered_delivery"] or 0,
            protocol_id=d["protocol_id"] or 0,
            validity_period=d["validity_period"] or "",
            body=bytes.fromhex(d["body_hex"]),
            status=d["status"],
            message_id=d["message_id"],
        )


@dataclass(frozen=True, slots=True)
class MobileOriginated:
    """An SMS the SMSC should deliver to the bound client (a meter's reply)."""

    source: str
    destination: str
    body: bytes
    has_udh: bool = False
    data_coding: int = 0x04


def mo_json(mo: MobileOriginated) -> dict[str, Any]:
    """An MO as the control API's /mo and /mo/batch take it."""
    return {
        "source": mo.source,
        "destination": mo.destination,
        "body_hex": mo.body.hex(),
        "esm_class": 0x40 if mo.has_udh else 0x00,
        "data_coding": mo.data_coding,
    }


Responder = Callable[[Submit], Awaitable[Iterable[MobileOriginated]]]


class SmscError(Exception):
    def __init__(self, path: str, status: int, answer: dict[str, Any]) -> None:
        super().__init__(f"SMSC control {path}: HTTP {status} {answer}")
        self.path = path
        self.status = status
        self.answer = answer


class NodeSmsc:
    """The node-smpp SMSC process. `async with NodeSmsc() as smsc:` starts it on free ports."""

    host = "127.0.0.1"

    def __init__(self, system_id: str = SYSTEM_ID, password: str = PASSWORD, start_timeout_s: float = 15.0) -> None:
        self.system_id = system_id
        self.password = password
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self.smpp_port = 0
        self.control_port = 0

    async def __aenter__(self) -> NodeSmsc:
        ensure_node_modules()
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed")
        self._proc = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            "--system-id",
            self.system_id,
            "--password",
            self.password,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=PEERS_DIR,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )
        try:
            assert self._proc.stdout is not None
            line = await asyncio.wait_for(self._proc.stdout.readline(), self._start_timeout_s)
            ports = json.loads(line)
        except BaseException:
            await self._stop()
            raise
        self.smpp_port = int(ports["smpp_port"])
        self.control_port = int(ports["control_port"])
        self._http = aiohttp.ClientSession(
            f"http://{self.host}:{self.control_port}", timeout=aiohttp.ClientTimeout(total=15)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    @property
    def pid(self) -> int | None:
        """The SMSC process's id while it runs (benches read its CPU time)."""
        return self._proc.pid if self._proc is not None else None

    async def _stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        assert self._http is not None, "the SMSC is not running"
        async with self._http.request(method, path, json=body, params=params) as resp:
            answer: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise SmscError(path, resp.status, answer)
            return answer

    # -- inspection ----------------------------------------------------------------------------------
    async def submits(self, since: int = 0, wait_s: float = 0.0) -> list[Submit]:
        """Submits with index >= since; waits up to wait_s for the first one when there is none yet."""
        answer = await self._call("GET", "/submits", params={"since": str(since), "wait_ms": str(int(wait_s * 1000))})
        return [Submit.from_json(d) for d in answer["submits"]]

    async def wait_submits(self, count: int, timeout_s: float = 5.0, since: int = 0) -> list[Submit]:
        """Wait until at least `count` submits (from index `since`) arrived; return them."""
        got: list[Submit] = []
        async with asyncio.timeout(timeout_s):
            while len(got) < count:
                got.extend(await self.submits(since + len(got), wait_s=min(timeout_s, 1.0)))
        return got

    async def events(self, command: str | None = None) -> list[dict[str, Any]]:
        """PDUs the SMSC received other than submit_sm: dicts of session, command, status, sequence."""
        events = (await self._call("GET", "/events"))["events"]
        return [e for e in events if command is None or e["command"] == command]

    async def sessions(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/sessions"))["sessions"])

    # -- behaviour -----------------------------------------------------------------------------------
    async def configure(self, **options: Any) -> None:
        """See `defaults()` in smsc.js: id_format, receipt_id_format, receipts, receipt_delay_ms,
        receipt_stat, receipt_err, receipt_tlvs, receipt_text, receipt_before_resp, duplicate_receipts,
        hold_responses, answer_enquire_link, mute, resp_delay_ms."""
        await self._call("POST", "/config", options)

    async def reset(self) -> None:
        await self._call("POST", "/reset", {})

    async def reject_next(self, count: int, status: int) -> None:
        await self._call("POST", "/reject", {"count": count, "status": status})

    async def drop(self, mode: str = "destroy") -> int:
        return int((await self._call("POST", "/drop", {"mode": mode}))["dropped"])

    async def unbind(self) -> int:
        return int((await self._call("POST", "/unbind", {}))["sessions"])

    async def send_raw(self, data: bytes) -> int:
        return int((await self._call("POST", "/raw", {"hex": data.hex()}))["sessions"])

    async def send_receipt(
        self,
        message_id: str,
        stat: str = "DELIVRD",
        err: int = 0,
        *,
        tlv: bool = True,
        text: bool = True,
        text_id: str | None = None,
    ) -> bool:
        """Send a receipt for any message id; True when the id is one this SMSC issued."""
        body: dict[str, Any] = {"message_id": message_id, "stat": stat, "err": err, "tlv": tlv, "text": text}
        if text_id is not None:
            body["text_id"] = text_id
        return bool((await self._call("POST", "/receipt", body))["known"])

    async def burst_receipts(self, count: int) -> None:
        """Send `count` receipts (made-up ids) to the bound client back to back."""
        await self._call("POST", "/burst", {"count": count})

    async def inject_mo(self, mo: MobileOriginated, wait_s: float = 5.0) -> int | None:
        """Send a deliver_sm; returns the client's deliver_sm_resp status (None when not waited for)."""
        answer = await self._call("POST", "/mo", {**mo_json(mo), "wait_ms": int(wait_s * 1000)})
        status = answer["status"]
        return None if status is None else int(status)

    async def inject_mo_batch(self, mos: Sequence[MobileOriginated], wait_s: float = 5.0) -> list[int | None]:
        """Send many deliver_sm in one request (written to the socket together); returns the client's
        deliver_sm_resp statuses (None each when not waited for)."""
        answer = await self._call(
            "POST", "/mo/batch", {"messages": [mo_json(mo) for mo in mos], "wait_ms": int(wait_s * 1000)}
        )
        return [None if status is None else int(status) for status in answer["statuses"]]

    @contextlib.asynccontextmanager
    async def responder(self, respond: Responder) -> AsyncIterator[None]:
        """While inside, hand every new submit to `respond` and inject what it returns as MO."""
        start = len(await self.submits())

        async def pump() -> None:
            since = start
            while True:
                batch = await self.submits(since, wait_s=1.0)
                for submit in batch:
                    for mo in await respond(submit):
                        await self.inject_mo(mo)
                since += len(batch)

        task = asyncio.create_task(pump())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest_asyncio.fixture
async def smsc_factory() -> AsyncIterator[Callable[..., Awaitable[NodeSmsc]]]:
    """Start node-smpp SMSCs on free ports: `await smsc_factory(system_id=..., password=...)`."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**kwargs: Any) -> NodeSmsc:
            return await stack.enter_async_context(NodeSmsc(**kwargs))

        yield start


@pytest_asyncio.fixture
async def smsc(smsc_factory: Callable[..., Awaitable[NodeSmsc]]) -> NodeSmsc:
    return await smsc_factory()
