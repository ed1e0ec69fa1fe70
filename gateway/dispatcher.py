"""The dispatcher: the claim-and-send loop. It claims due commands and submits each one's SMS parts; what
comes back goes to the recorder (`gateway.recorder`), which writes it in batches through the command store
(`gateway.command_store`).

Parts are followed by done-callbacks when the transport hands back futures (as gateway.smpp does), in a
task per command otherwise. A claim is a lease (`claimed_until`): if the process dies, the lease runs out
and another dispatcher (or this one restarted) picks the command up and sends the same frame again, as the
next attempt (the claim counts it, and its part rows are committed before its SMS leave) — the meter's
replay window makes that harmless. Nothing is lost at any instant: a command is final only once a
final state is committed.

Due 0:0 commands are sent. A due 0:1 / 1:0 command has waited `ack_timeout_s` for the meter's
acknowledgement (or a failed receipt brought its time forward): it is sent again while attempts remain,
else it is timed out (or undeliverable / expired when receipts said so).

Per-meter ordering. Commands to one meter carry increasing counters, and the meter's replay window
accepts them in any order inside the window, so independent commands are sent in parallel. When order
matters, the command names its predecessor (`depends_on_id`, e.g. relay-on after the top-up it needs):
it is not claimed before the predecessor is final, and it is cancelled if the predecessor did not end
at 1:1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from gateway import claims
from gateway.claims import Claimed
from gateway.command_store import Final, SendResult, record_parts
from gateway.errors import InvalidPart, NotConnected, SmscRejected, SubmitTimeout, Throttled, TransportError
from gateway.events import EventHandler, ignore_event
from gateway.ports import OutboundSms, Receipt, Transport, TransportState
from gateway.record_steps import DispatchStats, RecorderConfig
from gateway.recorder import Recorder
from gateway.states import CommandState, RetryPolicy, Source, after_ack_deadline
from gateway.writegate import WriteGate

log = logging.getLogger("smsmeter.gateway.dispatcher")

_YIELD_EVERY = 100  # commands started between two turns of the event loop


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
    stop_wait_s: float = 5.0  # stopping: how long parts already handed to a future-returning transport may end


@dataclass(frozen=True, slots=True)
class _Claim:
    """One claim: the commands claimed, those of them to send with their SMS parts, and the others' finals."""

    commands: list[Claimed]
    sends: list[tuple[Claimed, list[tuple[bytes, bool]]]]
    finals: list[Final]


@dataclass(eq=False, slots=True)
class _Sending:
    """A command whose parts are out with a future-returning transport; `outcomes` fill in as they end."""

    command: Claimed
    attempt: int
    bodies: list[tuple[bytes, bool]]
    outcomes: list[object]  # a future until its part ended, then its message id or error
    left: int
    cancelled: bool = False


def _close_unstarted(waits: list[object], _task: object) -> None:
    """A send stopped before it began (the service stopping): its submits never ran; close them unrun."""
    for w in waits:
        if inspect.iscoroutine(w) and inspect.getcoroutinestate(w) == inspect.CORO_CREATED:
            w.close()


