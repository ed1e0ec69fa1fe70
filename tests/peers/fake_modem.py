"""A fake GSM modem for the tests: an AT-command responder (27.007 / 27.005 subset) on a pseudo-terminal.

`async with FakeModem() as modem:` opens a pty; `modem.port` is the device path to give to pyserial /
python-gsmmodem-new. It answers the initialisation the library performs, AT+CMGS in PDU mode (records
the PDU, answers `+CMGS: <mr>`), AT+CMGR / AT+CMGD / AT+CMGL for stored messages, and emits unsolicited
results: `+CMTI` for an SMS delivered to the modem (`deliver()`), `+CDS` status reports after each send
(configurable delay and TP-ST) or on demand. It runs on the event loop (add_reader on the master side).
Unsolicited results wait while a command is being answered, as a real modem buffers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tty
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.pdu_gsm import encode_status_report

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the library's regexes carry invalid escapes (compile-time warnings)
    from gsmmodem.pdu import decodeSmsPdu


@dataclass(frozen=True, slots=True)
class SentSms:
    reference: int  # the TP-MR the modem answered with
    pdu: bytes  # as written after AT+CMGS (SMSC address field + TPDU)
    tpdu_length: int  # the <length> given to AT+CMGS
    destination: str
    decoded: dict[str, object]  # python-gsmmodem-new's own reading of the PDU


@dataclass(slots=True)
class FakeModemConfig:
    receipts: bool = True
    receipt_delay_s: float = 0.0
    receipt_status: int = 0x00  # TP-ST of the status reports
    silent: bool = False  # answer nothing (a modem that hangs)
    reject: list[int] = field(default_factory=list)  # +CMS ERROR codes for the next sends


_CMGS = re.compile(r"AT\+CMGS=(\d+)$")
_CMGR = re.compile(r"AT\+CMGR=(\d+)$")
_CMGD = re.compile(r"AT\+CMGD=(\d+)")


class FakeModem:
    def __init__(self, smsc_number: str = "+254700000000") -> None:
        self.smsc_number = smsc_number
        self.config = FakeModemConfig()
        self.sent: list[SentSms] = []
        self.commands: list[str] = []
        self.stored: dict[int, bytes] = {}
        self.port = ""
        self._master = -1
        self._slave = -1
        self._buffer = bytearray()
        self._pdu_length: int | None = None  # set while waiting for the PDU after AT+CMGS
        self._urcs: list[bytes] = []
        self._next_reference = 0
        self._next_index = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._sent_event = asyncio.Event()

    async def __aenter__(self) -> FakeModem:
        self._loop = asyncio.get_running_loop()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._loop.add_reader(self._master, self._on_readable)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._loop is not None and self._master >= 0:
            self._loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    # -- what tests drive ---------------------------------------------------------------------------
    def deliver(self, pdu: bytes) -> int:
        """Store an SMS-DELIVER PDU (SMSC address field first) and announce it with +CMTI; its index."""
        index = self._next_index
        self._next_index += 1
        self.stored[index] = pdu
        self._urc(f'+CMTI: "SM",{index}'.encode())
        return index

    def status_report(self, pdu: bytes) -> None:
        """Send an SMS-STATUS-REPORT PDU as +CDS (routed to the TE, 27.005 §3.4.1 <ds>=1)."""
        tpdu_length = len(pdu) - 1 - pdu[0]
        self._urc(f"+CDS: {tpdu_length}".encode() + b"\r\n" + pdu.hex().upper().encode())

    async def wait_sent(self, count: int, timeout_s: float = 5.0) -> list[SentSms]:
        async with asyncio.timeout(timeout_s):
            while len(self.sent) < count:
                self._sent_event.clear()
                await self._sent_event.wait()
        return self.sent

    # -- the line discipline ------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._master >= 0:
            with contextlib.suppress(OSError):
                os.write(self._master, data)

    def _reply(self, *lines: str | bytes, final: str = "OK") -> None:
        out = bytearray()
        for line in lines:
            out += b"\r\n" + (line.encode() if isinstance(line, str) else line) + b"\r\n"
        out += b"\r\n" + final.encode() + b"\r\n"
        self._write(bytes(out))

    def _urc(self, line: bytes) -> None:
        self._urcs.append(b"\r\n" + line + b"\r\n")
        assert self._loop is not None
        self._loop.call_soon(self._flush_urcs)

    def _flush_urcs(self) -> None:
        if self._buffer or self._pdu_length is not None:
            return  # a command is being received or answered: hold the URCs
        urcs, self._urcs = self._urcs, []
        for urc in urcs:
            self._write(urc)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return
        self._buffer += data
        while True:
            if self._pdu_length is not None:
                end = self._buffer.find(b"\x1a")
                if end < 0:
                    if b"\x1b" in self._buffer:  # ESC: cancelled
                        self._buffer.clear()
                        self._pdu_length = None
                        self._reply()
                    break
                text = bytes(self._buffer[:end]).decode("ascii").strip()
                del self._buffer[: end + 1]
                self._on_pdu(text)
                continue
            end = self._buffer.find(b"\r")
            if end < 0:
                break
            line = bytes(self._buffer[:end]).decode("latin-1").strip()
            del self._buffer[: end + 1]
            while self._buffer[:1] == b"\n":
                del self._buffer[:1]
            if line:
                self._on_command(line)
        self._flush_urcs()

    def _on_command(self, line: str) -> None:
        self.commands.append(line)
        if self.config.silent:
            return
        command = line.upper()
        if (m := _CMGS.match(command)) is not None:
            self._pdu_length = int(m.group(1))
            self._write(b"\r\n> ")
            return
        if (m := _CMGR.match(command)) is not None:
            pdu = self.stored.get(int(m.group(1)))
            if pdu is None:
                self._reply(final="+CMS ERROR: 321")  # invalid memory index
            else:
                self._reply(f"+CMGR: 0,,{len(pdu) - 1 - pdu[0]}", pdu.hex().upper())
            return
        if (m := _CMGD.match(command)) is not None:
            self.stored.pop(int(m.group(1)), None)
            self._reply()
            return
        if command.startswith("AT+CMGL"):
            lines: list[str] = []
            for index, pdu in sorted(self.stored.items()):
                lines += [f"+CMGL: {index},0,,{len(pdu) - 1 - pdu[0]}", pdu.hex().upper()]
            self._reply(*lines)
            return
        answers: dict[str, tuple[str, ...]] = {
            "AT+CFUN?": ("+CFUN: 1",),
            "AT+CPIN?": ("+CPIN: READY",),
            "AT+CLAC": ("+CLAC: +CMGS,+CMGR,+CMGD,+CMGL,+CNMI,+CPMS,+CSCA,+CSMP,+CMGF",),
            "AT+CGMI": ("FakeModem",),
            "AT+CGMM": ("FM-1",),
            "AT+CSCA?": (f'+CSCA: "{self.smsc_number}",145',),
            "AT+CPMS=?": ('+CPMS: ("ME","SM","SR"),("ME","SM","SR"),("ME","SM","SR")',),
            "AT+CSQ": ("+CSQ: 20,99",),
        }
        if command in answers:
            self._reply(*answers[command])
        elif command in ("AT+ZPAS?", "AT+WIND?"):
            self._reply(final="ERROR")
        else:
            self._reply()  # ATZ, ATE0, AT+CMEE=1, AT+CMGF=0, AT+CNMI=..., AT+CPMS=..., ...

    def _on_pdu(self, text: str) -> None:
        length, self._pdu_length = self._pdu_length, None
        assert length is not None
        pdu = bytes.fromhex(text)
        if self.config.reject:
            self._reply(final=f"+CMS ERROR: {self.config.reject.pop(0)}")
            return
        decoded = decodeSmsPdu(text)
        reference = self._next_reference
        self._next_reference = (self._next_reference + 1) % 256
        destination = str(decoded["number"]).removeprefix("+")
        self.sent.append(
            SentSms(reference=reference, pdu=pdu, tpdu_length=length, destination=destination, decoded=decoded)
        )
        self._sent_event.set()
        self._reply(f"+CMGS: {reference}")
        if self.config.receipts:
            now = datetime.now(UTC)
            report = encode_status_report(
                reference, destination, self.config.receipt_status, submitted_at=now, done_at=now
            )
            assert self._loop is not None
            self._timers.append(self._loop.call_later(self.config.receipt_delay_s, self.status_report, report))
