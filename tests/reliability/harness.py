"""What the reliability runs share: a utility on PostgreSQL, a fleet of reference meters behind the real SMSC,
the service as a process (killed, restarted, several at once), a burst of top-ups, and the final count.

The fleet answers over real SMPP: every submit the node-smpp SMSC (tests/peers) records goes to the pure
reference meter (meter_protocol) of its destination number; the meter's replies are injected back as mobile-
originated SMS. Like an operator's SMSC, the fleet stores replies it could not deliver (no bound session, a
temporary error from the service) and tries again, so a reply is lost only if the service refuses it forever.

The count at the end is taken at the meters themselves: `applied` top-ups (credit added), `duplicates refused`
(a frame or a transfer the meter had already applied, sent again by a retry or a restart), and `lost` (a paid
top-up whose credit never reached its meter) — which must be 0, as must `applied twice`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from billing import meter_registry, places, registry
from billing.topup import apply_payment
from billing.values import PaymentConfirmed
from gateway.keys import KeyRing
from gateway.states import OPEN_STATES, CommandState
from store.audit import Actor
from store.schema.commands import command_parts, commands
from store.uow import UnitOfWork
from tests.peers.smsc import MobileOriginated, NodeSmsc, SmscError, Submit
from tests.support.net import free_port
from tests.support.service import ROOT, smsmeter_env

_N = TypeVar("_N", int, float, str)
MASTER_KEY_HEX = "5e" * 32
SHORT_NUMBER = "7220"
CURRENCY = "USD"
NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
ACTOR = Actor("system", "reliability")
FULL = os.environ.get("SMSMETER_RELIABILITY_SIZE", "").lower() == "full" or os.environ.get(
    "SMSMETER_RELIABILITY_FULL", ""
) not in ("", "0", "false", "no")
# at full size, SMSMETER_RELIABILITY_TOP_UPS=N runs N top-ups instead of 10,000 (e.g. a moderate 2,000)
_TOP_UPS = int(os.environ.get("SMSMETER_RELIABILITY_TOP_UPS", "0") or 0)


def size(reduced: _N, full: _N) -> _N:
    """The run's size: `reduced` by default, `full` with SMSMETER_RELIABILITY_SIZE=full."""
    return full if FULL else reduced


def top_ups(reduced: int, full: int = 10_000) -> int:
    """How many top-ups a run pays: `reduced` by default, `full` (or SMSMETER_RELIABILITY_TOP_UPS) at full size."""
    if not FULL:
        return reduced
    return _TOP_UPS or full


