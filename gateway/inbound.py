"""Meter replies: SMS to our short number from a registered meter's number, verified, then acted on.

Each SMS goes through, in order: the destination must be our short number (else `wrong_number`), the
sender a registered active meter's SIM number (`unknown_sender`); parts are reassembled (a bad user-data
header: `malformed`); the frame's header is read without the key (`malformed`), must name the sending
meter (`wrong_meter`) and travel meter → head end (`wrong_direction`); the meter's key for the header's
key id is looked up (`unknown_key`); the frame is verified (`bad_tag`) and its counter checked against
the meter's inbound replay window (`replay`), which is updated in the same transaction
(meter_counters.in_highest / in_bitmap); a payload that does not parse is `malformed`.

Anything refused becomes a wrong_sms row with its reason and a log line — never an exception. With a
`on_text` handler, a text SMS (no user-data header) from a number that is not a meter's is not refused here:
it is kept in `inbound_texts` in the same transaction (gateway.inbound_texts) and the handler is told after the
commit (subscriber self-service answers it from there, or refuses it itself; what is not yet answered survives
a restart).
Accepted messages: an acknowledgement moves its command (matched by meter and counter) to 1:1 or
rejected_meter; readings, balance reports and events are stored and handed to the event callback after
the commit. SMS that arrive together are handled in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import meter_protocol as mp
from gateway.errors import Stopped
from gateway.events import EventHandler, ignore_event, publish
from gateway.inbound_rows import Work, add_message, wrong_sms_row
from gateway.inbound_store import SendingMeter, meters_by_number, write_work
from gateway.keys import KeyRing
from gateway.ports import InboundSms
from gateway.writegate import Pacer, WriteGate

log = logging.getLogger("smsmeter.gateway.inbound")

# told of the text SMS from numbers that are not meters after the commit that kept them; it must not block
TextHandler = Callable[[Sequence[InboundSms]], None]

_TEXT_CODINGS = frozenset({0x00, 0x01, 0x03, 0x08})  # GSM-7, IA5, Latin-1, UCS-2 (a meter's frame is 0x04)
_YIELD_EVERY = 200  # frames decoded between two turns of the event loop


def digits(number: str) -> str:
    """An address as plain digits: '+373 69-000 001' → '37369000001'."""
    if number.isascii() and number.isdigit():  # the usual case, on every SMS
        return number
    return "".join(ch for ch in number if ch.isdigit())


@dataclass(slots=True)
class InboundStats:
    received: int = 0
    frames: int = 0
    acks: int = 0
    reports: int = 0
    wrong: int = 0
    texts: int = 0  # handed to the text handler
    batches: int = 0
    wrong_by_reason: dict[str, int] = field(default_factory=dict)


class Inbound:
    """`on_sms` is the transport's inbound handler; `run()` records what arrives, in batches."""

    def __init__(
        self,
        engine: AsyncEngine,
        keys: KeyRing,
        short_number: str,
        *,
        clock: Callable[[], datetime] | None = None,
        on_event: EventHandler = ignore_event,
        gate: WriteGate | None = None,
        reassembler: mp.Reassembler | None = None,
        batch_interval_s: float = 0.02,
        on_text: TextHandler | None = None,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._short_number = digits(short_number)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_event = on_event
        self.on_text = on_text
        self._gate = gate or WriteGate.for_engine(engine)
        self._reassembler = reassembler or mp.Reassembler()
        self._pacer = Pacer(batch_interval_s)  # under load, at most one transaction per interval
        self._queue: list[tuple[InboundSms, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = False
        self._stop_before_run = False  # stop() came while no run was under way: the next run returns at once
        self._stopped = False  # run() has returned: nothing queued from now on would be recorded
        self._answer_owed: set[asyncio.Future[None]] = set()  # the SMS' futures handed out and not done yet
        self.stats = InboundStats()

    def on_sms(self, sms: InboundSms) -> asyncio.Future[None]:
        """Queue an SMS (call it in the event loop's thread); the future is done once it is recorded
        (processed or stored as a wrong SMS), and fails only when the database failed, so the SMSC
        delivers it again. A future rather than a coroutine: no task per SMS in the transport."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._stopped:  # the SMSC gets a temporary error and delivers it again
            fut.set_exception(Stopped("inbound path"))
            return fut
        self._answer_owed.add(fut)  # answered by the time run() returns, even from a batch cut off
        fut.add_done_callback(self._answer_owed.discard)
        self._queue.append((sms, fut))
        self._wake.set()
        return fut

    def stop(self) -> None:
        """End `run()` once what is queued is recorded; asked before its task first runs (a shutdown right
        after the start), the run records what is queued and returns instead of running on."""
        self._stop_before_run = not self._running
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        self._stopping, self._stop_before_run = self._stop_before_run, False
        self._stopped, self._running = False, True
        try:
            await self._loop()
        finally:
            self._stopped, self._running = True, False
            self._queue = []  # cancelled with SMS queued or a batch under way: the SMSC delivers them again
            for fut in list(self._answer_owed):
                if not fut.done():
                    fut.set_exception(Stopped("inbound path"))
            self._answer_owed.clear()

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                continue
            if not self._stopping:
                await self._pacer.turn()  # busy: what arrives meanwhile joins this transaction
            batch, self._queue = self._queue, []
            try:
                await self.process([sms for sms, _ in batch])
            except Exception as exc:
                log.exception("recording %d inbound SMS failed; the SMSC will deliver them again", len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                await asyncio.sleep(0.5)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def process(self, batch: Sequence[InboundSms]) -> None:
        """Handle SMS that arrived together, in one transaction; events go out after the commit."""
        now = self._clock()
        work = Work()
        self.stats.received += len(batch)
        async with self._gate, self._engine.begin() as conn:
            senders = await meters_by_number(conn, {digits(s.source) for s in batch})
            frames: list[tuple[InboundSms, SendingMeter, bytes]] = []
            for sms in batch:
                if digits(sms.destination) != self._short_number:
                    self._wrong(work, sms, sms.body, "wrong_number", f"sent to {sms.destination}", None)
                    continue
                meter = senders.get(digits(sms.source))
                if meter is None:
                    if self.on_text is not None and not sms.has_udh and sms.data_coding in _TEXT_CODINGS:
                        work.texts.append(sms)
                        continue
                    self._wrong(work, sms, sms.body, "unknown_sender", "not a registered meter's number", None)
                    continue
                try:
                    self._reassembler, frame = self._reassembler.add(
                        sender=digits(sms.source), body=sms.body, has_udh=sms.has_udh, now=int(now.timestamp())
                    )
                except mp.ProtocolError as exc:
                    self._wrong(work, sms, sms.body, "malformed", exc.reason, meter.id)
                    continue
                if frame is not None:
                    frames.append((sms, meter, frame))
            if frames:
                await self._decode(conn, frames, work, now)
            await write_work(conn, work, now, self._short_number)
        self.stats.batches += 1
        if work.texts and self.on_text is not None:
            self.stats.texts += len(work.texts)
            self.on_text(work.texts)
        if work.events:
            await publish(self._on_event, work.events)

    async def _decode(
        self, conn: AsyncConnection, frames: list[tuple[InboundSms, SendingMeter, bytes]], work: Work, now: datetime
    ) -> None:
        headers: list[tuple[InboundSms, SendingMeter, bytes, mp.FrameHeader]] = []
        for sms, meter, frame in frames:
            try:
                header = mp.peek_header(frame)
            except mp.ProtocolError as exc:
                self._wrong(work, sms, frame, "malformed", exc.reason, meter.id)
                continue
            if header.meter_code != meter.code:
                self._wrong(work, sms, frame, "wrong_meter", f"frame names meter {header.meter_code}", meter.id)
                continue
            if header.direction is not mp.Direction.UPLINK:
                self._wrong(work, sms, frame, "wrong_direction", "a head-end frame came back", meter.id)
                continue
            headers.append((sms, meter, frame, header))
        keys = await self._keys.keys_by_id(conn, [(m.id, h.key_id) for _, m, _, h in headers])
        for n, (sms, meter, frame, header) in enumerate(headers, start=1):
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the transport's reads and writes in between a long batch
            key = keys.get((meter.id, header.key_id))
            if key is None:
                self._wrong(work, sms, frame, "unknown_key", f"no key {header.key_id} for this meter", meter.id)
                continue
            window = work.windows.get(meter.id) or mp.ReplayWindow(meter.in_highest, meter.in_bitmap)
            try:
                decoded = mp.decode_frame(
                    frame, key=key, window=window, meter_code=meter.code, direction=mp.Direction.UPLINK
                )
            except mp.BadTag as exc:
                self._wrong(work, sms, frame, "bad_tag", exc.reason, meter.id)
                continue
            except mp.ReplayError as exc:
                self._wrong(work, sms, frame, "replay", exc.reason, meter.id)
                continue
            except mp.ProtocolError as exc:
                self._wrong(work, sms, frame, "malformed", exc.reason, meter.id)
                continue
            assert decoded.window is not None
            work.windows[meter.id] = decoded.window
            self.stats.frames += 1
            if isinstance(decoded.message, mp.Ack):
                self.stats.acks += 1
            else:
                self.stats.reports += 1
            add_message(work, meter.id, decoded.message, now, self._short_number, meter.kind)

    def _wrong(self, work: Work, sms: InboundSms, body: bytes, reason: str, detail: str, meter_id: int | None) -> None:
        log.warning("wrong SMS from %s to %s: %s (%s)", sms.source, sms.destination, reason, detail)
        self.stats.wrong += 1
        self.stats.wrong_by_reason[reason] = self.stats.wrong_by_reason.get(reason, 0) + 1
        work.wrong.append(wrong_sms_row(meter_id, sms.source, sms.destination, body, reason, detail, sms.received_at))


__all__ = ["Inbound", "InboundStats", "TextHandler", "digits"]
