"""The dispatcher: drains the outbox through a transport and records the handshake, in batches.

One loop claims due commands and submits each one's SMS parts (followed by done-callbacks when the
transport hands back futures, as gateway.smpp does; in a task per command otherwise), and one recorder
writes what came back — submit results and delivery receipts that arrive together go to the database in
one transaction (a few statements per batch, not per command). States move as `gateway.states` decides,
every transition with its history row, only ever forward. On PostgreSQL a receipt that arrives in the
same batch as its submit result is matched in memory: the part is written once, already delivered, and
the command moves 0:0 → 1:0 in one UPDATE with both history rows (`_match_in_batch`).

Claiming. A command is due when it is open (0:0, 0:1, 1:0), `next_attempt_at` has passed and no live
claim holds it. The claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` on
PostgreSQL (several dispatcher processes share one database), the same statement without the lock
clause on SQLite (one dispatcher process). A claim is a lease (`claimed_until`): if the process dies,
the lease runs out and another dispatcher (or this one restarted) picks the command up and sends the
same frame again — the meter's replay window makes that harmless. Nothing is lost at any instant: a
command is final only once a final state is committed.

Due 0:0 commands are sent. A due 0:1 / 1:0 command has waited `ack_timeout_s` for the meter's
acknowledgement (or a failed receipt brought its time forward): it is sent again while attempts remain,
else it is timed out (or undeliverable / expired when receipts said so).

Per-meter ordering. Commands to one meter carry increasing counters, and the meter's replay window
accepts them in any order inside the window, so independent commands are sent in parallel. When order
matters, the command names its predecessor (`depends_on_id`, e.g. relay-on after the top-up it needs):
it is not claimed before the predecessor is final, and it is cancelled if the predecessor did not end
at 1:1.

Receipts are matched to parts by the SMSC message id. A receipt that arrives before its submit_sm_resp
has been recorded (SMSCs do that) is parked and matched again after each batch, for `receipt_park_s`,
before it is logged as unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import meter_protocol as mp
from gateway.bulk import insert_many, update_many
from gateway.errors import InvalidPart, NotConnected, SmscRejected, SubmitTimeout, Throttled, TransportError
from gateway.events import AlarmRaised, CommandSettled, EventHandler, GatewayEvent, ignore_event, publish
from gateway.ports import OutboundSms, Receipt, Transport, TransportState
from gateway.states import (
    OPEN_STATES,
    CommandState,
    Decision,
    ReceiptOutcome,
    RetryPolicy,
    Source,
    after_ack_deadline,
    after_failed_receipt,
    after_submit_failure,
    after_throttle,
    receipt_outcome,
)
from gateway.writegate import Pacer, WriteGate
from store.schema.commands import alarms, command_history, command_parts, commands
from store.schema.registry import meters
from store.sql import among, among_param

log = logging.getLogger("smsmeter.gateway.dispatcher")

_OPEN = sorted(s.value for s in OPEN_STATES)
_CHUNK = 1000
_YIELD_EVERY = 100  # commands started between two turns of the event loop
_dependency = commands.alias("dependency")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    worker_id: str = field(default_factory=default_worker_id)
    claim_batch: int = 500
    lease_s: float = 120.0  # a claim older than this is taken to be a dead dispatcher's
    poll_s: float = 0.25  # how often to look for due commands when there were none
    max_in_flight: int = 2000  # commands being submitted at once
    throttle_pause_s: float = 1.0  # after ESME_RTHROTTLED or no bind; does not use up an attempt
    validity_s: int | None = 86400  # SMPP validity period of each part
    receipt_park_s: float = 30.0  # how long a receipt for an unknown message id waits for its submit
    origin_port: int | None = None  # UDH origin port when a meter has an application port (default: the same)
    record_interval_s: float = 0.02  # under load, at most one recording transaction per this interval (Pacer)


@dataclass(slots=True)
class DispatchStats:
    claimed: int = 0
    submitted_parts: int = 0
    accepted: int = 0  # commands with every part accepted (0:1 or later)
    delivered: int = 0  # commands moved to 1:0
    receipts: int = 0
    receipts_parked: int = 0
    receipts_unknown: int = 0
    receipts_duplicate: int = 0
    retries: int = 0
    finals: int = 0
    batches: int = 0


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    meter_id: int
    kind: str
    state: CommandState
    attempts: int
    frame: bytes
    counter: int
    msisdn: str
    app_port: int | None
    depends_on_id: int | None
    dependency_state: str | None


# what a claim returns of each command (`_claimed`), on both databases
_CLAIMED_COLUMNS = (
    commands.c.id,
    commands.c.meter_id,
    commands.c.kind,
    commands.c.state,
    commands.c.attempts,
    commands.c.frame,
    commands.c.counter,
    commands.c.depends_on_id,
)


def _claimed(r: Any, msisdn: str, app_port: int | None, dependency_state: str | None) -> _Claimed:
    """A claimed command from its `commands` row (the claim's RETURNING) and its meter's address."""
    return _Claimed(
        r.id,
        r.meter_id,
        r.kind,
        CommandState(r.state),
        r.attempts,
        bytes(r.frame),
        r.counter,
        msisdn,
        app_port,
        r.depends_on_id,
        dependency_state,
    )


@dataclass(slots=True)
class _SendResult:
    command: _Claimed
    attempt: int
    bodies: list[tuple[bytes, bool]]
    message_ids: list[str | None]
    statuses: list[int | None]
    error: TransportError | None
    at: datetime


@dataclass(eq=False, slots=True)
class _Sending:
    """A command whose parts are out with a future-returning transport; `outcomes` fill in as they end."""

    command: _Claimed
    attempt: int
    bodies: list[tuple[bytes, bool]]
    outcomes: list[object]  # a future until its part ended, then its message id or error
    left: int
    cancelled: bool = False


@dataclass(slots=True)
class _Final:
    command_id: int
    meter_id: int
    kind: str
    state: CommandState
    source: Source
    detail: str
    smsc_status: int | None = None


@dataclass(slots=True)
class _Batch:
    """What one recorder transaction writes, gathered in memory first."""

    events: list[GatewayEvent] = field(default_factory=list)


@functools.cache
def _claim_statement(postgres: bool) -> Any:
    """Claim up to `limit` due commands for `worker` until `until` (a lease), as of `now`. On PostgreSQL
    the rows are locked SKIP LOCKED and the statement also returns each command's meter address and the
    state of the command it depends on (one round trip instead of three)."""
    now = bindparam("now", type_=commands.c.next_attempt_at.type)
    due = (
        select(commands.c.id)
        .where(
            commands.c.state.in_(_OPEN),
            commands.c.next_attempt_at <= now,
            or_(commands.c.claimed_until.is_(None), commands.c.claimed_until < now),
            or_(
                commands.c.depends_on_id.is_(None),
                ~exists().where(_dependency.c.id == commands.c.depends_on_id, _dependency.c.state.in_(_OPEN)),
            ),
        )
        .limit(bindparam("limit"))
    )
    lease = {
        "claimed_by": bindparam("worker", type_=commands.c.claimed_by.type),
        "claimed_until": bindparam("until", type_=commands.c.claimed_until.type),
    }
    if not postgres:
        return (
            update(commands).where(commands.c.id.in_(due.scalar_subquery())).values(lease).returning(*_CLAIMED_COLUMNS)
        )
    due = due.with_for_update(skip_locked=True, key_share=True, of=commands)
    dependency_state = select(_dependency.c.state).where(_dependency.c.id == commands.c.depends_on_id).scalar_subquery()
    return (
        update(commands)
        .where(commands.c.id.in_(due.scalar_subquery()), meters.c.id == commands.c.meter_id)
        .values(lease)
        .returning(*_CLAIMED_COLUMNS, meters.c.msisdn, meters.c.app_port, dependency_state.label("dependency_state"))
    )


# PostgreSQL: lock the commands of `ids`, in id order
_LOCK_COMMANDS = (
    select(commands.c.id)
    .where(among_param(commands.c.id, "ids", True))
    .order_by(commands.c.id)
    .with_for_update(key_share=True)
)


@functools.cache
def _parts_by_message_id(postgres: bool) -> Any:
    p = command_parts.c
    return select(p.id, p.command_id, p.attempt, p.message_id, p.state).where(
        among_param(p.message_id, "ids", postgres)
    )


def _close_unstarted(waits: list[object], _task: object) -> None:
    """A send stopped before it began (the service stopping): its submits never ran; close them unrun."""
    for w in waits:
        if inspect.iscoroutine(w) and inspect.getcoroutinestate(w) == inspect.CORO_CREATED:
            w.close()


class Dispatcher:
    """Use `await dispatcher.run()` in a task; `on_receipt` is the transport's receipt handler;
    `stop()` finishes the sends under way, records them and returns from `run()`."""

    def __init__(
        self,
        engine: AsyncEngine,
        transport: Transport | None = None,
        *,
        config: DispatchConfig | None = None,
        clock: Callable[[], datetime] | None = None,
        on_event: EventHandler = ignore_event,
        gate: WriteGate | None = None,
    ) -> None:
        self._engine = engine
        self.transport = transport
        self.config = config or DispatchConfig()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_event = on_event
        self._gate = gate or WriteGate.for_engine(engine)
        self._postgres = engine.dialect.name == "postgresql"
        # PostgreSQL's claim is one statement, atomic on its own: run without BEGIN and COMMIT (two round
        # trips fewer on the way from a commit to the submit)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgres else engine
        self.stats = DispatchStats()
        self._results: list[_SendResult] = []
        self._finals: list[_Final] = []
        self._receipts: list[tuple[Receipt, asyncio.Future[None] | None]] = []
        self._parked: dict[str, tuple[Receipt, float]] = {}
        self._wake_recorder = asyncio.Event()
        self._pacer = Pacer(self.config.record_interval_s)
        self._wake_claimer = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()  # commands sent through a coroutine transport
        self._in_flight: set[_Sending] = set()  # ... and through a future-returning one
        self._room_wanted = False
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()

    # -- the transport's callback --------------------------------------------------------------------
    def on_receipt(self, receipt: Receipt) -> asyncio.Future[None]:
        """Hand a receipt to the recorder (call it in the event loop's thread); the future is done once
        the receipt is recorded (or parked, if its part is not known yet), and fails if the database
        failed, so the SMSC redelivers it. A future rather than a coroutine: a transport awaits it with
        a callback, without a task per receipt."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._receipts.append((receipt, fut))
        self._wake_recorder.set()
        return fut

    def wake(self) -> None:
        """Look for due commands now (e.g. right after an enqueue in this process)."""
        self._wake_claimer.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake_claimer.set()
        self._wake_recorder.set()

    # -- running -------------------------------------------------------------------------------------
    async def run(self) -> None:
        self._stopping.clear()
        recorder = asyncio.create_task(self._record_loop(), name="dispatch-recorder")
        try:
            await self._claim_loop()
        finally:
            for task in list(self._sends):
                task.cancel()
            for sending in list(self._in_flight):
                for w in sending.outcomes:
                    if isinstance(w, asyncio.Future):
                        w.cancel()
            if self._sends:
                await asyncio.gather(*self._sends, return_exceptions=True)
            self._stopping.set()
            self._wake_recorder.set()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder

    async def _claim_loop(self) -> None:
        ahead: tuple[asyncio.Task[list[_Claimed]], int] | None = None  # the next claim, already under way
        try:
            while not self._stopping.is_set():
                # cleared before looking, not before sleeping: a wake-up that arrives while a claim is under
                # way (a commit its snapshot missed) makes the next sleep return at once
                self._wake_claimer.clear()
                transport = self.transport
                if ahead is None:
                    room = self.config.max_in_flight - len(self._sends) - len(self._in_flight)
                    if transport is None or transport.state is not TransportState.BOUND or room <= 0:
                        self._room_wanted = room <= 0  # woken by `_freed` once a claim's worth of sends ended
                        await self._sleep(self.config.poll_s)
                        continue
                    limit = min(room, self.config.claim_batch)
                    claiming = asyncio.ensure_future(self._claim(limit))
                else:
                    (claiming, limit), ahead = ahead, None
                try:
                    claimed = await claiming
                except (SQLAlchemyError, OSError) as exc:
                    # The database is away: the commands wait in the outbox; keep trying (found by the operations
                    # reliability run, tests/reliability/test_database_outage.py).
                    log.warning("claiming commands failed (%s); trying again", type(exc).__name__)
                    await self._sleep(max(1.0, self.config.poll_s))
                    continue
                if not claimed:
                    await self._sleep(self.config.poll_s)
                    continue
                self.stats.claimed += len(claimed)
                room = self.config.max_in_flight - len(self._sends) - len(self._in_flight) - len(claimed)
                if len(claimed) == limit and room > 0 and not self._stopping.is_set():
                    # more is due: the next claim runs while these parts are handed to the transport
                    next_limit = min(room, self.config.claim_batch)
                    ahead = (asyncio.ensure_future(self._claim(next_limit)), next_limit)
                for n, command in enumerate(claimed, start=1):
                    self._start(command)
                    if n % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # let the transport's reads and writes in between a large claim
                if len(claimed) < limit:  # nothing else was due: wait for a wake-up rather than claim nothing
                    await self._sleep(self.config.poll_s)
        finally:
            if ahead is not None:
                await self._release(ahead[0])

    async def _release(self, claiming: asyncio.Task[list[_Claimed]]) -> None:
        """Stopping with a claim under way: let it finish and give its commands back (lease cleared), so
        they do not wait out the lease."""
        try:
            claimed = await asyncio.shield(claiming)
        except Exception:  # the database is away: the lease runs out as after a crash
            return
        if not claimed:
            return
        with contextlib.suppress(SQLAlchemyError, OSError):
            async with self._gate, self._engine.begin() as conn:
                await conn.execute(
                    update(commands)
                    .where(
                        among(commands.c.id, [c.id for c in claimed], self._postgres),
                        commands.c.claimed_by == self.config.worker_id,
                    )
                    .values(claimed_by=None, claimed_until=None)
                )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake_claimer.wait()

    async def _claim(self, limit: int) -> list[_Claimed]:
        now = self._clock()
        lease = {
            "now": now,
            "limit": limit,
            "worker": self.config.worker_id,
            "until": now + timedelta(seconds=self.config.lease_s),
        }
        if self._postgres:  # one statement: the claim, each meter's address, the state depended on
            async with self._gate, self._autocommit.connect() as conn:
                joined = (await conn.execute(_claim_statement(True), lease)).all()
            return [
                _claimed(r, r.msisdn, r.app_port, r.dependency_state if r.depends_on_id is not None else None)
                for r in joined
            ]
        async with self._gate, self._engine.begin() as conn:
            rows = (await conn.execute(_claim_statement(False), lease)).all()
            if not rows:
                return []
            meter_ids = sorted({r.meter_id for r in rows})
            addresses: dict[int, tuple[str, int | None]] = {}
            for start in range(0, len(meter_ids), _CHUNK):
                for m in await conn.execute(
                    select(meters.c.id, meters.c.msisdn, meters.c.app_port).where(
                        among(meters.c.id, meter_ids[start : start + _CHUNK], self._postgres)
                    )
                ):
                    addresses[m.id] = (m.msisdn, m.app_port)
            deps = sorted({r.depends_on_id for r in rows if r.depends_on_id is not None})
            dep_states: dict[int, str] = {}
            if deps:
                dep_states = dict(
                    (i, s)
                    for i, s in await conn.execute(
                        select(commands.c.id, commands.c.state).where(commands.c.id.in_(deps))
                    )
                )
        return [
            _claimed(
                r, *addresses[r.meter_id], dep_states.get(r.depends_on_id) if r.depends_on_id is not None else None
            )
            for r in rows
        ]

    def _start(self, command: _Claimed) -> None:
        policy = self.config.policy
        if command.dependency_state is not None and command.dependency_state != CommandState.PROCESSED:
            self._finish(
                command,
                CommandState.CANCELLED,
                Source.DISPATCHER,
                f"command {command.depends_on_id} it depends on ended {command.dependency_state}",
            )
            return
        if command.state is not CommandState.SENDING:
            decision = after_ack_deadline(command.state, command.attempts, policy)
            if decision.state is not None:
                self._finish(command, decision.state, Source.TIMER, decision.detail)
                return
        self._begin_send(command, command.attempts + 1)

    def _finish(self, command: _Claimed, state: CommandState, source: Source, detail: str) -> None:
        self._finals.append(_Final(command.id, command.meter_id, command.kind, state, source, detail))
        self._wake_recorder.set()

    def parts_of(self, command: _Claimed) -> list[tuple[bytes, bool]]:
        ports = None
        if command.app_port is not None:
            origin = self.config.origin_port if self.config.origin_port is not None else command.app_port
            ports = mp.ApplicationPorts(command.app_port, origin)
        parts = mp.split_frame(command.frame, reference=command.counter % 256, ports=ports)
        has_udh = len(parts) > 1 or ports is not None
        return [(p, has_udh) for p in parts]

    def _begin_send(self, command: _Claimed, attempt: int) -> None:
        """Submit every part of `command`. A transport that hands back futures (gateway.smpp) is followed
        by done-callbacks, without a task per command; one whose submit is a coroutine runs in a task."""
        transport = self.transport
        assert transport is not None
        bodies = self.parts_of(command)
        waits: list[object] = []
        for body, has_udh in bodies:
            try:
                waits.append(
                    transport.submit(
                        OutboundSms(command.msisdn, body, has_udh=has_udh, validity_s=self.config.validity_s)
                    )
                )
            except Exception as exc:  # raised at once (not bound, not one SMS): as gather would hand it back
                waits.append(exc)
        if all(isinstance(w, asyncio.Future | BaseException) for w in waits):
            futures = sum(isinstance(w, asyncio.Future) for w in waits)
            sending = _Sending(command, attempt, bodies, waits, futures)
            self._in_flight.add(sending)
            if futures == 0:
                self._sent(sending)
                return
            for i, w in enumerate(waits):
                if isinstance(w, asyncio.Future):
                    w.add_done_callback(functools.partial(self._part_sent, sending, i))
            return
        task = asyncio.create_task(self._send(command, attempt, bodies, waits))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        task.add_done_callback(self._freed)
        task.add_done_callback(functools.partial(_close_unstarted, waits))

    def _part_sent(self, sending: _Sending, index: int, fut: asyncio.Future[str]) -> None:
        if fut.cancelled():
            sending.cancelled = True
        else:
            exc = fut.exception()
            sending.outcomes[index] = exc if exc is not None else fut.result()
        sending.left -= 1
        if sending.left == 0:
            self._sent(sending)

    def _sent(self, sending: _Sending) -> None:
        self._in_flight.discard(sending)
        self._freed()
        if sending.cancelled:  # stopped: nothing recorded, the lease runs out as after a crash
            return
        self._record_outcomes(sending.command, sending.attempt, sending.bodies, sending.outcomes)

    def _freed(self, _task: object = None) -> None:
        """A send ended: wake the claimer if it waits for room and a whole claim batch fits again."""
        limit = self.config.max_in_flight
        if self._room_wanted and len(self._sends) + len(self._in_flight) <= max(
            limit - self.config.claim_batch, limit // 2
        ):
            self._room_wanted = False
            self._wake_claimer.set()

    async def _send(
        self, command: _Claimed, attempt: int, bodies: list[tuple[bytes, bool]], waits: list[object]
    ) -> None:
        outcomes = iter(
            await asyncio.gather(*(w for w in waits if not isinstance(w, BaseException)), return_exceptions=True)  # type: ignore[arg-type]
        )
        self._record_outcomes(
            command, attempt, bodies, [w if isinstance(w, BaseException) else next(outcomes) for w in waits]
        )

    def _record_outcomes(
        self, command: _Claimed, attempt: int, bodies: list[tuple[bytes, bool]], outcomes: Sequence[object]
    ) -> None:
        """Turn the parts' outcomes (message ids or errors) into one send result for the recorder."""
        message_ids: list[str | None] = []
        statuses: list[int | None] = []
        error: TransportError | None = None
        for outcome in outcomes:
            if isinstance(outcome, str):
                message_ids.append(outcome)
                statuses.append(0)
                continue
            message_ids.append(None)
            if isinstance(outcome, SmscRejected):
                statuses.append(outcome.status)
            else:
                statuses.append(None)
            if isinstance(outcome, TransportError):
                # the most telling error wins: a permanent rejection over a throttle over a timeout
                if error is None or _severity(outcome) > _severity(error):
                    error = outcome
            elif isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                log.error("command %s: the transport raised %r", command.id, outcome)
                error = error or TransportError(repr(outcome))
        self.stats.submitted_parts += sum(1 for m in message_ids if m is not None)
        self._results.append(_SendResult(command, attempt, bodies, message_ids, statuses, error, self._clock()))
        self._wake_recorder.set()

    # -- recording -----------------------------------------------------------------------------------
    async def _record_loop(self) -> None:
        while True:
            if not (self._results or self._receipts or self._finals):
                if self._stopping.is_set() and not self._sends and not self._in_flight:
                    self._drop_parked(force=True)
                    return
                self._wake_recorder.clear()
                await self._wait_recorder(0.2 if self._parked else 1.0)
                if self._parked and not (self._results or self._receipts or self._finals):
                    self._drop_parked(force=False)
                    with contextlib.suppress(Exception):
                        await self._flush([], [], [])  # match parked receipts again
                continue
            if not self._stopping.is_set():
                await self._pacer.turn()  # busy: what arrives meanwhile joins this transaction
            results, self._results = self._results, []
            finals, self._finals = self._finals, []
            receipts, self._receipts = self._receipts, []
            try:
                await self._flush(results, finals, [r for r, _ in receipts])
            except Exception as exc:
                log.exception("recording a batch failed; it is retried")
                self._results[:0] = results
                self._finals[:0] = finals
                for _, fut in receipts:
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)  # the SMSC redelivers the receipt
                await asyncio.sleep(1.0)
                continue
            for _, fut in receipts:
                if fut is not None and not fut.done():
                    fut.set_result(None)

    async def _wait_recorder(self, timeout_s: float = 1.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake_recorder.wait()

    def _drop_parked(self, *, force: bool) -> None:
        limit = time.monotonic() - self.config.receipt_park_s
        for message_id, (receipt, since) in list(self._parked.items()):
            if force or since < limit:
                del self._parked[message_id]
                self.stats.receipts_unknown += 1
                log.warning(
                    "receipt for unknown message id %s (%s) dropped after %.0f s",
                    message_id,
                    receipt.state.value,
                    self.config.receipt_park_s,
                )

    async def _flush(
        self, results: Sequence[_SendResult], finals: Sequence[_Final], receipts: Sequence[Receipt]
    ) -> None:
        now = self._clock()
        batch = _Batch()
        early: dict[str, Receipt] = {}
        unparked: dict[str, tuple[Receipt, float]] = {}
        if results and self._postgres and (receipts or self._parked):
            early, receipts, unparked = self._match_in_batch(results, receipts)
        try:
            await self._write_batch(results, finals, receipts, early, now, batch)
        except BaseException:
            self._parked.update(unparked)
            raise
        self.stats.batches += 1
        if batch.events:
            await publish(self._on_event, batch.events)

    async def _write_batch(
        self,
        results: Sequence[_SendResult],
        finals: Sequence[_Final],
        receipts: Sequence[Receipt],
        early: dict[str, Receipt],
        now: datetime,
        batch: _Batch,
    ) -> None:
        all_receipts = [*receipts, *(r for r, _ in self._parked.values())]
        async with self._gate, self._engine.begin() as conn:
            parts = await self._parts_by_message_id(conn, {r.message_id for r in all_receipts}) if all_receipts else {}
            touched = {r.command.id for r in results} | {f.command_id for f in finals}
            touched |= {p.command_id for p in parts.values()}
            await self._lock(conn, touched)
            if results:
                await self._record_results(conn, results, now, batch, early)
                # receipts that came with their own submit results match the parts just written
                # (their commands are locked already: they are among the results)
                unmatched = {r.message_id for r in all_receipts} - parts.keys()
                if unmatched:
                    parts.update(await self._parts_by_message_id(conn, unmatched))
            if finals:
                await self._record_finals(conn, finals, now, batch)
            if all_receipts:
                await self._record_receipts(conn, receipts, parts, now, batch)

    def _match_in_batch(
        self, results: Sequence[_SendResult], receipts: Sequence[Receipt]
    ) -> tuple[dict[str, Receipt], list[Receipt], dict[str, tuple[Receipt, float]]]:
        """Delivery receipts for parts accepted in this same batch (the SMSC sent the receipt with, or
        before, its submit_sm_resp): matched here, so each part is written once, already delivered, and
        its command moves once, 0:0 → 1:0, instead of a write per step. Returns {message id: receipt},
        the receipts left for the database lookup (`_record_receipts`) and the parked receipts taken
        (parked again if the batch fails). Only DELIVRD receipts of
        wholly accepted sends are taken; anything else goes the ordinary way."""
        accepted: dict[str, int] = {}
        for r in results:
            if r.error is None:
                for message_id in r.message_ids:
                    if message_id is not None:
                        accepted[message_id] = accepted.get(message_id, 0) + 1
        groups: dict[str, list[Receipt]] = {}
        rest: list[Receipt] = []
        for receipt in receipts:
            if accepted.get(receipt.message_id) == 1 and receipt.message_id not in self._parked:
                groups.setdefault(receipt.message_id, []).append(receipt)
            else:
                rest.append(receipt)
        early: dict[str, Receipt] = {}
        for message_id, copies in groups.items():
            if receipt_outcome(copies[-1].state.value) is ReceiptOutcome.DELIVERED:
                early[message_id] = copies[-1]  # the last copy decides, as in `_record_receipts`
                self.stats.receipts += 1
                self.stats.receipts_duplicate += len(copies) - 1
            else:
                rest.extend(copies)
        fresh = {r.message_id for r in rest}
        unparked: dict[str, tuple[Receipt, float]] = {}
        for message_id, (receipt, _since) in list(self._parked.items()):
            if (
                accepted.get(message_id) == 1
                and message_id not in fresh
                and receipt_outcome(receipt.state.value) is ReceiptOutcome.DELIVERED
            ):
                unparked[message_id] = self._parked.pop(message_id)
                early[message_id] = receipt
                self.stats.receipts += 1
        return early, rest, unparked

    async def _lock(self, conn: AsyncConnection, command_ids: set[int]) -> None:
        """On PostgreSQL, lock every command row this transaction will change, in id order, before
        changing any: the inbound path locks in the same order, so the two never deadlock."""
        if not self._postgres or not command_ids:
            return
        ordered = sorted(command_ids)
        for start in range(0, len(ordered), _CHUNK):
            await conn.execute(_LOCK_COMMANDS, {"ids": ordered[start : start + _CHUNK]})

    async def _parts_by_message_id(self, conn: AsyncConnection, message_ids: set[str]) -> dict[str, Any]:
        ids = sorted(message_ids)
        parts: dict[str, Any] = {}
        query = _parts_by_message_id(self._postgres)
        for start in range(0, len(ids), _CHUNK):
            for row in await conn.execute(query, {"ids": ids[start : start + _CHUNK]}):
                parts[row.message_id] = row
        return parts

    async def _record_results(
        self,
        conn: AsyncConnection,
        results: Sequence[_SendResult],
        now: datetime,
        batch: _Batch,
        early: dict[str, Receipt] | None = None,
    ) -> None:
        """Parts, attempts and the 0:1 step of `results`; on PostgreSQL also the 1:0 step of commands
        whose every part has its receipt in `early` (`_match_in_batch`), in the same statements."""
        if self._postgres:
            await self._record_results_set(conn, results, now, batch, early or {})
            return
        accepted, reschedule, history, finals = self._classify(results, now)
        part_rows = _part_rows(results, now, {})
        if part_rows:
            await conn.execute(_upsert_parts(conn), part_rows)
        if accepted:
            ids = [r.command.id for r in accepted]
            moved: set[int] = set()
            for start in range(0, len(ids), _CHUNK):
                moved.update(
                    (
                        await conn.execute(
                            update(commands)
                            .where(
                                among(commands.c.id, ids[start : start + _CHUNK], False),
                                commands.c.state == "0:0",
                            )
                            .values(state=CommandState.ACCEPTED.value, updated_at=now)
                            .returning(commands.c.id)
                        )
                    ).scalars()
                )
            deadline = now + timedelta(seconds=self.config.policy.ack_timeout_s)
            for r in accepted:
                reschedule.append({"c_id": r.command.id, "c_attempts": r.attempt, "c_next": deadline, "c_status": 0})
                history.extend(_accepted_history(r, r.command.id in moved, now))
            self.stats.accepted += len(accepted)
        if reschedule:
            await conn.execute(
                update(commands)
                .where(commands.c.id == bindparam("c_id"))
                .values(
                    # the attempt counts even when the meter's answer already settled the command
                    attempts=bindparam("c_attempts"),
                    next_attempt_at=case(
                        (_is_open(), bindparam("c_next", type_=commands.c.next_attempt_at.type)), else_=None
                    ),
                    smsc_status=func.coalesce(bindparam("c_status"), commands.c.smsc_status),
                    claimed_by=None,
                    claimed_until=None,
                    updated_at=now,
                ),
                reschedule,
            )
        if history:
            await self._insert_history(conn, history)
        if finals:
            await self._record_finals(conn, finals, now, batch)

    def _classify(
        self, results: Sequence[_SendResult], now: datetime
    ) -> tuple[list[_SendResult], list[dict[str, Any]], list[dict[str, Any]], list[_Final]]:
        """Split send results: accepted ones, and for the others the reschedule rows, history rows and
        finals their failure calls for (`gateway.states`)."""
        policy = self.config.policy
        accepted: list[_SendResult] = []
        reschedule: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        finals: list[_Final] = []
        for r in results:
            c = r.command
            if r.error is None:
                accepted.append(r)
            elif isinstance(r.error, Throttled | NotConnected):
                d = after_throttle(now, self.config.throttle_pause_s)
                reschedule.append({"c_id": c.id, "c_attempts": c.attempts, "c_next": d.retry_at, "c_status": None})
            elif isinstance(r.error, InvalidPart):  # it can never be one SMS: resending will not help
                detail = f"not sendable: {r.error.reason}"
                finals.append(_Final(c.id, c.meter_id, c.kind, CommandState.FAILED, Source.DISPATCHER, detail))
                reschedule.append({"c_id": c.id, "c_attempts": r.attempt, "c_next": None, "c_status": None})
            else:
                status = r.error.status if isinstance(r.error, SmscRejected) else None
                reason = r.error.name if isinstance(r.error, SmscRejected) else type(r.error).__name__
                if isinstance(r.error, SubmitTimeout):
                    reason = "no submit_sm_resp"
                d = after_submit_failure(r.attempt, policy, now, status=status, reason=reason)
                if d.state is not None:
                    finals.append(_Final(c.id, c.meter_id, c.kind, d.state, Source.SMSC, d.detail, status))
                    reschedule.append({"c_id": c.id, "c_attempts": r.attempt, "c_next": None, "c_status": status})
                else:
                    self.stats.retries += 1
                    reschedule.append({"c_id": c.id, "c_attempts": r.attempt, "c_next": d.retry_at, "c_status": status})
                    history.append(_history(c.id, c.state, c.state, now, Source.SMSC, d.detail))
        return accepted, reschedule, history, finals

    async def _record_results_set(
        self,
        conn: AsyncConnection,
        results: Sequence[_SendResult],
        now: datetime,
        batch: _Batch,
        early: dict[str, Receipt],
    ) -> None:
        """PostgreSQL: one INSERT for every part (already 1:0 when its receipt came in this batch), one
        UPDATE … FROM unnest(…) for every command (attempts, next attempt, the lease released, and the
        state moved forward only: 0:0 → 0:1, or 0:0 / 0:1 → 1:0 when every part is delivered), which
        returns the state each row left (the rows are locked, `_lock`) for the history rows."""
        accepted, reschedule, history, finals = self._classify(results, now)
        part_rows = _part_rows(results, now, early)
        await insert_many(
            conn,
            command_parts,
            part_rows,
            on_conflict="ON CONFLICT (command_id, attempt, seq) DO UPDATE SET message_id = excluded.message_id, "
            "state = excluded.state, smsc_status = excluded.smsc_status, submitted_at = excluded.submitted_at, "
            "delivered_at = excluded.delivered_at",
        )
        rows = [
            {
                "id": x["c_id"],
                "attempts": x["c_attempts"],
                "next_attempt_at": x["c_next"],
                "status": x["c_status"],
                "to_state": None,
            }
            for x in reschedule
        ]
        deadline = now + timedelta(seconds=self.config.policy.ack_timeout_s)
        by_id: dict[int, _SendResult] = {}
        for r in accepted:
            delivered = all(m is not None and m in early for m in r.message_ids)
            to_state = CommandState.DELIVERED if delivered else CommandState.ACCEPTED
            rows.append(
                {
                    "id": r.command.id,
                    "attempts": r.attempt,
                    "next_attempt_at": deadline,
                    "status": 0,
                    "to_state": to_state.value,
                }
            )
            by_id[r.command.id] = r
        self.stats.accepted += len(accepted)
        left = (
            await update_many(
                conn,
                commands,
                rows,
                # the attempt counts even when the meter's answer already settled the command
                "attempts = v.attempts, next_attempt_at = CASE WHEN t.state IN ('0:0', '0:1', '1:0') "
                "THEN v.next_attempt_at END, smsc_status = COALESCE(v.status, t.smsc_status), claimed_by = NULL, "
                "claimed_until = NULL, updated_at = :now, "
                "state = CASE WHEN v.to_state = '1:0' AND t.state IN ('0:0', '0:1') THEN '1:0' "
                "WHEN v.to_state = '0:1' AND t.state = '0:0' THEN '0:1' ELSE t.state END",
                where="AND old.id = t.id",
                types={"status": "INTEGER", "to_state": "VARCHAR"},
                params={"now": now},
                also_from=", commands AS old",
                returning="t.id, old.state, t.state",
            )
            if rows
            else []
        )
        for command_id, was, state in left:
            r = by_id.get(command_id)
            if r is None:
                continue
            history.extend(_accepted_history(r, was == CommandState.SENDING.value and state != was, now))
            if state == CommandState.DELIVERED.value and was != state:
                history.append(
                    _history(
                        command_id,
                        CommandState.ACCEPTED,
                        CommandState.DELIVERED,
                        now,
                        Source.RECEIPT,
                        "every part delivered",
                    )
                )
                self.stats.delivered += 1
        await insert_many(conn, command_history, history)
        if finals:
            await self._record_finals(conn, finals, now, batch)

    async def _insert_history(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if self._postgres:
            await insert_many(conn, command_history, rows)
        else:
            await conn.execute(insert(command_history), rows)

    async def _record_finals(
        self, conn: AsyncConnection, finals: Sequence[_Final], now: datetime, batch: _Batch
    ) -> None:
        if self._postgres:
            await self._record_finals_set(conn, finals, now, batch)
            return
        for f in finals:
            previous = await conn.scalar(
                select(commands.c.state).where(commands.c.id == f.command_id, commands.c.state.in_(_OPEN))
            )
            if previous is None:
                continue
            changed = await conn.scalar(
                update(commands)
                .where(commands.c.id == f.command_id, commands.c.state == previous)
                .values(
                    state=f.state.value,
                    result_reason=f.detail[:200],
                    smsc_status=f.smsc_status if f.smsc_status is not None else commands.c.smsc_status,
                    next_attempt_at=None,
                    claimed_by=None,
                    claimed_until=None,
                    updated_at=now,
                    final_at=now,
                )
                .returning(commands.c.id)
            )
            if changed is None:
                continue
            self.stats.finals += 1
            await conn.execute(
                insert(command_history).values(
                    _history(f.command_id, CommandState(previous), f.state, now, f.source, f.detail)
                )
            )
            batch.events.append(CommandSettled(f.command_id, f.meter_id, f.kind, f.state.value, f.detail, at=now))
            if f.state is not CommandState.CANCELLED:
                detail = f"command {f.command_id} ({f.kind}) {f.state.value}: {f.detail}"[:500]
                await conn.execute(
                    insert(alarms).values(
                        meter_id=f.meter_id,
                        command_id=f.command_id,
                        kind="command_failed",
                        severity="warning",
                        raised_at=now,
                        detail=detail,
                    )
                )
                batch.events.append(AlarmRaised(f.meter_id, "command_failed", "warning", now, detail, f.command_id))

    async def _record_finals_set(
        self, conn: AsyncConnection, finals: Sequence[_Final], now: datetime, batch: _Batch
    ) -> None:
        """PostgreSQL: every final in one UPDATE … FROM unnest(…), only from an open state (forward only),
        returning the state each command left; then one INSERT for their history rows and one for alarms.
        The rows are locked already (`_lock`), so the joined `old` row shows the state before the update."""
        first: dict[int, _Final] = {}
        for f in finals:
            first.setdefault(f.command_id, f)  # as one at a time: a second final for a command finds it final
        if not first:
            return
        open_list = ", ".join(f"'{s}'" for s in _OPEN)
        moved: dict[int, str] = {}
        ordered = [first[i] for i in sorted(first)]
        for start in range(0, len(ordered), _CHUNK):
            rows = await update_many(
                conn,
                commands,
                [
                    {"id": f.command_id, "state": f.state.value, "reason": f.detail[:200], "status": f.smsc_status}
                    for f in ordered[start : start + _CHUNK]
                ],
                "state = v.state, result_reason = v.reason, smsc_status = COALESCE(v.status, t.smsc_status), "
                "next_attempt_at = NULL, claimed_by = NULL, claimed_until = NULL, updated_at = :now, final_at = :now",
                where=f"AND old.id = t.id AND t.state IN ({open_list})",
                types={"reason": "VARCHAR", "status": "INTEGER"},
                params={"now": now},
                also_from=", commands AS old",
                returning="t.id, old.state",
            )
            moved.update((int(i), str(previous)) for i, previous in rows)
        if not moved:
            return
        history: list[dict[str, Any]] = []
        alarm_rows: list[dict[str, Any]] = []
        for f in first.values():
            previous = moved.get(f.command_id)
            if previous is None:
                continue
            self.stats.finals += 1
            history.append(_history(f.command_id, CommandState(previous), f.state, now, f.source, f.detail))
            batch.events.append(CommandSettled(f.command_id, f.meter_id, f.kind, f.state.value, f.detail, at=now))
            if f.state is not CommandState.CANCELLED:
                detail = f"command {f.command_id} ({f.kind}) {f.state.value}: {f.detail}"[:500]
                alarm_rows.append(
                    {
                        "meter_id": f.meter_id,
                        "command_id": f.command_id,
                        "kind": "command_failed",
                        "severity": "warning",
                        "raised_at": now,
                        "detail": detail,
                    }
                )
                batch.events.append(AlarmRaised(f.meter_id, "command_failed", "warning", now, detail, f.command_id))
        await insert_many(conn, command_history, history)
        await insert_many(conn, alarms, alarm_rows)

    async def _record_receipts(
        self,
        conn: AsyncConnection,
        receipts: Sequence[Receipt],
        parts: dict[str, Any],
        now: datetime,
        batch: _Batch,
    ) -> None:
        by_id: dict[str, list[Receipt]] = {m: [] for m in self._parked}
        for receipt in receipts:
            by_id.setdefault(receipt.message_id, []).append(receipt)
        mark: list[dict[str, Any]] = []
        delivered_commands: set[int] = set()
        failed: dict[int, tuple[int, ReceiptOutcome, str]] = {}
        monotonic = time.monotonic()
        for message_id, fresh in by_id.items():
            parked = self._parked.get(message_id)
            # every fresh copy of a receipt already parked, and all but one fresh copy otherwise, are duplicates
            self.stats.receipts_duplicate += len(fresh) if parked is not None else max(0, len(fresh) - 1)
            part = parts.get(message_id)
            if part is None:
                if parked is None:
                    self._parked[message_id] = (fresh[-1], monotonic)
                    self.stats.receipts_parked += 1
                continue
            self._parked.pop(message_id, None)
            receipt = fresh[-1] if fresh else parked[0] if parked is not None else None
            assert receipt is not None
            self.stats.receipts += 1
            outcome = receipt_outcome(receipt.state.value)
            if outcome is ReceiptOutcome.PENDING:
                continue
            if part.state == "1:0" or (
                part.state != CommandState.ACCEPTED.value and outcome is not ReceiptOutcome.DELIVERED
            ):
                self.stats.receipts_duplicate += 1
                continue
            part_state = "1:0" if outcome is ReceiptOutcome.DELIVERED else outcome.value
            mark.append(
                {"p_id": part.id, "p_state": part_state, "p_at": receipt.done_at or now, "p_err": receipt.error_code}
            )
            if outcome is ReceiptOutcome.DELIVERED:
                delivered_commands.add(part.command_id)
            else:
                failed[part.command_id] = (part.attempt, outcome, f"{receipt.state.value} err {receipt.error_code}")
        if mark and self._postgres:
            await update_many(
                conn,
                command_parts,
                [{"id": m["p_id"], "state": m["p_state"], "at": m["p_at"], "err": m["p_err"]} for m in mark],
                "state = v.state, delivered_at = v.at, smsc_status = COALESCE(v.err, t.smsc_status)",
                types={"at": "TIMESTAMP WITH TIME ZONE", "err": "INTEGER"},
            )
        elif mark:
            await conn.execute(
                update(command_parts)
                .where(command_parts.c.id == bindparam("p_id"))
                .values(
                    state=bindparam("p_state"),
                    delivered_at=bindparam("p_at"),
                    smsc_status=func.coalesce(bindparam("p_err"), command_parts.c.smsc_status),
                ),
                mark,
            )
        if delivered_commands:
            await self._move_delivered(conn, sorted(delivered_commands), now)
        if failed:
            await self._after_failed_receipts(conn, failed, now, batch)

    async def _move_delivered(self, conn: AsyncConnection, command_ids: list[int], now: datetime) -> None:
        if self._postgres:
            await self._move_delivered_set(conn, command_ids, now)
            return
        complete: list[int] = []
        for start in range(0, len(command_ids), _CHUNK):
            chunk = command_ids[start : start + _CHUNK]
            rows = await conn.execute(
                select(
                    command_parts.c.command_id,
                    command_parts.c.attempt,
                    func.count(),
                    func.sum(case((command_parts.c.state == "1:0", 1), else_=0)),
                )
                .where(
                    among(command_parts.c.command_id, chunk, self._postgres), command_parts.c.message_id.is_not(None)
                )
                .group_by(command_parts.c.command_id, command_parts.c.attempt)
            )
            complete.extend({cid for cid, _attempt, total, done in rows if total and done == total})
        if not complete:
            return
        moved: list[tuple[int, str]] = []
        for start in range(0, len(complete), _CHUNK):
            chunk = complete[start : start + _CHUNK]
            before = dict(
                (i, s)
                for i, s in await conn.execute(
                    select(commands.c.id, commands.c.state).where(
                        among(commands.c.id, chunk, self._postgres), commands.c.state.in_(["0:0", "0:1"])
                    )
                )
            )
            if not before:
                continue
            changed = (
                await conn.execute(
                    update(commands)
                    .where(among(commands.c.id, list(before), self._postgres), commands.c.state.in_(["0:0", "0:1"]))
                    .values(state=CommandState.DELIVERED.value, updated_at=now)
                    .returning(commands.c.id)
                )
            ).scalars()
            moved.extend((i, before[i]) for i in changed)
        if moved:
            await self._insert_history(
                conn,
                [
                    _history(i, CommandState(s), CommandState.DELIVERED, now, Source.RECEIPT, "every part delivered")
                    for i, s in moved
                ],
            )
            self.stats.delivered += len(moved)

    async def _move_delivered_set(self, conn: AsyncConnection, command_ids: list[int], now: datetime) -> None:
        """PostgreSQL: 0:0 / 0:1 → 1:0 for the commands one of whose attempts has every part (that the SMSC
        took) delivered, in one statement that returns the state each left (rows locked by `_lock`)."""
        rows = await conn.execute(_MOVE_DELIVERED, {"ids": command_ids, "now": now})
        moved = [(int(i), str(s)) for i, s in rows]
        if moved:
            await self._insert_history(
                conn,
                [
                    _history(i, CommandState(s), CommandState.DELIVERED, now, Source.RECEIPT, "every part delivered")
                    for i, s in moved
                ],
            )
            self.stats.delivered += len(moved)

    async def _after_failed_receipts(
        self,
        conn: AsyncConnection,
        failed: dict[int, tuple[int, ReceiptOutcome, str]],
        now: datetime,
        batch: _Batch,
    ) -> None:
        policy = self.config.policy
        rows = await conn.execute(
            select(
                commands.c.id,
                commands.c.meter_id,
                commands.c.kind,
                commands.c.state,
                commands.c.attempts,
                commands.c.claimed_until,
            ).where(among(commands.c.id, sorted(failed), self._postgres))
        )
        finals: list[_Final] = []
        retries: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for row in rows:
            attempt, outcome, text = failed[row.id]
            state = CommandState(row.state)
            if attempt != row.attempts or (row.claimed_until is not None and row.claimed_until > now):
                continue  # a receipt for an earlier attempt, or a resend is under way
            d: Decision = after_failed_receipt(state, outcome, attempt, policy, now)
            if d.state is not None:
                finals.append(_Final(row.id, row.meter_id, row.kind, d.state, Source.RECEIPT, f"{d.detail} ({text})"))
            elif d.retry_at is not None:
                self.stats.retries += 1
                retries.append({"r_id": row.id, "r_was": state.value, "r_next": d.retry_at})
                history.append(_history(row.id, state, state, now, Source.RECEIPT, f"{d.detail} ({text})"))
        if retries and self._postgres:
            await update_many(
                conn,
                commands,
                [{"id": r["r_id"], "was": r["r_was"], "next": r["r_next"]} for r in retries],
                "next_attempt_at = v.next, updated_at = :now",
                where="AND t.state = v.was",
                types={"was": "VARCHAR", "next": "TIMESTAMP WITH TIME ZONE"},
                params={"now": now},
            )
        elif retries:
            await conn.execute(
                update(commands)
                .where(commands.c.id == bindparam("r_id"), commands.c.state == bindparam("r_was"))
                .values(next_attempt_at=bindparam("r_next", type_=commands.c.next_attempt_at.type), updated_at=now),
                retries,
            )
        if history:
            await self._insert_history(conn, history)
        if finals:
            await self._record_finals(conn, finals, now, batch)


_MOVE_DELIVERED = text(
    "UPDATE commands AS t SET state = '1:0', updated_at = :now FROM commands AS old "
    "WHERE t.id = ANY(CAST(:ids AS BIGINT[])) AND old.id = t.id AND t.state IN ('0:0', '0:1') "
    "AND EXISTS (SELECT 1 FROM command_parts AS p WHERE p.command_id = t.id AND p.message_id IS NOT NULL "
    "GROUP BY p.attempt HAVING count(*) = count(*) FILTER (WHERE p.state = '1:0')) "
    "RETURNING t.id, old.state"
)


def _is_open() -> Any:
    """`state` is 0:0, 0:1 or 1:0, written without an IN list (executemany cannot expand one)."""
    return or_(*(commands.c.state == s for s in _OPEN))


def _severity(error: TransportError) -> int:
    if isinstance(error, InvalidPart):
        return 4
    if isinstance(error, SmscRejected) and not isinstance(error, Throttled):
        return 3
    if isinstance(error, Throttled | NotConnected):
        return 2
    return 1


def _history(
    command_id: int, from_state: CommandState, to_state: CommandState, at: datetime, source: Source, detail: str
) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "from_state": from_state.value,
        "to_state": to_state.value,
        "at": at,
        "source": source.value,
        "detail": detail[:500],
    }


def _accepted_history(r: _SendResult, moved: bool, now: datetime) -> list[dict[str, Any]]:
    """The history row of an accepted attempt: 0:0 → 0:1 when it `moved` the command, a same-state row for a
    resend (attempt > 1) that did not, none otherwise."""
    n = len(r.bodies)
    if moved:
        detail = f"attempt {r.attempt}: {n} part{'s' if n > 1 else ''} accepted, "
        detail += f"id {', '.join(m or '' for m in r.message_ids)}"
        return [_history(r.command.id, CommandState.SENDING, CommandState.ACCEPTED, now, Source.SMSC, detail)]
    if r.attempt > 1:
        detail = f"attempt {r.attempt} accepted (same frame, counter {r.command.counter})"
        return [_history(r.command.id, r.command.state, r.command.state, now, Source.SMSC, detail)]
    return []


def _part_rows(results: Sequence[_SendResult], now: datetime, early: Mapping[str, Receipt]) -> list[dict[str, Any]]:
    """The command_parts rows of one attempt per result (none for a throttled one: not an attempt, its parts
    are sent again with the rest); a part whose receipt is in `early` is already 1:0."""
    part_rows: list[dict[str, Any]] = []
    for r in results:
        if r.error is not None and isinstance(r.error, Throttled | NotConnected):
            continue
        for seq, ((body, has_udh), message_id, status) in enumerate(
            zip(r.bodies, r.message_ids, r.statuses, strict=True), start=1
        ):
            receipt = early.get(message_id) if message_id is not None and r.error is None else None
            if receipt is not None:
                state, delivered_at = CommandState.DELIVERED.value, receipt.done_at or now
                smsc_status = receipt.error_code if receipt.error_code is not None else status
            else:
                state = CommandState.ACCEPTED.value if message_id is not None else "rejected"
                delivered_at, smsc_status = None, status
            part_rows.append(
                {
                    "command_id": r.command.id,
                    "seq": seq,
                    "body": body,
                    "has_udh": int(has_udh),
                    "attempt": r.attempt,
                    "message_id": message_id,
                    "state": state,
                    "smsc_status": smsc_status,
                    "submitted_at": r.at,
                    "delivered_at": delivered_at,
                }
            )
    return part_rows


def _upsert_parts(conn: AsyncConnection) -> Any:
    keys = ["command_id", "attempt", "seq"]
    if conn.dialect.name == "postgresql":
        stmt: Any = postgresql.insert(command_parts)
    else:
        stmt = sqlite.insert(command_parts)
    return stmt.on_conflict_do_update(
        index_elements=keys,
        set_={
            "message_id": stmt.excluded.message_id,
            "state": stmt.excluded.state,
            "smsc_status": stmt.excluded.smsc_status,
            "submitted_at": stmt.excluded.submitted_at,
        },
    )


__all__ = ["DispatchConfig", "DispatchStats", "Dispatcher", "default_worker_id"]
