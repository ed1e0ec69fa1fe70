"""GSM modem transport: binary SMS through an AT-command modem (3GPP TS 27.005 PDU mode), on
python-gsmmodem-new 0.13.0.

The library drives the serial line (initialisation, command/response matching, a reader thread for
unsolicited results) but sends only GSM-7/UCS-2 text, so this adapter builds the SMS-SUBMIT itself
(`gateway.pdu_gsm.encode_submit`: DCS from the part, 0x04 for our 8-bit frames, TP-UDHI with the UDH,
status report requested) and sends it with `AT+CMGS=<length>` in PDU mode. It also reads raw PDUs
itself instead of the library's decoded text: an incoming SMS (+CMTI → AT+CMGR) becomes an `InboundSms`
with its user data byte for byte, UDH included; a status report (+CDS, or +CDSI → AT+CMGR) becomes a
`Receipt`. A stored SMS is deleted from the modem only after its callback returned, so a failing handler
loses nothing (what is left on the SIM is read again on the next connect, AT+CMGL=4).

Message ids. The network numbers a submit only by its TP-MR (0–255, `+CMGS: <mr>`), and a status report
names the MR and the recipient, so the message id is `"<recipient digits>/<mr>"` on both sides. It is
unique while fewer than 256 parts to the same number await their report.

Threads. Every blocking call (connect, AT+CMGS, close) runs in the adapter's one worker thread under an
asyncio deadline; the library's notification threads hand PDUs to the event loop with
`run_coroutine_threadsafe` and wait (bounded) for the callback before deleting the stored message.
Unsolicited results that the library swallows into a command's response (a +CDS arriving while AT+CMGS
waits for its prompt) are picked out of the response and handled like any other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import serial

from gateway.errors import InvalidPart, NotConnected, SmscRejected, SubmitTimeout, Throttled
from gateway.pdu_gsm import (
    GsmPduError,
    decode_deliver,
    decode_status_report,
    encode_submit,
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

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the library's regexes carry invalid escapes (compile-time warnings)
    from gsmmodem.exceptions import CmsError, CommandError, GsmModemException, TimeoutException
    from gsmmodem.modem import GsmModem

log = logging.getLogger("smsmeter.gateway.modem")

_CTRL_Z = chr(26)
_CMGS = re.compile(r"^\+CMGS:\s*(\d+)")
_CMGL = re.compile(r"^\+CMGL:\s*(\d+),")
_URC_PREFIXES = ("+CMTI:", "+CDSI:", "+CDS:")
_CMS_CONGESTION = frozenset({42})  # 27.005 §3.2.5 "congestion": not the message's fault, retry later


@dataclass(frozen=True, slots=True)
class ModemConfig:
    """The modem's serial port and behaviour. Times in seconds."""

    port: str
    baudrate: int = 115200
    pin: str | None = None
    international: bool = True  # destination numbers are international (TON 0x91)
    connect_timeout_s: float = 30.0
    command_timeout_s: float = 10.0
    submit_timeout_s: float = 40.0
    handler_timeout_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    serial_poll_s: float = 0.2  # the library's reader thread read timeout (how fast it notices a close)


def message_id_for(number: str, reference: int) -> str:
    return f"{number.removeprefix('+')}/{reference}"


