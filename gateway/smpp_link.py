"""One SMPP connection and its settings: how to reach and use the SMSC account (`SmppConfig`), the counters
(`SmppStats`), the connection itself with its batched writes (`Link`), a submit on its way
(`PendingSubmit`), and the framing of one PDU read under a deadline (`read_pdu`). Used by `gateway.smpp`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.errors import NotConnected
from gateway.pdu_smpp import HEADER, MAX_PDU_LENGTH, Pdu, SequenceCounter, encode_pdu
from gateway.ports import OutboundSms
from gateway.smpp_receipts import IdFormat


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
    late_response_s: float = 300.0  # a submit_sm_resp this long after its submit timeout still counts
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
    late_responses: int = 0  # submit_sm_resp after the submit timeout, their message ids handed on


class LinkLost(Exception):
    """The connection ended (closed, out of step, silent, unbound); `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False, slots=True)
class PendingSubmit:
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
class LateSubmit:
    """A part whose submit_sm_resp did not come in time: `fut` gets its message id if it still comes."""

    fut: asyncio.Future[str]
    since: float


@dataclass(eq=False, slots=True)
class Link:
    """One TCP connection to the SMSC: its sequence numbers, the submits awaiting their response, and its writes
    (everything queued in one turn of the loop leaves in one syscall)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    counter: SequenceCounter = field(default_factory=SequenceCounter)
    pending: dict[int, PendingSubmit] = field(default_factory=dict)
    late: dict[int, LateSubmit] = field(default_factory=dict)  # timed out, in the order they did
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
            raise LinkLost("write on a closed connection")
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
        late, self.late = self.late, {}
        for waiting in late.values():  # no response comes on a closed connection
            waiting.fut.cancel()
        for waiter in (self.enquire, self.unbind_reply):
            if waiter is not None and not waiter[1].done():
                waiter[1].cancel()
        self.writer.close()


async def read_pdu(conn: Link, idle_timeout_s: float, read_timeout_s: float) -> tuple[int, int, int, bytes]:
    """One whole PDU (the bind exchange reads this way; the read loop frames what it reads itself)."""
    try:
        async with asyncio.timeout(idle_timeout_s):
            header = await conn.reader.readexactly(16)
    except asyncio.IncompleteReadError as exc:
        raise LinkLost("connection closed by the SMSC") from exc
    except TimeoutError as exc:
        raise LinkLost(f"nothing read for {idle_timeout_s} s") from exc
    except ConnectionError as exc:
        raise LinkLost(f"read failed: {exc!r}") from exc
    length, command_id, status, sequence = HEADER.unpack(header)
    if length < 16 or length > MAX_PDU_LENGTH:
        raise LinkLost(f"bad command_length {length}: stream out of step")
    data = header
    if length > 16:
        try:
            async with asyncio.timeout(read_timeout_s):
                data += await conn.reader.readexactly(length - 16)
        except asyncio.IncompleteReadError as exc:
            raise LinkLost("connection closed inside a PDU") from exc
        except TimeoutError as exc:
            raise LinkLost("partial PDU: rest not read in time") from exc
        except ConnectionError as exc:
            raise LinkLost(f"read failed: {exc!r}") from exc
    conn.last_read = asyncio.get_running_loop().time()
    return command_id, status, sequence, data