def meters_for(n_top_ups: int) -> int:
    """A fleet of about one meter per ten top-ups, at least 40."""
    return max(40, n_top_ups // 10)


# --- the utility -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Customer:
    subscriber_id: int
    meter_id: int
    meter_code: str
    msisdn: str
    key: bytes


async def make_utility(engine: AsyncEngine, n_meters: int) -> list[Customer]:
    """A region, a settlement, a street, and `n_meters` subscribers with one meter each (keys known here)."""
    master_key = bytes.fromhex(MASTER_KEY_HEX)
    customers = []
    async with engine.begin() as conn:
        await places.add_region(conn, ACTOR, "01", "North", NOW)
        await places.add_settlement(conn, ACTOR, "01", "01", "Riverside", NOW)
        await places.add_street(conn, ACTOR, "01", "01", "001", "Main Street", NOW)
        for i in range(n_meters):
            building, apartment = divmod(i, 9000)
            code = f"0101001{building + 1:04d}{apartment + 1:04d}"
            subscriber = await registry.create_subscriber(
                conn, ACTOR, code, {"name": f"Subscriber {i}"}, currency=CURRENCY, now=NOW
            )
            meter_code = mp.meter_code_with_check_digit(f"7700{i:015d}")
            msisdn = f"3736{i:07d}"
            key = secrets.token_bytes(16)
            meter = await meter_registry.install_meter(
                conn,
                ACTOR,
                subscriber.id,
                meter_registry.NewMeter(code=meter_code, msisdn=msisdn),
                master_key=master_key,
                now=NOW,
                meter_key=key,
            )
            customers.append(Customer(subscriber.id, meter.id, meter_code, msisdn, key))
    return customers


async def pay(engine: AsyncEngine, customer: Customer, ref: str, amount_minor: int) -> None:
    """A payment confirmed by a provider, applied the way the webhook applies it (idempotent on `ref`)."""
    payment = PaymentConfirmed(
        provider="reliability",
        provider_ref=ref,
        amount_minor=amount_minor,
        currency=CURRENCY,
        paid_at=datetime.now(UTC),
        subscriber_id=customer.subscriber_id,
    )
    await apply_payment(UnitOfWork(engine), payment, datetime.now(UTC), keys=KeyRing(bytes.fromhex(MASTER_KEY_HEX)))


@dataclass(frozen=True, slots=True)
class Burst:
    payments: list[tuple[Customer, str, int]]

    @property
    def expected_credit(self) -> dict[str, int]:
        credit: dict[str, int] = defaultdict(int)
        for customer, _ref, amount in self.payments:
            credit[customer.msisdn] += amount
        return credit


def plan_burst(customers: list[Customer], n_top_ups: int, tag: str) -> Burst:
    """`n_top_ups` payments spread over the meters, each with its own amount (so a double credit shows)."""
    return Burst([(customers[i % len(customers)], f"{tag}-{i}", 100 + i % 997) for i in range(n_top_ups)])


async def apply_burst(engine: AsyncEngine, burst: Burst, concurrency: int = 8) -> None:
    """Apply every payment; one that fails (the database away) is tried again until it is applied."""
    queue: asyncio.Queue[tuple[Customer, str, int]] = asyncio.Queue()
    for item in burst.payments:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            customer, ref, amount = queue.get_nowait()
            while True:
                try:
                    await pay(engine, customer, ref, amount)
                    break
                except Exception:  # the database is unreachable: the provider retries, so do we
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# --- the fleet ---------------------------------------------------------------------------------------------------


@dataclass
class Fleet:
    """Reference meters answering the SMSC's submits, and what they did."""

    customers: list[Customer]
    states: dict[str, mp.MeterState] = field(default_factory=dict)
    reassembler: mp.Reassembler = field(default_factory=mp.Reassembler)
    applied: Counter[str] = field(default_factory=Counter)  # top-ups credited, per meter number
    duplicates_refused: int = 0
    frames: int = 0
    unanswered: list[MobileOriginated] = field(default_factory=list)
    delivered_replies: int = 0
    silent: frozenset[str] = frozenset()  # meters that take what they get and never answer (a dead uplink)

    def __post_init__(self) -> None:
        for c in self.customers:
            self.states[c.msisdn] = mp.new_meter(c.meter_code, c.key)

    def credit(self, msisdn: str) -> int:
        return self.states[msisdn].credit_minor

    def answer(self, submit: Submit) -> list[MobileOriginated]:
        state = self.states.get(submit.destination)
        if state is None:
            return []
        frame = self._reassemble(submit)
        if frame is None:
            return []
        self.frames += 1
        before = state.credit_minor
        state, replies = mp.receive(state, frame, int(time.time()))
        self.states[submit.destination] = state
        if state.credit_minor != before:
            self.applied[submit.destination] += 1
        for reply in replies:
            decoded = mp.decode_frame(reply, key=state.key)
            message = decoded.message
            if isinstance(message, mp.Ack) and message.result is mp.AckResult.DUPLICATE:
                self.duplicates_refused += 1
        if submit.destination in self.silent:
            return []
        return [MobileOriginated(source=submit.destination, destination=SHORT_NUMBER, body=r) for r in replies]

    def _reassemble(self, submit: Submit) -> bytes | None:
        if not submit.esm_class & 0x40:
            return submit.body
        self.reassembler, frame = self.reassembler.add(
            sender=submit.destination, body=submit.body, has_udh=True, now=int(time.time())
        )
        return frame


@contextlib.asynccontextmanager
async def fleet_answering(smsc: NodeSmsc, fleet: Fleet, concurrency: int = 16) -> AsyncIterator[None]:
    """Hand every submit to the fleet and deliver its replies as MO, retrying undelivered ones (store and
    forward, as an SMSC does) until the block ends."""
    pending: asyncio.Queue[MobileOriginated] = asyncio.Queue()

    async def pump() -> None:
        since = len(await smsc.submits())
        while True:
            batch = await smsc.submits(since, wait_s=1.0)
            since += len(batch)
            for submit in batch:
                for mo in fleet.answer(submit):
                    pending.put_nowait(mo)

    async def deliver() -> None:
        while True:
            mo = await pending.get()
            try:
                status = await smsc.inject_mo(mo, wait_s=5.0)
            except (SmscError, OSError, TimeoutError):
                status = -1
            if status == 0:
                fleet.delivered_replies += 1
            else:  # no bound session, or the service asked to retry: keep it and try later
                await asyncio.sleep(0.5)
                pending.put_nowait(mo)

    tasks = [asyncio.create_task(pump()), *(asyncio.create_task(deliver()) for _ in range(concurrency))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not pending.empty():
            fleet.unanswered.append(pending.get_nowait())


async def submitted(smsc: NodeSmsc) -> int:
    """How many SMS the SMSC has received so far."""
    return len(await smsc.submits())


async def wait_submitted(smsc: NodeSmsc, at_least: int, timeout_s: float | None = None) -> int:
    """Wait (long-polling the SMSC) until it has received `at_least` SMS; returns the count."""
    seen = await submitted(smsc)
    async with asyncio.timeout(timeout_s if timeout_s is not None else size(120.0, 1800.0)):
        while seen < at_least:
            seen += len(await smsc.submits(seen, wait_s=1.0))
    return seen


# --- the service as a process ------------------------------------------------------------------------------------


def service_env(database_url: str, smsc: NodeSmsc, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {
        "SMSMETER_DATABASE_URL": database_url,
        "SMSMETER_MASTER_KEY": MASTER_KEY_HEX,
        "SMSMETER_SHORT_NUMBER": SHORT_NUMBER,
        "SMSMETER_TRANSPORT": "smpp",
        "SMSMETER_SMPP_HOST": smsc.host,
        "SMSMETER_SMPP_PORT": str(smsc.smpp_port),
        "SMSMETER_SMPP_SYSTEM_ID": smsc.system_id,
        "SMSMETER_SMPP_PASSWORD": smsc.password,
        "SMSMETER_SMPP_RECONNECT_MAX_S": "1",
        "SMSMETER_GATEWAY_RETRY_BASE_S": "1",
        # Short, so resends happen within a reduced run; longer at full size, where thousands of replies queue
        # through the SMSC's control API and a 4 s deadline would resend (and exhaust attempts) needlessly.
        "SMSMETER_GATEWAY_ACK_TIMEOUT_S": size("4", "30"),
        "SMSMETER_GATEWAY_LEASE_S": "3",
        "SMSMETER_GATEWAY_MAX_ATTEMPTS": "20",
        "SMSMETER_LOG_JSON": "true",
        **(extra or {}),
    }


@dataclass
class ServiceProcess:
    """`smsmeter serve` in a child process, started and stopped (gracefully or with SIGKILL) at will."""

    cwd: Path
    env: dict[str, str]
    args: tuple[str, ...] = ()
    name: str = "service"
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    starts: int = 0

    def start(self) -> None:
        self.port = free_port()
        self.starts += 1
        log = (self.cwd / f"{self.name}-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smsmeter", "serve", *self.args],
            cwd=self.cwd,
            env=smsmeter_env({**self.env, "SMSMETER_HTTP_PORT": str(self.port)}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        import aiohttp

        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-4000:]}")
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    async with http.get(self.base_url + "/readyz") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready in {timeout_s} s:\n{self.log()[-4000:]}")
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last write — a power cut for the process."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGUSR1)  # its log then shows every task and where it waits
                time.sleep(1.0)
                self.process.kill()
                self.process.wait()
                tail = self.log()[-20_000:]
                print(f"--- {self.name} did not stop within {timeout_s} s; the end of its log:\n{tail}")
        return self.process.returncode

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.cwd.glob(f"{self.name}-*.log")))