class _Modem(GsmModem):  # type: ignore[misc]
    """GsmModem that reads raw PDUs and hands them to two plain callables (called in library threads).

    `on_deliver(pdu) -> bool`, `on_report(pdu) -> bool`: True when handed over (the stored copy may go)."""

    def __init__(
        self,
        config: ModemConfig,
        on_deliver: Callable[[bytes], bool],
        on_report: Callable[[bytes], bool],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        super().__init__(
            config.port,
            config.baudrate,
            smsReceivedCallbackFunc=self._ignore,
            smsStatusReportCallback=self._ignore,
            requestDelivery=True,
            AT_CNMI="2,1,0,1,0",
            fatalErrorCallbackFunc=on_fatal,
        )
        self.timeout = config.serial_poll_s
        self._command_timeout_s = config.command_timeout_s
        self._on_deliver = on_deliver
        self._on_report = on_report
        self.pdu_lock = threading.Lock()

    def _ignore(self, *args: object) -> None:
        """The library's own decoded callbacks are not used."""

    # unsolicited results ------------------------------------------------------------------------------
    def _handleSmsReceived(self, notificationLine: str) -> None:  # noqa: N802, N803 — library override
        match = self.CMTI_REGEX.match(notificationLine)
        if match is None:
            log.warning("unreadable +CMTI: %r", notificationLine)
            return
        memory, index = match.group(1), int(match.group(2))
        self._take_stored(index, memory)

    def _handleSmsStatusReport(self, notificationLine: str) -> None:  # noqa: N802, N803 — +CDSI
        match = self.CDSI_REGEX.match(notificationLine)
        if match is None:
            log.warning("unreadable +CDSI: %r", notificationLine)
            return
        self._take_stored(int(match.group(2)), match.group(1))

    def _handleSmsStatusReportTe(self, length: int, notificationLine: str) -> None:  # noqa: N802, N803 — +CDS
        try:
            pdu = bytes.fromhex(notificationLine.strip())
        except ValueError:
            log.warning("unreadable +CDS PDU: %r", notificationLine)
            return
        self._on_report(pdu)

    def _take_stored(self, index: int, memory: str | None) -> None:
        try:
            self._setSmsMemory(readDelete=memory)
            lines = self.write(f"AT+CMGR={index}", timeout=self._command_timeout_s)
            pdu = bytes.fromhex(_pdu_after(lines, "+CMGR:"))
        except (GsmModemException, ValueError, serial.SerialException) as exc:
            log.warning("cannot read stored SMS %s/%d: %r", memory, index, exc)
            return
        if self._dispatch_stored(pdu):
            with contextlib.suppress(GsmModemException, serial.SerialException):
                self.deleteStoredSms(index)

    def _dispatch_stored(self, pdu: bytes) -> bool:
        if len(pdu) > 1 + pdu[0] and pdu[1 + pdu[0]] & 0x03 == 0x02:
            return self._on_report(pdu)
        return self._on_deliver(pdu)

    def take_all_stored(self) -> int:
        """Read every message left in storage (AT+CMGL=4), hand each on, delete what was handed over."""
        lines = self.write("AT+CMGL=4", timeout=self._command_timeout_s)
        taken = 0
        for i, line in enumerate(lines):
            match = _CMGL.match(line)
            if match is None or i + 1 >= len(lines):
                continue
            try:
                pdu = bytes.fromhex(lines[i + 1].strip())
            except ValueError:
                log.warning("unreadable stored PDU: %r", lines[i + 1])
                continue
            if self._dispatch_stored(pdu):
                self.deleteStoredSms(int(match.group(1)))
                taken += 1
        return taken

    def write(  # the library's own argument names
        self,
        data: str,
        waitForResponse: bool = True,  # noqa: N803
        timeout: float = 10,
        parseError: bool = True,  # noqa: N803
        writeTerm: str = "\r",  # noqa: N803
        expectedResponseTermSeq: str | None = None,  # noqa: N803
    ) -> Any:
        """The library's write, minus unsolicited results it took for part of the response."""
        lines = super().write(data, waitForResponse, timeout, parseError, writeTerm, expectedResponseTermSeq)
        if not lines:
            return lines
        kept: list[str] = []
        urcs: list[str] = []
        take_next = False
        for line in lines:
            if take_next:
                urcs.append(line)
                take_next = False
            elif line.startswith(_URC_PREFIXES):
                urcs.append(line)
                take_next = line.startswith("+CDS:")
            else:
                kept.append(line)
        if urcs:
            log.info("unsolicited results inside a command response: %s", urcs)
            self._handleModemNotification(urcs)
        return kept


def _pdu_after(lines: list[str], prefix: str) -> str:
    for i, line in enumerate(lines):
        if line.startswith(prefix) and i + 1 < len(lines):
            return lines[i + 1].strip()
    raise CommandError(f"no PDU after {prefix} in {lines}")


class ModemTransport:
    """A GSM modem as an SMS channel; see the module docstring. Use `async with`."""

    def __init__(self, config: ModemConfig, on_receipt: ReceiptHandler, on_inbound: InboundHandler) -> None:
        self.config = config
        self._on_receipt = on_receipt
        self._on_inbound = on_inbound
        self._state = TransportState.STOPPED
        self._modem: _Modem | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: asyncio.Event | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.malformed = 0

    @property
    def state(self) -> TransportState:
        return self._state

    async def __aenter__(self) -> ModemTransport:
        """Open the port and initialise the modem; raises NotConnected when that fails."""
        self._loop = asyncio.get_running_loop()
        self._lost = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsm-modem")
        self._state = TransportState.CONNECTING
        try:
            await self._connect()
        except BaseException:
            await self._shutdown()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="modem-supervisor")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._shutdown()

    async def _run(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        assert self._loop is not None
        assert self._executor is not None
        async with asyncio.timeout(timeout_s):
            return await self._loop.run_in_executor(self._executor, fn)

    async def _connect(self) -> None:
        modem = _Modem(self.config, self._deliver_from_thread, self._report_from_thread, self._fatal_from_thread)

        def connect() -> int:
            modem.connect(pin=self.config.pin)
            return modem.take_all_stored()

        try:
            left = await self._run(connect, self.config.connect_timeout_s)
        except (TimeoutError, GsmModemException, serial.SerialException, OSError) as exc:
            with contextlib.suppress(Exception):
                await self._run(modem.close, self.config.command_timeout_s)
            raise NotConnected(f"modem on {self.config.port}: {exc!r}") from exc
        if left:
            log.info("%d messages left on the modem were handed on", left)
        self._modem = modem
        self._state = TransportState.BOUND

    async def _shutdown(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        modem, self._modem = self._modem, None
        if modem is not None:
            with contextlib.suppress(Exception):
                await self._run(modem.close, self.config.command_timeout_s)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._state = TransportState.STOPPED

    async def _supervise(self) -> None:
        """After the serial line failed: reopen it with backoff."""
        assert self._lost is not None
        delay = self.config.reconnect_min_s
        while True:
            await self._lost.wait()
            self._lost.clear()
            self._state = TransportState.RECONNECTING
            modem, self._modem = self._modem, None
            if modem is not None:
                with contextlib.suppress(Exception):
                    await self._run(modem.close, self.config.command_timeout_s)
            while True:
                await asyncio.sleep(delay)
                try:
                    await self._connect()
                except NotConnected as exc:
                    log.warning("modem still unavailable: %s", exc)
                    delay = min(delay * 2, self.config.reconnect_max_s)
                else:
                    delay = self.config.reconnect_min_s
                    break

    # -- library threads → event loop ---------------------------------------------------------------
    def _fatal_from_thread(self, exc: BaseException) -> None:
        log.error("modem serial line failed: %r", exc)
        if self._loop is not None and self._lost is not None:
            self._loop.call_soon_threadsafe(self._lost.set)

    def _call_in_loop(self, call: Callable[[], Awaitable[Any]]) -> bool:
        """Run a handler in the event loop (it is called there, not in this thread) and wait for it."""
        if self._loop is None or self._loop.is_closed():
            return False

        async def in_loop() -> None:
            await call()

        future = asyncio.run_coroutine_threadsafe(in_loop(), self._loop)
        try:
            future.result(self.config.handler_timeout_s)
        except Exception:
            log.exception("modem message handler failed; the message stays on the modem")
            future.cancel()
            return False
        return True

    def _deliver_from_thread(self, pdu: bytes) -> bool:
        try:
            deliver = decode_deliver(pdu)
        except GsmPduError as exc:
            self.malformed += 1
            log.warning("unreadable SMS-DELIVER (%s): %s", exc, pdu.hex())
            return True  # nothing better will come of it; it is logged in full
        sms = InboundSms(
            source=deliver.sender.removeprefix("+"),
            destination="",
            body=deliver.user_data,
            has_udh=deliver.has_udh,
            data_coding=deliver.data_coding,
            received_at=datetime.now(UTC),
        )
        return self._call_in_loop(lambda: self._on_inbound(sms))

    def _report_from_thread(self, pdu: bytes) -> bool:
        try:
            report = decode_status_report(pdu)
        except GsmPduError as exc:
            self.malformed += 1
            log.warning("unreadable SMS-STATUS-REPORT (%s): %s", exc, pdu.hex())
            return True
        receipt = Receipt(
            message_id=message_id_for(report.recipient, report.message_reference),
            state=report.state,
            error_code=report.status,  # TP-ST itself (0 when delivered)
            done_at=report.done_at,
        )
        return self._call_in_loop(lambda: self._on_receipt(receipt))

    # -- submitting ---------------------------------------------------------------------------------
    async def submit(self, sms: OutboundSms) -> str:
        """Send one part with AT+CMGS; return "<destination>/<mr>". Raises NotConnected, SubmitTimeout,
        Throttled (+CMS ERROR 42), SmscRejected(status = the +CMS ERROR code), InvalidPart."""
        check_part(sms)
        modem = self._modem
        if modem is None or self._state is not TransportState.BOUND:
            raise NotConnected(self._state.value)
        try:
            encoded = encode_submit(
                sms.destination,
                sms.body,
                has_udh=sms.has_udh,
                dcs=sms.data_coding,
                protocol_id=sms.protocol_id,
                validity_s=sms.validity_s,
                international=self.config.international,
            )
        except GsmPduError as exc:
            raise InvalidPart(str(exc)) from exc
        timeout_s = self.config.submit_timeout_s

        def send() -> int:
            with modem.pdu_lock:
                modem.write(
                    f"AT+CMGS={encoded.tpdu_length}",
                    timeout=self.config.command_timeout_s,
                    expectedResponseTermSeq="> ",
                )
                lines = modem.write(encoded.pdu.hex().upper(), timeout=timeout_s, writeTerm=_CTRL_Z)
            for line in lines:
                if (match := _CMGS.match(line)) is not None:
                    return int(match.group(1))
            raise CommandError(f"no +CMGS in {lines}")

        try:
            reference = await self._run(send, timeout_s + 1.0)
        except (TimeoutError, TimeoutException) as exc:
            raise SubmitTimeout(timeout_s) from exc
        except CmsError as exc:
            if exc.code in _CMS_CONGESTION:
                raise Throttled(exc.code, "CMS ERROR") from exc
            raise SmscRejected(exc.code, "CMS ERROR") from exc
        except CommandError as exc:
            raise SmscRejected(0, f"modem error: {exc}") from exc
        except (serial.SerialException, OSError) as exc:
            raise NotConnected(f"serial line: {exc!r}") from exc
        return message_id_for(sms.destination, reference)
