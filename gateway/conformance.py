"""The conformance checklist (docs/protocol.md §14) driven over an SMS transport: the simulated network
or a real SMPP bind, to a meter under test at its SIM number.

`MeterLink` is the meter's end of a transport: it splits each frame into SMS parts (the meter's
application port in the header when it has one), submits them, and reassembles the SMS that come back
from the meter's number into frames. `run_checklist` walks `meter_protocol.conformance.CHECKLIST` in
order: for each exchange it sends the frame and waits for as many replies as the line expects (at most
`reply_timeout_s`), then `settle_s` more for any reply too many; a frame the meter must drop waits
`silence_s` for no reply. The bench (the head end's view of the meter) checks every reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import meter_protocol as mp
from gateway.inbound import digits
from gateway.ports import InboundSms, OutboundSms, Receipt, Transport
from meter_protocol.conformance import CHECKLIST, Bench, ExchangeRun, LineRun, check


@dataclass(frozen=True, slots=True)
class LinkTimes:
    reply_timeout_s: float = 60.0  # the longest the meter may take for the replies an exchange expects
    settle_s: float = 3.0  # once they are in, how long to wait for one too many
    silence_s: float = 30.0  # a frame the meter must drop: how long no reply must come
    submit_timeout_s: float = 30.0


class MeterLink:
    """Frames to the meter at `msisdn` and the frames it sends back. Give `on_inbound` and `on_receipt`
    to the transport when building it."""

    def __init__(self, msisdn: str, times: LinkTimes, *, app_port: int | None = None) -> None:
        self.msisdn = digits(msisdn)
        self.times = times
        self._ports = None if app_port is None else mp.ApplicationPorts(app_port, app_port)
        self._frames: asyncio.Queue[bytes] = asyncio.Queue()
        self._reassembler = mp.Reassembler()
        self._reference = 0
        self.foreign_sms = 0  # SMS from other numbers, ignored
        self.bad_parts = 0  # parts from the meter that do not reassemble

    async def on_receipt(self, receipt: Receipt) -> None:
        return None

    async def on_inbound(self, sms: InboundSms) -> None:
        if digits(sms.source) != self.msisdn:
            self.foreign_sms += 1
            return
        now = int(sms.received_at.timestamp())
        try:
            self._reassembler, frame = self._reassembler.add(
                sender=self.msisdn, body=sms.body, has_udh=sms.has_udh, now=now
            )
        except mp.ProtocolError:
            self.bad_parts += 1
            return
        if frame is not None:
            self._frames.put_nowait(frame)

    async def exchange(self, transport: Transport, frame: bytes, expected: int) -> list[bytes]:
        """Send `frame`; the frames the meter sends back (see the module's note on waiting)."""
        while not self._frames.empty():  # a late reply to an earlier exchange is not this one's
            self._frames.get_nowait()
        self._reference = (self._reference + 1) % 256
        parts = mp.split_frame(frame, reference=self._reference, ports=self._ports)
        has_udh = len(parts) > 1 or self._ports is not None
        async with asyncio.timeout(self.times.submit_timeout_s):
            for part in parts:
                await transport.submit(OutboundSms(self.msisdn, part, has_udh=has_udh))
        replies: list[bytes] = []
        wait = self.times.reply_timeout_s if expected else self.times.silence_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            if expected and len(replies) >= expected:
                deadline = min(deadline, loop.time() + self.times.settle_s)
                expected = 0
            left = deadline - loop.time()
            if left <= 0:
                return replies
            try:
                replies.append(await asyncio.wait_for(self._frames.get(), left))
            except TimeoutError:
                return replies


async def run_checklist(
    transport: Transport,
    link: MeterLink,
    bench: Bench,
    *,
    now: int | None = None,
    on_line: Callable[[LineRun], None] | None = None,
) -> list[LineRun]:
    """Every line of the checklist, in order, through `link` over `transport` (entered already)."""
    clock = int(datetime.now(UTC).timestamp()) if now is None else now
    runs: list[LineRun] = []
    for line in CHECKLIST:
        done: list[ExchangeRun] = []
        for exchange in line.build(bench, clock):
            try:
                replies = await link.exchange(transport, exchange.frame, len(exchange.expect))
            except Exception as exc:  # the transport refused the SMS: this exchange fails, the run goes on
                done.append(ExchangeRun(exchange, (), (f"not sent: {type(exc).__name__}: {exc}",)))
                continue
            done.append(ExchangeRun(exchange, tuple(replies), tuple(check(bench, exchange, replies))))
        run = LineRun(line, tuple(done))
        runs.append(run)
        if on_line is not None:
            on_line(run)
    return runs


__all__ = ["LinkTimes", "MeterLink", "run_checklist"]
