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

Sending: a window of `window` outstanding submit_sm (a future per sequence number), paced to `rate_per_s`
and backed off after ESME_RTHROTTLED / ESME_RMSGQFUL (`Throttled`). data_coding 0x04, esm_class 0x40 when
the part carries a UDH, registered_delivery 1, our short number as source with the configured TON/NPI.
TCP_NODELAY is set (without it receipts interleaved with submits stall ~40 ms each).

Receiving: deliver_sm with esm_class type 0x04 (or 0x20, intermediate) is a delivery receipt, read from
the receipted_message_id / message_state / network_error_code TLVs, else from the receipt text; the id is
normalised by `gateway.pdu_smpp.normalise_message_id` (hex vs decimal rule there). Any other deliver_sm is
an MO SMS. Each goes to its callback in a task owned by the transport; deliver_sm_resp is sent when the
callback returned (ESME_RX_T_APPN when it raised or took longer than `handler_timeout_s`, so the SMSC
redelivers: nothing is acknowledged that was not handed over). A receipt that arrives before its
submit_sm_resp is passed on like any other; matching it to its command is the caller's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime

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


class _ConnectionLostError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False, slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    counter: SequenceCounter = field(default_factory=SequenceCounter)
    pending: dict[int, asyncio.Future[tuple[int, str]]] = field(default_factory=dict)
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

    async def drain(self, timeout_s: float) -> None:
        transport = self.writer.transport
        if transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            try:
                async with asyncio.timeout(timeout_s):
                    await self.writer.drain()
            except (TimeoutError, ConnectionError) as exc:
                raise _ConnectionLostError(f"write stalled: {exc!r}") from exc

    def fail(self, reason: str) -> None:
        self.flush()
        self.alive = False
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(NotConnected(reason))
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
        self._handlers: dict[asyncio.Task[None], float] = {}  # callback tasks and when they started
        self._sweeper: asyncio.Task[None] | None = None
        self._bound: asyncio.Event | None = None
        self._window: asyncio.Semaphore | None = None
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
        self._window = asyncio.Semaphore(self.config.window)
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
                "bind_transceiver", conn.counter, system_id=cfg.system_id, password=cfg.password,
                system_type=cfg.system_type, addr_ton=0, addr_npi=0, address_range="",
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
                    "connection closed inside a PDU" if partial else "connection closed by the SMSC")
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
                self._dispatch(conn, command_id, status, sequence, bytes(buf[start:start + length]))
                start += length
            del buf[:start]

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
                    f"no enquire_link_resp within {cfg.enquire_link_timeout_s} s: peer is dead") from exc
            finally:
                conn.enquire = None
            conn.last_read = loop.time()

    # -- inbound PDUs -------------------------------------------------------------------------------
    def _dispatch(self, conn: _Connection, command_id: int, status: int, sequence: int, data: bytes) -> None:
        if command_id == _SUBMIT_SM_RESP:
            fut = conn.pending.pop(sequence, None)
            if fut is None or fut.done():
                self.stats.unknown_responses += 1
                log.warning("submit_sm_resp for unknown sequence %d (status 0x%08x)", sequence, status)
                return
            fut.set_result((status, decode_message_id(data) if status == ESME_ROK else ""))
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
            fut = conn.pending.pop(sequence, None)
            if fut is not None and not fut.done():
                fut.set_result((status or smpp_consts.SMPP_ESME_RSYSERR, ""))
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
        task = loop.create_task(self._deliver(conn, sequence, event))
        self._handlers[task] = loop.time()
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._handlers.pop(task, None)

    async def _deliver(self, conn: _Connection, sequence: int, event: Receipt | InboundSms) -> None:
        """Hand one receipt / MO to its callback, then answer the deliver_sm. The callback's time is
        bounded by `_sweep_handlers` (one sweeper, not a timer per message)."""
        status = ESME_ROK
        try:
            if isinstance(event, Receipt):
                await self._on_receipt(event)
            else:
                await self._on_inbound(event)
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
            for task, started in list(self._handlers.items()):
                if now - started > limit and not task.done():
                    task.cancel()

    # -- submitting ---------------------------------------------------------------------------------
    async def submit(self, sms: OutboundSms) -> str:
        """Send one SMS part; return the SMSC's message id (normalised) once it is accepted.

        Raises NotConnected (not bound, or the connection dropped while waiting: resend), SubmitTimeout
        (no submit_sm_resp within submit_timeout_s), Throttled (resend later), SmscRejected(status),
        InvalidPart (does not fit one SMS).
        """
        cfg = self.config
        check_part(sms)
        conn = self._conn
        if conn is None or not conn.alive or self._window is None:
            raise NotConnected(self._state.value)
        if self._window.locked():
            try:
                async with asyncio.timeout(cfg.submit_timeout_s):
                    await self._window.acquire()
            except TimeoutError as exc:
                raise SubmitTimeout(cfg.submit_timeout_s) from exc
        else:
            await self._window.acquire()  # a free slot: returns at once
        try:
            await self._pace()
            conn = self._conn
            if conn is None or not conn.alive:
                raise NotConnected(self._state.value)
            loop = asyncio.get_running_loop()
            sequence = conn.counter.next_sequence()
            pdu = encode_submit_sm(
                sequence,
                service_type=cfg.service_type,
                source_ton=cfg.source_ton, source_npi=cfg.source_npi, source_addr=cfg.source_addr,
                dest_ton=cfg.dest_ton, dest_npi=cfg.dest_npi, destination_addr=sms.destination,
                esm_class=ESM_UDHI if sms.has_udh else 0x00,
                protocol_id=sms.protocol_id,
                validity_period=relative_validity(sms.validity_s) if sms.validity_s else "",
                registered_delivery=cfg.registered_delivery,
                data_coding=sms.data_coding,
                short_message=sms.body,
            )
            fut: asyncio.Future[tuple[int, str]] = loop.create_future()
            conn.pending[sequence] = fut
            try:
                conn.send_bytes(pdu)
                await conn.drain(cfg.write_timeout_s)
                async with asyncio.timeout(cfg.submit_timeout_s):
                    status, message_id = await fut
            except _ConnectionLostError as exc:
                raise NotConnected(exc.reason) from exc
            except TimeoutError as exc:
                raise SubmitTimeout(cfg.submit_timeout_s) from exc
            finally:
                conn.pending.pop(sequence, None)
        finally:
            self._window.release()
        if status == ESME_ROK:
            self._throttle_level = 0
            self.stats.submitted += 1
            return normalise_message_id(message_id, cfg.resp_id_format)
        name = smpp_consts.DESCRIPTIONS.get(status, "")
        if status in THROTTLE_STATUSES:
            self._throttled()
            raise Throttled(status, name)
        self.stats.rejected += 1
        raise SmscRejected(status, name)

    async def _pace(self) -> None:
        rate = self.config.rate_per_s
        if rate is None and self._throttle_level == 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = max(now, self._next_send_at, self._throttled_until)
        self._next_send_at = at + (1.0 / rate if rate else 0.0)
        if at > now:
            await asyncio.sleep(at - now)

    def _throttled(self) -> None:
        cfg = self.config
        self.stats.throttled += 1
        self._throttle_level += 1
        backoff = min(cfg.throttle_backoff_s * 2 ** (self._throttle_level - 1), cfg.throttle_backoff_max_s)
        self._throttled_until = max(self._throttled_until, asyncio.get_running_loop().time() + backoff)
