"""The simulated SMS network behind a real SMPP 3.4 port: an SMSC for demos and load tests
(`smsmeter simulate`), on asyncio.

It accepts bind_transmitter / bind_receiver / bind_transceiver (SMPP 3.4 §4.1; credentials checked when
configured), answers submit_sm (§4.4) through a `gateway.simulator.SimulatedSmsc` (which decides the
message id, loss, receipt and the handsets' replies), and sends delivery receipts (esm_class 0x04, the
receipt text plus receipted_message_id / message_state TLVs) and replies (MO) as deliver_sm (§4.6) to a
session bound to receive. What finds no such session waits and goes to the next one that binds.
enquire_link and unbind are answered; anything else gets a generic_nack. PDUs of every message are
coded with `gateway.pdu_smpp`'s struct codecs; binds through smpplib's classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.errors import SmscRejected
from gateway.pdu_smpp import (
    DELIVER_SM_RESP_ID,
    ESM_DELIVERY_RECEIPT,
    ESM_UDHI,
    ESME_RINVCMDID,
    ESME_ROK,
    HEADER,
    MAX_PDU_LENGTH,
    SUBMIT_SM_ID,
    SUBMIT_SM_RESP_ID,
    PduDecodeError,
    SequenceCounter,
    decode_pdu,
    decode_short_message,
    encode_deliver_sm,
    encode_pdu,
    encode_response,
    make_pdu,
    text_field,
)
from gateway.ports import InboundSms, OutboundSms, Receipt, ReceiptState
from gateway.simulator import SimulatedSmsc
from gateway.smpp_receipts import NUMBER_BY_STATE, receipt_text

log = logging.getLogger("smsmeter.gateway.smpp_server")

ESME_RINVBNDSTS = 0x00000004
ESME_RALYBND = 0x00000005
ESME_RBINDFAIL = 0x0000000D
ESME_RSYSERR = 0x00000008
_BINDS = {0x00000001: "bind_receiver", 0x00000002: "bind_transmitter", 0x00000009: "bind_transceiver"}
_ENQUIRE_LINK = 0x00000015
_UNBIND = 0x00000006
_READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class SmppServerConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port (see `SmppSimulatorServer.port`)
    system_id: str | None = None  # None: any system_id and password bind
    password: str | None = None
    server_system_id: str = "smsmeter-sim"
    idle_timeout_s: float = 300.0  # a silent client is dropped after this long


@dataclass(eq=False)
class _Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    counter: SequenceCounter = field(default_factory=SequenceCounter)
    mode: str = ""  # "", "bind_transmitter", "bind_receiver", "bind_transceiver"
    outbox: list[bytes] = field(default_factory=list)
    closed: bool = False

    @property
    def can_send(self) -> bool:
        return self.mode in ("bind_transmitter", "bind_transceiver")

    @property
    def can_receive(self) -> bool:
        return not self.closed and self.mode in ("bind_receiver", "bind_transceiver")

    def send(self, data: bytes) -> None:
        if self.closed or self.writer.is_closing():
            return
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outbox.append(data)

    def flush(self) -> None:
        if self.outbox and not self.closed and not self.writer.is_closing():
            self.writer.write(b"".join(self.outbox))
        self.outbox.clear()


class SmppSimulatorServer:
    """`async with SmppSimulatorServer(config, simulator) as server:` listens on `server.port`."""

    def __init__(self, config: SmppServerConfig, simulator: SimulatedSmsc) -> None:
        self.config = config
        self.simulator = simulator
        self._server: asyncio.Server | None = None
        self._sessions: dict[_Session, None] = {}  # in the order they connected
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: list[bytes] = []  # deliver_sm bodies (sequence filled in on sending) with no receiver
        self.port = 0

    async def __aenter__(self) -> SmppSimulatorServer:
        self._server = await asyncio.start_server(self._serve, self.config.host, self.config.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("simulated SMSC listening on %s:%d", self.config.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.closed = True
            session.writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.simulator.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    def inject_mo(self, sms: InboundSms) -> None:
        """Deliver an SMS from a handset to the bound client (not in answer to anything)."""
        self.simulator.inject(sms, self._send_mo)

    async def drop_connections(self) -> None:
        """Close every client connection abruptly (for tests of reconnection)."""
        for session in list(self._sessions):
            session.closed = True
            session.writer.transport.abort()

    # -- connections --------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _Session(reader, writer)
        self._sessions[session] = None
        try:
            await self._read_loop(session)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.info("client connection ended: %r", exc)
        finally:
            session.closed = True
            self._sessions.pop(session, None)
            writer.close()
            self._tasks.discard(task)

    async def _read_loop(self, session: _Session) -> None:
        buf = bytearray()
        while not session.closed:
            async with asyncio.timeout(self.config.idle_timeout_s):
                chunk = await session.reader.read(_READ_CHUNK)
            if not chunk:
                return
            buf += chunk
            start = 0
            while len(buf) - start >= 16:
                length, command_id, status, sequence = HEADER.unpack_from(buf, start)
                if length < 16 or length > MAX_PDU_LENGTH:
                    log.warning("client sent command_length %d: closing", length)
                    return
                if len(buf) - start < length:
                    break
                self._dispatch(session, command_id, status, sequence, bytes(buf[start : start + length]))
                start += length
            del buf[:start]

    def _dispatch(self, session: _Session, command_id: int, status: int, sequence: int, data: bytes) -> None:
        if command_id == SUBMIT_SM_ID:
            self._on_submit(session, sequence, data)
        elif command_id == DELIVER_SM_RESP_ID:
            if status != ESME_ROK:
                log.info("client answered deliver_sm %d with status 0x%08x", sequence, status)
        elif command_id in _BINDS:
            self._on_bind(session, _BINDS[command_id], sequence, data)
        elif command_id == _ENQUIRE_LINK:
            session.send(encode_pdu(make_pdu("enquire_link_resp", sequence=sequence)))
        elif command_id == _UNBIND:
            session.send(encode_pdu(make_pdu("unbind_resp", sequence=sequence)))
            session.flush()
            session.mode = ""
            session.closed = True
        elif command_id & 0x80000000:
            pass  # enquire_link_resp, generic_nack, ...
        else:
            session.send(encode_pdu(make_pdu("generic_nack", sequence=sequence, status=ESME_RINVCMDID)))

    def _on_bind(self, session: _Session, name: str, sequence: int, data: bytes) -> None:
        cfg = self.config
        status = ESME_ROK
        try:
            pdu = decode_pdu(data)
        except PduDecodeError:
            status = ESME_RSYSERR
        else:
            if session.mode:
                status = ESME_RALYBND
            elif cfg.system_id is not None and (
                text_field(pdu.system_id) != cfg.system_id or text_field(pdu.password) != cfg.password
            ):
                status = ESME_RBINDFAIL
        resp = make_pdu(name + "_resp", sequence=sequence, status=status, system_id=cfg.server_system_id)
        session.send(encode_pdu(resp))
        if status == ESME_ROK:
            session.mode = name
            if session.can_receive and self._waiting:
                waiting, self._waiting = self._waiting, []
                for body in waiting:
                    self._send_deliver(body)

    def _on_submit(self, session: _Session, sequence: int, data: bytes) -> None:
        if not session.can_send:
            session.send(encode_response(SUBMIT_SM_RESP_ID, sequence, ESME_RINVBNDSTS))
            return
        try:
            pdu = decode_short_message(data)
        except PduDecodeError as exc:
            log.warning("unreadable submit_sm: %s", exc.reason)
            session.send(encode_response(SUBMIT_SM_RESP_ID, sequence, ESME_RSYSERR))
            return
        sms = OutboundSms(
            destination=pdu.destination_addr,
            body=pdu.body,
            has_udh=bool(pdu.esm_class & ESM_UDHI),
            data_coding=pdu.data_coding,
            protocol_id=pdu.protocol_id,
        )
        wants_receipt = bool(pdu.registered_delivery & 0x03)
        source, source_ton, source_npi = pdu.source_addr, pdu.source_ton, pdu.source_npi

        async def on_receipt(receipt: Receipt) -> None:
            if wants_receipt:
                self._send_receipt(receipt, sms, source, source_ton, source_npi)

        try:
            message_id = self.simulator.accept(sms, on_receipt, self._send_mo)
        except SmscRejected as exc:
            session.send(encode_response(SUBMIT_SM_RESP_ID, sequence, exc.status))
            return
        session.send(encode_response(SUBMIT_SM_RESP_ID, sequence, ESME_ROK, message_id))

    # -- towards the client -------------------------------------------------------------------------
    def _send_receipt(self, receipt: Receipt, sms: OutboundSms, source: str, source_ton: int, source_npi: int) -> None:
        done = receipt.done_at or datetime.now(UTC)
        text = receipt_text(receipt.message_id, receipt.state, receipt.error_code or 0, done, done)
        self._send_deliver(
            encode_deliver_sm(
                0,
                source_ton=1,
                source_npi=1,
                source_addr=sms.destination,
                dest_ton=source_ton,
                dest_npi=source_npi,
                destination_addr=source,
                esm_class=ESM_DELIVERY_RECEIPT,
                data_coding=0x00,
                short_message=text,
                receipted_message_id=receipt.message_id,
                message_state=NUMBER_BY_STATE.get(receipt.state, NUMBER_BY_STATE[ReceiptState.UNKNOWN]),
            )
        )

    async def _send_mo(self, sms: InboundSms) -> None:
        self._send_deliver(
            encode_deliver_sm(
                0,
                source_ton=1,
                source_npi=1,
                source_addr=sms.source,
                dest_ton=3,
                dest_npi=0,
                destination_addr=sms.destination,
                esm_class=ESM_UDHI if sms.has_udh else 0x00,
                data_coding=sms.data_coding,
                short_message=sms.body,
            )
        )

    def _send_deliver(self, pdu: bytes) -> None:
        """Send a deliver_sm (its sequence number set here) to the newest receiving session, else keep it."""
        receivers = [s for s in self._sessions if s.can_receive]
        if not receivers:
            self._waiting.append(pdu)
            return
        session = receivers[-1]
        sequence = session.counter.next_sequence()
        session.send(pdu[:12] + sequence.to_bytes(4, "big") + pdu[16:])
