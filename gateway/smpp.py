"""SMPP 3.4 transport (ESME side, bind_transceiver) on smpplib's PDU classes, driven by asyncio.

How it bridges to asyncio. smpplib 2.2.4 supplies the SMPP 3.4 PDU classes (bind_transceiver, unbind,
enquire_link, generic_nack and their responses go through them, `gateway.pdu_smpp.make_pdu`), but not its
blocking `Client`: this module frames PDUs itself over an asyncio stream. Chosen over a reader thread
running `Client.listen()` that hands PDUs to the loop with `call_soon_threadsafe`, because it removes the
client's pitfalls by construction instead of by locks, and it is faster. The four PDUs of every message
(submit_sm, submit_sm_resp, deliver_sm, deliver_sm_resp) are coded with struct in `gateway.pdu_smpp`,
byte for byte as smpplib codes them (unit-tested against it): smpplib's generic classes cost ~70 µs a PDU
and held the transport below the bare client. Measured by bench/gateway_transport.py (20,000 binary
submits of 100 bytes with receipts, window 64, node-smpp SMSC, 2 cores): bare smpplib Client ~3,300
messages/s, this transport ~6,200 messages/s. Writes made in one turn of the loop leave in one syscall.
- one thread writes, so no write lock is needed and the sequence counter (ours) is never shared;
- bind and unbind are ordinary PDUs on the one read loop, so nothing races `listen()`;
- `readexactly` under a deadline: a stall in the middle of a PDU drops the connection (a resync is never
  guessed), and a length outside 16..64 KiB drops it too;
- error PDUs (generic_nack, any non-zero status) are values for the caller, never exceptions in the reader;
- enquire_link is sent after `enquire_link_interval_s` of silence and its response has a deadline; a
  missing response counts as a dead peer: the connection is dropped and rebuilt;
- an unbind from the SMSC is answered, then the connection is rebuilt;
- a submit only succeeds on its submit_sm_resp: a write into a dead socket cannot pass for a sent message;
- reconnect with exponential backoff (with jitter) after any drop; submits outstanding on the dropped
  connection fail with `NotConnected` so the caller resends the same frame.

Sending: `submit` queues the part and hands back a future; parts leave in order while fewer than `window`
submit_sm are outstanding, paced to `rate_per_s` and backed off after ESME_RTHROTTLED / ESME_RMSGQFUL
(`Throttled`). A submit_sm_resp frees its slot and the next queued part is written from the same
callback (no task wakes in between), and everything a read's PDUs called for is written at the end of
that read, so the window stays full while the event loop also records batches. data_coding 0x04, esm_class 0x40 when
the part carries a UDH, registered_delivery 1, our short number as source with the configured TON/NPI.
TCP_NODELAY is set (without it receipts interleaved with submits stall ~40 ms each).

Receiving: deliver_sm with esm_class type 0x04 (or 0x20, intermediate) is a delivery receipt, read from
the receipted_message_id / message_state / network_error_code TLVs, else from the receipt text; the id is
normalised by `gateway.pdu_smpp.normalise_message_id` (hex vs decimal rule there). Any other deliver_sm is
an MO SMS. Each goes to its callback; a callback that hands back a future (the dispatcher's and the
inbound path's do) is followed by a done-callback, any other runs in a task owned by the transport;
deliver_sm_resp is sent when the callback is done (ESME_RX_T_APPN when it raised or took longer than
`handler_timeout_s`, so the SMSC redelivers: nothing is acknowledged that was not handed over). A receipt
that arrives before its submit_sm_resp is passed on like any other; matching it to its command is the
caller's job.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from smpplib import consts as smpp_consts

from gateway.errors import BindRejected, NotConnected, SmscRejected, SubmitTimeout, Throttled
from gateway.pdu_smpp import (
    DELIVER_SM_RESP_ID,
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE,
    ESM_TYPE_MASK,
    ESM_UDHI,
    ESME_RINVCMDID,
    ESME_ROK,
    ESME_RX_P_APPN,
    ESME_RX_T_APPN,
    GENERIC_NACK_ID,
    HEADER,
    MAX_PDU_LENGTH,
    THROTTLE_STATUSES,
    IdFormat,
    Pdu,
    PduDecodeError,
    ReceiptFormatError,
    SequenceCounter,
    decode_deliver_sm,
    decode_message_id,
    encode_pdu,
    encode_response,
    encode_submit_sm,
    make_pdu,
    normalise_message_id,
    parse_receipt,
    relative_validity,
)
from gateway.ports import (
    InboundHandler,
    InboundSms,
    OutboundSms,
    Receipt,
    ReceiptHandler,
    TransportState,
    check_part,
)

log = logging.getLogger("smsmeter.gateway.smpp")

_SUBMIT_SM_RESP = 0x80000004
_DELIVER_SM = 0x00000005
_ENQUIRE_LINK = 0x00000015
_ENQUIRE_LINK_RESP = 0x80000015
_UNBIND = 0x00000006
_UNBIND_RESP = 0x80000006
_BIND_TRANSCEIVER_RESP = 0x80000009
_WRITE_HIGH_WATER = 256 * 1024
_READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class SmppConfig:
    """How to reach and use one SMSC account. Times in seconds; `rate_per_s` None = unpaced."""

    host: str
    port: int
    system_id: str
    password: str
    source_addr: str  # our dedicated short number
    system_type: str = ""
    source_ton: int = 0x03  # network specific (short number); configure per operator
    source_npi: int = 0x00
    dest_ton: int = 0x01  # international
    dest_npi: int = 0x01  # E.164
    service_type: str = ""
    registered_delivery: int = 0x01
    window: int = 64
    rate_per_s: float | None = None
    throttle_backoff_s: float = 1.0
    throttle_backoff_max_s: float = 30.0
    connect_timeout_s: float = 5.0
    bind_timeout_s: float = 5.0
    submit_timeout_s: float = 10.0
    write_timeout_s: float = 5.0
    read_timeout_s: float = 5.0  # for the rest of a PDU once its header arrived
    enquire_link_interval_s: float = 30.0
    enquire_link_timeout_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    unbind_timeout_s: float = 2.0
    handler_timeout_s: float = 30.0
    resp_id_format: IdFormat = IdFormat.AS_IS  # how this SMSC writes submit_sm_resp message ids
    receipt_id_format: IdFormat = IdFormat.AS_IS  # ... and the ids in its receipts


@dataclass(slots=True)
class SmppStats:
    """Counters for monitoring and tests."""

    binds: int = 0
    drops: int = 0
    last_drop_reason: str = ""
    enquire_link_timeouts: int = 0
    submitted: int = 0
    rejected: int = 0
    throttled: int = 0
    receipts: int = 0
    inbound: int = 0
    malformed: int = 0
    unknown_responses: int = 0


def _expire(fut: asyncio.Future[tuple[int, str]]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _ConnectionLostError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False, slots=True)
class _Submit:
    """One part on its way: waiting for room in the window (`sequence` None), then for its response."""

    sms: OutboundSms
    fut: asyncio.Future[str]
    timer: asyncio.TimerHandle | None = None
    sequence: int | None = None

    def fail(self, exc: BaseException) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.fut.done():
            self.fut.set_exception(exc)


@dataclass(eq=False, slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    counter: SequenceCounter = field(default_factory=SequenceCounter)
    pending: dict[int, _Submit] = field(default_factory=dict)
    alive: bool = True
    last_read: float = 0.0
    enquire: tuple[int, asyncio.Future[None]] | None = None
    unbind_reply: tuple[int, asyncio.Future[None]] | None = None
    outbox: list[bytes] = field(default_factory=list)

    def send(self, pdu: Pdu) -> None:
        self.send_bytes(encode_pdu(pdu))

    def send_bytes(self, data: bytes) -> None:
        """Queue one PDU; everything queued in one turn of the loop leaves in one write (one syscall)."""
        if not self.alive or self.writer.is_closing():
            raise _ConnectionLostError("write on a closed connection")
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outbox.append(data)

    def flush(self) -> None:
        if self.outbox and self.alive and not self.writer.is_closing():
            self.writer.write(b"".join(self.outbox))
        self.outbox.clear()

    def write_backlog(self) -> int:
        return int(self.writer.transport.get_write_buffer_size())

    def fail(self, reason: str) -> None:
        self.flush()
        self.alive = False
        pending, self.pending = self.pending, {}
        for entry in pending.values():
            entry.fail(NotConnected(reason))
        for waiter in (self.enquire, self.unbind_reply):
            if waiter is not None and not waiter[1].done():
                waiter[1].cancel()
        self.writer.close()


class SmppTransport:
    """An SMPP 3.4 transceiver bind to one SMSC; see the module docstring. Use `async with`."""

    def __init__(
        self,
        config: SmppConfig,
        on_receipt: ReceiptHandler,
        on_inbound: InboundHandler,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if config.window < 1:
            raise ValueError("window must be at least 1")
        self.config = config
        self._on_receipt = on_receipt
        self._on_inbound = on_inbound
        self._rng = rng or random.Random()
        self.stats = SmppStats()
        self._state = TransportState.STOPPED
        self._conn: _Connection | None = None
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._handlers: dict[asyncio.Future[Any], float] = {}  # callbacks under way and when they started
        self._sweeper: asyncio.Task[None] | None = None
        self._bound: asyncio.Event | None = None
        self._queue: collections.deque[_Submit] = collections.deque()  # parts waiting for room in the window
        self._pump_timer: asyncio.TimerHandle | None = None
        self._stalled_since: float | None = None
        self._next_send_at = 0.0
        self._throttled_until = 0.0
        self._throttle_level = 0

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def state(self) -> TransportState:
        return self._state

    async def __aenter__(self) -> SmppTransport:
        """Connect and bind. Raises BindRejected when the SMSC refuses the credentials; when the SMSC
        cannot be reached, returns anyway and keeps reconnecting in the background (state RECONNECTING)."""
        if self._supervisor is not None:
            raise RuntimeError("transport already started")
        self._closing = False
        self._bound = asyncio.Event()
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._state = TransportState.CONNECTING
        self._supervisor = asyncio.create_task(self._supervise(first), name="smpp-supervisor")
        self._sweeper = asyncio.create_task(self._sweep_handlers(), name="smpp-handler-sweeper")
        try:
            await first
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._shutdown()

    async def wait_bound(self, timeout_s: float) -> None:
        """Wait until the transport is bound (after a reconnect). Raises NotConnected on timeout."""
        if self._bound is None:
            raise NotConnected("transport not started")
        try:
            async with asyncio.timeout(timeout_s):
                await self._bound.wait()
        except TimeoutError as exc:
            raise NotConnected(f"not bound within {timeout_s} s") from exc

    async def _shutdown(self) -> None:
        self._closing = True
        conn = self._conn
        if conn is not None and conn.alive:
            await self._unbind(conn)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._handlers:
            _done, still = await asyncio.wait(set(self._handlers), timeout=self.config.handler_timeout_s)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still)
        self._state = TransportState.STOPPED

    async def _unbind(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            pdu = make_pdu("unbind", conn.counter)
            waiter: asyncio.Future[None] = loop.create_future()
            conn.unbind_reply = (pdu.sequence, waiter)
            conn.send(pdu)
            async with asyncio.timeout(self.config.unbind_timeout_s):
                await waiter
        except (TimeoutError, _ConnectionLostError, asyncio.CancelledError):
            log.info("no unbind_resp from the SMSC; closing anyway")

    # -- connection supervision ---------------------------------------------------------------------
    async def _supervise(self, first: asyncio.Future[None]) -> None:
        try:
            await self._keep_bound(first)
        except Exception as exc:  # a bug, not a network fault: surface it rather than hang the caller
            log.exception("SMPP supervisor failed")
            if not first.done():
                first.set_exception(exc)
            self._state = TransportState.STOPPED
            raise

    async def _keep_bound(self, first: asyncio.Future[None]) -> None:
        cfg = self.config
        delay = cfg.reconnect_min_s
        assert self._bound is not None
        while not self._closing:
            try:
                conn = await self._connect()
            except BindRejected as exc:
                log.error("SMSC %s:%s refused the bind: %s", cfg.host, cfg.port, exc)
                if not first.done():
                    first.set_exception(exc)
                    return
            except (OSError, TimeoutError, _ConnectionLostError, PduDecodeError) as exc:
                log.warning("cannot bind to SMSC %s:%s: %r", cfg.host, cfg.port, exc)
            else:
                delay = cfg.reconnect_min_s
                self._conn = conn
                self._state = TransportState.BOUND
                self.stats.binds += 1
                self._bound.set()
                if not first.done():
                    first.set_result(None)
                reason = "transport closed"
                try:
                    reason = await self._serve(conn)
                finally:
                    self._bound.clear()
                    self._conn = None
                    conn.fail(reason if not self._closing else "transport closed")
                    self._fail_queue(reason if not self._closing else "transport closed")
                if self._closing:
                    return
                self.stats.drops += 1
                self.stats.last_drop_reason = reason
                log.warning("SMPP connection to %s:%s lost: %s", cfg.host, cfg.port, reason)
            if not first.done():
                first.set_result(None)
            self._state = TransportState.RECONNECTING
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, cfg.reconnect_max_s)

    async def _connect(self) -> _Connection:
        cfg = self.config
        async with asyncio.timeout(cfg.connect_timeout_s):
            reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(reader, writer, last_read=asyncio.get_running_loop().time())
        try:
            bind = make_pdu(
                "bind_transceiver",
                conn.counter,
                system_id=cfg.system_id,
                password=cfg.password,
                system_type=cfg.system_type,
                addr_ton=0,
                addr_npi=0,
                address_range="",
            )
            conn.send(bind)
            async with asyncio.timeout(cfg.bind_timeout_s):
                while True:
                    command_id, status, sequence, _data = await self._read_pdu(conn, cfg.bind_timeout_s)
                    if command_id == _BIND_TRANSCEIVER_RESP and sequence == bind.sequence:
                        if status != ESME_ROK:
                            raise BindRejected(status)
                        return conn
                    if command_id == _ENQUIRE_LINK:
                        conn.send(make_pdu("enquire_link_resp", sequence=sequence))
                    elif command_id == GENERIC_NACK_ID and sequence == bind.sequence:
                        raise BindRejected(status)
                    else:
                        log.info("ignoring PDU 0x%08x before the bind completed", command_id)
        except BaseException:
            conn.fail("bind failed")
            raise

    async def _serve(self, conn: _Connection) -> str:
        """Run the read and keepalive loops until the connection ends; return why it ended."""
        reader = asyncio.create_task(self._read_loop(conn), name="smpp-reader")
        keeper = asyncio.create_task(self._keepalive(conn), name="smpp-keepalive")
        try:
            done, _ = await asyncio.wait({reader, keeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            keeper.cancel()
            await asyncio.gather(reader, keeper, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if isinstance(exc, _ConnectionLostError):
                return exc.reason
            if exc is not None:
                log.error("SMPP loop failed", exc_info=exc)
                return f"internal error: {exc!r}"
        return "loop ended"

    async def _read_pdu(self, conn: _Connection, idle_timeout_s: float) -> tuple[int, int, int, bytes]:
        try:
            async with asyncio.timeout(idle_timeout_s):
                header = await conn.reader.readexactly(16)
        except asyncio.IncompleteReadError as exc:
            raise _ConnectionLostError("connection closed by the SMSC") from exc
        except TimeoutError as exc:
            raise _ConnectionLostError(f"nothing read for {idle_timeout_s} s") from exc
        except ConnectionError as exc:
            raise _ConnectionLostError(f"read failed: {exc!r}") from exc
        length, command_id, status, sequence = HEADER.unpack(header)
        if length < 16 or length > MAX_PDU_LENGTH:
            raise _ConnectionLostError(f"bad command_length {length}: stream out of step")
        data = header
        if length > 16:
            try:
                async with asyncio.timeout(self.config.read_timeout_s):
                    data += await conn.reader.readexactly(length - 16)
            except asyncio.IncompleteReadError as exc:
                raise _ConnectionLostError("connection closed inside a PDU") from exc
            except TimeoutError as exc:
                raise _ConnectionLostError("partial PDU: rest not read in time") from exc
            except ConnectionError as exc:
                raise _ConnectionLostError(f"read failed: {exc!r}") from exc
        conn.last_read = asyncio.get_running_loop().time()
        return command_id, status, sequence, data

    async def _read_loop(self, conn: _Connection) -> None:
        """Read what the socket has, dispatch every whole PDU in it; keep the rest for the next read.

        Waiting for a new PDU is bounded by the keepalive's own deadline; waiting for the rest of a
        started PDU by read_timeout_s, after which the connection is dropped (never resynchronised)."""
        cfg = self.config
        idle_limit_s = cfg.enquire_link_interval_s + cfg.enquire_link_timeout_s + cfg.read_timeout_s
        loop = asyncio.get_running_loop()
        buf = bytearray()
        unpack = HEADER.unpack_from
        while True:
            partial = bool(buf)
            try:
                async with asyncio.timeout(cfg.read_timeout_s if partial else idle_limit_s):
                    chunk = await conn.reader.read(_READ_CHUNK)
            except TimeoutError as exc:
                raise _ConnectionLostError(
                    "partial PDU: rest not read in time" if partial else f"nothing read for {idle_limit_s} s"
                ) from exc
            except ConnectionError as exc:
                raise _ConnectionLostError(f"read failed: {exc!r}") from exc
            if not chunk:
                raise _ConnectionLostError(
                    "connection closed inside a PDU" if partial else "connection closed by the SMSC"
                )
            conn.last_read = loop.time()
            buf += chunk
            start = 0
            end = len(buf)
            while end - start >= 16:
                length, command_id, status, sequence = unpack(buf, start)
                if length < 16 or length > MAX_PDU_LENGTH:
                    raise _ConnectionLostError(f"bad command_length {length}: stream out of step")
                if end - start < length:
                    break
                self._dispatch(conn, command_id, status, sequence, bytes(buf[start : start + length]))
                start += length
            del buf[:start]
            # what this chunk's PDUs called for (responses, the submits that took the freed window slots)
            # leaves now, not after whatever else is ready in the loop (a recorder batch can take 20 ms)
            conn.flush()

    async def _keepalive(self, conn: _Connection) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        while True:
            idle = loop.time() - conn.last_read
            if idle < cfg.enquire_link_interval_s:
                await asyncio.sleep(cfg.enquire_link_interval_s - idle)
                continue
            pdu = make_pdu("enquire_link", conn.counter)
            waiter: asyncio.Future[None] = loop.create_future()
            conn.enquire = (pdu.sequence, waiter)
            conn.send(pdu)
            try:
                async with asyncio.timeout(cfg.enquire_link_timeout_s):
                    await waiter
            except TimeoutError as exc:
                self.stats.enquire_link_timeouts += 1
                raise _ConnectionLostError(
                    f"no enquire_link_resp within {cfg.enquire_link_timeout_s} s: peer is dead"
                ) from exc
            finally:
                conn.enquire = None
            conn.last_read = loop.time()

    # -- inbound PDUs -------------------------------------------------------------------------------
    def _dispatch(self, conn: _Connection, command_id: int, status: int, sequence: int, data: bytes) -> None:
        if command_id == _SUBMIT_SM_RESP:
            entry = conn.pending.pop(sequence, None)
            if entry is None or entry.fut.done():
                self.stats.unknown_responses += 1
                log.warning("submit_sm_resp for unknown sequence %d (status 0x%08x)", sequence, status)
            else:
                self._settle(entry, status, decode_message_id(data) if status == ESME_ROK else "")
            if self._queue:
                self._pump()  # the freed slot goes to the next part at once, in this same turn of the loop
            return
        if command_id == _DELIVER_SM:
            self._on_deliver_sm(conn, sequence, data)
            return
        if command_id == _ENQUIRE_LINK:
            conn.send(make_pdu("enquire_link_resp", sequence=sequence))
            return
        if command_id == _ENQUIRE_LINK_RESP:
            if conn.enquire is not None and conn.enquire[0] == sequence and not conn.enquire[1].done():
                conn.enquire[1].set_result(None)
            return
        if command_id == GENERIC_NACK_ID:
            entry = conn.pending.pop(sequence, None)
            if entry is not None and not entry.fut.done():
                self._settle(entry, status or smpp_consts.SMPP_ESME_RSYSERR, "")
                if self._queue:
                    self._pump()
            else:
                log.warning("generic_nack status 0x%08x for sequence %d", status, sequence)
            return
        if command_id == _UNBIND:
            conn.send(make_pdu("unbind_resp", sequence=sequence))
            raise _ConnectionLostError("unbound by the SMSC")
        if command_id == _UNBIND_RESP:
            if conn.unbind_reply is not None and not conn.unbind_reply[1].done():
                conn.unbind_reply[1].set_result(None)
            return
        if command_id & 0x80000000:
            log.info("ignoring response PDU 0x%08x seq %d status 0x%08x", command_id, sequence, status)
            return
        # A request we do not serve (query_sm, data_sm, alert_notification, outbind, unknown ids).
        if command_id == 0x00000102:  # alert_notification has no response
            log.info("alert_notification ignored")
            return
        log.warning("answering unsupported request 0x%08x with generic_nack", command_id)
        conn.send(make_pdu("generic_nack", sequence=sequence, status=ESME_RINVCMDID))

    def _on_deliver_sm(self, conn: _Connection, sequence: int, data: bytes) -> None:
        try:
            pdu = decode_deliver_sm(data)
        except PduDecodeError as exc:
            self.stats.malformed += 1
            log.warning("unreadable deliver_sm (%s): %s", exc.reason, data.hex())
            conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, ESME_RX_P_APPN))
            return
        event: Receipt | InboundSms
        if pdu.esm_class & ESM_TYPE_MASK in (ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE):
            try:
                event = parse_receipt(
                    receipted_message_id=pdu.receipted_message_id,
                    message_state=pdu.message_state,
                    network_error_code=pdu.network_error_code,
                    text=pdu.body,
                    id_format=self.config.receipt_id_format,
                )
            except ReceiptFormatError as exc:  # nothing to hand on, and a redelivery would not be better
                self.stats.malformed += 1
                log.warning("%s; deliver_sm %s", exc, data.hex())
                conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, ESME_ROK))
                return
            self.stats.receipts += 1
        else:
            self.stats.inbound += 1
            event = InboundSms(
                source=pdu.source_addr,
                destination=pdu.destination_addr,
                body=pdu.body,
                has_udh=bool(pdu.esm_class & ESM_UDHI),
                data_coding=pdu.data_coding,
                received_at=datetime.now(UTC),
            )
        loop = asyncio.get_running_loop()
        try:
            waiting = self._on_receipt(event) if isinstance(event, Receipt) else self._on_inbound(event)
        except Exception:  # the handler's failure must not kill the connection; the SMSC redelivers
            log.exception("deliver_sm handler failed; answering ESME_RX_T_APPN")
            with contextlib.suppress(_ConnectionLostError):
                conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, ESME_RX_T_APPN))
            return
        if isinstance(waiting, asyncio.Future):
            # a handler that hands back a future (the dispatcher's and the inbound path's do) is awaited
            # by a callback: no task per message
            self._handlers[waiting] = loop.time()
            waiting.add_done_callback(functools.partial(self._answer_deliver_sm, conn, sequence))
            return
        task = loop.create_task(self._deliver(conn, sequence, waiting))
        self._handlers[task] = loop.time()
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Future[Any]) -> None:
        self._handlers.pop(task, None)

    def _answer_deliver_sm(self, conn: _Connection, sequence: int, waiting: asyncio.Future[Any]) -> None:
        self._handlers.pop(waiting, None)
        status = ESME_ROK
        if waiting.cancelled():
            if self._closing:
                return
            log.error("deliver_sm handler took over %s s; answering ESME_RX_T_APPN", self.config.handler_timeout_s)
            status = ESME_RX_T_APPN
        elif (exc := waiting.exception()) is not None:
            log.error("deliver_sm handler failed; answering ESME_RX_T_APPN", exc_info=exc)
            status = ESME_RX_T_APPN
        if conn.alive:
            with contextlib.suppress(_ConnectionLostError):
                conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, status))

    async def _deliver(self, conn: _Connection, sequence: int, waiting: Awaitable[None]) -> None:
        """Await one receipt / MO callback, then answer the deliver_sm. The callback's time is
        bounded by `_sweep_handlers` (one sweeper, not a timer per message)."""
        status = ESME_ROK
        try:
            await waiting
        except asyncio.CancelledError:
            if self._closing:
                raise
            log.error("deliver_sm handler took over %s s; answering ESME_RX_T_APPN", self.config.handler_timeout_s)
            status = ESME_RX_T_APPN
        except Exception:  # the handler's failure must not kill the connection; the SMSC redelivers
            log.exception("deliver_sm handler failed; answering ESME_RX_T_APPN")
            status = ESME_RX_T_APPN
        if conn.alive:
            with contextlib.suppress(_ConnectionLostError):
                conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, status))

    async def _sweep_handlers(self) -> None:
        """Cancel callbacks that run longer than handler_timeout_s (their deliver_sm gets a temporary error)."""
        limit = self.config.handler_timeout_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = loop.time()
            overdue = []
            for task, started in self._handlers.items():  # in the order they started
                if now - started <= limit:
                    break
                overdue.append(task)
            for task in overdue:
                if not task.done():
                    task.cancel()

    # -- submitting ---------------------------------------------------------------------------------
    def submit(self, sms: OutboundSms) -> asyncio.Future[str]:
        """Send one SMS part; the future gives the SMSC's message id (normalised) once it is accepted.

        Raises (or the future fails with) NotConnected (not bound, or the connection dropped while
        waiting: resend), SubmitTimeout (no room in the window, or no submit_sm_resp, within
        submit_timeout_s), Throttled (resend later), SmscRejected(status), InvalidPart (does not fit one SMS).

        Parts wait in one queue for room in the window; a submit_sm_resp frees its slot and the next part
        is written from the same callback (no task or semaphore wake-up in between, so the window stays
        full while the event loop is busy with other work).
        """
        check_part(sms)
        conn = self._conn
        if conn is None or not conn.alive:
            raise NotConnected(self._state.value)
        loop = asyncio.get_running_loop()
        entry = _Submit(sms, loop.create_future())
        self._queue.append(entry)
        if len(conn.pending) < self.config.window:
            self._pump()
        if entry.sequence is None and not entry.fut.done():
            entry.timer = loop.call_later(self.config.submit_timeout_s, self._queue_timeout, entry)
        return entry.fut

    def _pump(self) -> None:
        """Write queued parts while the window has room (and pacing allows)."""
        conn = self._conn
        queue = self._queue
        if conn is None or not conn.alive:
            return
        cfg = self.config
        loop = asyncio.get_running_loop()
        while queue and len(conn.pending) < cfg.window:
            entry = queue[0]
            if entry.fut.done():  # its caller gave up (cancelled)
                queue.popleft()
                if entry.timer is not None:
                    entry.timer.cancel()
                continue
            if cfg.rate_per_s is not None or self._throttle_level:
                now = loop.time()
                at = max(now, self._next_send_at, self._throttled_until)
                if at > now:
                    self._pump_at(at)
                    return
                self._next_send_at = at + (1.0 / cfg.rate_per_s if cfg.rate_per_s else 0.0)
            if conn.write_backlog() > _WRITE_HIGH_WATER:  # the SMSC does not read: wait, then give up on it
                now = loop.time()
                if self._stalled_since is None:
                    self._stalled_since = now
                elif now - self._stalled_since > cfg.write_timeout_s:
                    log.warning("SMPP writes stalled for %s s; dropping the connection", cfg.write_timeout_s)
                    conn.fail("write stalled")
                    return
                self._pump_at(now + 0.05)
                return
            self._stalled_since = None
            queue.popleft()
            if entry.timer is not None:
                entry.timer.cancel()
            self._write_submit(conn, entry, loop)

    def _pump_at(self, at: float) -> None:
        if self._pump_timer is None:
            self._pump_timer = asyncio.get_running_loop().call_at(at, self._pump_from_timer)

    def _pump_from_timer(self) -> None:
        self._pump_timer = None
        self._pump()

    def _write_submit(self, conn: _Connection, entry: _Submit, loop: asyncio.AbstractEventLoop) -> None:
        cfg = self.config
        sms = entry.sms
        sequence = conn.counter.next_sequence()
        try:
            pdu = encode_submit_sm(
                sequence,
                service_type=cfg.service_type,
                source_ton=cfg.source_ton,
                source_npi=cfg.source_npi,
                source_addr=cfg.source_addr,
                dest_ton=cfg.dest_ton,
                dest_npi=cfg.dest_npi,
                destination_addr=sms.destination,
                esm_class=ESM_UDHI if sms.has_udh else 0x00,
                protocol_id=sms.protocol_id,
                validity_period=relative_validity(sms.validity_s) if sms.validity_s else "",
                registered_delivery=cfg.registered_delivery,
                data_coding=sms.data_coding,
                short_message=sms.body,
            )
            conn.send_bytes(pdu)
        except _ConnectionLostError as exc:
            entry.fail(NotConnected(exc.reason))
            return
        except Exception as exc:  # a part smpplib cannot code: the caller's error, not the connection's
            entry.fail(exc)
            return
        entry.sequence = sequence
        conn.pending[sequence] = entry
        entry.timer = loop.call_later(cfg.submit_timeout_s, self._response_timeout, conn, sequence)

    def _queue_timeout(self, entry: _Submit) -> None:
        if entry.sequence is None and not entry.fut.done():
            with contextlib.suppress(ValueError):
                self._queue.remove(entry)
            entry.fut.set_exception(SubmitTimeout(self.config.submit_timeout_s))

    def _response_timeout(self, conn: _Connection, sequence: int) -> None:
        entry = conn.pending.pop(sequence, None)
        if entry is not None and not entry.fut.done():
            entry.fut.set_exception(SubmitTimeout(self.config.submit_timeout_s))
        if self._queue:
            self._pump()

    def _fail_queue(self, reason: str) -> None:
        queue, self._queue = self._queue, collections.deque()
        for entry in queue:
            entry.fail(NotConnected(reason))
        if self._pump_timer is not None:
            self._pump_timer.cancel()
            self._pump_timer = None

    def _settle(self, entry: _Submit, status: int, message_id: str) -> None:
        """A submit_sm_resp (or generic_nack) for `entry`: its future gets the id or the typed error."""
        if entry.timer is not None:
            entry.timer.cancel()
        fut = entry.fut
        if status == ESME_ROK:
            self._throttle_level = 0
            try:
                normalised = normalise_message_id(message_id, self.config.resp_id_format)
            except Exception as exc:
                fut.set_exception(exc)
                return
            self.stats.submitted += 1
            fut.set_result(normalised)
            return
        name = smpp_consts.DESCRIPTIONS.get(status, "")
        if status in THROTTLE_STATUSES:
            self._throttled()
            fut.set_exception(Throttled(status, name))
            return
        self.stats.rejected += 1
        fut.set_exception(SmscRejected(status, name))

    def _throttled(self) -> None:
        cfg = self.config
        self.stats.throttled += 1
        self._throttle_level += 1
        backoff = min(cfg.throttle_backoff_s * 2 ** (self._throttle_level - 1), cfg.throttle_backoff_max_s)
        self._throttled_until = max(self._throttled_until, asyncio.get_running_loop().time() + backoff)
