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
  a submit_sm_resp after the submit timeout still hands its message id on (`SubmitTimeout.late`,
  `gateway.smpp_window`), since the SMSC took that part and will send its receipt;
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
normalised by `gateway.smpp_receipts.normalise_message_id` (hex vs decimal rule there). Any other deliver_sm is
an MO SMS. Each goes to its callback; a callback that hands back a future (the dispatcher's and the
inbound path's do) is followed by a done-callback, any other runs in a task owned by the transport;
deliver_sm_resp is sent when the callback is done (ESME_RX_T_APPN when it raised or took longer than
`handler_timeout_s`, so the SMSC redelivers: nothing is acknowledged that was not handed over). A receipt
that arrives before its submit_sm_resp is passed on like any other; matching it to its command is the
caller's job.

Rooms: this module is the session (connect, bind, read loop, keepalive, unbind, reconnect) and routes each
PDU read; `gateway.smpp_link` holds the settings, the connection and the framing, `gateway.smpp_window` the
submit window, pacing and throttling, `gateway.smpp_deliveries` the deliver_sm side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket

from smpplib import consts as smpp_consts

from gateway.errors import BindRejected, NotConnected
from gateway.pdu_smpp import (
    ESME_RINVCMDID,
    ESME_ROK,
    GENERIC_NACK_ID,
    HEADER,
    MAX_PDU_LENGTH,
    PduDecodeError,
    decode_message_id,
    make_pdu,
)
from gateway.ports import (
    InboundHandler,
    OutboundSms,
    ReceiptHandler,
    TransportState,
)
from gateway.smpp_deliveries import Deliveries
from gateway.smpp_link import Link, LinkLost, SmppConfig, SmppStats, read_pdu
from gateway.smpp_window import SubmitWindow

log = logging.getLogger("smsmeter.gateway.smpp")

_SUBMIT_SM_RESP = 0x80000004
_DELIVER_SM = 0x00000005
_ENQUIRE_LINK = 0x00000015
_ENQUIRE_LINK_RESP = 0x80000015
_UNBIND = 0x00000006
_UNBIND_RESP = 0x80000006
_BIND_TRANSCEIVER_RESP = 0x80000009
_READ_CHUNK = 256 * 1024


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
        self._rng = rng or random.Random()
        self.stats = SmppStats()
        self._state = TransportState.STOPPED
        self._conn: Link | None = None
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._bound: asyncio.Event | None = None
        self._window = SubmitWindow(config, self.stats)
        self._deliveries = Deliveries(config, self.stats, on_receipt, on_inbound)

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def state(self) -> TransportState:
        return self._state

    async def __aenter__(self) -> SmppTransport:
        """Connect and bind. Raises BindRejected when the SMSC refuses the credentials; when the SMSC
        cannot be reached, returns anyway and keeps reconnecting in the background (state RECONNECTING)."""
        if self._supervisor is not None:
            raise RuntimeError("transport already started")
        self._closing = self._deliveries.closing = False
        self._bound = asyncio.Event()
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._state = TransportState.CONNECTING
        self._supervisor = asyncio.create_task(self._supervise(first), name="smpp-supervisor")
        self._sweeper = asyncio.create_task(self._deliveries.sweep(), name="smpp-handler-sweeper")
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
        self._closing = self._deliveries.closing = True
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
        await self._deliveries.drain()
        self._state = TransportState.STOPPED

    async def _unbind(self, conn: Link) -> None:
        loop = asyncio.get_running_loop()
        try:
            pdu = make_pdu("unbind", conn.counter)
            waiter: asyncio.Future[None] = loop.create_future()
            conn.unbind_reply = (pdu.sequence, waiter)
            conn.send(pdu)
            async with asyncio.timeout(self.config.unbind_timeout_s):
                await waiter
        except (TimeoutError, LinkLost, asyncio.CancelledError):
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
            except (OSError, TimeoutError, LinkLost, PduDecodeError) as exc:
                log.warning("cannot bind to SMSC %s:%s: %r", cfg.host, cfg.port, exc)
            else:
                delay = cfg.reconnect_min_s
                self._conn = self._window.conn = conn
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
                    self._conn = self._window.conn = None
                    conn.fail(reason if not self._closing else "transport closed")
                    self._window.fail_queue(reason if not self._closing else "transport closed")
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

    async def _connect(self) -> Link:
        cfg = self.config
        async with asyncio.timeout(cfg.connect_timeout_s):
            reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Link(reader, writer, last_read=asyncio.get_running_loop().time())
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
                    command_id, status, sequence, _data = await read_pdu(conn, cfg.bind_timeout_s, cfg.read_timeout_s)
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

    async def _serve(self, conn: Link) -> str:
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
            if isinstance(exc, LinkLost):
                return exc.reason
            if exc is not None:
                log.error("SMPP loop failed", exc_info=exc)
                return f"internal error: {exc!r}"
        return "loop ended"

    async def _read_loop(self, conn: Link) -> None:
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
                raise LinkLost(
                    "partial PDU: rest not read in time" if partial else f"nothing read for {idle_limit_s} s"
                ) from exc
            except ConnectionError as exc:
                raise LinkLost(f"read failed: {exc!r}") from exc
            if not chunk:
                raise LinkLost("connection closed inside a PDU" if partial else "connection closed by the SMSC")
            conn.last_read = loop.time()
            buf += chunk
            start = 0
            end = len(buf)
            while end - start >= 16:
                length, command_id, status, sequence = unpack(buf, start)
                if length < 16 or length > MAX_PDU_LENGTH:
                    raise LinkLost(f"bad command_length {length}: stream out of step")
                if end - start < length:
                    break
                self._dispatch(conn, command_id, status, sequence, bytes(buf[start : start + length]))
                start += length
            del buf[:start]
            # what this chunk's PDUs called for (responses, the submits that took the freed window slots)
            # leaves now, not after whatever else is ready in the loop (a recorder batch can take 20 ms)
            conn.flush()

    async def _keepalive(self, conn: Link) -> None:
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
                raise LinkLost(f"no enquire_link_resp within {cfg.enquire_link_timeout_s} s: peer is dead") from exc
            finally:
                conn.enquire = None
            conn.last_read = loop.time()

    # -- inbound PDUs -------------------------------------------------------------------------------
    def _dispatch(self, conn: Link, command_id: int, status: int, sequence: int, data: bytes) -> None:
        if command_id == _SUBMIT_SM_RESP:
            message_id = decode_message_id(data) if status == ESME_ROK else ""
            if not self._window.on_response(conn, sequence, status, message_id):
                self.stats.unknown_responses += 1
                log.warning("submit_sm_resp for unknown sequence %d (status 0x%08x)", sequence, status)
            return
        if command_id == _DELIVER_SM:
            self._deliveries.on_deliver_sm(conn, sequence, data)
            return
        if command_id == _ENQUIRE_LINK:
            conn.send(make_pdu("enquire_link_resp", sequence=sequence))
            return
        if command_id == _ENQUIRE_LINK_RESP:
            if conn.enquire is not None and conn.enquire[0] == sequence and not conn.enquire[1].done():
                conn.enquire[1].set_result(None)
            return
        if command_id == GENERIC_NACK_ID:
            if not self._window.on_response(conn, sequence, status or smpp_consts.SMPP_ESME_RSYSERR, ""):
                log.warning("generic_nack status 0x%08x for sequence %d", status, sequence)
            return
        if command_id == _UNBIND:
            conn.send(make_pdu("unbind_resp", sequence=sequence))
            raise LinkLost("unbound by the SMSC")
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

    # -- submitting ---------------------------------------------------------------------------------
    def submit(self, sms: OutboundSms) -> asyncio.Future[str]:
        """Send one SMS part; the future gives the SMSC's message id (normalised) once it is accepted.

        Raises (or the future fails with) NotConnected (not bound, or the connection dropped while
        waiting: resend), SubmitTimeout (no room in the window, or no submit_sm_resp, within
        submit_timeout_s), Throttled (resend later), SmscRejected(status), InvalidPart (does not fit one SMS).
        Parts wait for room in the window (`gateway.smpp_window`)."""
        return self._window.submit(sms, self._state.value)


__all__ = ["SmppConfig", "SmppStats", "SmppTransport"]