@contextlib.contextmanager
def service_processes(*services: ServiceProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for service in services:
            if service.process is not None and service.process.poll() is None:
                service.stop()


# --- waiting and counting ----------------------------------------------------------------------------------------


async def command_states(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(commands.c.state, func.count()).group_by(commands.c.state))).all()
    return {state: n for state, n in rows}


async def wait_all_final(engine: AsyncEngine, expected: int, timeout_s: float) -> dict[str, int]:
    """Wait until `expected` commands exist and none is open; return the count by state."""
    open_states = {s.value for s in OPEN_STATES}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            states = await command_states(engine)
        except Exception:  # the database may be away in the outage run
            states = {}
        total = sum(states.values())
        if total >= expected and not any(states.get(s, 0) for s in open_states):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"not every command final after {timeout_s} s: {states}")
        await asyncio.sleep(0.5)


@dataclass(frozen=True, slots=True)
class Figures:
    run: str
    sent: int  # top-ups paid and sent as commands
    applied: int  # credited at the meters
    duplicates_refused: int  # resent frames/transfers the meters refused to apply again
    applied_twice: int
    lost: int
    submits: int  # SMS the SMSC received (resends included)
    seconds: float
    extra: str = ""

    def line(self) -> str:
        return (
            f"reliability {self.run}: sent {self.sent}, applied {self.applied}, duplicates refused "
            f"{self.duplicates_refused}, applied twice {self.applied_twice}, lost {self.lost}; "
            f"{self.submits} SMS submitted in {self.seconds:.1f} s{'; ' + self.extra if self.extra else ''}"
        )