class Dispatcher:
    """Use `await dispatcher.run()` in a task; `on_receipt` is the transport's receipt handler;
    `stop()` lets the parts under way with a future-returning transport end (for `stop_wait_s`), records them
    and returns from `run()`."""

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
        self.stats = DispatchStats()
        self._stopping = asyncio.Event()
        self._running = False
        self._stop_before_run = False  # stop() came while no run was under way: the next run returns at once
        self._recorder = Recorder(
            engine,
            RecorderConfig(
                self.config.policy,
                self.config.throttle_pause_s,
                self.config.receipt_park_s,
                self.config.record_interval_s,
            ),
            self.stats,
            clock=self._clock,
            on_event=on_event,
            gate=self._gate,
            stopping=self._stopping,
            busy=lambda: bool(self._sends or self._in_flight),
        )
        self._wake_claimer = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()  # commands sent through a coroutine transport
        self._in_flight: set[_Sending] = set()  # ... and through a future-returning one
        self._room_wanted = False

    # -- the transport's callback --------------------------------------------------------------------
    def on_receipt(self, receipt: Receipt) -> asyncio.Future[None]:
        """Hand a receipt to the recorder (call it in the event loop's thread); the future is done once
        the receipt is recorded (or parked, if its part is not known yet), and fails if the database
        failed, so the SMSC redelivers it. A future rather than a coroutine: a transport awaits it with
        a callback, without a task per receipt."""
        return self._recorder.on_receipt(receipt)

    def wake(self) -> None:
        """Look for due commands now (e.g. right after an enqueue in this process)."""
        self._wake_claimer.set()

    def stop(self) -> None:
        """End `run()`; asked before its task first runs (a shutdown right after the start), the run returns at
        once instead of running on."""
        self._stop_before_run = not self._running
        self._stopping.set()
        self._wake_claimer.set()
        self._recorder.wake()

    # -- running -------------------------------------------------------------------------------------
    async def run(self) -> None:
        if self._stop_before_run:
            self._stop_before_run = False
            return
        self._running = True
        try:
            await self._run()
        finally:
            self._running = False

    async def _run(self) -> None:
        self._stopping.clear()
        recorder = asyncio.create_task(self._recorder.run(), name="dispatch-recorder")
        renewer = asyncio.create_task(self._renew_leases(), name="dispatch-lease-renewer")
        try:
            await self._claim_loop()
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            cancelled = await self._let_parts_end()
            for task in list(self._sends):
                task.cancel()
            for sending in list(self._in_flight):
                for w in sending.outcomes:
                    if isinstance(w, asyncio.Future):
                        w.cancel()
            if self._sends:
                await asyncio.gather(*self._sends, return_exceptions=True)
            self._stopping.set()
            self._recorder.wake()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            if cancelled:
                raise asyncio.CancelledError

    async def _let_parts_end(self) -> bool:
        """Stopping: parts already with the transport (a submit_sm out, its response on the way) may end for
        `stop_wait_s`, so that what the SMSC took is recorded with its message id and its receipt matches,
        instead of the send being cut off unrecorded and sent again by whoever claims the command next.
        True when run() was cancelled meanwhile (the caller cleans up, then re-raises)."""
        waiting = {w for s in self._in_flight for w in s.outcomes if isinstance(w, asyncio.Future) and not w.done()}
        if waiting and self.config.stop_wait_s > 0:
            try:
                await asyncio.wait(waiting, timeout=self.config.stop_wait_s)
            except asyncio.CancelledError:
                return True
        return False

    async def _claim_loop(self) -> None:
        ahead: tuple[asyncio.Task[_Claim], int] | None = None  # the next claim, already under way
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
                    claim = await claiming
                except (SQLAlchemyError, OSError) as exc:
                    # The database is away: the commands wait in the outbox; keep trying (found by the operations
                    # reliability run, tests/reliability/test_database_outage.py).
                    log.warning("claiming commands failed (%s); trying again", type(exc).__name__)
                    await self._sleep(max(1.0, self.config.poll_s))
                    continue
                claimed = claim.commands
                if not claimed:
                    await self._sleep(self.config.poll_s)
                    continue
                self.stats.claimed += len(claimed)
                for final in claim.finals:
                    self._recorder.add_final(final)
                room = self.config.max_in_flight - len(self._sends) - len(self._in_flight) - len(claimed)
                if len(claimed) == limit and room > 0 and not self._stopping.is_set():
                    # more is due: the next claim runs while these parts are handed to the transport
                    next_limit = min(room, self.config.claim_batch)
                    ahead = (asyncio.ensure_future(self._claim(next_limit)), next_limit)
                for n, (command, bodies) in enumerate(claim.sends, start=1):
                    self._begin_send(command, bodies)
                    if n % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # let the transport's reads and writes in between a large claim
                if len(claimed) < limit:  # nothing else was due: wait for a wake-up rather than claim nothing
                    await self._sleep(self.config.poll_s)
        finally:
            if ahead is not None:
                await self._release(ahead[0])

    async def _renew_leases(self) -> None:
        """Every third of the lease, extend the leases of the sends still under way here (a slow SMSC window,
        a result not recorded yet): only a dead dispatcher's claims run out. While the database is away the
        leases do run out; a command claimed again then is sent as a new attempt."""
        interval_s = self.config.lease_s / 3
        while True:
            await asyncio.sleep(interval_s)
            sends = self._recorder.unrecorded()
            if not sends:
                continue
            until = self._clock() + timedelta(seconds=self.config.lease_s)
            try:
                async with self._gate, self._engine.begin() as conn:
                    await claims.renew(conn, sends, self.config.worker_id, until)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("renewing %d leases failed (%s)", len(sends), type(exc).__name__)

    async def _release(self, claiming: asyncio.Task[_Claim]) -> None:
        """Stopping with a claim under way: let it finish and give its commands back (lease cleared, the
        attempt it counted taken back), so they do not wait out the lease."""
        try:
            claimed = (await asyncio.shield(claiming)).commands
        except Exception:  # the database is away: the lease runs out as after a crash
            return
        if not claimed:
            return
        with contextlib.suppress(SQLAlchemyError, OSError):
            async with self._gate, self._engine.begin() as conn:
                await claims.release(conn, [c.id for c in claimed], self.config.worker_id)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake_claimer.wait()

    async def _claim(self, limit: int) -> _Claim:
        """Claim due commands and, in the same transaction, write the part rows of the attempts about to go
        out: committed before the first SMS leaves, or (the database failing) neither is."""
        now = self._clock()
        until = now + timedelta(seconds=self.config.lease_s)
        async with self._gate, self._engine.begin() as conn:
            claimed = await claims.claim(conn, now=now, until=until, worker=self.config.worker_id, limit=limit)
            claim = self._sort_out(claimed)
            if claim.sends:
                await record_parts(conn, claims.sending_part_rows(claim.sends, now))
        return claim

    def _sort_out(self, claimed: list[Claimed]) -> _Claim:
        """The claimed commands to send, each with its SMS parts, and final states for the others (a
        predecessor that did not succeed, no acknowledgement after the last attempt)."""
        claim = _Claim(claimed, [], [])
        for command in claimed:
            done = command.attempts - 1  # the claim counted the attempt it is for
            if command.dependency_state is not None and command.dependency_state != CommandState.PROCESSED:
                detail = f"command {command.depends_on_id} it depends on ended {command.dependency_state}"
                claim.finals.append(self._final(command, CommandState.CANCELLED, Source.DISPATCHER, detail))
                continue
            if command.state is not CommandState.SENDING:
                decision = after_ack_deadline(command.state, done, self.config.policy)
                if decision.state is not None:
                    claim.finals.append(self._final(command, decision.state, Source.TIMER, decision.detail))
                    continue
            claim.sends.append((command, self.parts_of(command)))
        return claim

    @staticmethod
    def _final(command: Claimed, state: CommandState, source: Source, detail: str) -> Final:
        """A claimed command ended without a send: the attempt its claim counted is taken back."""
        return Final(command.id, command.meter_id, command.kind, state, source, detail, attempts=command.attempts - 1)

    def parts_of(self, command: Claimed) -> list[tuple[bytes, bool]]:
        ports = None
        if command.app_port is not None:
            origin = self.config.origin_port if self.config.origin_port is not None else command.app_port
            ports = mp.ApplicationPorts(command.app_port, origin)
        parts = mp.split_frame(command.frame, reference=command.counter % 256, ports=ports)
        has_udh = len(parts) > 1 or ports is not None
        return [(p, has_udh) for p in parts]

    def _begin_send(self, command: Claimed, bodies: list[tuple[bytes, bool]]) -> None:
        """Submit every part of `command` (attempt `command.attempts`). A transport that hands back futures
        (gateway.smpp) is followed by done-callbacks, without a task per command; one whose submit is a
        coroutine runs in a task."""
        transport = self.transport
        assert transport is not None
        attempt = command.attempts
        self._recorder.sending(command.id, attempt)
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
            self._recorder.not_sent(sending.command.id, sending.attempt)
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
        self, command: Claimed, attempt: int, bodies: list[tuple[bytes, bool]], waits: list[object]
    ) -> None:
        pending = [w for w in waits if isinstance(w, Awaitable)]
        try:
            outcomes = iter(await asyncio.gather(*pending, return_exceptions=True))
        except asyncio.CancelledError:  # stopped: nothing recorded, the lease runs out as after a crash
            self._recorder.not_sent(command.id, attempt)
            raise
        self._record_outcomes(
            command, attempt, bodies, [w if isinstance(w, BaseException) else next(outcomes) for w in waits]
        )

    def _record_outcomes(
        self, command: Claimed, attempt: int, bodies: list[tuple[bytes, bool]], outcomes: Sequence[object]
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
        self._recorder.add_result(SendResult(command, attempt, bodies, message_ids, statuses, error, self._clock()))
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, SubmitTimeout) and outcome.late is not None:
                outcome.late.add_done_callback(
                    functools.partial(self._late_response, command, attempt, bodies, message_ids, error, index)
                )

    def _late_response(
        self,
        command: Claimed,
        attempt: int,
        bodies: list[tuple[bytes, bool]],
        message_ids: list[str | None],
        error: TransportError | None,
        index: int,
        late: asyncio.Future[str],
    ) -> None:
        """A part's submit_sm_resp came after its submit timeout: the SMSC took it, so its message id is
        recorded on the part of that attempt (its receipt is then matched). `message_ids` is the attempt's,
        shared by its parts' late responses."""
        if late.cancelled():
            return
        message_ids[index] = late.result()
        self.stats.submitted_parts += 1
        complete = all(m is not None for m in message_ids)
        statuses: list[int | None] = [0 if m is not None else None for m in message_ids]
        self._recorder.add_result(
            SendResult(
                command,
                attempt,
                bodies,
                list(message_ids),
                statuses,
                None if complete else error,
                self._clock(),
                late_seqs=(index + 1,),
            )
        )


def _severity(error: TransportError) -> int:
    if isinstance(error, InvalidPart):
        return 4
    if isinstance(error, SmscRejected) and not isinstance(error, Throttled):
        return 3
    if isinstance(error, Throttled | NotConnected):
        return 2
    return 1


__all__ = ["DispatchConfig", "DispatchStats", "Dispatcher", "default_worker_id"]