REPORT: list[str] = []


def count(run: str, burst: Burst, fleet: Fleet, submits: int, seconds: float, extra: str = "") -> Figures:
    """Compare what was paid with what the meters hold."""
    expected = burst.expected_credit
    per_meter = Counter(c.msisdn for c, _ref, _amount in burst.payments)
    lost = applied_twice = 0
    for msisdn, paid in expected.items():
        held = fleet.credit(msisdn)
        if held < paid or fleet.applied[msisdn] < per_meter[msisdn]:
            lost += per_meter[msisdn] - min(fleet.applied[msisdn], per_meter[msisdn])
        if held > paid or fleet.applied[msisdn] > per_meter[msisdn]:
            applied_twice += max(1, fleet.applied[msisdn] - per_meter[msisdn])
    figures = Figures(
        run,
        len(burst.payments),
        sum(fleet.applied.values()),
        fleet.duplicates_refused,
        applied_twice,
        lost,
        submits,
        seconds,
        extra,
    )
    REPORT.append(figures.line())
    print(figures.line(), flush=True)
    return figures


def final_states_are_processed(states: Mapping[str, int]) -> bool:
    return set(states) == {CommandState.PROCESSED.value}


_CARRIED = (CommandState.DELIVERED.value, CommandState.PROCESSED.value, CommandState.TIMED_OUT.value)


@dataclass(frozen=True, slots=True)
class Sends:
    """What the database says was sent, for the commands that reached the meter (1:0, 1:1, or timed out
    after being delivered): `without_attempt` have no part rows for their latest attempt, `without_message_id`
    no part with the SMSC's message id at all — of which `cut_off` were sent only before a kill -9 (their
    submit_sm_resp died with the process, so only the attempt shows); `stuck` commands are still open."""

    delivered: int
    without_attempt: int
    without_message_id: int
    cut_off: int
    stuck: int

    def line(self) -> str:
        return (
            f"{self.delivered} delivered commands: {self.without_attempt} without their attempt recorded, "
            f"{self.without_message_id} without a message id ({self.cut_off} sent only before the kill); "
            f"stuck {self.stuck}"
        )


async def recorded_sends(engine: AsyncEngine, killed_at: datetime | None = None) -> Sends:
    """Check every delivered command against its part rows (`command_parts`: one row per part per attempt)."""
    p = command_parts.c
    async with engine.connect() as conn:
        rows = (await conn.execute(select(commands.c.id, commands.c.state, commands.c.attempts))).all()
        parts = (await conn.execute(select(p.command_id, p.attempt, p.message_id, p.submitted_at))).all()
    attempts_of: dict[int, set[int]] = defaultdict(set)
    with_id: set[int] = set()
    last_sent: dict[int, datetime] = {}
    for command_id, attempt, message_id, submitted_at in parts:
        attempts_of[command_id].add(attempt)
        if message_id is not None:
            with_id.add(command_id)
        if submitted_at is not None and (command_id not in last_sent or submitted_at > last_sent[command_id]):
            last_sent[command_id] = submitted_at
    open_states = {s.value for s in OPEN_STATES}
    delivered = [(i, n) for i, state, n in rows if state in _CARRIED]
    no_id = [i for i, _n in delivered if i not in with_id]
    return Sends(
        delivered=len(delivered),
        without_attempt=sum(1 for i, n in delivered if n not in attempts_of[i]),
        without_message_id=len(no_id),
        cut_off=sum(1 for i in no_id if killed_at is not None and i in last_sent and last_sent[i] <= killed_at),
        stuck=sum(1 for _i, state, _n in rows if state in open_states),
    )


__all__ = ["ROOT"]
